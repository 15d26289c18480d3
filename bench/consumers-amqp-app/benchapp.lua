-- bench/consumers-amqp: an AMQP consumer that does nothing with its
-- messages (each is decoded as JSON, handled in its server span, and
-- acknowledged, as every consumer's are). When it has handled bench.count
-- messages it writes the seconds from the first to the last into
-- bench.out.
local baseplate = require("baseplate")
local runtime = require("baseplate.runtime")
local amqp = require("baseplate.frameworks.queue_consumer.amqp")

local M = {}

function M.make_consumer(app_config)
    local bp = baseplate.Baseplate(app_config)
    bp:configure_observers()
    local count = tonumber(app_config["bench.count"])
    local n, t0 = 0, nil
    local now = runtime.now -- (the loop's clock, in milliseconds)
    return amqp.from_config(bp, app_config, {
        handler_fn = function()
            n = n + 1
            if n == 1 then t0 = now() end
            if n == count then
                local f = assert(io.open(app_config["bench.out"], "w"))
                f:write(string.format("%.4f\n", now() - t0))
                f:close()
            end
        end,
    })
end

return M
