-- The Redis client against the real redis-server of tests/services.sh:
-- reply conversion, pipelines and transactions, refused commands, name
-- resolution, the pool's limits, and connections that break.
local t = require("testlib")
local baseplate = require("baseplate")
local runtime = require("baseplate.runtime")
local redis = require("baseplate.clients.redis")

local url = assert(os.getenv("BP_TEST_REDIS_URL"), "BP_TEST_REDIS_URL")
local target = redis.parse_url(url)

local function client(extra)
    local raw = { ["r.url"] = url }
    for k, v in pairs(extra or {}) do raw["r." .. k] = v end
    local pool = redis.pool_from_config(raw, "r.")
    return redis.monitored("r", nil, pool), pool
end

t.test("URLs", function()
    t.eq(redis.parse_url("redis://localhost:6380/3"), { host = "localhost", port = 6380, db = 3 })
    t.eq(redis.parse_url("redis://:s3cret@10.0.0.1"), { host = "10.0.0.1", port = 6379, db = 0, password = "s3cret" })
    t.eq(redis.parse_url("redis://[::1]:7000/0"), { host = "::1", port = 7000, db = 0 })
    t.raises("invalid database number", redis.parse_url, "redis://localhost/x")
    t.raises("unknown scheme", redis.parse_url, "http://localhost")
    t.eq(redis.parse_url("rediss://h/1?ssl_cert_reqs=none"), { host = "h", port = 6379, db = 1, tls = { verify = false } })
    t.eq(redis.parse_url("rediss://h?ssl_ca_certs=%2Fca.pem"), { host = "h", port = 6379, db = 0,
        tls = { verify = true, ca_file = "/ca.pem" } })
    t.raises("need a rediss:// URL", redis.parse_url, "redis://h?ssl_ca_certs=/x")
    t.raises("r.url: ", redis.pool_from_config, { ["r.url"] = "nope" }, "r.")
    t.raises("r.max_connections: ", redis.pool_from_config, { ["r.url"] = url, ["r.max_connections"] = "x" }, "r.")
end)

