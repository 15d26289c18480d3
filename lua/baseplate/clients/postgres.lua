-- PostgreSQL: non-blocking (libpq on the event loop), pooled, instrumented.
--
--   bp:configure_context({ db = postgres.PostgresClient() })
--   -- [app:main] db.url = postgresql://user@localhost:5432/dbname
--   local rows = request.db:query("SELECT id, name FROM users WHERE id = $1", 42)
--   rows[1].name
--   request.db:execute("UPDATE users SET seen = now() WHERE id = $1", 42)  --> 1
--   request.db:transaction(function(tx)
--       tx:execute("INSERT INTO log(msg) VALUES ($1)", "hello")
--   end)                                   -- COMMIT, or ROLLBACK if fn raises
--   request.db:prepare("user_by_id", "SELECT * FROM users WHERE id = $1")
--   request.db:query_prepared("user_by_id", 42)
--
-- Parameters are always sent apart from the SQL text ($1…$n): values are
-- never spliced into statements. Each statement is a child span
-- "{name}.execute" and carries "-- trace:ID,span:ID" as a comment.
-- See docs/postgres.md.
local ffi = require("ffi")
local cjson = require("cjson")
local core = require("baseplate.core")
local runtime = require("baseplate.runtime")
local config = require("baseplate.lib.config")
local Pool = require("baseplate.clients.pool")
local span_mod = require("baseplate.span")

ffi.cdef([[
typedef struct bp_pg_conn_s bp_pg_conn_t;
typedef struct bp_pg_result_s bp_pg_result_t;
int bp_pg_connect(const char *conninfo, double connect_timeout, double statement_timeout, int waiter,
                  bp_pg_conn_t **out, char *err, size_t errlen);
typedef struct bp_pg_connect_opts_s {
  const char *conninfo;
  const char *user;
  const char *password;
  double connect_timeout;
  double statement_timeout;
} bp_pg_connect_opts_t;
int bp_pg_connect_as(const bp_pg_connect_opts_t *o, int waiter, bp_pg_conn_t **out, char *err, size_t errlen);
int bp_pg_query(bp_pg_conn_t *c, const char *sql, int nparams, const char *const *values,
                double timeout, int waiter);
int bp_pg_prepare(bp_pg_conn_t *c, const char *name, const char *sql, double timeout, int waiter);
int bp_pg_query_prepared(bp_pg_conn_t *c, const char *name, int nparams, const char *const *values,
                         double timeout, int waiter);
bp_pg_result_t *bp_pg_take_result(bp_pg_conn_t *c);
void bp_pg_result_free(bp_pg_result_t *r);
int bp_pg_result_ok(const bp_pg_result_t *r);
const char *bp_pg_result_error(const bp_pg_result_t *r);
const char *bp_pg_result_sqlstate(const bp_pg_result_t *r);
const char *bp_pg_result_error_field(const bp_pg_result_t *r, int field);
int bp_pg_result_rows(const bp_pg_result_t *r);
int bp_pg_result_cols(const bp_pg_result_t *r);
const char *bp_pg_result_col_name(const bp_pg_result_t *r, int col);
unsigned int bp_pg_result_col_type(const bp_pg_result_t *r, int col);
const char *bp_pg_result_value(const bp_pg_result_t *r, int row, int col, size_t *len);
long long bp_pg_result_affected(const bp_pg_result_t *r);
const char *bp_pg_error(const bp_pg_conn_t *c);
int bp_pg_broken(const bp_pg_conn_t *c);
int bp_pg_busy(const bp_pg_conn_t *c);
void bp_pg_close(bp_pg_conn_t *c);
]])

local C = core.C
local ffi_string, ffi_gc = ffi.string, ffi.gc
local type, tostring, tonumber, select, setmetatable, error, pcall, unpack =
    type, tostring, tonumber, select, setmetatable, error, pcall, unpack
local format, find, gsub = string.format, string.find, string.gsub
local maxn = table.maxn
local null = cjson.null

local M = {}

--------------------------------------------------------------------------------
-- Errors

-- (the one client error type, baseplate.clients.base)
local PostgresError = require("baseplate.clients.base").ClientError
M.PostgresError = PostgresError

