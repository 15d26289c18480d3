-- The AMQP consumer and producer of tests/integration/test-amqp.sh.
--
-- make_consumer: an AMQP consumer factory from the [app:main] keys amqp.*;
-- its handler writes "handled N redelivered R trace T" for each message
-- {"n": N} into test.out, fails the messages listed in test.fail_at (the
-- error handler writes "error N" and rejects or requeues them as
-- test.on_error says), and sleeps test.delay seconds in each.
--
-- publish (baseplate-script): publishes args[1] messages {"n": i} (from
-- args[2], default 1) through the producer `amqp` of configure_context,
-- `args[3]` at once, each waiting for the broker's confirm, inside a
-- server span; prints "published N" and "trace T". args[4]: bytes of
-- padding in each body (a "pad" field), for large messages.
local baseplate = require("baseplate")
local amqp_consumer = require("baseplate.frameworks.queue_consumer.kombu")
local amqp = require("baseplate.clients.amqp")

local M = {}

function M.make_consumer(app_config)
    local bp = baseplate.Baseplate(app_config)
    bp:configure_observers()
    local out = assert(io.open(app_config["test.out"], "a"))
    out:setvbuf("line")
    local delay = tonumber(app_config["test.delay"] or "0")
    local fail_at = {}
    for n in (app_config["test.fail_at"] or ""):gmatch("%d+") do fail_at[tonumber(n)] = true end
    local failed = {}
    local on_error = app_config["test.on_error"]
    local opts = {
        handler_fn = function(context, body, message)
            if delay > 0 then baseplate.sleep(delay) end
            if fail_at[body.n] and not failed[body.n] then
                failed[body.n] = true
                error("failing message " .. body.n)
            end
            if body.fatal then error(amqp_consumer.FatalMessageHandlerError("fatal " .. body.n)) end
            out:write("handled ", body.n, " redelivered ", tostring(message.redelivered), " trace ",
                context.span.trace_id, " parent ", tostring(context.span.parent_id), "\n")
        end,
    }
    if on_error then
        opts.error_handler_fn = function(context, body, message, err)
            out:write("error ", tostring(body and body.n), " ", tostring(err):match("failing message %d+") or
                tostring(err):match("[^\n]*"), " context ", tostring(context ~= nil), "\n")
            if on_error == "reject" then message:reject() else message:requeue() end
        end
    end
    return amqp_consumer.from_config(bp, app_config, opts)
end

-- Each message is published until the broker confirmed it (a publish cut
-- by a broker restart is retried: the message may then arrive twice).
local function publish_range(context, from, to, results)
    for i = from, to do
        local tries = 0
        while true do
            local ok, err = pcall(context.amqp.publish, context.amqp, { n = i, pad = results.pad },
                { routing_key = "bp.test" })
            if ok then break end
            tries = tries + 1
            results.retries = results.retries + 1
            if tries > 100 then error(err, 0) end
            baseplate.sleep(0.1)
        end
        results.n = results.n + 1
    end
end

function M.publish(app_config, args)
    local bp = baseplate.Baseplate(app_config)
    bp:configure_observers()
    bp:configure_context({ amqp = amqp.KombuProducer() })
    local count = tonumber(args[1] or "1")
    local first = tonumber(args[2] or "1")
    local width = tonumber(args[3] or "1")
    local pad = tonumber(args[4] or "0")
    local results = { n = 0, retries = 0, pad = pad > 0 and string.rep("x", pad) or nil }
    bp:server_context("publisher", function(context)
        print("trace " .. context.span.trace_id)
        local per = math.ceil(count / width)
        local done, errors = 0, {}
        for w = 0, width - 1 do
            local from = first + w * per
            local to = math.min(first + count - 1, from + per - 1)
            baseplate.spawn(function()
                if from <= to then
                    local ok, err = pcall(publish_range, context, from, to, results)
                    if not ok then errors[#errors + 1] = tostring(err) end
                end
                done = done + 1
            end)
        end
        while done < width do baseplate.sleep(0.01) end
        if #errors > 0 then error(errors[1], 0) end
    end)
    print("published " .. results.n)
    print("retries " .. results.retries)
end

-- Publish one message whose body is args[1] as it is (raw), with no
-- trace headers: the consumer's decode fails on anything but JSON.
function M.publish_raw(app_config, args)
    local target = amqp.connection_from_config(app_config, "amqp.")
    local conn = amqp.connect(target)
    conn:confirm_select()
    conn:publish({ exchange = app_config["amqp.exchange_name"], routing_key = "bp.test", body = args[1],
                   content_type = "application/json", persistent = true, headers = { ["X-Trace"] = "bogus" } }, 10)
    conn:close()
    print("published raw")
end

return M
