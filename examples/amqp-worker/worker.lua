-- An AMQP worker: consumes the queue `links_q` (bound to the topic exchange
-- `links` with the routing key `link.created`), counts each link's
-- messages in Redis, and publishes a `link.counted` message back through
-- the producer — each message in its own server span, each publish
-- confirmed by the broker.
--
--   baseplate-serve --bind 127.0.0.1:9091 worker.ini          (the health check on 9091)
--   baseplate-script worker.ini worker:publish 10             (publish 10 links)
local baseplate = require("baseplate")
local amqp_consumer = require("baseplate.frameworks.queue_consumer.amqp")
local amqp = require("baseplate.clients.amqp")
local redis = require("baseplate.clients.redis")
local log = require("baseplate.log").get_logger("worker")

local M = {}

local function make_baseplate(app_config)
    local bp = baseplate.Baseplate(app_config)
    bp:configure_observers()
    bp:configure_context({ redis = redis.RedisClient(), events = amqp.AmqpProducer() })
    return bp
end

-- One message: {"link": id}. An error requeues it (the default error
-- policy); a message that is not JSON would come back for ever, so the
-- error handler below drops those.
local function count_link(context, body, message)
    local n = context.redis:incr("link:" .. tostring(body.link))
    context.events:publish({ link = body.link, count = n }, { routing_key = "link.counted" })
    log:info("link %s seen %d times (delivery %d)", tostring(body.link), n, message.delivery_tag)
end

local function on_error(context, body, message, err)
    if body == nil then
        log:warning("dropping a message that does not decode: %s", tostring(err):match("[^\n]*"))
        message:reject()
    else
        message:requeue()
    end
end

function M.make_consumer(app_config)
    return amqp_consumer.from_config(make_baseplate(app_config), app_config, {
        handler_fn = count_link,
        error_handler_fn = on_error,
    })
end

-- baseplate-script worker.ini worker:publish N
function M.publish(app_config, args)
    local bp = make_baseplate(app_config)
    bp:server_context("publish_links", function(context)
        for i = 1, tonumber(args[1] or "1") do
            context.events:publish({ link = i }, { routing_key = "link.created" })
        end
    end)
    print("published " .. (args[1] or "1"))
end

return M
