-- A queue consumer of the server core's own (tests/integration/test-queue-consumer.sh):
-- its pump makes `test.messages` numbered messages; each handler records
-- what it does in the file `test.out`, so the test sees order, concurrency
-- and what a shutdown left undone.
local baseplate = require("baseplate")
local qc = require("baseplate.server.queue_consumer")

local M = {}

function M.make_consumer(app_config)
    local bp = baseplate.Baseplate(app_config)
    bp:configure_observers()
    local out = assert(io.open(app_config["test.out"], "a"))
    out:setvbuf("line")
    local count = tonumber(app_config["test.messages"] or "20")
    local delay = tonumber(app_config["test.delay"] or "0.1")
    local slow_at = tonumber(app_config["test.slow_at"] or "-1")
    local fatal_at = tonumber(app_config["test.fatal_at"] or "-1")
    local in_flight, max_in_flight = 0, 0

    local factory = { baseplate = bp }
    function factory.build_pump_worker(_, queue)
        local pump = { stopped = false }
        function pump.run(self)
            for i = 1, count do
                if self.stopped or not queue:put({ n = i }) then return end
            end
            out:write("all queued\n")
            while not self.stopped do baseplate.sleep(0.05) end
        end
        function pump.stop(self)
            self.stopped = true
            out:write("pump stopped\n")
        end
        function pump.give_back(_, messages)
            out:write("given back ", #messages, " from ", messages[1].n, "\n")
        end
        return pump
    end
    function factory.build_message_handler()
        return {
            handle = function(_, message)
                local done, err = pcall(qc.handle_message, bp, "consumer.test", nil, { ["message.n"] = message.n }, function(context)
                    in_flight = in_flight + 1
                    if in_flight > max_in_flight then max_in_flight = in_flight end
                    out:write("start ", message.n, " in_flight ", in_flight, " max ", max_in_flight,
                        " trace ", context.span.trace_id, "\n")
                    if message.n == fatal_at then
                        in_flight = in_flight - 1
                        error("a bug in the handler")
                    end
                    local ok = pcall(baseplate.sleep, message.n == slow_at and 30 or delay)
                    in_flight = in_flight - 1
                    out:write(ok and "done " or "interrupted ", message.n, "\n")
                end)
                if not done then
                    -- (this consumer's error policy: a timeout is noted, anything else ends the server)
                    if type(err) ~= "table" or err.class ~= "ServerTimeout" then error(err, 0) end
                    out:write("failed ", message.n, " ", err.class, "\n")
                end
            end,
        }
    end
    if app_config["test.unhealthy"] == "true" then
        factory.health_check_fn = function(env) return env.probe == "liveness" end
    end
    return factory
end

return M
