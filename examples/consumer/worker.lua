-- A Kafka worker: counts links per subreddit (in memory) and
-- forwards each link's score to another topic with the producer client.
--
--   bootstrap file from the mock cluster (see README in this directory), then
--   baseplate-serve --bind 127.0.0.1:9090 worker.ini
local baseplate = require("baseplate")
local kafka = require("baseplate.frameworks.queue_consumer.kafka")
local kafka_client = require("baseplate.clients.kafka")
local log = require("baseplate.log")

local M = {}
local wlog = log.get_logger("worker")

function M.make_consumer(app_config)
    local bp = baseplate.Baseplate(app_config)
    bp:configure_observers()
    bp:configure_context({ scores = kafka_client.KafkaProducer() })
    local counts = {}

    local opts = kafka.options_from_config(app_config)
    opts.name = "kafka_consumer.links"
    opts.baseplate = bp
    function opts.handler_fn(context, link, message)
        local sr = tostring(link.subreddit or "unknown")
        counts[sr] = (counts[sr] or 0) + 1
        context.scores:produce("link_scores",
            string.format('{"id": %q, "score": %d}', tostring(link.id or link.n), #tostring(link.title or "")),
            { key = tostring(link.id or link.n) })
        wlog:info("link %s from %s [%d] offset %d: %d in r/%s so far", tostring(link.id or link.n), message.topic,
            message.partition, message.offset, counts[sr], sr)
    end
    opts.health_check_fn = function() return true end
    return kafka.InOrderConsumerFactory.new(opts)
end

return M
