-- One error type for every client (baseplate.clients.base): a Redis error
-- reply, a refused SQL statement and a Thrift call to nothing are all
-- client errors, caught and read the same way. Against the real servers of
-- tests/services.sh.
local t = require("testlib")
local clients = require("baseplate.clients.base")
local redis = require("baseplate.clients.redis")
local postgres = require("baseplate.clients.postgres")
local thrift = require("baseplate.thrift")
local thrift_client = require("baseplate.clients.thrift")

local REDIS_URL = assert(os.getenv("BP_TEST_REDIS_URL"), "BP_TEST_REDIS_URL is set by ctest")
local PG_URL = assert(os.getenv("BP_TEST_PG_URL"), "BP_TEST_PG_URL is set by ctest")

t.test("a Redis error reply", function()
    local r = redis.monitored("r", nil, redis.pool_from_config({ ["r.url"] = REDIS_URL }, "r."))
    local ok, err = pcall(r.execute_command, r, "NOSUCHCOMMAND")
    t.eq(ok, false)
    t.ok(clients.is_error(err), tostring(err))
    t.eq(err.class, "RedisError")
    t.eq(err.connection_ok, true)
    t.eq(err.client, "r")
    t.ok(type(err.endpoint) == "string" and err.endpoint:find(":", 1, true), tostring(err.endpoint))
    t.ok(tostring(err):find("unknown command", 1, true), tostring(err))
end)

t.test("a Redis server nobody listens on", function()
    local r = redis.monitored("dead", nil, redis.pool_from_config({ ["dead.url"] = "redis://127.0.0.1:1/0" }, "dead."))
    local ok, err = pcall(r.ping, r)
    t.eq(ok, false)
    t.ok(clients.is_error(err), tostring(err))
    t.eq({ err.class, err.client, err.endpoint }, { "ConnectionError", "dead", "127.0.0.1:1" })
end)

t.test("a refused SQL statement", function()
    local db = postgres.PostgresClient():parse("db", { ["db.url"] = PG_URL }):make_object_for_context("db", nil)
    local ok, err = pcall(db.query, db, "SELECT nosuchcolumn")
    t.eq(ok, false)
    t.ok(clients.is_error(err), tostring(err))
    t.eq(err.class, "PostgresError")
    t.eq(err.client, "db")
end)

t.test("a Thrift call to a port nobody listens on", function()
    local schema = thrift.load("../integration/apps/thrift/testsvc.thrift")
    local c = thrift_client.client_from_config(schema:service("Test"),
        { ["t.endpoint"] = "127.0.0.1:1", ["t.timeout"] = "1 second", ["t.max_connection_attempts"] = "1" }, "t.")
    local ok, err = pcall(c.add, c, 1, 2)
    t.eq(ok, false)
    t.ok(clients.is_error(err), tostring(err))
    t.eq(err.class, "TTransportException")
    t.eq({ err.client, err.endpoint, err.command }, { "t", "127.0.0.1:1", "add" })
end)

t.done()
