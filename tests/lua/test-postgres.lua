-- The PostgreSQL client against the real server of tests/services.sh
-- (BP_TEST_PG_URL): values both ways, errors, transactions, prepared
-- statements, timeouts, the pool, and waiting without blocking the loop.
local t = require("testlib")
local baseplate = require("baseplate")
local runtime = require("baseplate.runtime")
local postgres = require("baseplate.clients.postgres")
local cjson = require("cjson")

local URL = assert(os.getenv("BP_TEST_PG_URL"), "BP_TEST_PG_URL is set by ctest")

local function client(extra)
    local raw = { ["db.url"] = URL }
    for k, v in pairs(extra or {}) do raw["db." .. k] = v end
    local factory = postgres.PostgresClient():parse("db", raw)
    return factory:make_object_for_context("db", nil), factory
end

local db, factory = client({ pool_size = "4" })

t.test("parameters and types", function()
    local rows = db:query("SELECT $1::int AS i, $2::float8 AS f, $3::bool AS b, $4::text AS s,"
        .. " $5::int AS n, $6::jsonb AS j, $7::bigint AS big, 1.5::numeric AS num", 42, 2.5, true, "it's",
        nil, { a = { 1, 2 } }, 2 ^ 40)
    t.eq(#rows, 1)
    local r = rows[1]
    t.eq(r.i, 42)
    t.eq(r.f, 2.5)
    t.eq(r.b, true)
    t.eq(r.s, "it's")
    t.eq(r.n, nil)
    t.eq(r.j, { a = { 1, 2 } })
    t.eq(r.big, 2 ^ 40)
    t.eq(r.num, 1.5)
end)

t.test("values are never spliced into the statement", function()
    local evil = "x'); DROP TABLE nothing; --"
    t.eq(db:query("SELECT $1::text AS v", evil)[1].v, evil)
end)

t.test("several rows, NULL, json null", function()
    local rows = db:query("SELECT g AS n, CASE WHEN g = 2 THEN NULL ELSE g::text END AS s,"
        .. " 'null'::json AS j FROM generate_series(1, 3) g ORDER BY g")
    t.eq(#rows, 3)
    t.eq(rows[2].s, nil)
    t.eq(rows[3].s, "3")
    t.eq(rows[1].j, cjson.null)
end)

t.test("execute returns affected rows", function()
    db:execute("DROP TABLE IF EXISTS lua_pg_t")
    t.eq(db:execute("CREATE TABLE lua_pg_t (id int PRIMARY KEY, v text)"), 0)
    t.eq(db:execute("INSERT INTO lua_pg_t SELECT g, 'x' FROM generate_series(1, 5) g"), 5)
    t.eq(db:execute("UPDATE lua_pg_t SET v = $1 WHERE id > $2", "y", 2), 3)
    t.eq(db:execute("DELETE FROM lua_pg_t WHERE id = $1", 99), 0)
end)

t.test("SQL errors carry the SQLSTATE; the connection stays", function()
    local err = t.raises("does not exist", db.query, db, "SELECT * FROM no_such_table")
    t.eq(err.sqlstate, "42P01")
    t.eq(err.class, "PostgresError")
    t.eq(err.connection_ok, true)
    err = t.raises("duplicate key", db.execute, db, "INSERT INTO lua_pg_t VALUES (1, 'dup')")
    t.eq(err.sqlstate, "23505")
    t.eq(err.constraint, "lua_pg_t_pkey")
    t.ok(err.detail and err.detail:find("already exists"), tostring(err.detail))
    t.eq(factory.pool:stats().in_use, 0)
end)

t.test("transactions commit and roll back", function()
    local got = db:transaction(function(tx)
        tx:execute("INSERT INTO lua_pg_t VALUES ($1, $2)", 100, "committed")
        return tx:query("SELECT count(*) AS n FROM lua_pg_t")[1].n, "second"
    end)
    t.eq(got, 6)
    t.raises("boom", db.transaction, db, function(tx)
        tx:execute("INSERT INTO lua_pg_t VALUES ($1, $2)", 101, "rolled back")
        error("boom")
    end)
    t.eq(#db:query("SELECT 1 FROM lua_pg_t WHERE id = 100"), 1)
    t.eq(#db:query("SELECT 1 FROM lua_pg_t WHERE id = 101"), 0)
    local err = t.raises("duplicate key", db.transaction, db, function(tx)
        tx:execute("INSERT INTO lua_pg_t VALUES (102, 'a')")
        tx:execute("INSERT INTO lua_pg_t VALUES (1, 'dup')")
    end)
    t.eq(err.connection_ok, true)
    t.eq(#db:query("SELECT 1 FROM lua_pg_t WHERE id = 102"), 0)
    local stats = factory.pool:stats()
    t.eq(stats.in_use, 0)
    t.ok(stats.open_and_available >= 1, "the connection went back to the pool")
end)

t.test("prepared statements", function()
    db:prepare("lua_get", "SELECT v FROM lua_pg_t WHERE id = $1")
    db:prepare("lua_get", "SELECT v FROM lua_pg_t WHERE id = $1") -- same SQL: fine
    t.raises("already prepared", db.prepare, db, "lua_get", "SELECT 2")
    t.eq(db:query_prepared("lua_get", 1)[1].v, "x")
    t.eq(db:query_prepared("lua_get", 3)[1].v, "y")
    db:prepare("lua_set", "UPDATE lua_pg_t SET v = $2 WHERE id = $1")
    t.eq(db:execute_prepared("lua_set", 1, "z"), 1)
    t.eq(db:query_prepared("lua_get", 1)[1].v, "z")
    -- gone from the session: prepared again
    db:execute("DEALLOCATE ALL")
    t.eq(db:query_prepared("lua_get", 1)[1].v, "z")
    t.raises("no statement prepared", db.query_prepared, db, "nope")
    t.eq(db:transaction(function(tx) return tx:query_prepared("lua_get", 3)[1].v end), "y")
end)

t.test("statement timeout: the server cancels, the connection stays", function()
    local tdb, tf = client({ statement_timeout = "100 milliseconds", pool_size = "2" })
    for _ = 1, 5 do
        local err = t.raises("statement timeout", tdb.query, tdb, "SELECT pg_sleep(1)")
        t.eq(err.class, "TimeoutError")
        t.eq(err.sqlstate, "57014")
    end
    t.eq(tdb:query("SELECT 1 AS one")[1].one, 1)
    local s = tf.pool:stats()
    t.eq(s.in_use, 0)
    t.eq(s.open, 1)
end)

t.test("concurrent statements do not block the loop", function()
    local cdb = client({ pool_size = "20" })
    -- A barrier in the server: each statement counts itself in and waits
    -- until all 20 are in (then 0.2 s more), or gives up after 15 s.
    -- Statements that did not run at once could never all pass it.
    db:query("DROP SEQUENCE IF EXISTS bp_barrier_seq")
    db:query("CREATE SEQUENCE bp_barrier_seq")
    db:query([[CREATE OR REPLACE FUNCTION bp_barrier(n int) RETURNS boolean LANGUAGE plpgsql AS $$
        DECLARE t0 timestamptz := clock_timestamp();
        BEGIN
            PERFORM nextval('bp_barrier_seq');
            WHILE (SELECT last_value FROM bp_barrier_seq) < n LOOP
                IF clock_timestamp() - t0 > interval '15 seconds' THEN RETURN false; END IF;
                PERFORM pg_sleep(0.01);
            END LOOP;
            PERFORM pg_sleep(0.2);
            RETURN true;
        END $$]])
    local done, passed = 0, 0
    for _ = 1, 20 do
        runtime.spawn(function()
            local rows = cdb:query("SELECT bp_barrier(20) AS ok")
            if rows[1].ok == true then passed = passed + 1 end
            done = done + 1
        end)
    end
    local ticks, t0 = 0, baseplate.now()
    while done < 20 and baseplate.now() - t0 < 30 do
        baseplate.sleep(0.01)
        ticks = ticks + 1
    end
    t.eq(done, 20)
    t.eq(passed, 20, "all 20 statements ran at once")
    t.ok(ticks > 10, "the loop kept running (" .. ticks .. " ticks)")
    db:query("DROP FUNCTION bp_barrier(int)")
    db:query("DROP SEQUENCE bp_barrier_seq")
end)

t.test("connection failures are errors, not hangs", function()
    local bad = client({ url = "postgresql://baseplate@127.0.0.1:1/baseplate", pool_timeout = "1 second" })
    local err = t.raises("127.0.0.1", bad.query, bad, "SELECT 1")
    t.eq(err.class, "ConnectionError")
    local named = client({ url = "postgresql://baseplate@no-such-host.invalid:5432/x" })
    err = t.raises("no-such-host.invalid", named.query, named, "SELECT 1")
    t.eq(err.class, "ConnectionError")
    -- a name that resolves: localhost
    local port = URL:match(":(%d+)/")
    local lh = client({ url = "postgresql://baseplate@localhost:" .. port .. "/baseplate" })
    t.eq(lh:query("SELECT 7 AS n")[1].n, 7)
end)

t.test("configuration errors name the key", function()
    t.raises("db.url", postgres.pool_from_config, { ["db.url"] = "mysql://x" }, "db.")
    t.raises("db.pool_size", postgres.pool_from_config, { ["db.url"] = URL, ["db.pool_size"] = "0" }, "db.")
    t.raises("db.url", postgres.pool_from_config, {}, "db.")
    t.raises("db.statement_timeout", postgres.pool_from_config,
        { ["db.url"] = URL, ["db.statement_timeout"] = "soon" }, "db.")
end)

t.test("the statement path stays JIT-compiled", function()
    local vmdef = require("jit.vmdef")
    local funcinfo = require("jit.util").funcinfo
    local compiled, aborts = 0, {}
    local handler
    local function ours(func)
        local src = funcinfo(func).source or ""
        return src:find("clients/postgres.lua", 1, true) ~= nil
    end
    handler = function(what, tr, func, pc, otr, oex)
        if what == "stop" and ours(func) then
            compiled = compiled + 1
        elseif what == "abort" and ours(func) then
            local msg = vmdef.traceerr[otr] or tostring(otr)
            -- "return to lower frame": a side trace of a loop reaching its
            -- function's return; the loop itself stays compiled
            if msg:find("NYI") and not msg:find("return to lower frame", 1, true) then
                if type(oex) == "number" and msg:find("%%d") then msg = msg:format(oex)
                elseif oex and msg:find("%%s") then msg = msg:format(vmdef.ffnames[oex] or tostring(oex)) end
                aborts[#aborts + 1] = msg
            end
        end
    end
    jit.attach(handler, "trace")
    for i = 1, 300 do
        local rows = db:query("SELECT g AS n, g::text AS s, g % 2 = 0 AS even, $1::float8 AS f"
            .. " FROM generate_series(1, 20) g WHERE g > $2", i + 0.5, 0)
        assert(#rows == 20 and rows[20].s == "20")
    end
    jit.attach(handler) -- detach
    t.ok(compiled > 0, "a trace was compiled in clients/postgres.lua")
    t.eq(aborts, {}, "NYI aborts in clients/postgres.lua")
end)

db:execute("DROP TABLE IF EXISTS lua_pg_t")
t.done()
