-- Lua 5.1's module directories on package.path and package.cpath: where
-- Debian installs the Lua tools baseplate-lint and baseplate-test run
-- (luacheck, busted and their C modules), which LuaJIT loads as they are.
return function()
    if not package.path:find("/usr/share/lua/5.1/", 1, true) then
        package.path = package.path .. ";/usr/share/lua/5.1/?.lua;/usr/share/lua/5.1/?/init.lua"
    end
    if not package.cpath:find("/lua/5.1/", 1, true) then
        package.cpath = package.cpath .. ";/usr/lib/x86_64-linux-gnu/lua/5.1/?.so;/usr/lib/lua/5.1/?.so"
    end
end