-- A failure of the connection itself: it is discarded.
local function connection_error(conn, class, msg)
    return setmetatable({ class = class, message = format("%s: %s", conn.name, msg),
        client = conn.name, endpoint = conn.where }, PostgresError)
end

local function opt_field(res, code)
    local p = C.bp_pg_result_error_field(res, code)
    return p ~= nil and ffi_string(p) or nil
end

local QUERY_CANCELED = "57014" -- what the server's statement_timeout raises
local NO_SUCH_STATEMENT = "26000"

-- An error the server reported for a statement: the connection is fine.
local function sql_error(conn, res)
    local sqlstate = ffi_string(C.bp_pg_result_sqlstate(res))
    local msg = ffi_string(C.bp_pg_result_error(res))
    return setmetatable({
        class = sqlstate == QUERY_CANCELED and "TimeoutError" or "PostgresError",
        message = format("%s: %s (SQLSTATE %s)", conn.name, msg, sqlstate),
        sqlstate = sqlstate,
        detail = opt_field(res, 68),     -- 'D'
        hint = opt_field(res, 72),       -- 'H'
        constraint = opt_field(res, 110), -- 'n'
        severity = opt_field(res, 86),   -- 'V' (never localised)
        client = conn.name, endpoint = conn.where,
        connection_ok = true,
    }, PostgresError)
end

--------------------------------------------------------------------------------
-- Values

-- Type OIDs and how their text becomes a Lua value (others stay strings).
local BOOL, INT8, INT2, INT4, OID, JSON, FLOAT4, FLOAT8, NUMERIC, JSONB = 16, 20, 21, 23, 26, 114, 700, 701, 1700, 3802
local function to_bool(s) return s == "t" end
local converters = {
    [BOOL] = to_bool,
    [INT8] = tonumber, [INT2] = tonumber, [INT4] = tonumber, [OID] = tonumber,
    [FLOAT4] = tonumber, [FLOAT8] = tonumber, [NUMERIC] = tonumber,
    [JSON] = cjson.decode, [JSONB] = cjson.decode,
}

local len_cell = ffi.new("size_t[1]")

local function rows_of(res)
    local nrows, ncols = C.bp_pg_result_rows(res), C.bp_pg_result_cols(res)
    local names, conv = {}, {}
    for j = 0, ncols - 1 do
        names[j] = ffi_string(C.bp_pg_result_col_name(res, j))
        conv[j] = converters[tonumber(C.bp_pg_result_col_type(res, j))]
    end
    local rows = {}
    for i = 0, nrows - 1 do
        local row = {}
        for j = 0, ncols - 1 do
            local p = C.bp_pg_result_value(res, i, j, len_cell)
            if p ~= nil then
                local s = ffi_string(p, len_cell[0])
                local f = conv[j]
                if f then s = f(s) end
                row[names[j]] = s
            end
        end
        rows[i + 1] = row
    end
    return rows
end

-- A Lua value as the text PostgreSQL parses; nil for NULL.
local function param_text(v, i)
    local t = type(v)
    if t == "string" then
        if find(v, "\0", 1, true) then
            error(format("parameter $%d: text cannot contain NUL bytes", i), 4)
        end
        return v
    elseif v == nil or v == null then
        return nil
    elseif t == "number" then
        if v % 1 == 0 and v > -1e18 and v < 1e18 then return format("%d", v) end
        local s = format("%.14g", v)
        if tonumber(s) ~= v then s = format("%.17g", v) end
        return s -- also "nan", "inf", "-inf": PostgreSQL reads them
    elseif t == "boolean" then
        return v and "true" or "false"
    elseif t == "table" then
        return cjson.encode(v)
    elseif t == "cdata" then -- 64-bit integers: 123LL
        return (gsub(tostring(v), "U?LL$", ""))
    end
    error(format("parameter $%d: cannot send a %s", i, t), 4)
end

-- The parameters of one call. The C side copies them before returning, so
-- one array serves every call; `keep` anchors the converted strings.
local values_cap = 16
local values = ffi.new("const char *[?]", values_cap)
local keep = {} -- luacheck: ignore 241 (written only: it holds the strings)

