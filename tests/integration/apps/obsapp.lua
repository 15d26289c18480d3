-- The app of tests/integration/test-observers.sh: spans, observers, metrics.
local baseplate = require("baseplate")
local http = require("baseplate.http")
local log = require("baseplate.log").get_logger("obsapp")

local M = {}

-- Lua observers: the first always raises; the second records what it sees
-- of the spans named in WATCH (events_of[name]).
local events_of = {}
local WATCH = { observed = true, c_ok = true, c_unavailable = true, fail = true }

local Broken = {}
function Broken:on_server_span_created(context, span)
    error("this observer is broken")
end

local Recorder = {}
function Recorder:on_server_span_created(context, span)
    if not WATCH[span.name] then return end
    local events = {}
    events_of[span.name] = events
    events[#events + 1] = "created " .. span.name
    if context.span ~= span then events[#events + 1] = "context without its span" end
    span:register({
        on_start = function() events[#events + 1] = "start" end,
        on_set_tag = function(_, k, v) error("set_tag observer fails too") end,
        on_child_span_created = function(_, child)
            events[#events + 1] = "child " .. child.name
        end,
        on_finish = function(_, err)
            if type(err) == "string" then -- a Lua error: its first line, and whether a traceback came
                events[#events + 1] = "finish " .. err:match("^[^\n]*"):gsub("^.-: ", "")
                    .. (err:find("stack traceback") and " (traceback)" or "")
            else
                events[#events + 1] = "finish " .. tostring(err)
            end
        end,
    })
    span:register({
        on_set_tag = function(_, k, v) events[#events + 1] = "tag " .. k .. "=" .. tostring(v) end,
    })
end

function M.make_app(app_config)
    local bp = baseplate.Baseplate(app_config)
    bp:configure_observers()
    bp:register(Broken)
    bp:register(Recorder)
    bp:configure_context({ greeting = "hello", nested = { answer = 42 } })

    local app
    if os.getenv("OBS_C_BASEPLATE") then
        -- as a C module would: the Baseplate set through the C API only
        app = http.app(app_config)
        require("ffi").C.bp_app_set_baseplate(app.c, bp.c, 0)
    else
        app = http.app(app_config, { baseplate = bp })
    end
    app:get("ok", "/ok", function(request)
        log:info("handling ok")
        return { ok = true }
    end)
    app:get("fail", "/fail", function(request) error("boom") end)
    app:get("teapot", "/teapot", function(request) http.abort(418) end)
    app:get("child", "/child", function(request)
        request.span:make_child("redis.get"):with(function(span) baseplate.sleep(0.001) end)
        request.span:make_child("geocode", true, "maps"):with(function() end)
        local ok = pcall(function()
            request.span:make_child("payments.charge"):with(function() error("declined") end)
        end)
        return { ok = not ok }
    end)
    app:get("incr", "/incr", function(request)
        request.span:incr_tag("things.done", 3)
        return {}
    end)
    app:get("tags", "/tags", function(request)
        request.span:set_tag("foo", "bar")
        request.span:set_tag("baz", "qux")
        return {}
    end)
    app:get("trace", "/trace", function(request)
        log:info("in the handler")
        baseplate.sleep(0.001)
        log:info("after a wait")
        local s = request.span
        return { trace_id = s.trace_id, id = s.id, parent_id = s.parent_id or "none",
                 sampled = s.sampled, flags = s.flags or 0, edge = s.edge_request or "none",
                 context = request.greeting .. " " .. request.nested.answer }
    end)
    app:get("direct", "/direct", function(request)
        request.metrics:counter("direct.hits"):increment()
        request.metrics:gauge("direct.level", { shard = 2 }):replace(7)
        return {}
    end)
    app:get("big", "/big", function(request)
        for i = 1, 4000 do
            request.metrics:counter("loop.counter" .. i):increment(i % 7 + 1)
        end
        request.metrics:counter("loop.hot"):increment(9001)
        return {}
    end)
    app:get("observed", "/observed", function(request)
        request.span:set_tag("color", "blue")
        request.span:make_child("inner.call"):with(function() end)
        return {}
    end)
    app:get("block", "/block", function(request)
        local t0 = os.clock()
        while os.clock() - t0 < 0.2 do end -- holds the event loop
        return {}
    end)
    app:get("events", "/events", function(request)
        return { events = table.concat(events_of[request.args.name or "observed"] or {}, ";") }
    end)
    -- C routes (a C extension module's): Lua observers see their spans too
    local ffi = require("ffi")
    ffi.cdef("int obs_module_add_routes(struct bp_app_s *app);")
    M.module = ffi.load(os.getenv("BASEPLATE_BUILD_DIR") .. "/tests/obs-module.so") -- (kept loaded)
    assert(M.module.obs_module_add_routes(app.c) == 0)
    return app
end

return M