t.test("replies become Lua values", function()
    local r = client()
    t.eq(r:set("t:s", "v"), "OK")
    t.eq(r:get("t:s"), "v")
    t.eq(r:get("t:missing"), nil)
    r:del("t:n")
    t.eq(r:exists("t:n"), 0)
    t.eq(r:incrby("t:n", -5), -5)
    local bin = "a\0b\r\n\255"
    r:set("t:bin", bin)
    t.eq(r:get("t:bin"), bin, "binary-safe")
    local big = string.rep("x", 3 * 1024 * 1024 + 7)
    r:set("t:big", big)
    t.eq(#r:get("t:big"), #big, "a 3 MB value")
    r:del("t:list")
    r:rpush("t:list", "a", "b", "c")
    t.eq(r:lrange("t:list", 0, -1), { "a", "b", "c", n = 3 })
    t.eq(r:execute_command("lrange", "t:none", 0, -1), { n = 0 })
    local nested = r:execute_command("EVAL", "return {1, {'x', false}, 'y'}", 0)
    t.eq(nested, { 1, { "x", nil, n = 2 }, "y", n = 3 })
    t.eq(r:ping(), "PONG")
end)

t.test("error replies raise RedisError and keep the connection", function()
    local r, pool = client()
    r:set("t:str", "abc")
    local err = t.raises("WRONGTYPE", r.lpush, r, "t:str", "x")
    t.eq(err.class, "RedisError")
    t.eq(pool:stats().open, 1, "the connection is kept")
    t.eq(r:get("t:str"), "abc")
end)

t.test("pipelines and transactions", function()
    local r = client()
    r:del("t:p")
    local res = r:pipeline("plain", false):incr("t:p"):incr("t:p"):get("t:p"):execute()
    t.eq(res, { 1, 2, "2", n = 3 })
    res = r:pipeline("tx"):incr("t:p"):expire("t:p", 60):execute()
    t.eq(res, { 3, 1, n = 2 })
    local err = t.raises("ERR", function()
        r:pipeline("bad"):incr("t:p"):execute_command("NOSUCHCOMMAND"):execute()
    end)
    t.eq(err.class, "RedisError")
    t.eq(r:get("t:p"), "3", "an aborted transaction changed nothing")
    r:set("t:str", "abc")
    err = t.raises("WRONGTYPE", function() r:pipeline("err"):incr("t:p"):lpush("t:str", "x"):execute() end)
    t.eq(r:get("t:p"), "4", "EXEC ran the commands before the failing one")
    t.eq(r:pipeline("empty"):execute(), { n = 0 })
end)

t.test("commands that break the one-reply rule are refused", function()
    local r, pool = client()
    t.raises("SUBSCRIBE is not supported", r.subscribe, r, "chan")
    t.raises("MONITOR is not supported", r.monitor, r)
    t.raises("CLIENT REPLY is not supported", r.execute_command, r, "client", "reply", "off")
    t.eq(r:ping(), "PONG")
    t.eq(pool:stats().in_use, 0)
end)

t.test("a name is resolved without blocking, every address tried", function()
    local r = client()
    local raw = { ["n.url"] = "redis://localhost:" .. target.port .. "/0" }
    local named = redis.monitored("n", nil, redis.pool_from_config(raw, "n."))
    t.eq(named:ping(), "PONG")
    raw = { ["n.url"] = "redis://no-such-host.invalid:" .. target.port .. "/0" }
    local bad = redis.monitored("n", nil, redis.pool_from_config(raw, "n."))
    local err = t.raises("no-such-host.invalid", bad.ping, bad)
    t.eq(err.class, "ConnectionError")
    -- a long name (DNS allows 253 characters) is looked up, not refused
    local long = string.rep("a", 60) .. "." .. string.rep("b", 60) .. ".invalid"
    raw = { ["n.url"] = "redis://" .. long .. ":" .. target.port .. "/0" }
    bad = redis.monitored("n", nil, redis.pool_from_config(raw, "n."))
    t.raises(long .. ":" .. target.port .. ": ", bad.ping, bad)
    raw = { ["n.url"] = "redis://" .. string.rep("c", 300) .. "/0" }
    bad = redis.monitored("n", nil, redis.pool_from_config(raw, "n."))
    t.raises("longer than 255 characters", bad.ping, bad)
    t.eq(r:ping(), "PONG")
end)

t.test("db number and AUTH at connect", function()
    local raw = { ["d.url"] = "redis://127.0.0.1:" .. target.port .. "/5" }
    local d5 = redis.monitored("d", nil, redis.pool_from_config(raw, "d."))
    local r = client()
    r:set("t:db", "zero")
    d5:set("t:db", "five")
    t.eq(r:get("t:db"), "zero")
    t.eq(d5:get("t:db"), "five")
    raw = { ["d.url"] = "redis://:wrong@127.0.0.1:" .. target.port .. "/0" }
    local auth = redis.monitored("d", nil, redis.pool_from_config(raw, "d."))
    t.raises("AUTH failed", auth.ping, auth)
end)

t.test("rediss://: TLS, the certificate checked", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir) == 0)
    local function sh(cmd) assert(os.execute(cmd .. " >" .. dir .. "/sh.log 2>&1") == 0, cmd) end
    sh("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost"
        .. " -addext subjectAltName=DNS:localhost,IP:127.0.0.1"
        .. " -keyout " .. dir .. "/key.pem -out " .. dir .. "/cert.pem")
    local port = target.port + 100
    sh("redis-server --port 0 --tls-port " .. port .. " --bind 127.0.0.1 --save '' --appendonly no"
        .. " --tls-cert-file " .. dir .. "/cert.pem --tls-key-file " .. dir .. "/key.pem"
        .. " --tls-ca-cert-file " .. dir .. "/cert.pem --tls-auth-clients no"
        .. " --daemonize yes --pidfile " .. dir .. "/redis.pid --logfile " .. dir .. "/redis.log")
    local ok, err = pcall(function()
        local function tls_client(u)
            return redis.monitored("s", nil, redis.pool_from_config({ ["s.url"] = u }, "s."))
        end
        local base = "rediss://127.0.0.1:" .. port .. "/0"
        local c
        for _ = 1, 100 do -- until the server listens
            c = tls_client(base .. "?ssl_ca_certs=" .. dir .. "/cert.pem")
            if pcall(c.ping, c) then break end
            baseplate.sleep(0.05)
        end
        t.eq(c:ping(), "PONG", "trusted CA")
        t.eq(c:set("t:tls", string.rep("y", 100000)), "OK")
        t.eq(#c:get("t:tls"), 100000, "a value larger than a TLS record")
        local res = c:pipeline("tls"):incr("t:tlsn"):incr("t:tlsn"):execute()
        t.eq(#res, 2)
        local named = tls_client("rediss://localhost:" .. port .. "/0?ssl_ca_certs=" .. dir .. "/cert.pem")
        t.eq(named:ping(), "PONG", "by name (SNI, name checked)")
        local untrusted = tls_client(base)
        local e = t.raises("certificate verify failed", untrusted.ping, untrusted)
        t.eq(e.class, "ConnectionError")
        t.raises("self-signed", untrusted.ping, untrusted)
        local unchecked = tls_client(base .. "?ssl_cert_reqs=none")
        t.eq(unchecked:ping(), "PONG", "ssl_cert_reqs=none")
        local plain = redis.monitored("p", nil, redis.pool_from_config({ ["p.url"] = "redis://127.0.0.1:" .. port }, "p."))
        t.eq(t.raises("PING failed", plain.ping, plain).class, "ConnectionError", "plain TCP to a TLS port")
        t.raises("cannot load the CA certificates", tls_client(base .. "?ssl_ca_certs=/nonexistent").ping,
            tls_client(base .. "?ssl_ca_certs=/nonexistent"))
    end)
    os.execute("kill $(cat " .. dir .. "/redis.pid) 2>/dev/null; rm -rf " .. dir)
    if not ok then error(err, 0) end
end)

t.test("the pool: bounded, waits, then a clear error", function()
    local r, pool = client({ max_connections = "2", pool_timeout = "200 milliseconds" })
    local done = 0
    for _ = 1, 2 do
        runtime.spawn(function()
            r:execute_command("BLPOP", "t:never", "0.3")
            done = done + 1
        end)
    end
    t.eq(pool:stats().in_use, 2)
    local t0 = baseplate.now()
    local err = t.raises("no connection available within 0.2s (2 in use)", r.ping, r)
    t.ok(baseplate.now() - t0 >= 0.19, "waited for the pool timeout")
    -- the BLPOPs end after 0.3 s, by the server's clock (it checks timeouts 10 times a second)
    t.ok(t.wait_until(function() return done == 2 end), "the BLPOPs ended")
    t.eq(r:ping(), "PONG")
    t.eq(pool:stats(), { size = 2, in_use = 0, open_and_available = 2, overflow = 0, open = 2 })
    t.eq(err.class, nil)
    -- a waiter gets the connection that comes back (a BLPOP ends up to 0.1 s
    -- late: the server checks its timeouts 10 times a second)
    r, pool = client({ max_connections = "2", pool_timeout = "2 seconds" })
    runtime.spawn(function() r:execute_command("BLPOP", "t:never", "0.1") end)
    runtime.spawn(function() r:execute_command("BLPOP", "t:never", "0.1") end)
    t0 = baseplate.now()
    t.eq(r:ping(), "PONG")
    t.ok(baseplate.now() - t0 >= 0.09, "waited for a connection to come back")
    t.eq(pool:stats().open, 2)
end)

t.test("a waiter that got its connection leaves no timer behind", function()
    -- A pending timer would keep this process alive for pool_timeout (100 s)
    -- after the last test, past ctest's time limit.
    local r, pool = client({ max_connections = "1", pool_timeout = "100 seconds" })
    local done = 0
    for _ = 1, 20 do
        runtime.spawn(function()
            r:ping()
            done = done + 1
        end)
    end
    t.eq(#pool.waiters, 19)
    t.ok(t.wait_until(function() return done == 20 end), "every waiter got its turn")
    t.eq(#pool.waiters, 0)
    t.eq(pool:stats().in_use, 0)
end)

t.test("a socket timeout discards the connection, never the slot", function()
    local r, pool = client({ max_connections = "3", socket_timeout = "50 milliseconds" })
    for _ = 1, 10 do
        local err = t.raises("timed out", r.execute_command, r, "BLPOP", "t:never", "1")
        t.eq(err.class, "TimeoutError")
    end
    local s = pool:stats()
    t.eq(s.in_use, 0)
    t.eq(s.open, 0, "timed-out connections were closed")
    t.eq(r:ping(), "PONG")
end)

t.test("a connection the server closes is replaced", function()
    local r, pool = client({ max_connections = "1" })
    t.eq(r:client("setname", "victim"), "OK")
    local killer = client()
    t.eq(killer:client("kill", "skipme", "yes", "type", "normal", "laddr", "127.0.0.1:" .. target.port) >= 1, true)
    -- the idle connection notices the server's close (from the loop, at once;
    -- under load after a few iterations)
    local C = require("baseplate.core").C
    t.ok(t.wait_until(function() return C.bp_redis_broken(pool.idle[1].conn.c) == 1 end),
        "the idle connection knows it is dead")
    t.eq(r:ping(), "PONG", "a fresh connection replaced the dead one")
    t.eq(pool:stats().open, 1)
end)

t.test("a reply announcing a huge array is refused, not allocated", function()
    -- A stand-in server (nc) that answers anything with the header of an
    -- array of 300 million elements: 2.4 GB of element pointers for hiredis.
    local port = target.port + 101
    local pid_file = os.tmpname()
    assert(os.execute("(printf '*300000000\\r\\n' | nc -N -l 127.0.0.1 " .. port
        .. " >/dev/null 2>&1 & echo $! >" .. pid_file .. ")") == 0)
    local listening = string.format(":%04X 00000000:0000 0A", port)
    t.ok(t.wait_until(function()
        local f = io.open("/proc/net/tcp")
        local all = f:read("*a")
        f:close()
        return all:find(listening, 1, true) ~= nil
    end), "nc listens")
    local c = redis.monitored("h", nil, redis.pool_from_config({ ["h.url"] = "redis://127.0.0.1:" .. port,
        ["h.socket_timeout"] = "10 seconds" }, "h."))
    local ok, err = pcall(function()
        local e = t.raises("a reply with more than 16777216 array elements", c.ping, c)
        t.eq(e.class, "ConnectionError")
    end)
    os.execute("kill $(cat " .. pid_file .. ") 2>/dev/null; rm -f " .. pid_file)
    if not ok then error(err, 0) end
end)

t.done()
