-- What every client shares on the Lua side (Redis, PostgreSQL, Thrift, and
-- the clients to come): one error type, so that a handler catches a Redis,
-- SQL, Thrift or HTTP failure the same way; and the context factory and
-- config parser that put a client on each request's context.
--
--   local ok, err = pcall(context.redis.get, context.redis, "k")
--   if not ok and clients.is_error(err) then
--       log:warning("%s (%s %s): %s", err.class, err.client, err.endpoint, err.message)
--   end
--
-- A client error is a table with:
--   class          "ConnectionError", "TimeoutError", or the client's own
--                  ("RedisError", "PostgresError", "TTransportException", …)
--   message        what happened, naming the client and endpoint
--   client         the client's name (its context attribute), when known
--   endpoint       where it was talking to ("host:port", a path)
--   command        the command, statement or method, when there was one
--   connection_ok  true when the connection is fine (the server answered
--                  with an error): the pool keeps it
-- and the client's own fields (a PostgresError's `sqlstate`, a Thrift
-- TransportException's `type`). tostring(err) is its message.
local M = {}

local ClientError = {}
ClientError.__index = ClientError
ClientError.__tostring = function(e) return tostring(rawget(e, "message")) end
M.ClientError = ClientError

--- A client error from `fields` (class and message required).
function M.error(fields)
    if type(fields) ~= "table" or type(fields.class) ~= "string" or fields.message == nil then
        error("clients.error: expected { class = ..., message = ... }", 2)
    end
    return setmetatable(fields, ClientError)
end

--- Whether `err` is a client error (of any client).
function M.is_error(err)
    return type(err) == "table" and getmetatable(err) == ClientError
end

--------------------------------------------------------------------------------
-- Putting a client on each context

local Factory = {}
Factory.__index = Factory
M.Factory = Factory

--- A context factory over `pool` (baseplate.clients.pool):
--- make_object_for_context(name, span) returns make(name, span, factory)
--- (the client object of one request); `fields` are kept on the factory
--- (a Thrift service, prepared statements…).
function M.context_factory(pool, make, fields)
    local f = fields or {}
    f.pool, f.make = pool, make
    return setmetatable(f, Factory)
end

function Factory:make_object_for_context(name, span)
    return self.make(name, span, self)
end

--- The pool's gauges, for the server's runtime metrics
--- (monitoring.connection_pool): pool.size, pool.in_use, and what more the
--- factory's `pool_gauges` names (open_and_available, overflow); then the
--- client's own, from the factory's `more_gauges(batch, factory)`.
function Factory:report_runtime_metrics(batch)
    if self.pool then
        local s = self.pool:stats()
        batch:gauge("pool.size"):replace(s.size)
        batch:gauge("pool.in_use"):replace(s.in_use)
        for _, k in ipairs(self.pool_gauges or {}) do batch:gauge("pool." .. k):replace(s[k]) end
    end
    if self.more_gauges then self.more_gauges(batch, self) end
end

--- A parser for Baseplate:configure_context ({ cache = SomeClient() }):
--- parse(key_path, raw) returns build(key_path, raw, parser), a context
--- factory built from the keys under `key_path.`. `fields` are kept on the
--- parser (a client's options).
function M.client_parser(build, fields)
    local config = require("baseplate.lib.config")
    local Parser = setmetatable({}, { __index = config.Parser })
    Parser.__index = Parser
    function Parser:parse(key_path, raw)
        return build(key_path, raw, self)
    end
    return setmetatable(fields or {}, Parser)
end

return M
