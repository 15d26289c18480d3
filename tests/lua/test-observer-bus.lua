-- One observer bus: Lua observers listen behind a C observer, and
-- configure_observers builds observers from a registry of factories that C
-- extension modules add to (tests/obs-module.c).
local t = require("testlib")
local ffi = require("ffi")
local baseplate = require("baseplate")
local span_mod = require("baseplate.span")

ffi.cdef([[
int obs_module_register(void);
int obs_module_spans(const char *label);
int obs_module_released(void);
]])
local mod = ffi.load(os.getenv("BASEPLATE_BUILD_DIR") .. "/tests/obs-module.so")

local function collect()
    for _ = 1, 4 do collectgarbage() end
    baseplate.sleep(0.01) -- (a loop turn: what the core queued is delivered at its end)
end

t.test("a C module's observer factory: built from its keys, released with its Baseplate", function()
    t.eq(mod.obs_module_register(), 0)
    t.ok(mod.obs_module_register() ~= 0, "a name is registered once")
    t.raises("countobs is already registered", baseplate.register_observer_factory, "countobs", "x.",
        function() end)

    local released = mod.obs_module_released()
    local bp = baseplate.Baseplate({ ["countobs.label"] = "one" })
    bp:configure_observers()
    for i = 1, 3 do bp:server_context("op" .. i, function() end) end
    t.eq(mod.obs_module_spans("one"), 3, "it saw every server span")
    bp = nil
    collect()
    t.eq(mod.obs_module_released(), released + 1, "released once its Baseplate is gone")

    -- off by its own key, not called without its keys, errors name the key
    bp = baseplate.Baseplate({ ["countobs.label"] = "two", ["countobs.enabled"] = "false" })
    bp:configure_observers()
    bp:server_context("op", function() end)
    t.eq(mod.obs_module_spans("two"), -1, "declined")
    baseplate.Baseplate({}):configure_observers()
    t.raises("countobs observer: countobs.label: must be set",
        baseplate.Baseplate({ ["countobs.label"] = "bad" }).configure_observers,
        baseplate.Baseplate({ ["countobs.label"] = "bad" }))
end)

t.test("a Lua observer factory: called only when a key has its prefix", function()
    local calls = {}
    baseplate.register_observer_factory("luaobs", "luaobs.", function(bp, raw)
        calls[#calls + 1] = raw["luaobs.on"]
        if raw["luaobs.on"] ~= "yes" then return false end
        bp:register({ on_server_span_created = function(_, _, span) calls[#calls + 1] = span.name end })
        return true
    end)
    t.raises("already registered", baseplate.register_observer_factory, "luaobs", "luaobs.", function() end)
    baseplate.Baseplate({ other = "1" }):configure_observers()
    t.eq(#calls, 0, "no luaobs.* key: not called")
    local bp = baseplate.Baseplate({ ["luaobs.on"] = "yes" })
    bp:configure_observers()
    bp:server_context("cron", function() end)
    t.eq(calls, { "yes", "cron" })
end)

t.test("Lua observers hear the core's events, in order, and state goes with the span", function()
    local seen = {}
    local bp = baseplate.Baseplate({})
    bp:register({ on_server_span_created = function(_, context, span)
        seen[#seen + 1] = "created " .. span.name .. (context.span == span and "" or " (other span)")
        span:register({
            on_set_tag = function(_, k, v) seen[#seen + 1] = "tag " .. k .. "=" .. tostring(v) .. ":" .. type(v) end,
            on_finish = function(_, err) seen[#seen + 1] = "finish " .. tostring(err and err.class) end,
            on_child_span_created = function(_, child)
                seen[#seen + 1] = "child " .. child.name
                child:register({ on_log = function(_, name) seen[#seen + 1] = "child log " .. name end })
            end,
        })
    end })
    local ctx = bp:make_context_object()
    local span = bp:make_server_span(ctx, "op")
    span:start()
    span:set_tag("n", 3)
    span:set_tag("b", false)
    local child = span:make_child("c.m")
    child:log("hello")
    child:finish()
    span:finish({ class = "Kaput" })
    t.eq(table.concat(seen, "; "), "created op; tag n=3:number; tag b=false:boolean; child c.m; "
        .. "child log hello; finish Kaput")
    span, child, ctx = nil, nil, nil
    for _ = 1, 200 do
        bp:server_context("many", function(context) context.span:set_tag("x", 1) end)
    end
    collect()
    collect()
    t.eq(span_mod._watched_count(), 0, "nothing kept for freed spans")
end)

t.test("an observer's error never stops the others, nor the events that follow", function()
    local got = {}
    local bp = baseplate.Baseplate({})
    bp:register({ on_server_span_created = function(_, _, span)
        span:register({ on_start = function() error("first breaks") end })
        span:register({ on_start = function() got[#got + 1] = "start" end,
                        on_finish = function() got[#got + 1] = "finish" end })
    end })
    bp:server_context("op", function() end)
    t.eq(got, { "start", "finish" })
end)

t.done()
