-- The producer half of tests/integration/test-kafka-faults.sh, run by
-- bp-lua-test: KAFKA_COUNT produces to KAFKA_TOPIC (each {"n":N} to
-- partition N % KAFKA_PARTITIONS, started KAFKA_PACE seconds apart, each
-- waiting for its delivery report in its own coroutine) while the test moves
-- the partitions' leaders. Each outcome is written to KAFKA_OUT as
-- "n=N ok" or "n=N CLASS: message"; the checks here: every produce ended
-- (a report, positive or negative, came for each), none by our own
-- timeout (a report that never came), and the failures say why.
local t = require("testlib")
local runtime = require("baseplate.runtime")
local kafka = require("baseplate.clients.kafka")

local boot = assert(os.getenv("KAFKA_BOOT"))
local topic = assert(os.getenv("KAFKA_TOPIC"))
local count = assert(tonumber(os.getenv("KAFKA_COUNT")))
local parts = assert(tonumber(os.getenv("KAFKA_PARTITIONS")))
local pace = assert(tonumber(os.getenv("KAFKA_PACE")))
local out = assert(io.open(assert(os.getenv("KAFKA_OUT")), "w"))
out:setvbuf("line")

-- message.timeout.ms: librdkafka retries through leader changes for this
-- long before it reports a failure; the produce itself waits a second more.
local TIMEOUT = 8
local producer = kafka.new_producer({ ["bootstrap.servers"] = boot, ["linger.ms"] = "1" }, TIMEOUT, "events")

t.test("every produce gets its delivery report while leaders move", function()
    local done, acked, timeouts, unclear = 0, 0, 0, {}
    local t0 = runtime.now()
    for n = 0, count - 1 do
        runtime.spawn(function()
            local ok, err = pcall(producer.produce, producer, topic, string.format('{"n":%d}', n),
                { partition = n % parts })
            if ok then
                acked = acked + 1
                out:write(string.format("n=%d ok\n", n))
            else
                local class = type(err) == "table" and err.class or "?"
                local msg = type(err) == "table" and err.message or tostring(err)
                if class == "TimeoutError" then timeouts = timeouts + 1 end
                if not tostring(msg):find("producing to " .. topic .. ": ", 1, true) then
                    unclear[#unclear + 1] = tostring(msg)
                end
                out:write(string.format("n=%d %s: %s\n", n, tostring(class), tostring(msg)))
            end
            done = done + 1
        end)
        runtime.sleep(pace)
    end
    t.ok(t.wait_until(function() return done == count end, TIMEOUT + 5), "all produces ended")
    io.write(string.format("# %d produced, %d acknowledged, in %.1f s\n", count, acked, runtime.now() - t0))
    t.eq(done, count, "a report for each")
    t.eq(timeouts, 0, "no produce waited past its delivery report's deadline")
    t.eq(#unclear, 0, "every failure names the topic and the reason: " .. table.concat(unclear, "; "))
end)

out:close()
t.done()
