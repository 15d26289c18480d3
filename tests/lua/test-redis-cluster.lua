-- baseplate.clients.redis_cluster against a real Redis Cluster: six
-- redis-servers (three masters, three replicas) started here on loopback,
-- on ports of their own, made a cluster with redis-cli --cluster create.
-- Key slots, MOVED and ASK during a resharding under load, a master
-- killed and its replica promoted, pipelines split by node, cross-slot
-- commands refused, reads from replicas, hot-key tracking.
local t = require("testlib")
local baseplate = require("baseplate")
local runtime = require("baseplate.runtime")
local cluster_mod = require("baseplate.clients.redis_cluster")

local BASE = tonumber(os.getenv("BP_TEST_REDIS_URL"):match(":(%d+)/")) + 700 -- 17079 (ASan: 17080)
local PORTS = {}
for i = 0, 5 do PORTS[#PORTS + 1] = BASE + i * 10 end
local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p " .. dir) == 0)

local function sh(cmd)
    return os.execute(cmd .. " >>" .. dir .. "/sh.log 2>&1") == 0
end

local function cli(port, args)
    local p = io.popen("redis-cli -p " .. port .. " " .. args .. " 2>&1")
    local out = p:read("*a")
    p:close()
    return out
end

local function stop_all()
    for _, port in ipairs(PORTS) do sh("redis-cli -p " .. port .. " shutdown nosave") end
    os.execute("sleep 0.2; rm -rf " .. dir)
end

-- Nodes left by an earlier run that was killed (the nodes are daemons) are
-- on our ports: stop them first.
for _, port in ipairs(PORTS) do sh("redis-cli -p " .. port .. " shutdown nosave") end

-- Start the nodes, make the cluster, wait until it says ok.
for _, port in ipairs(PORTS) do
    local d = dir .. "/" .. port
    assert(sh("mkdir -p " .. d))
    assert(sh("redis-server --port " .. port .. " --bind 127.0.0.1 --dir " .. d .. " --daemonize yes"
        .. " --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 1000"
        .. " --save '' --appendonly no --logfile " .. d .. "/redis.log --pidfile " .. d .. "/redis.pid"),
        "redis-server on " .. port)
end
for _, port in ipairs(PORTS) do
    for _ = 1, 50 do
        if cli(port, "ping"):find("PONG") then break end
        os.execute("sleep 0.1")
    end
end
local hosts = {}
for _, port in ipairs(PORTS) do hosts[#hosts + 1] = "127.0.0.1:" .. port end
assert(sh("redis-cli --cluster create " .. table.concat(hosts, " ") .. " --cluster-replicas 1 --cluster-yes"),
    "redis-cli --cluster create (see " .. dir .. "/sh.log)")
local function cluster_ok() -- every node says ok, and CLUSTER SLOTS lists all six
    for _, port in ipairs(PORTS) do
        if not cli(port, "cluster info"):find("cluster_state:ok") then return false end
    end
    local slots = cli(PORTS[1], "cluster slots")
    for _, port in ipairs(PORTS) do
        if not slots:find("\n" .. port .. "\n", 1, true) then return false end
    end
    return true
end
for _ = 1, 100 do
    if cluster_ok() then break end
    os.execute("sleep 0.1")
end

local ok_all, err_all = pcall(function()
    local app_config = {
        ["c.url"] = "redis://127.0.0.1:" .. PORTS[1] .. "/0",
        ["c.timeout"] = "2 seconds",
        ["c.track_key_reads_sample_rate"] = "1.0",
        ["c.track_key_writes_sample_rate"] = "1.0",
        ["n.url"] = "redis://127.0.0.1:" .. PORTS[2] .. "/0",
        ["n.read_from_replicas"] = "false",
        ["n.timeout"] = "2 seconds",
    }
    local bp = baseplate.Baseplate(app_config)
    bp:configure_context({ c = cluster_mod.ClusterRedisClient(), n = cluster_mod.ClusterRedisClient() })
    local context = bp:make_context_object()
    bp:make_server_span(context, "cluster-test")

    t.test("key slots: CRC16 and hash tags, as Redis computes them", function()
        t.eq(cluster_mod.keyslot("foo"), 12182)
        t.eq(cluster_mod.keyslot("123456789"), 12739)
        t.eq(cluster_mod.keyslot("{user1000}.following"), cluster_mod.keyslot("user1000"))
        t.eq(cluster_mod.keyslot("foo{}{bar}"), cluster_mod.keyslot("foo{}{bar}"), "an empty tag: the whole key")
        t.eq(tonumber((cli(PORTS[1], "cluster keyslot somekey"):match("%d+"))), cluster_mod.keyslot("somekey"))
    end)

    t.test("commands go to the node of their key's slot", function()
        for i = 1, 200 do context.c:set("k" .. i, "v" .. i) end
        for i = 1, 200 do t.eq(context.n:get("k" .. i), "v" .. i) end
        t.eq(context.c:ping(), "PONG")
        -- the keys really are spread over the three masters
        local counts = 0
        for i = 1, 3 do
            local n = tonumber(cli(PORTS[i], "dbsize"):match("%d+")) or 0
            if n > 0 then counts = counts + 1 end
        end
        t.eq(counts, 3, "keys on every master")
    end)

    t.test("multi-key commands: one slot works, several slots are refused", function()
        context.c:mset("{u1}:a", "1", "{u1}:b", "2")
        t.eq(context.c:mget("{u1}:a", "{u1}:b"), { "1", "2", n = 2 })
        local ok, err = pcall(context.c.mget, context.c, "a", "b")
        t.eq(ok, false)
        t.eq(err.class, "ClusterCrossSlotError")
        t.ok(err.message:find("keys in different slots", 1, true), err.message)
    end)

    t.test("a pipeline is split by node, its replies in order", function()
        local p = context.c:pipeline("many")
        for i = 1, 30 do p:incr("p" .. i) end
        p:get("k1")
        local r = p:execute()
        t.eq(r.n, 31)
        for i = 1, 30 do t.eq(r[i], 1) end
        t.eq(r[31], "v1")
        t.raises("not implemented", context.c.transaction, context.c)
    end)

    t.test("a Redis error reply is raised with the command", function()
        context.c:set("str", "x")
        local ok, err = pcall(context.c.lpush, context.c, "str", "y")
        t.eq(ok, false)
        t.ok(err.message:find("WRONGTYPE", 1, true), tostring(err.message))
        t.eq(err.command, "LPUSH")
    end)

    t.test("hot keys: sampled reads and writes counted in the reference's sorted sets", function()
        context.c:set("hot", "1")
        for _ = 1, 3 do context.c:get("hot") end
        t.eq(context.n:zscore("baseplate-hot-key-tracker-reads", "hot"), "3")
        t.ok(tonumber(context.n:zscore("baseplate-hot-key-tracker-writes", "hot")) >= 1)
        local ttl = context.n:ttl("baseplate-hot-key-tracker-reads")
        t.ok(ttl > 86000 and ttl <= 86400, "a day's TTL, got " .. tostring(ttl))
    end)

    t.test("reads from replicas when read_from_replicas", function()
        local function replica_gets()
            local n = 0
            for _, port in ipairs(PORTS) do
                if cli(port, "role"):find("^slave") then
                    n = n + (tonumber(cli(port, "info commandstats"):match("cmdstat_get:calls=(%d+)")) or 0)
                end
            end
            return n
        end
        local before = replica_gets()
        for i = 1, 200 do t.eq(context.c:get("k" .. i), "v" .. i) end
        local after = replica_gets()
        t.ok(after > before, "no GET reached a replica")
    end)

    t.test("first use by many coroutines at once: one CLUSTER SLOTS, everyone served", function()
        local function slots_calls()
            return tonumber(cli(PORTS[3], "info commandstats"):match("cmdstat_cluster|slots:calls=(%d+)")) or 0
        end
        local fresh_bp = baseplate.Baseplate({ ["f.url"] = "redis://127.0.0.1:" .. PORTS[3] .. "/0",
            ["f.timeout"] = "2 seconds" })
        fresh_bp:configure_context({ f = cluster_mod.ClusterRedisClient() })
        local fresh = fresh_bp:make_context_object()
        local before = slots_calls()
        local got, errors, left = {}, {}, 20
        for i = 1, 20 do
            runtime.spawn(function()
                local ok, v = pcall(fresh.f.get, fresh.f, "k" .. i)
                if ok then got[i] = v else errors[#errors + 1] = tostring(v) end
                left = left - 1
            end)
        end
        t.wait_until(function() return left == 0 end, 10)
        t.eq(#errors, 0, table.concat(errors, "; "))
        for i = 1, 20 do t.eq(got[i], "v" .. i) end
        t.eq(slots_calls() - before, 1, "the waiters shared the one refresh")
    end)

    -- Load: coroutines doing SET and GET until told to stop, counting.
    local function load(client, prefix)
        local state = { ops = 0, errors = {}, slowest = 0, stop = false, running = 0 }
        for w = 1, 8 do
            state.running = state.running + 1
            runtime.spawn(function()
                local i = 0
                while not state.stop do
                    i = i + 1
                    local key = prefix .. w .. ":" .. (i % 500)
                    local started = baseplate.now()
                    local ok, err = pcall(function()
                        client:set(key, tostring(i))
                        local got = client:get(key)
                        if got ~= tostring(i) then error("read back " .. tostring(got) .. " after writing " .. i) end
                    end)
                    local took = baseplate.now() - started
                    if took > state.slowest then state.slowest = took end
                    if ok then state.ops = state.ops + 1 else state.errors[#state.errors + 1] = tostring(err) end
                end
                state.running = state.running - 1
            end)
        end
        return state
    end

    local function node_id(port)
        return (cli(port, "cluster myid"):match("%x+"))
    end

    t.test("a resharding under load: MOVED and ASK followed, nothing lost", function()
        local state = load(context.n, "rs")
        baseplate.sleep(0.2)
        local from, to = node_id(PORTS[1]), node_id(PORTS[2])
        local done = dir .. "/reshard.done"
        os.execute("(redis-cli --cluster reshard 127.0.0.1:" .. PORTS[1] .. " --cluster-from " .. from
            .. " --cluster-to " .. to .. " --cluster-slots 1000 --cluster-yes --cluster-pipeline 10 >"
            .. dir .. "/reshard.log 2>&1; echo $? >" .. done .. ") &")
        t.wait_until(function()
            local f = io.open(done)
            if f then f:close() return true end
            return false
        end, 60)
        baseplate.sleep(0.3)
        state.stop = true
        t.wait_until(function() return state.running == 0 end, 10)
        local f = io.open(done)
        local rc = f:read("*l")
        f:close()
        t.eq(rc, "0", "redis-cli --cluster reshard succeeded")
        t.ok(state.ops > 100, "requests went on: " .. state.ops)
        t.eq(state.errors, {}, "no request failed during the resharding")
        -- every key written before is still there
        for i = 1, 200 do t.eq(context.n:get("k" .. i), "v" .. i) end
    end)

    t.test("a master killed: its replica takes over, requests fail clearly or succeed, none hang", function()
        local state = load(context.n, "fo")
        baseplate.sleep(0.2)
        local victim = PORTS[3]
        local pid = io.open(dir .. "/" .. victim .. "/redis.pid"):read("*l")
        os.execute("kill -9 " .. pid)
        -- the replica is promoted after cluster-node-timeout (1 s) and an election
        t.wait_until(function()
            for i = 4, 6 do
                if cli(PORTS[i], "role"):find("^master") then return true end
            end
            return false
        end, 20)
        baseplate.sleep(1.5)
        local ops_before = state.ops
        local errors_before = #state.errors
        baseplate.sleep(1)
        state.stop = true
        t.wait_until(function() return state.running == 0 end, 15)
        t.ok(state.ops > ops_before, "requests succeed after the failover (" .. state.ops .. " done; "
            .. #state.errors .. " errors, the last: " .. tostring(state.errors[#state.errors]) .. ")")
        t.eq(#state.errors, errors_before, "no failure once the replica took over: "
            .. tostring(state.errors[errors_before + 1]))
        for _, e in ipairs(state.errors) do
            t.ok(e:find("127.0.0.1:" .. victim, 1, true) or e:find("redis cluster", 1, true)
                or e:find("CLUSTERDOWN", 1, true), "a clear error: " .. e)
        end
        t.ok(state.slowest < 8, "no request hung: the slowest took " .. state.slowest .. " s")
        for i = 1, 200 do t.eq(context.n:get("k" .. i), "v" .. i) end
    end)

    t.test("credentials_secret: every node's connections log in as the secret's user", function()
        for _, port in ipairs(PORTS) do
            cli(port, "acl setuser clusteruser on '>cl-pw-1' '~*' '+@all'")
        end
        local store = require("baseplate.lib.secrets").FakeSecretsStore({ secrets = {
            ["secret/cluster"] = { type = "credential", username = "clusteruser", password = "cl-pw-1" },
            ["secret/wrong"] = { type = "credential", username = "clusteruser", password = "nope" },
        } })
        local function client(secret)
            local factory = cluster_mod.ClusterRedisClient({ secrets = store }):parse("s", {
                ["s.url"] = "redis://127.0.0.1:" .. PORTS[1] .. "/0", ["s.timeout"] = "2 seconds",
                ["s.credentials_secret"] = secret })
            return factory:make_object_for_context("s", nil)
        end
        local c = client("secret/cluster")
        for i = 1, 50 do c:set("cred" .. i, i) end
        t.eq(c:get("cred7"), "7")
        t.eq(c:acl("whoami"), "clusteruser")
        local ok, err = pcall(client("secret/wrong").get, client("secret/wrong"), "cred7")
        t.eq(ok, false)
        t.ok(not tostring(err.message):find("nope", 1, true), "the password is not in the error: " .. err.message)
        t.raises("s.credentials_secret: a secrets store is needed", cluster_mod.cluster_pool_from_config,
            { ["s.url"] = "redis://127.0.0.1:1/0", ["s.credentials_secret"] = "secret/cluster" }, "s.")
    end)

    t.test("bad configuration is named", function()
        local function cfg(extra)
            local c = { ["x.url"] = "redis://127.0.0.1:" .. PORTS[1] .. "/0" }
            for k, v in pairs(extra) do c[k] = v end
            return c
        end
        t.raises("x.url", cluster_mod.cluster_pool_from_config, cfg({ ["x.url"] = "mysql://h" }), "x.")
        t.raises("x.url: a cluster has one database", cluster_mod.cluster_pool_from_config,
            cfg({ ["x.url"] = "redis://h:1/2" }), "x.")
        t.raises("x.track_key_reads_sample_rate", cluster_mod.cluster_pool_from_config,
            cfg({ ["x.track_key_reads_sample_rate"] = "2" }), "x.")
        t.raises("x.max_connections", cluster_mod.cluster_pool_from_config, cfg({ ["x.max_connections"] = "0" }),
            "x.")
        t.raises("x.timeout", cluster_mod.cluster_pool_from_config, cfg({ ["x.timeout"] = "-1 seconds" }), "x.")
    end)

    t.test("a dead cluster: a clear error, quickly", function()
        local dead = cluster_mod.monitored("d", nil, cluster_mod.cluster_pool_from_config(
            { ["d.url"] = "redis://127.0.0.1:1/0", ["d.timeout"] = "1 second" }, "d."))
        local started = baseplate.now()
        local ok, err = pcall(dead.get, dead, "k")
        t.eq(ok, false)
        t.ok(tostring(err.message):find("no node answered CLUSTER SLOTS", 1, true), tostring(err.message))
        t.ok(baseplate.now() - started < 5, "within seconds")
    end)
end)

stop_all()
if not ok_all then error(err_all, 0) end
t.done()
