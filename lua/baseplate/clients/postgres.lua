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
--
-- Parameters are always sent apart from the SQL text ($1…$n): values are
-- never spliced into statements. Each statement is a child span
-- "{name}.execute" and carries "-- trace:ID,span:ID" as a comment.
local ffi = require("ffi")
local cjson = require("cjson")
local core = require("baseplate.core")
local runtime = require("baseplate.runtime")
local config = require("baseplate.lib.config")
local Pool = require("baseplate.clients.pool")

ffi.cdef([[
typedef struct bp_pg_conn_s bp_pg_conn_t;
typedef struct bp_pg_result_s bp_pg_result_t;
int bp_pg_connect(const char *conninfo, double connect_timeout, int waiter, bp_pg_conn_t **out,
                  char *err, size_t errlen);
int bp_pg_query(bp_pg_conn_t *c, const char *sql, int nparams, const char *const *values,
                double timeout, int waiter);
bp_pg_result_t *bp_pg_take_result(bp_pg_conn_t *c);
void bp_pg_result_free(bp_pg_result_t *r);
int bp_pg_result_ok(const bp_pg_result_t *r);
const char *bp_pg_result_error(const bp_pg_result_t *r);
const char *bp_pg_result_sqlstate(const bp_pg_result_t *r);
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
local ffi_string = ffi.string
local type, tostring, tonumber, select, setmetatable, error = type, tostring, tonumber, select, setmetatable, error
local format = string.format

local M = {}

local PgError = {}
PgError.__index = PgError
PgError.__tostring = function(e) return e.message end
M.PostgresError = PgError

local len_cell = ffi.new("size_t[1]")

-- Type OIDs and how their text becomes a Lua value.
local BOOL, INT8, INT2, INT4, OID, JSON, FLOAT4, FLOAT8, NUMERIC, JSONB = 16, 20, 21, 23, 26, 114, 700, 701, 1700, 3802
local converters = {
    [BOOL] = function(s) return s == "t" end,
    [INT8] = tonumber, [INT2] = tonumber, [INT4] = tonumber, [OID] = tonumber,
    [FLOAT4] = tonumber, [FLOAT8] = tonumber, [NUMERIC] = tonumber,
    [JSON] = cjson.decode, [JSONB] = cjson.decode,
}

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
                row[names[j]] = f and f(s) or s
            end
        end
        rows[i + 1] = row
    end
    return rows
end

local function start_connect(waiter, target, out)
    return C.bp_pg_connect(target.url, target.connect_timeout, waiter, out, core.errbuf, core.errbuf_size)
end

local function start_query(waiter, conn, q)
    return C.bp_pg_query(conn.c, q.sql, q.n, q.values, q.timeout, waiter)
end

local function conn_error(conn, class, msg)
    return setmetatable({ class = class, message = format("postgres %s: %s", conn.where, msg) }, PgError)
end

local function open(target)
    local out = ffi.new("bp_pg_conn_t *[1]")
    local conn = { where = target.where, timeout = target.statement_timeout or 0 }
    local rc = runtime.await(start_connect, target, out)
    conn.c = out[0]
    if conn.c == nil then error(conn_error(conn, "ConnectionError", core.errmsg()), 0) end
    ffi.gc(conn.c, C.bp_pg_close)
    if rc ~= core.OK then
        local msg = rc == core.ETIMEDOUT and "connect timed out" or ffi_string(C.bp_pg_error(conn.c))
        C.bp_pg_close(ffi.gc(conn.c, nil))
        conn.c = nil
        error(conn_error(conn, rc == core.ETIMEDOUT and "TimeoutError" or "ConnectionError", msg), 0)
    end
    return conn
end

local function close_conn(conn)
    if conn.c ~= nil then
        C.bp_pg_close(ffi.gc(conn.c, nil))
        conn.c = nil
    end
end

local function usable(conn)
    return conn.c ~= nil and C.bp_pg_broken(conn.c) == 0 and not conn.in_transaction
end

-- Run sql with parameters on conn; returns the result (freed by gc).
local function run(conn, sql, ...)
    local n = select("#", ...)
    local q = { sql = sql, n = n, values = ffi.new("const char *[?]", n + 1), keep = {}, timeout = conn.timeout }
    for i = 1, n do
        local v = select(i, ...)
        if v ~= nil and v ~= cjson.null then
            if type(v) == "boolean" then v = v and "true" or "false"
            elseif type(v) == "table" then v = cjson.encode(v)
            else v = tostring(v) end
            q.keep[i] = v
            q.values[i - 1] = v
        end
    end
    local rc = runtime.await(start_query, conn, q)
    if rc ~= core.OK then
        if rc == core.ETIMEDOUT then
            error(conn_error(conn, "TimeoutError", format("statement timed out after %gs", conn.timeout)), 0)
        end
        error(conn_error(conn, "ConnectionError", ffi_string(C.bp_pg_error(conn.c))), 0)
    end
    local res = C.bp_pg_take_result(conn.c)
    if res == nil then error(conn_error(conn, "ConnectionError", "no result"), 0) end
    res = ffi.gc(res, C.bp_pg_result_free)
    if C.bp_pg_result_ok(res) == 0 then
        error(setmetatable({ class = "PostgresError", connection_ok = true,
            sqlstate = ffi_string(C.bp_pg_result_sqlstate(res)),
            message = ffi_string(C.bp_pg_result_error(res)) }, PgError), 0)
    end
    return res
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

--------------------------------------------------------------------------------
-- The context object

local Monitored = {}
Monitored.__index = Monitored
M.MonitoredPostgres = Monitored

local function traced(self, fn, sql, ...)
    local pool, name = self._pool, self._name
    if type(sql) ~= "string" then error("expected an SQL string", 3) end
    local span = self._span
    if span == nil then return pool:with(fn, nil, sql, ...) end
    local child = span:make_child(name .. ".execute")
    local args = { n = select("#", ...), ... }
    return child:with(function(s)
        s:set_tag("statement", #sql > 1024 and sql:sub(1, 1021) .. "..." or sql)
        return pool:with(fn, s, sql, unpack(args, 1, args.n))
    end)
end

--- Rows of a SELECT (or RETURNING): tables keyed by column name.
function Monitored:query(sql, ...)
    return traced(self, do_query, sql, ...)
end

--- Run a command; returns the number of rows it affected.
function Monitored:execute(sql, ...)
    return traced(self, do_execute, sql, ...)
end

local Tx = {}
Tx.__index = Tx
function Tx:query(sql, ...) return do_query(self._conn, self._span, sql, ...) end
function Tx:execute(sql, ...) return do_execute(self._conn, self._span, sql, ...) end

--- Run fn(tx) in a transaction on one connection: COMMIT when fn returns,
--- ROLLBACK (and the error raised again) when it raises.
function Monitored:transaction(fn)
    local function body(conn, span)
        run(conn, "BEGIN")
        conn.in_transaction = true
        local tx = setmetatable({ _conn = conn, _span = span }, Tx)
        local res = { pcall(fn, tx) }
        if res[1] then
            run(conn, "COMMIT")
            conn.in_transaction = false
            return unpack(res, 2, table.maxn(res))
        end
        local ok = pcall(run, conn, "ROLLBACK")
        if ok then conn.in_transaction = false end
        local err = res[2]
        if type(err) == "table" then err.connection_ok = ok end
        error(err, 0)
    end
    local span = self._span
    if span == nil then return self._pool:with(body, nil) end
    return span:make_child(self._name .. ".transaction"):with(function(s)
        return self._pool:with(body, s)
    end)
end

--------------------------------------------------------------------------------
-- Configuration

local spec = {
    url = config.String,
    pool_size = config.Optional(config.Integer, 5),
    max_overflow = config.Optional(config.Integer, 10),
    pool_recycle = config.Optional(config.Timespan, nil),
    pool_pre_ping = config.Optional(config.Boolean, false),
    connect_timeout = config.Optional(config.Timespan, 5),
    statement_timeout = config.Optional(config.Timespan, nil),
    pool_timeout = config.Optional(config.Timespan, 5),
}

--- A pool from the keys under `prefix` ("database." by default).
function M.pool_from_config(app_config, prefix, name)
    prefix = prefix or "database."
    local sub = {}
    for k, v in pairs(app_config) do
        if type(k) == "string" and k:sub(1, #prefix) == prefix then sub[k:sub(#prefix + 1)] = v end
    end
    local key_base = prefix:gsub("%.$", "")
    local cfg = config.parse_config(sub, spec)
    if not cfg.url:match("^postgres") then
        error(config.ConfigurationError(key_base .. ".url", "expected a postgresql:// URL"), 0)
    end
    if cfg.pool_size < 1 then error(config.ConfigurationError(key_base .. ".pool_size", "must be at least 1"), 0) end
    if cfg.max_overflow < 0 then
        error(config.ConfigurationError(key_base .. ".max_overflow", "must not be negative"), 0)
    end
    local target = {
        url = cfg.url,
        connect_timeout = cfg.connect_timeout,
        statement_timeout = cfg.statement_timeout,
        where = (cfg.url:match("@([^/?]+)") or cfg.url:match("//([^/?]+)") or "?"),
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
        ping = cfg.pool_pre_ping and function(conn) run(conn, "SELECT 1") end or nil,
    })
end

local Factory = {}
Factory.__index = Factory
M.PostgresContextFactory = Factory

function Factory:make_object_for_context(name, span)
    return setmetatable({ _name = name, _span = span, _pool = self.pool }, Monitored)
end

function Factory:report_runtime_metrics(batch)
    local s = self.pool:stats()
    batch:gauge("pool.size"):replace(s.size)
    batch:gauge("pool.in_use"):replace(s.in_use)
    batch:gauge("pool.open_and_available"):replace(s.open_and_available)
    batch:gauge("pool.overflow"):replace(s.overflow)
end

local Parser = setmetatable({}, { __index = config.Parser })
Parser.__index = Parser

--- For configure_context: { db = PostgresClient() } reads db.url, db.pool_size…
function M.PostgresClient()
    return setmetatable({}, Parser)
end

function Parser:parse(key_path, raw)
    return setmetatable({ pool = M.pool_from_config(raw, key_path .. ".", key_path) }, Factory)
end

return M
