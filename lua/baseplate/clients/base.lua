-- What every client shares on the Lua side (Redis, PostgreSQL, Thrift, and
-- the clients to come): one error type, so that a handler catches a Redis,
-- SQL, Thrift or HTTP failure the same way.
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

return M