local function set_params(n, ...)
    if n > values_cap then
        while values_cap < n do values_cap = values_cap * 2 end
        values = ffi.new("const char *[?]", values_cap)
    end
    for i = 1, n do
        local s = param_text((select(i, ...)), i)
        keep[i] = s or false
        values[i - 1] = s
    end
    return n
end

local function clear_params(n)
    for i = 1, n do keep[i] = nil end
end

--------------------------------------------------------------------------------
-- Connections: { c = bp_pg_conn_t*, name, where, timeout, prepared = {} }

local out_cell = ffi.new("bp_pg_conn_t *[1]")

local connect_opts = ffi.new("bp_pg_connect_opts_t")

local function start_connect(waiter, target, conn, creds)
    local rc
    if creds then
        -- the user name and password apart from the URL: the core copies them
        local o = connect_opts
        o.conninfo, o.user, o.password = target.url, creds.username, creds.password
        o.connect_timeout, o.statement_timeout = target.connect_timeout, target.statement_timeout or 0
        rc = C.bp_pg_connect_as(o, waiter, out_cell, core.errbuf, core.errbuf_size)
        o.conninfo, o.user, o.password = nil, nil, nil
    else
        rc = C.bp_pg_connect(target.url, target.connect_timeout, target.statement_timeout or 0,
            waiter, out_cell, core.errbuf, core.errbuf_size)
    end
    if out_cell[0] ~= nil then
        conn.c = ffi_gc(out_cell[0], C.bp_pg_close)
        out_cell[0] = nil
    else
        conn.connect_error = core.errmsg()
    end
    return rc
end

local function close_conn(conn)
    if conn.c ~= nil then
        C.bp_pg_close(ffi_gc(conn.c, nil))
        conn.c = nil
    end
end

local function open(target)
    local conn = {
        name = target.name, where = target.where, prepared = {},
        address = target.address, database = target.database, -- (the sql_client labels)
        -- the server cancels at statement_timeout; this is the backstop
        timeout = target.statement_timeout and target.statement_timeout + 1 or 0,
    }
    local creds
    if target.credentials_secret then
        -- fetched at every connect, so that a rotated password is used at once
        local ok, c = pcall(target.secrets.get_credentials, target.secrets, target.credentials_secret)
        if not ok then
            error(connection_error(conn, "ConnectionError", "credentials_secret: "
                .. tostring(type(c) == "table" and c.message or c)), 0)
        end
        creds = c
    end
    local rc = runtime.await(start_connect, target, conn, creds)
    if conn.c == nil then
        error(connection_error(conn, "ConnectionError", conn.connect_error or core.strerror(rc)), 0)
    end
    if rc ~= core.OK then
        local msg = ffi_string(C.bp_pg_error(conn.c))
        close_conn(conn)
        error(connection_error(conn, rc == core.ETIMEDOUT and "TimeoutError" or "ConnectionError",
            msg ~= "" and msg or core.strerror(rc)), 0)
    end
    return conn
end

local function usable(conn)
    return conn.c ~= nil and C.bp_pg_broken(conn.c) == 0 and not conn.in_transaction
end

local function start_query(waiter, conn, sql)
    local rc = C.bp_pg_query(conn.c, sql, conn.nparams, values, conn.timeout, waiter)
    return rc
end

local function start_prepare(waiter, conn, name, sql)
    local rc = C.bp_pg_prepare(conn.c, name, sql, conn.timeout, waiter)
    return rc
end

local function start_prepared(waiter, conn, name)
    local rc = C.bp_pg_query_prepared(conn.c, name, conn.nparams, values, conn.timeout, waiter)
    return rc
end

-- The result of the operation just awaited (freed by the GC), or an error.
local function result_of(conn, rc)
    if rc ~= core.OK then
        local msg = conn.c ~= nil and ffi_string(C.bp_pg_error(conn.c)) or ""
        if msg == "" then msg = core.strerror(rc) end
        error(connection_error(conn, rc == core.ETIMEDOUT and "TimeoutError" or "ConnectionError", msg), 0)
    end
    local res = C.bp_pg_take_result(conn.c)
    if res == nil then error(connection_error(conn, "ConnectionError", "no result"), 0) end
    res = ffi_gc(res, C.bp_pg_result_free)
    if C.bp_pg_result_ok(res) == 0 then error(sql_error(conn, res), 0) end
    return res
