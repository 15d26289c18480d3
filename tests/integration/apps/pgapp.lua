-- The app of tests/integration/test-postgres.sh: the PostgreSQL client in
-- request handlers, with spans and metrics.
local baseplate = require("baseplate")
local http = require("baseplate.http")
local postgres = require("baseplate.clients.postgres")

local M = {}

-- An error as JSON (what a handler that catches it would look at).
local function describe(err)
    if type(err) ~= "table" then return { message = tostring(err) } end
    return { class = err.class, sqlstate = err.sqlstate, connection_ok = err.connection_ok or false,
             message = err.message }
end

function M.make_app(app_config)
    local bp = baseplate.Baseplate(app_config)
    bp:configure_observers()
    bp:configure_context({
        db = postgres.PostgresClient({ statements = { get_item = "SELECT name FROM pg_items WHERE id = $1" } }),
    })
    local app = http.app(app_config, { baseplate = bp })

    app:get("types", "/types", function(request)
        local r = request.db:query("SELECT $1::int AS i, $2::float8 AS f, $3::bool AS b, $4::text AS t,"
            .. " $5::int AS n, $6::jsonb AS j, $7::json AS arr", 7, 0.25, false, "héllo", nil,
            { k = "v", nested = { x = 1 } }, { 1, 2, 3 })[1]
        return { i = r.i, f = r.f, b = r.b, t = r.t, n_is_nil = r.n == nil, j = r.j, arr = r.arr,
                 itype = type(r.i), btype = type(r.b) }
    end)

    app:get("setup", "/setup", function(request)
        request.db:execute("DROP TABLE IF EXISTS pg_items")
        request.db:execute("CREATE TABLE pg_items (id int PRIMARY KEY, name text NOT NULL)")
        return { inserted = request.db:execute("INSERT INTO pg_items SELECT g, 'item ' || g"
            .. " FROM generate_series(1, $1::int) g", 10) }
    end)

    app:get("update", "/update", function(request)
        return {
            updated = request.db:execute("UPDATE pg_items SET name = name || '!' WHERE id <= $1", 4),
            deleted = request.db:execute("DELETE FROM pg_items WHERE id > $1", 8),
            none = request.db:execute("DELETE FROM pg_items WHERE id = $1", 1000),
        }
    end)

    app:get("commit", "/tx/commit", function(request)
        local n = request.db:transaction(function(tx)
            tx:execute("DELETE FROM pg_items WHERE id >= 100")
            tx:execute("INSERT INTO pg_items VALUES ($1, $2)", 100, "committed")
            tx:execute("INSERT INTO pg_items VALUES ($1, $2)", 101, "committed too")
            return tx:query("SELECT count(*) AS n FROM pg_items")[1].n
        end)
        return { count_inside = n }
    end)

    app:get("rollback", "/tx/rollback", function(request)
        local ok, err = pcall(request.db.transaction, request.db, function(tx)
            tx:execute("INSERT INTO pg_items VALUES ($1, $2)", 200, "rolled back")
            tx:execute("INSERT INTO pg_items VALUES ($1, $2)", 1, "duplicate")
        end)
        local after = #request.db:query("SELECT 1 FROM pg_items WHERE id = 200")
        return { ok = ok, error = describe(err), rows_after = after }
    end)

    app:get("rollback_lua", "/tx/rollback-lua", function(request)
        local ok, err = pcall(request.db.transaction, request.db, function(tx)
            tx:execute("INSERT INTO pg_items VALUES ($1, $2)", 201, "rolled back")
            error("application error")
        end)
        local after = #request.db:query("SELECT 1 FROM pg_items WHERE id = 201")
        return { ok = ok, raised = tostring(err):match("application error") ~= nil, rows_after = after }
    end)

    app:get("prepared", "/prepared", function(request)
        request.db:prepare("rename_item", "UPDATE pg_items SET name = $2 WHERE id = $1")
        local changed = request.db:execute_prepared("rename_item", 2, "renamed")
        local a = request.db:query_prepared("get_item", 2)[1].name
        local b = request.db:query_prepared("get_item", 3)[1].name
        local statements = request.db:query("SELECT count(*) AS n FROM pg_prepared_statements"
            .. " WHERE name IN ('get_item', 'rename_item')")[1].n
        return { changed = changed, a = a, b = b, statements = statements }
    end)

    app:get("sqlerror", "/sqlerror", function(request)
        local ok, err = pcall(request.db.query, request.db, "SELECT * FROM no_such_table WHERE x = $1", 1)
        return { ok = ok, error = describe(err) }
    end)

    app:get("uncaught", "/uncaught", function(request)
        return request.db:query("SELEKT 1")
    end)

    app:get("trace", "/trace", function(request)
        -- the server's own view of the statement being run
        local q = request.db:query("SELECT query FROM pg_stat_activity WHERE pid = pg_backend_pid()")[1].query
        return { query = q, trace_id = request.span.trace_id }
    end)

    app:get("sleep", "/sleep", function(request)
        request.db:query("SELECT pg_sleep(0.2)")
        return { ok = true }
    end)

    app:get("slow", "/slow", function(request)
        local ok, err = pcall(request.db.query, request.db, "SELECT pg_sleep(5)")
        return { ok = ok, error = describe(err) }
    end)

    app:get("one", "/one", function(request)
        return { one = request.db:query("SELECT 1 AS one")[1].one }
    end)

    app:get("pool", "/pool", function(request)
        return request.db._pool:stats()
    end)
    return app
end

return M
