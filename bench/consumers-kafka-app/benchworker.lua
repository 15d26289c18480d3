-- The worker of bench/consumers-kafka: a Kafka consumer factory whose
-- handler does nothing. It records in `bench.out` when the first message
-- was handled and when `bench.count` were.
local baseplate = require("baseplate")
local kafka = require("baseplate.frameworks.queue_consumer.kafka")

local M = {}

function M.make_consumer(app_config)
    local bp = baseplate.Baseplate(app_config)
    bp:configure_observers()
    local out = assert(io.open(app_config["bench.out"], "a"))
    out:setvbuf("line")
    local count = tonumber(app_config["bench.count"])
    local seen = 0
    local opts = kafka.options_from_config(app_config)
    opts.name = "kafka_consumer.bench"
    opts.baseplate = bp
    function opts.handler_fn(_, _, _)
        seen = seen + 1
        if seen == 1 then out:write(string.format("first %.6f %.6f\n", baseplate.time(), os.clock())) end
        if seen == count then out:write(string.format("done %.6f %.6f\n", baseplate.time(), os.clock())) end
    end
    local factory = app_config["bench.factory"] == "inorder" and kafka.InOrderConsumerFactory
        or kafka.FastConsumerFactory
    return factory.new(opts)
end

return M
