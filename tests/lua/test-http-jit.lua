-- The request hot path stays JIT-compiled: serve real requests (curl, in the
-- background, keep-alive) from this process and watch LuaJIT's trace events.
-- A trace must be compiled through baseplate.http, and no NYI abort may
-- happen in baseplate's own modules.
local t = require("testlib")
local baseplate = require("baseplate")
local http = require("baseplate.http")
local http_server = require("baseplate.server.http")

local served = 0
-- With a Baseplate and the tagged metrics observer: the span path too.
local app_config = { ["metrics.tagging"] = "true" }
local bp = baseplate.Baseplate(app_config)
bp:configure_observers()
local app = http.app(app_config, { baseplate = bp })
app:get("hello_world", "/", function(request)
    served = served + 1
    return { Hello = "World" }
end)
app:get("user", "/users/{id}", function(request)
    served = served + 1
    request.span:incr_tag("users")
    return { id = request.params.id, ua = request.headers["user-agent"] }
end)

local jitwatch = require("jitwatch")
local listener, port = jitwatch.bind_free()
local srv = http_server.make_server({}, listener, app)

local watch = jitwatch.watch()
local stops, aborts = watch.stops, watch.aborts

local N = 400
local urls = {}
for i = 1, N do
    urls[i] = (i % 2 == 0) and ("http://127.0.0.1:" .. port .. "/")
        or ("http://127.0.0.1:" .. port .. "/users/" .. i)
end
local out = os.tmpname()
-- curl runs in the background; this coroutine sleeps while the loop serves it.
os.execute("curl -s -o /dev/null " .. table.concat(urls, " ") .. " > " .. out .. " 2>&1 &")

local deadline = baseplate.now() + 20
while served < N and baseplate.now() < deadline do
    baseplate.sleep(0.02)
end
watch.stop()
srv:stop()
os.remove(out)

t.test("all requests served in-process", function()
    t.eq(served, N)
end)

t.test("the request path compiles to traces", function()
    local through_http = 0
    for _, src in ipairs(stops) do
        if src:find("baseplate/http.lua", 1, true) or src:find("baseplate/runtime.lua", 1, true) then
            through_http = through_http + 1
        end
    end
    t.ok(#stops > 0, "no trace compiled at all")
    t.ok(through_http > 0, "no trace started in baseplate/http.lua or runtime.lua; traces: "
        .. table.concat(stops, ", "))
end)

t.test("no NYI aborts in baseplate's modules", function()
    t.eq(jitwatch.nyi(aborts), {}, "NYI aborts")
end)

t.done()
