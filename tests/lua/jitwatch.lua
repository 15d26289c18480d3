-- What the JIT tests (test-*-jit.lua) share: a free
-- port to serve on, and LuaJIT's trace events recorded while the traffic
-- runs.
local server = require("baseplate.server")
local vmdef = require("jit.vmdef")
local funcinfo = require("jit.util").funcinfo

local M = {}

--- A listener on a free loopback port: listener, port.
function M.bind_free()
    for _ = 1, 20 do
        local port = 20000 + math.random(0, 19999)
        local ok, l = pcall(server.bind, "127.0.0.1:" .. port)
        if ok then return l, port end
    end
    error("no free port")
end

local function source_of(func, pc)
    local info = funcinfo(func, pc)
    return (info.source or "?") .. (pc and info.currentline and (":" .. info.currentline) or "")
end

--- Record trace events until :stop(): `stops` (where each compiled trace
--- began) and `aborts` ("began -> stopped at: reason").
function M.watch()
    local w = { stops = {}, aborts = {} }
    local started = {}
    jit.attach(function(what, tr, func, pc, otr, oex)
        if what == "start" then
            started[tr] = source_of(func, pc)
        elseif what == "stop" then
            w.stops[#w.stops + 1] = source_of(func)
        elseif what == "abort" then
            local msg = vmdef.traceerr[otr] or tostring(otr)
            if type(oex) == "number" and msg:find("%%d") then
                msg = msg:format(oex)
            elseif oex and msg:find("%%s") then
                msg = msg:format(vmdef.ffnames and vmdef.ffnames[oex] or tostring(oex))
            end
            -- where the trace began, and where it stopped (often a builtin,
            -- such as ffi.cast, called from baseplate's code)
            w.aborts[#w.aborts + 1] = tostring(started[tr]) .. " -> " .. source_of(func, pc) .. ": " .. msg
        end
    end, "trace")
    function w.stop() jit.attach(function() end) end
    return w
end

--- How many compiled traces began in a source whose path contains `path`.
function M.traces_in(stops, path)
    local n = 0
    for _, src in ipairs(stops) do
        if src:find(path, 1, true) then n = n + 1 end
    end
    return n
end

--- The NYI aborts in baseplate's own modules, but those `known(abort)` excuses.
function M.nyi(aborts, known)
    local bad = {}
    for _, a in ipairs(aborts) do
        if a:find("baseplate/", 1, true) and a:find("NYI", 1, true) and not (known and known(a)) then
            bad[#bad + 1] = a
        end
    end
    return bad
end

return M
