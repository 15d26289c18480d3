-- The checks of tests/integration/test-config-endpoints.sh, run by
-- bp-lua-test: Baseplate.py's endpoint with an empty host (":PORT") read
-- from a real INI file and given to the Thrift client, which reaches the
-- server listening on every interface (LUA_PORT, apps/thriftapp.lua); a
-- negative timeout in the same file is refused by the client's keys.
local t = require("testlib")
local ini = require("baseplate.ini")
local thrift = require("baseplate.thrift")
local tc = require("baseplate.clients.thrift")
local config = require("baseplate.lib.config")

local SOURCE_DIR = assert(os.getenv("BASEPLATE_SOURCE_DIR"))
local schema = thrift.load(SOURCE_DIR .. "/tests/integration/apps/thrift/testsvc.thrift")
local Test = schema:service("Test")
local PORT = assert(os.getenv("LUA_PORT"))

local file = ini.parse(table.concat({
    "[app:main]",
    "users.endpoint = :" .. PORT,
    "users.timeout = 2 seconds",
    "broken.endpoint = :" .. PORT,
    "broken.timeout = -1 seconds",
    "lag = -250 milliseconds",
}, "\n") .. "\n", "app.ini")
local app_config = file:section("app:main")

t.test("a client on \":PORT\" calls the server on this host", function()
    local c = tc.client_from_config(Test, app_config, "users.")
    t.eq(tc.pool_of(c).endpoint, ":" .. PORT, "named as written")
    t.eq(c:whoami(), "thriftapp")
    t.eq(c:add(2, 40), 42LL)
end)

t.test("a negative Timespan is a value, and the client's timeout refuses it", function()
    t.eq(config.parse_config(app_config, { lag = config.Timespan }).lag, -0.25)
    local ok, err = pcall(tc.client_from_config, Test, app_config, "broken.")
    t.ok(not ok)
    t.eq(tostring(err), 'broken.timeout: must not be negative, got "-1 seconds"')
end)

t.done()
