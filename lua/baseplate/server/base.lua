-- What every server factory shares (baseplate.server.http,
-- baseplate.server.thrift): the [server:…] value parsers, and the server
-- object over the protocol-neutral core (bp_server_t): stop, drain,
-- graceful shutdown, counters.
local ffi = require("ffi")
local core = require("baseplate.core")
local config = require("baseplate.lib.config")

ffi.cdef([[
typedef struct bp_server_s bp_server_t;
void bp_server_drain(bp_server_t *server);
void bp_server_stop(bp_server_t *server);
int bp_server_shutdown(bp_server_t *server, int waiter);
int bp_server_connections(const bp_server_t *server);
int bp_server_active(const bp_server_t *server);
int bp_server_set_io(const char *mode, char *err, size_t errlen);
]])

local C = core.C

local M = {}

-- The longest duration a server setting takes: anything longer is a
-- mistake (1e17 seconds once overflowed the timers' milliseconds).
local MAX_DURATION = 86400

--- A duration: a Timespan ("30 seconds") or a plain number of seconds ("30",
--- as Baseplate.py's examples write stop_timeout), from 0 to a day.
function M.duration(text)
    local ok, v = pcall(config.Timespan, text)
    if not ok then
        v = tonumber(text)
        if not v or v ~= v then
            error("expected a timespan such as \"30 seconds\" or a number of seconds, got "
                .. config.quote(text), 0)
        end
    end
    if v < 0 or v > MAX_DURATION then
        error("expected from 0 to 86400 seconds (a day), got " .. config.quote(text), 0)
    end
    return v
end

--- A parser of whole numbers from lo to hi (the C side's int or size_t
--- holds them).
function M.whole(lo, hi)
    return function(text)
        local ok, n = pcall(config.Integer, text)
        if not ok or n < lo or n > hi then
            error(string.format("expected a whole number from %d to %d, got %s", lo, hi, config.quote(text)), 0)
        end
        return n
    end
end

--- The I/O path (`io`): auto, uring or epoll; "uring" where io_uring is
--- refused (an old kernel, a seccomp filter, io_uring_disabled) is an error.
function M.io_mode(text)
    if text ~= "auto" and text ~= "uring" and text ~= "epoll" then
        error("expected auto, uring or epoll, got " .. config.quote(text), 0)
    end
    if text == "uring" and C.bp_server_set_io("uring", core.errbuf, core.errbuf_size) < 0 then
        error(core.errmsg(), 0)
    end
    return text
end

--- Settle the I/O path of the servers this process starts (the `io` key,
--- else BASEPLATE_SERVER_IO, else auto) and say which one it is.
function M.select_io(cfg)
    local env = os.getenv("BASEPLATE_SERVER_IO")
    local mode = cfg.io or (env ~= "" and env) or "auto"
    local rc = C.bp_server_set_io(mode, core.errbuf, core.errbuf_size)
    if rc < 0 then
        error((cfg.io and "io: " or "BASEPLATE_SERVER_IO: ") .. core.errmsg(), 0)
    end
    local slog = require("baseplate.log").get_logger("baseplate.server")
    if rc == 1 then
        slog:info("I/O: io_uring")
    elseif mode == "epoll" then
        slog:info("I/O: epoll")
    else
        slog:info("I/O: epoll (%s)", core.errmsg())
    end
end

--- The keys every server has (docs/serve.md): merged into a factory's spec.
function M.common_spec()
    local count = M.whole(0, 1000000)
    return {
        max_concurrency = config.Optional(count, 0),
        io = config.Optional(M.io_mode, nil),
        stop_timeout = config.Optional(M.duration, 10),
        drain_time = config.Optional(M.duration, 0),
        workers = config.Optional(M.whole(1, 1024), 1),
        reuse_port = config.Optional(config.Boolean, false), -- read at bind time (server/init.lua)
        monitoring = {
            concurrency = config.Optional(config.Boolean, true),
            connection_pool = config.Optional(config.Boolean, false),
            gc = { stats = config.Optional(config.Boolean, true) },
            blocked_hub = config.Optional(config.NonNegative(config.Timespan), nil),
            interval = config.Optional(function(text)
                local v = M.duration(text)
                if v <= 0 then error("must be more than 0 seconds", 0) end
                return v
            end, 10),
        },
    }
end

local Server = {}
Server.__index = Server
M.Server = Server

--- A server object for `c` (any server of the core: a bp_http_server_t *,
--- a bp_thrift_server_t *); `fields` become its own.
function M.wrap(c, fields)
    fields.c = c
    fields.core = ffi.cast("bp_server_t *", c)
    return setmetatable(fields, Server)
end

--- Stop accepting and close once in-flight messages are answered.
function Server:stop()
    if not self.stopped then
        self.stopped = true
        C.bp_server_stop(self.core)
    end
end

--- Keep serving, but close connections after each answer.
function Server:drain()
    if not self.stopped then C.bp_server_drain(self.core) end
end

local function start_shutdown(waiter, self)
    self.waiter = waiter
    local rc = C.bp_server_shutdown(self.core, waiter)
    return rc
end

--- Graceful shutdown: stop accepting, close idle connections, and wait (in
--- the calling coroutine) until in-flight messages are answered or
--- `timeout` seconds pass. Returns true when everything closed in time.
function Server:shutdown(timeout)
    if self.stopped then return true end
    self.stopped = true
    local done = false
    local runtime = require("baseplate.runtime")
    runtime.spawn(function(me)
        runtime.sleep(timeout)
        if not done and me.waiter then
            runtime.wake(me.waiter, core.ETIMEDOUT)
        end
    end, self)
    local rc = runtime.await(start_shutdown, self)
    done = true
    return rc == core.OK
end

function Server:connections()
    return self.stopped and 0 or C.bp_server_connections(self.core)
end

--- Messages being handled (HTTP requests, Thrift calls).
function Server:active_requests()
    return self.stopped and 0 or C.bp_server_active(self.core)
end

--- The HTTP and Thrift health check's probe names: "readiness",
--- "liveness", "startup" (and their numbers, 1 to 3, as Thrift's
--- IsHealthyProbe numbers them).
M.PROBES = { ["1"] = "readiness", ["2"] = "liveness", ["3"] = "startup",
             readiness = "readiness", liveness = "liveness", startup = "startup" }

return M
