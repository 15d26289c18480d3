-- The Baseplate object, spans, trace info, context objects and Lua observers,
-- in the runtime (as baseplate-script would use them).
local t = require("testlib")
local baseplate = require("baseplate")
local config = require("baseplate.lib.config")
local TraceInfo = baseplate.TraceInfo

t.test("TraceInfo.new: a root span with a random decimal ID", function()
    local a, b = TraceInfo.new(), TraceInfo.new()
    t.ok(a.trace_id:match("^%d+$"), "decimal: " .. a.trace_id)
    t.eq(a.span_id, a.trace_id, "span ID = trace ID")
    t.eq(a.parent_id, nil, "no parent")
    t.eq(a.sampled, nil, "undecided")
    t.ok(a.trace_id ~= b.trace_id, "random")
end)

t.test("TraceInfo.from_upstream: values and validation", function()
    local ti = TraceInfo.from_upstream("18446744073709551615", "2", "3", true, 1)
    t.eq(ti.trace_id, "18446744073709551615", "the whole u64 range")
    t.eq(ti.parent_id, "2")
    t.eq(ti.span_id, "3")
    t.eq(ti.sampled, true)
    t.eq(ti.flags, 1)
    t.raises("invalid sampled value", TraceInfo.from_upstream, "1", nil, "2", "yes", nil)
    t.raises("invalid flags value", TraceInfo.from_upstream, "1", nil, "2", nil, -1)
    t.raises("invalid flags value", TraceInfo.from_upstream, "1", nil, "2", nil, 2 ^ 64)
    t.raises("invalid trace_id value", TraceInfo.from_upstream, "abc", nil, "2", nil, nil)
    t.raises("invalid trace_id value", TraceInfo.from_upstream, "18446744073709551616", nil, "2")
    t.raises("invalid span_id value", TraceInfo.from_upstream, "1", nil, nil)
end)

t.test("make_server_span: IDs, children, re-use of a context", function()
    local bp = baseplate.Baseplate({ ["baseplate.service_name"] = "svc" })
    t.eq(bp.service_name, "svc")
    local ctx = bp:make_context_object()
    local span = bp:make_server_span(ctx, "op", TraceInfo.from_upstream("100", "50", "200", false, nil))
    t.eq(span.trace_id, "100")
    t.eq(span.id, "200")
    t.eq(span.parent_id, "50")
    t.eq(span.sampled, false)
    t.eq(span.name, "op")
    t.eq(ctx.span, span, "the context's span")
    t.raises("Context objects cannot be re-used", bp.make_server_span, bp, ctx, "again")
    span:start()
    local child = span:make_child("redis.get")
    t.eq(child.trace_id, "100", "same trace")
    t.eq(child.parent_id, "200", "parent is the server span")
    t.ok(child.id ~= "200", "a new ID")
    t.eq(child.kind, "client")
    local loc = span:make_child("work", true, "component")
    t.eq(loc.kind, "local")
    t.eq(loc.component_name, "component")
    span:finish()
    t.raises("Cannot make child span of parent that already finished", span.make_child, span, "late")
    -- a child still open after its parent finished can finish
    child:start()
    child:finish()
end)

t.test("default service name: the calling module", function()
    local bp = baseplate.Baseplate({})
    t.eq(bp.service_name, "test-span")
end)