end

-- Run sql with parameters on conn; returns the result.
local function run(conn, sql, ...)
    if conn.c == nil then error(connection_error(conn, "ConnectionError", "closed"), 0) end
    local n = set_params(select("#", ...), ...)
    conn.nparams = n
    local rc = runtime.await(start_query, conn, sql)
    clear_params(n)
    return result_of(conn, rc)
end

-- Run the statement registered as `name` (sql), preparing it on this
-- connection first if needed.
local function run_prepared(conn, name, sql, ...)
    if conn.c == nil then error(connection_error(conn, "ConnectionError", "closed"), 0) end
    for attempt = 1, 2 do
        if not conn.prepared[name] then
            result_of(conn, runtime.await(start_prepare, conn, name, sql))
            conn.prepared[name] = true
        end
        local n = set_params(select("#", ...), ...)
        conn.nparams = n
        local rc = runtime.await(start_prepared, conn, name)
        clear_params(n)
        local ok, res = pcall(result_of, conn, rc)
        if ok then return res end
        -- Gone from the session (DISCARD ALL…): prepare it again, once,
        -- unless a transaction is aborted by now.
        if attempt == 2 or type(res) ~= "table" or res.sqlstate ~= NO_SUCH_STATEMENT or conn.in_transaction then
            error(res, 0)
        end
        conn.prepared[name] = nil
    end
end

local function annotate(sql, span)
    if span == nil then return sql end
    return sql .. " -- trace:" .. span.trace_id .. ",span:" .. span.id
end

local function do_query(conn, span, sql, ...)
    return rows_of(run(conn, annotate(sql, span), ...))
end

local function do_execute(conn, span, sql, ...)
    return tonumber(C.bp_pg_result_affected(run(conn, annotate(sql, span), ...)))
end

local function do_query_prepared(conn, span, name, sql, ...)
    return rows_of(run_prepared(conn, name, sql, ...))
end

local function do_execute_prepared(conn, span, name, sql, ...)
    return tonumber(C.bp_pg_result_affected(run_prepared(conn, name, sql, ...)))
end

--------------------------------------------------------------------------------
-- The context object

local Monitored = {}
Monitored.__index = Monitored
M.MonitoredPostgres = Monitored

local function statement_tag(sql)
    return #sql > 1024 and sql:sub(1, 1021) .. "..." or sql
end

-- fn(conn, span, ...) inside a "{name}.execute" child span of `parent`.
local function in_span(s, fn, conn, tag, ...)
    s:set_tag("statement", statement_tag(tag))
    return fn(conn, s, ...)
end

-- Prometheus: Baseplate.py's sql_client_* family, labelled by the client's
-- name, the server's host and the database (made once per triple).
local sql_memo = span_mod.label_memo()
local function sql_labels(name, conn)
    local address, database = conn.address or "", conn.database or ""
    return sql_memo(name .. "\0" .. address .. "\0" .. database,
        "sql_client_name", name, "sql_address", address, "sql_database", database)
end

local function traced(parent, name, fn, conn, tag, ...)
    if parent == nil then return fn(conn, nil, ...) end
    local child = parent:make_child(name .. ".execute")
    if span_mod.prometheus_on() then child:set_metric_family("sql_client", sql_labels(name, conn)) end
    return child:with(in_span, fn, conn, tag, ...)
end

-- With a checked-out connection: the span covers the statement, not the wait.
local function checked_out(conn, self, fn, tag, ...)
    return traced(self._span, self._name, fn, conn, tag, ...)
end

local function check_sql(sql)
    if type(sql) ~= "string" then error("expected an SQL string, got " .. type(sql), 3) end
end

local function registered(self, name)
    if type(name) ~= "string" then error("expected a statement name, got " .. type(name), 3) end
    local sql = self._statements[name]
    if sql == nil then error(format("no statement prepared as %q: call prepare(name, sql) first", name), 3) end
    return sql
end

