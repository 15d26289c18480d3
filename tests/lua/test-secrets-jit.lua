-- The secrets store's getters are on the request path (a handler fetches
-- a secret each time it needs one): they compile to traces with no NYI
-- abort in baseplate's modules, reading a watched file that does not
-- change (the core's generation number, one FFI call) and one that does.
local t = require("testlib")
local jitwatch = require("jitwatch")
local secrets = require("baseplate.lib.secrets")
local runtime = require("baseplate.runtime")
local cjson = require("cjson")

-- os.tmpname makes a unique file: its name plus ".d" is a directory no
-- other run of this test uses at the same time
local dir = os.tmpname() .. ".d"
assert(os.execute("mkdir -p '" .. dir .. "'") == 0)
local path = dir .. "/secrets.json"
local function replace(i)
    local f = assert(io.open(path .. ".tmp", "wb"))
    f:write(cjson.encode({ secrets = {
        ["secret/key"] = { type = "versioned", current = "a2V5LW9uZQ==", previous = "b2xk", encoding = "base64" },
        ["secret/db"] = { type = "credential", username = "u" .. i, password = "p" },
        ["secret/simple"] = { type = "simple", value = "v" },
    } }))
    f:close()
    assert(os.rename(path .. ".tmp", path))
end
replace(0)
local store = secrets.SecretsStore(path)

local watch = jitwatch.watch()
local n = 0
for round = 1, 4 do
    for _ = 1, 3000 do
        local k = store:get_versioned("secret/key")
        local c = store:get_credentials("secret/db")
        local s = store:get_simple("secret/simple")
        if k.current == "key-one" and c.password == "p" and s == "v" then n = n + 1 end
    end
    replace(round)
    runtime.sleep(0.05)
end
watch.stop()

t.test("every get answered", function()
    t.eq(n, 12000)
    t.eq(store:get_credentials("secret/db").username, "u4")
end)

t.test("the getters compile to traces", function()
    t.ok(jitwatch.traces_in(watch.stops, "baseplate/lib/secrets.lua") > 0,
        "no trace in baseplate.lib.secrets; traces: " .. table.concat(watch.stops, ", "))
end)

t.test("no NYI aborts in baseplate's modules", function()
    t.eq(jitwatch.nyi(watch.aborts), {}, "NYI aborts")
end)

store:close()
os.execute("rm -rf '" .. dir .. "' '" .. dir:sub(1, -3) .. "'")
t.done()
