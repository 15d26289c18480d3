-- Prometheus client families (docs/prometheus.md, "Client families"): each
-- client counts its calls under Baseplate.py's per-library names and labels.
-- Against the fixture's real Redis, memcached and PostgreSQL, and an HTTP
-- and a Thrift server served by this process; read back from the exposition.
local t = require("testlib")
local ffi = require("ffi")
local baseplate = require("baseplate")
local core = require("baseplate.core")
local runtime = require("baseplate.runtime")
local span_mod = require("baseplate.span")
local http = require("baseplate.http")
local thrift = require("baseplate.thrift")
local http_server = require("baseplate.server.http")
local thrift_server = require("baseplate.server.thrift")
local redis = require("baseplate.clients.redis")
local memcache = require("baseplate.clients.memcache")
local postgres = require("baseplate.clients.postgres")
local http_client = require("baseplate.clients.http")
local thrift_client = require("baseplate.clients.thrift")
local admin = require("baseplate.server.admin") -- and the bp_prom_* declarations
local C = core.C

local REDIS = assert(os.getenv("BP_TEST_REDIS_URL"), "BP_TEST_REDIS_URL")
local PG = assert(os.getenv("BP_TEST_PG_URL"), "BP_TEST_PG_URL")
local MEMCACHED = assert(os.getenv("BP_TEST_MEMCACHED_ENDPOINT"), "BP_TEST_MEMCACHED_ENDPOINT")

t.test("nothing recorded, no labels made, before Prometheus is on", function()
    t.eq(span_mod.prometheus_on(), false)
end)

t.eq(C.bp_prom_init(1, 1000, core.errbuf, core.errbuf_size), 0)

-- an HTTP server and a Thrift server in this process
local jitwatch = require("jitwatch")
local app = http.app({}, {})
app:get("hello", "/hello", function() return "hi" end)
app:get("missing", "/missing", function() return 404, "no" end)
local hl, hport = jitwatch.bind_free()
local hsrv = http_server.make_server({}, hl, app)

local schema = thrift.load("../integration/apps/thrift/testsvc.thrift")
local NotFound = schema:struct("NotFound")
local handler = setmetatable({
    get = function(_, id)
        if id == 404LL then error(NotFound:new({ id = id, message = "gone", code = 404 })) end
        return "one"
    end,
}, { __index = function() return function() end end })
local tl, tport = jitwatch.bind_free()
local tsrv = thrift_server.make_server({}, tl, thrift.processor(schema:service("Test"), handler, {}))

local cfg = {
    ["cache.url"] = REDIS, ["cache.max_connections"] = "4", ["db.url"] = PG, ["mc.endpoint"] = MEMCACHED,
    ["api.timeout"] = "5 seconds", ["users.endpoint"] = "127.0.0.1:" .. tport,
}
local bp = baseplate.Baseplate(cfg)
bp:configure_context({
    cache = redis.RedisClient(), db = postgres.PostgresClient(), mc = memcache.MemcacheClient(),
    api = http_client.InternalClient(), users = thrift_client.ThriftClient(schema:service("Test")),
})
t.eq(C.bp_prom_observe(bp.c), 0)

local done, failure = false, nil
runtime.spawn(function()
    local ok, err = pcall(bp.server_context, bp, "work", function(context)
        context.cache:set("prom:k", "v")
        context.cache:get("prom:k")
        context.cache:get("prom:k")
        pcall(context.cache.execute_command, context.cache, "NOSUCHCOMMAND")
        local p = context.cache:pipeline("p")
        p:get("prom:k")
        p:execute()
        context.mc:set("prom:k", "v")
        context.mc:get("prom:k")
        context.db:query("SELECT 1 AS one")
        local base = "http://127.0.0.1:" .. hport
        context.api:get(base .. "/hello")
        context.api:get(base .. "/missing")
        context.users:get(1LL)
        pcall(context.users.get, context.users, 404LL)
    end)
    if not ok then failure = err end
    done = true
end)
local deadline = baseplate.now() + 20
while not done and baseplate.now() < deadline do baseplate.sleep(0.01) end
hsrv:stop()
tsrv:stop()