--- Rows of a SELECT (or RETURNING): tables keyed by column name.
function Monitored:query(sql, ...)
    check_sql(sql)
    return self._pool:with(checked_out, self, do_query, sql, sql, ...)
end

--- Run a command; returns the number of rows it affected.
function Monitored:execute(sql, ...)
    check_sql(sql)
    return self._pool:with(checked_out, self, do_execute, sql, sql, ...)
end

--- Register `sql` as the prepared statement `name`, once for every request
--- and connection (each connection prepares it when it first runs it).
function Monitored:prepare(name, sql)
    local statements = self._statements
    if type(name) ~= "string" or name == "" or #name > 63 then
        error("prepare: expected a statement name of 1 to 63 bytes", 2)
    end
    check_sql(sql)
    local old = statements[name]
    if old ~= nil and old ~= sql then
        error(format("prepare: %q is already prepared with other SQL", name), 2)
    end
    statements[name] = sql
    return self
end

--- Rows of the statement prepared as `name`, with these parameters.
function Monitored:query_prepared(name, ...)
    local sql = registered(self, name)
    return self._pool:with(checked_out, self, do_query_prepared, sql, name, sql, ...)
end

--- Run the statement prepared as `name`; returns the rows it affected.
function Monitored:execute_prepared(name, ...)
    local sql = registered(self, name)
    return self._pool:with(checked_out, self, do_execute_prepared, sql, name, sql, ...)
end

local Tx = {}
Tx.__index = Tx

local function tx_conn(tx)
    local conn = tx._conn
    if conn == nil then error("this transaction is over", 3) end
    return conn
end

function Tx:query(sql, ...)
    check_sql(sql)
    return traced(self._span, self._name, do_query, tx_conn(self), sql, sql, ...)
end

function Tx:execute(sql, ...)
    check_sql(sql)
    return traced(self._span, self._name, do_execute, tx_conn(self), sql, sql, ...)
end

function Tx:query_prepared(name, ...)
    local sql = registered(self, name)
    return traced(self._span, self._name, do_query_prepared, tx_conn(self), sql, name, sql, ...)
end

function Tx:execute_prepared(name, ...)
    local sql = registered(self, name)
    return traced(self._span, self._name, do_execute_prepared, tx_conn(self), sql, name, sql, ...)
end

-- The transaction on a checked-out connection. Whatever fn raises is
-- returned, not raised, so that the pool keeps a connection whose
-- ROLLBACK went through (a broken one is not `usable`: in_transaction stays).
local function tx_body(conn, self, fn, span)
    run(conn, "BEGIN")
    conn.in_transaction = true
    local tx = setmetatable({ _conn = conn, _span = span, _name = self._name,
        _statements = self._statements }, Tx)
    local res = { pcall(fn, tx) }
    tx._conn = nil
    if res[1] then
        local ok, err = pcall(run, conn, "COMMIT")
        if not ok then
            -- the server ended the transaction (a deferred constraint…)
            if type(err) == "table" and err.connection_ok then conn.in_transaction = false end
            return false, err
        end
        conn.in_transaction = false
        return true, res
    end
    local err = res[2]
    local rolled_back = pcall(run, conn, "ROLLBACK")
    if rolled_back then conn.in_transaction = false end
    if type(err) == "table" then err.connection_ok = rolled_back or nil end
    return false, err
end

local function tx_in_span(s, self, fn)
    local ok, res = self._pool:with(tx_body, self, fn, s)
    if not ok then error(res, 0) end
    return unpack(res, 2, maxn(res))
end

--- Run fn(tx) in a transaction on one connection: COMMIT when fn returns
--- (its results are returned), ROLLBACK and the error raised again when it
--- raises. tx has query, execute, query_prepared and execute_prepared.
function Monitored:transaction(fn)
    if type(fn) ~= "function" then error("transaction: expected a function", 2) end
    local span = self._span
    if span == nil then return tx_in_span(nil, self, fn) end
    return span:make_child(self._name .. ".transaction"):with(tx_in_span, self, fn)
end

--------------------------------------------------------------------------------
-- Configuration

