-- amqp.credentials_secret on the AMQP producer and consumer factory,
-- against the real RabbitMQ of tests/services.sh: a user made for the test
-- (rabbitmqctl through `services.sh amqp-ctl`) is the only one allowed on a
-- virtual host of its own, so guest (the hostname's default) cannot work
-- there. The username and password come from a credential secret (a real
-- secrets file, replaced as the fetcher does) read at each new connection:
-- after the password is changed on the broker and in the file, and every
-- connection is closed, both reconnect with the new one. No password shows
-- in an error or a log line.
local t = require("testlib")
local runtime = require("baseplate.runtime")
local amqp = require("baseplate.clients.amqp")
local consumer = require("baseplate.frameworks.queue_consumer.amqp")
local qc = require("baseplate.server.queue_consumer")
local baseplate = require("baseplate")
local secrets = require("baseplate.lib.secrets")
local testing = require("baseplate.testing")
local cjson = require("cjson")

local PORT = assert(os.getenv("BP_TEST_AMQP_PORT"), "BP_TEST_AMQP_PORT is set by ctest")
local BUILD = assert(os.getenv("BASEPLATE_BUILD_DIR"))
local SOURCE = assert(os.getenv("BASEPLATE_SOURCE_DIR"))
local HOST = "127.0.0.1:" .. PORT
local tag = tostring(os.time()) .. "_" .. tostring(math.random(1, 1e6))
local USER, VHOST, QUEUE = "bp_creds_" .. tag, "bp_creds_" .. tag, "bp.creds.q"
local PW1, PW2, WRONG = "amqp-Secret-1-" .. tag, "amqp-Secret-2-" .. tag, "amqp-Wr0ng-pw"

local function ctl(...)
    local args = { ... }
    for i, a in ipairs(args) do args[i] = "'" .. a .. "'" end
    local cmd = string.format("'%s/tests/services.sh' amqp-ctl '%s' %s >/dev/null 2>&1", SOURCE, BUILD,
        table.concat(args, " "))
    return os.execute(cmd) == 0
end

local dir = os.tmpname() .. ".d"
assert(os.execute("mkdir -p '" .. dir .. "'") == 0)
local path = dir .. "/secrets.json"
local function write_secrets(password)
    local f = assert(io.open(path .. ".tmp", "wb"))
    f:write(cjson.encode({ secrets = {
        ["secret/amqp"] = { type = "credential", username = USER, password = password },
        ["secret/wrong"] = { type = "credential", username = USER, password = WRONG },
        ["secret/simple"] = { type = "simple", value = "x" },
    } }))
    f:close()
    assert(os.rename(path .. ".tmp", path))
end

assert(ctl("add_vhost", VHOST), "rabbitmqctl add_vhost")
assert(ctl("add_user", USER, PW1), "rabbitmqctl add_user")
assert(ctl("set_permissions", "-p", VHOST, USER, ".*", ".*", ".*"), "rabbitmqctl set_permissions")
write_secrets(PW1)
local store = secrets.SecretsStore(path, nil, 0.05) -- (checked for changes every 50 ms)
local bp = baseplate.Baseplate({})
local capture = testing.capture_logs()

local PASSWORDS = { PW1, PW2, WRONG }
local function no_password(text, what)
    for _, p in ipairs(PASSWORDS) do
        t.ok(not text:find(p, 1, true), what .. " shows a password: " .. text)
    end
end

-- Replace the secrets file and wait until the store has read it.
local function rotate(password)
    runtime.sleep(1.1) -- (a new modification time)
    write_secrets(password)
    assert(t.wait_until(function() return store:get_credentials("secret/amqp").password == password end, 5),
        "the store read the new file")
end

local function producer(secret, with_store)
    local raw = { ["q.hostname"] = HOST, ["q.virtual_host"] = VHOST, ["q.connect_timeout"] = "5 seconds",
                  ["q.max_connections"] = "1" }
    if secret then raw["q.credentials_secret"] = secret end
    local factory = amqp.AmqpProducer({ secrets = with_store ~= false and store or nil }):parse("q", raw)
    return factory:make_object_for_context("q", nil), factory
end

local function try_publish(p, n)
    return pcall(p.publish, p, { n = n }, { routing_key = QUEUE })
end

t.test("without the secret, guest is refused on the test's virtual host (the feature is needed)", function()
    local ok, err = try_publish(producer(nil), 0)
    t.ok(not ok, "guest published")
    t.eq(err.class, "ConnectionError")
    t.ok(tostring(err.message):find("ACCESS_REFUSED", 1, true) or tostring(err.message):find("access", 1, true),
        "the broker's refusal: " .. tostring(err.message))
end)

t.test("credentials_secret without a secrets store: a configuration error naming the key", function()
    local err = t.raises("q.credentials_secret", producer, "secret/amqp", false)
    t.ok(tostring(err):find("secrets store", 1, true), tostring(err))
end)

local p1, pf1 = producer("secret/amqp")

t.test("the producer logs in with the secret's user and password", function()
    -- (a queue for the consumer below, declared by the test user)
    local conn = amqp.connect(amqp.connection_from_config({ ["x.hostname"] = HOST, ["x.virtual_host"] = VHOST,
        ["x.credentials_secret"] = "secret/amqp" }, "x.", "x", store))
    conn:declare_queue(QUEUE, true, false, false)
    conn:close()
    for n = 1, 3 do
        local ok, err = try_publish(p1, n)
        t.ok(ok, "publish " .. n .. ": " .. tostring(err and err.message))
    end
end)

t.test("a wrong password or a missing or non-credential secret: ConnectionError, no password shown", function()
    for _, name in ipairs({ "secret/wrong", "secret/nope", "secret/simple" }) do
        local ok, err = try_publish(producer(name), 9)
        t.ok(not ok, name .. " published")
        t.eq(err.class, "ConnectionError", name)
        no_password(tostring(err.message), name)
        if name ~= "secret/wrong" then
            t.ok(tostring(err.message):find("credentials_secret: ", 1, true), tostring(err.message))
        end
    end
end)

-- The consumer factory, as the queue-consumer server runs it: a pump
-- filling a work queue, a handler acknowledging each message.
local seen = {}
local factory = consumer.from_config(bp, {
    ["amqp.hostname"] = HOST, ["amqp.virtual_host"] = VHOST, ["amqp.queue_name"] = QUEUE,
    ["amqp.credentials_secret"] = "secret/amqp", ["amqp.heartbeat"] = "2 seconds",
}, { secrets = store, max_backoff = 0.5, handler_fn = function(_, body) seen[#seen + 1] = body.n end })
local work = qc.WorkQueue.new(4)
local pump = factory:build_pump_worker(work)
local handler = factory:build_message_handler()
local pump_done = false
runtime.spawn(function()
    pcall(pump.run, pump)
    pump_done = true
end)
runtime.spawn(function()
    while true do
        local m = work:get()
        if m == nil then return end
        handler:handle(m)
    end
end)

t.test("the consumer factory logs in with the secret and consumes", function()
    t.ok(t.wait_until(function() return #seen >= 3 end, 10), "consumed " .. #seen .. " of 3")
    t.eq(table.concat(seen, ","), "1,2,3")
end)

t.test("rotation: the next connections of both use the new password", function()
    assert(ctl("change_password", USER, PW2), "rabbitmqctl change_password")
    rotate(PW2)
    -- the connections made with PW1 stay up until closed
    local ok, err = try_publish(p1, 4)
    t.ok(ok, "the open connection still publishes: " .. tostring(err and err.message))
    t.ok(t.wait_until(function() return #seen >= 4 end, 10), "consumed 4")
    assert(ctl("close_all_connections", "-p", VHOST, "password rotated"), "rabbitmqctl close_all_connections")
    -- the producer's pooled connection was closed: the next publish
    -- connects again, with the secret read anew
    local published = false
    for _ = 1, 50 do
        ok, err = try_publish(p1, 5)
        if ok then published = true; break end
        runtime.sleep(0.1)
    end
    t.ok(published, "the producer reconnected with the new password: " .. tostring(err and err.message))
    t.ok(t.wait_until(function() return #seen >= 5 end, 15), "the consumer reconnected and consumed: " .. #seen)
    t.eq(seen[#seen], 5)
end)

t.test("the old password no longer works (the new one was read)", function()
    rotate(PW1)
    local ok, err = try_publish(producer("secret/amqp"), 6)
    t.ok(not ok, "published with the old password")
    no_password(tostring(err and err.message), "the refusal")
end)

pump:stop()
work:close()
t.wait_until(function() return pump_done end, 5)
pf1.pool:close()

t.test("no password in any log line", function()
    local lines = {}
    for _, r in ipairs(capture:records()) do lines[#lines + 1] = cjson.encode(r) end
    capture:stop()
    t.ok(#lines > 0, "something was logged (the consumer's reconnection)")
    no_password(table.concat(lines, "\n"), "the log")
    t.ok(table.concat(lines, "\n"):find("reconnecting", 1, true), "the lost connection was logged")
end)

ctl("delete_user", USER)
ctl("delete_vhost", VHOST)
os.execute("rm -rf '" .. dir .. "'")
t.done()