admin.report_pools({ baseplate = bp })
local len = ffi.new("size_t[1]")
local text = ffi.string(C.bp_prom_scrape(len), len[0])
local function count(series)
    local v = text:match("\n" .. series:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0") .. " (%d+)\n")
    return tonumber(v)
end
local address = PG:match("@([^:/]+)")
local database = PG:match("/([^/?]+)$")

t.test("the calls ran", function()
    t.eq(failure, nil)
    t.eq(done, true)
end)

t.test("Redis: redis_client_*", function()
    t.eq(count('redis_client_requests_total{redis_client_name="cache",redis_command="get",redis_database="0",'
        .. 'redis_type="standalone",redis_success="true"}'), 2)
    t.eq(count('redis_client_requests_total{redis_client_name="cache",redis_command="set",redis_database="0",'
        .. 'redis_type="standalone",redis_success="true"}'), 1)
    t.eq(count('redis_client_requests_total{redis_client_name="cache",redis_command="nosuchcommand",'
        .. 'redis_database="0",redis_type="standalone",redis_success="false"}'), 1, "an error reply fails")
    t.eq(count('redis_client_requests_total{redis_client_name="cache",redis_command="pipeline",'
        .. 'redis_database="0",redis_type="standalone",redis_success="true"}'), 1)
    t.eq(count('redis_client_latency_seconds_count{redis_client_name="cache",redis_command="get",'
        .. 'redis_database="0",redis_type="standalone",redis_success="true"}'), 2)
end)

t.test("memcached: memcached_client_*", function()
    t.eq(count('memcached_client_requests_total{memcached_address="' .. MEMCACHED
        .. '",memcached_command="set",memcached_success="true"}'), 1)
    t.eq(count('memcached_client_requests_total{memcached_address="' .. MEMCACHED
        .. '",memcached_command="get",memcached_success="true"}'), 1)
end)

t.test("PostgreSQL: sql_client_*", function()
    t.eq(count('sql_client_requests_total{sql_client_name="db",sql_address="' .. address
        .. '",sql_database="' .. database .. '",sql_success="true"}'), 1)
end)

t.test("HTTP: http_client_*, success for 2xx and 3xx, the status on the counter", function()
    t.eq(count('http_client_requests_total{http_client_name="api",http_method="get",http_success="true",'
        .. 'http_response_code="200"}'), 1)
    t.eq(count('http_client_requests_total{http_client_name="api",http_method="get",http_success="false",'
        .. 'http_response_code="404"}'), 1)
    t.eq(count('http_client_latency_seconds_count{http_client_name="api",http_method="get",http_success="false"}'), 1)
end)

t.test("Thrift: thrift_client_*, the exception's code and name on the counter", function()
    t.eq(count('thrift_client_requests_total{thrift_method="get",thrift_client_name="users",thrift_success="true",'
        .. 'thrift_exception_type="",thrift_baseplate_status="",thrift_baseplate_status_code=""}'), 1)
    t.eq(count('thrift_client_requests_total{thrift_method="get",thrift_client_name="users",thrift_success="false",'
        .. 'thrift_exception_type="NotFound",thrift_baseplate_status="NOT_FOUND",thrift_baseplate_status_code="404"}'), 1)
end)

t.test("each library's pool gauges, as Baseplate.py's", function()
    t.eq(count('redis_client_pool_max_size{redis_pool="cache",worker="1"}'), 4)
    t.eq(count('redis_client_pool_active_connections{redis_pool="cache",worker="1"}'), 1, "open connections")
    t.eq(count('redis_client_pool_idle_connections{redis_pool="cache",worker="1"}'), 4, "free slots")
    t.eq(count('sql_client_pool_active_connections{sql_client_name="db",worker="1"}'), 0)
    t.eq(count('sql_client_pool_idle_connections{sql_client_name="db",worker="1"}'), 1)
    t.eq(count('memcached_client_pool_idle_connections{memcached_pool="mc",worker="1"}'), 1)
    t.eq(count('thrift_client_pool_active_connections{thrift_pool="users",worker="1"}'), 0)
    t.eq(text:find('baseplate_client_pool_max_size{pool="cache"', 1, true), nil)
    t.eq(count('baseplate_client_pool_waiters{pool="cache",worker="1"}'), 0)
end)

t.test("no client counted twice in the generic family", function()
    t.eq(text:find('baseplate_client_requests_total{client="cache"', 1, true), nil)
    t.eq(text:find('baseplate_client_requests_total{client="api"', 1, true), nil)
    t.eq(text:find('baseplate_client_requests_total{client="users"', 1, true), nil)
    t.eq(text:find('baseplate_client_requests_total{client="db"', 1, true), nil)
    t.eq(text:find('baseplate_client_requests_total{client="mc"', 1, true), nil)
end)

t.test("labels a client makes are escaped; bad ones are refused", function()
    t.eq(span_mod.metric_labels("a", 'q"b\\n\n', "b", nil, "c", 3), 'a="q\\"b\\\\n\\n",b="",c="3"')
    bp:server_context("labels", function(context)
        local child = context.span:make_child("x.y")
        t.raises("set_metric_family", child.set_metric_family, child, "bad-name", "")
        t.raises("set_metric_family", child.set_metric_family, child, "x_client", 'a="unterminated')
        t.raises("set_metric_family", context.span.set_metric_family, context.span, "x_client", "")
        child:set_metric_family("x_client", span_mod.metric_labels("x_thing", "y"), nil, true)
        child:finish("Boom") -- (success given: true whatever the outcome)
    end)
    text = ffi.string(C.bp_prom_scrape(len), len[0])
    t.eq(count('x_client_requests_total{x_thing="y",x_success="true"}'), 1)
end)

t.done()