local spec = {
    url = config.String,
    pool_size = config.Optional(config.Integer, 5),
    max_overflow = config.Optional(config.Integer, 10),
    pool_recycle = config.Optional(config.NonNegative(config.Timespan), nil),
    pool_pre_ping = config.Optional(config.Boolean, false),
    connect_timeout = config.Optional(config.NonNegative(config.Timespan), 5),
    statement_timeout = config.Optional(config.NonNegative(config.Timespan), nil),
    pool_timeout = config.Optional(config.NonNegative(config.Timespan), 5),
    credentials_secret = config.Optional(config.String, nil),
}

local function ping(conn)
    run(conn, "SELECT 1")
end

--- A pool from the keys under `prefix` ("database." by default), named
--- `name` (the prefix without its dot by default) in errors and spans.
--- `secrets` (a baseplate.lib.secrets store) is where `credentials_secret`
--- is looked up.
function M.pool_from_config(app_config, prefix, name, secrets)
    prefix = prefix or "database."
    local key_base = prefix:gsub("%.$", "")
    local cfg = config.parse_config_at(app_config, prefix, spec)
    local function bad(key, why) error(config.ConfigurationError(key_base .. "." .. key, why), 0) end
    if not (cfg.url:match("^postgresql://") or cfg.url:match("^postgres://")) then
        bad("url", "expected a postgresql:// URL")
    end
    if cfg.pool_size < 1 then bad("pool_size", "must be at least 1") end
    if cfg.max_overflow < 0 then bad("max_overflow", "must not be negative") end
    if cfg.statement_timeout == 0 then cfg.statement_timeout = nil end
    if cfg.credentials_secret and not secrets then
        bad("credentials_secret", "a secrets store is needed to use it (PostgresClient({ secrets = store }),"
            .. " or pool_from_config's secrets argument)")
    end
    local host = cfg.url:match("^[^:]+://([^/?]*)") or ""
    host = host:match("@([^@]*)$") or host
    -- (the host alone, as SQLAlchemy's url.host: the sql_address label)
    local address = host:match("^%[([^%]]*)%]") or host:match("^([^:]*)") or host
    local target = {
        name = name or key_base,
        url = cfg.url,
        connect_timeout = cfg.connect_timeout,
        statement_timeout = cfg.statement_timeout,
        where = host ~= "" and host or "localhost",
        address = address ~= "" and address or "localhost",
        database = cfg.url:match("^[^:]+://[^/?]*/([^?#]*)") or "",
        credentials_secret = cfg.credentials_secret,
        secrets = secrets,
    }
    return Pool.new({
        name = name or key_base,
        size = cfg.pool_size,
        max_overflow = cfg.max_overflow,
        timeout = cfg.pool_timeout,
        recycle = cfg.pool_recycle,
        connect = function() return open(target) end,
        close = close_conn,
        usable = usable,
        ping = cfg.pool_pre_ping and ping or nil,
    })
end

local base = require("baseplate.clients.base")
M.PostgresContextFactory = base.Factory

local function make_monitored(name, span, factory)
    return setmetatable({ _name = name, _span = span, _pool = factory.pool, _statements = factory.statements },
        Monitored)
end

--- A context factory over `pool`; `statements` ({ name = sql }) are
--- registered for prepare/query_prepared up front.
function M.context_factory(pool, statements)
    local f = base.context_factory(pool, make_monitored,
        { statements = {}, pool_gauges = { "open_and_available", "overflow" }, prom_pool = "sql" })
    for name, sql in pairs(statements or {}) do
        Monitored.prepare(f:make_object_for_context("", nil), name, sql)
    end
    return f
end

local function build(key_path, raw, parser)
    return M.context_factory(M.pool_from_config(raw, key_path .. ".", key_path, parser.secrets),
        parser.statements)
end

--- For configure_context: { db = PostgresClient() } reads db.url,
--- db.pool_size… `opts.statements` ({ name = sql }) are prepared statements
--- every request can run with query_prepared/execute_prepared;
--- `opts.secrets` is the secrets store for db.credentials_secret.
function M.PostgresClient(opts)
    return base.client_parser(build, { statements = opts and opts.statements, secrets = opts and opts.secrets })
end

return M