t.test("Lua observers: every event, in order, despite failing observers", function()
    local bp = baseplate.Baseplate({})
    local seen = {}
    local function rec(s) seen[#seen + 1] = s end
    bp:register({ on_server_span_created = function() error("first observer breaks") end })
    bp:register({
        on_server_span_created = function(_, context, span)
            rec("created " .. span.name)
            span:register({ on_start = function() error("span observer breaks") end })
            span:register({
                on_start = function() rec("start") end,
                on_set_tag = function(_, k, v) rec("tag " .. k .. "=" .. tostring(v)) end,
                on_incr_tag = function(_, k, d) rec("incr " .. k .. " " .. d) end,
                on_log = function(_, name, payload) rec("log " .. name .. " " .. tostring(payload)) end,
                on_child_span_created = function(_, child)
                    rec("child " .. child.name)
                    child:register({ on_finish = function(_, err) rec("child finish " .. tostring(err)) end })
                end,
                on_finish = function(_, err) rec("finish " .. tostring(err)) end,
            })
        end,
    })
    local ctx = bp:make_context_object()
    local span = bp:make_server_span(ctx, "op")
    span:start()
    span:set_tag("k", true)
    span:incr_tag("n")
    span:log("event", "payload")
    span:make_child("c.m"):with(function() end)
    span:finish()
    t.eq(table.concat(seen, "; "),
        "created op; start; tag k=true; incr n 1; log event payload; child c.m; child finish nil; finish nil")
end)

t.test("span:with finishes on error with the error, and re-raises", function()
    local bp = baseplate.Baseplate({})
    local got
    bp:register({ on_server_span_created = function(_, _, span)
        span:register({ on_finish = function(_, err) got = err end })
    end })
    local span = bp:make_server_span(bp:make_context_object(), "op")
    local err = t.raises("kaput", span.with, span, function() error({ class = "Kaput", message = "kaput" }) end)
    t.eq(err.class, "Kaput")
    t.eq(got.class, "Kaput", "observers see the error")
    t.raises("Cannot make child span", span.make_child, span, "x")
end)

t.test("server_context: a span around fn, context built from the spec", function()
    local made = {}
    local factory = {
        make_object_for_context = function(self, name, span)
            made[#made + 1] = name .. "@" .. span.name
            return { name = name }
        end,
    }
    local bp = baseplate.Baseplate({ ["cfg.doggo_is_good"] = "true", ["cfg.count"] = "3" })
    bp:configure_context({
        cfg = { doggo_is_good = config.Boolean, count = config.Integer },
        cache = factory,
        db = { primary = factory, replica = factory },
        plain = "value",
    })
    local r = bp:server_context("cron", function(context)
        t.eq(context.cfg.doggo_is_good, true)
        t.eq(context.cfg.count, 3)
        t.eq(context.plain, "value")
        t.eq(#made, 0, "factories run on first use only")
        t.eq(context.cache.name, "cache")
        t.eq(context.cache, context.cache, "kept for the span")
        t.eq(context.db.replica.name, "db.replica", "nested names")
        t.eq(context.missing, nil)
        return "result"
    end)
    t.eq(r, "result")
    t.eq(table.concat(made, ","), "cache@cron,db.replica@cron")
    t.raises("kaput", bp.server_context, bp, "cron", function() error("kaput") end)
end)

t.test("configure_context: a bad value names the key", function()
    local bp = baseplate.Baseplate({ ["cfg.count"] = "many" })
    local err = t.raises("cfg.count", bp.configure_context, bp, { cfg = { count = config.Integer } })
    t.ok(config.is_configuration_error(err), "a ConfigurationError")
end)

t.test("configure_observers: metrics keys are checked", function()
    local bp = baseplate.Baseplate({ ["metrics.tagging"] = "maybe" })
    t.raises("metrics.tagging", bp.configure_observers, bp)
    bp = baseplate.Baseplate({ ["metrics.namespace"] = "x", ["metrics.tagging"] = "true" })
    t.raises("metrics.namespace: cannot be combined with metrics.tagging", bp.configure_observers, bp)
    bp = baseplate.Baseplate({ ["metrics.namespace"] = "x", ["metrics.endpoint"] = "localhost" })
    t.raises("metrics.endpoint", bp.configure_observers, bp)
    bp = baseplate.Baseplate({ ["metrics.namespace"] = "x" })
    bp:configure_observers()
    t.ok(bp.metrics_client ~= nil, "a metrics client for direct use")
end)

t.done()
