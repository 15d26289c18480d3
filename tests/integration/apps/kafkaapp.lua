-- A Kafka worker for tests/integration/test-kafka.sh (against librdkafka's
-- mock cluster, tests/kafka-mock.c): the factory and its keys come from the
-- [app:main] section (kafka.*); each handled message is recorded in the
-- file `test.out` as "n=N p=PARTITION o=OFFSET w=PID trace=ID inflight=K"
-- (K: the handlers of this process busy with a message when this one began,
-- itself included), so the test counts what was handled, how often, where
-- and how many at once.
--   test.factory    inorder (default) or fast
--   test.crash_at   n of a message after whose handling the process kills
--                   itself with SIGKILL (after handling, before committing)
--   test.fail_at    n of a message whose handler raises
--   test.delay      seconds each message takes
--   test.forward    a topic each message is produced to again (as n + 100000),
--                   through the producer client `events` (events.* keys)
local ffi = require("ffi")
local baseplate = require("baseplate")
local kafka = require("baseplate.frameworks.queue_consumer.kafka")
local kafka_client = require("baseplate.clients.kafka")

ffi.cdef([[ int kill(int pid, int sig); int getpid(void); ]])

local M = {}

function M.make_consumer(app_config)
    local bp = baseplate.Baseplate(app_config)
    bp:configure_observers()
    local out = assert(io.open(app_config["test.out"], "a"))
    out:setvbuf("line")
    local crash_at = tonumber(app_config["test.crash_at"] or "-1")
    local fail_at = tonumber(app_config["test.fail_at"] or "-1")
    local delay = tonumber(app_config["test.delay"] or "0")
    local forward = app_config["test.forward"]
    if forward then bp:configure_context({ events = kafka_client.KafkaProducer() }) end
    local opts = kafka.options_from_config(app_config)
    opts.name = "kafka_consumer.test_worker"
    opts.baseplate = bp
    local busy = 0
    function opts.handler_fn(context, data, message)
        busy = busy + 1
        local inflight = busy
        local ok, err = pcall(M.handle, context, data, message, inflight)
        busy = busy - 1
        if not ok then error(err, 0) end
    end
    function M.handle(context, data, message, inflight)
        if delay > 0 then baseplate.sleep(delay) end
        if data.n == fail_at then error("a failing handler at " .. data.n) end
        out:write(string.format("n=%d p=%d o=%d w=%d trace=%s inflight=%d\n", data.n, message.partition,
            message.offset, ffi.C.getpid(), tostring(context.span.trace_id), inflight))
        if forward and data.n < 100000 then
            context.events:produce(forward, string.format('{"n":%d}', data.n + 100000), { key = tostring(data.n) })
        end
        if data.n == crash_at then
            out:flush()
            ffi.C.kill(ffi.C.getpid(), 9)
        end
    end
    if app_config["test.factory"] == "fast" then
        return kafka.FastConsumerFactory.new(opts)
    end
    return kafka.InOrderConsumerFactory.new(opts)
end

return M
