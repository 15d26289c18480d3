-- The HTTP server: `[server:main] factory = baseplate.server.http`.
--
-- make_server(server_config, listener, app) starts serving `app` on the bound
-- `listener` and returns the server; the core's event loop does the rest.
local ffi = require("ffi")
local core = require("baseplate.core")
require("baseplate.http") -- bp_app_t declarations
require("baseplate.server") -- bp_listener_t declarations

ffi.cdef([[
typedef struct bp_http_server_s bp_http_server_t;
typedef struct {
  size_t max_header_size;
  size_t max_body_size;
  double header_timeout;
  double keepalive_timeout;
  int max_concurrency;
  int access_log;
  int shared_socket;
  int max_header_count;
  double body_timeout;
} bp_http_server_options_t;
void bp_http_server_options_init(bp_http_server_options_t *o);
size_t bp_http_server_options_size(void);
bp_http_server_t *bp_http_server_start(bp_app_t *app, bp_listener_t *listener,
                                       const bp_http_server_options_t *opts,
                                       char *err, size_t errlen);
void bp_http_server_stop(bp_http_server_t *server);
int bp_http_server_shutdown(bp_http_server_t *server, int waiter);
void bp_http_server_drain(bp_http_server_t *server);
int bp_http_server_connections(const bp_http_server_t *server);
int bp_http_server_active_requests(const bp_http_server_t *server);
]])

local C = core.C
local log = require("baseplate.log")

-- A struct shared with C must have one layout on both sides.
assert(ffi.sizeof("bp_http_server_options_t") == C.bp_http_server_options_size(),
    "bp_http_server_options_t: the Lua declaration does not match the core")

local config = require("baseplate.lib.config")
local http = require("baseplate.http")

local base = require("baseplate.server.base")

local M = {}

local duration, whole = base.duration, base.whole

-- A request head smaller than 1024 bytes cannot hold a real request line;
-- http_parser counts in 32 bits.
local header_size = whole(1024, 2 ^ 31)
-- Bodies are held in memory whole.
local body_size = whole(0, 2 ^ 32)

-- The [server:…] keys of the HTTP server (docs/serve.md).
M.spec = base.common_spec()
M.spec.max_header_size = config.Optional(header_size, 64 * 1024)
M.spec.max_body_size = config.Optional(body_size, 16 * 1024 * 1024)
M.spec.max_header_count = config.Optional(whole(1, 100000), 100)
M.spec.header_timeout = config.Optional(duration, 10)
M.spec.body_timeout = config.Optional(duration, 60)
M.spec.keepalive_timeout = config.Optional(duration, 75)

local PROBES = base.PROBES

--- The runtime's /health endpoint (Baseplate.py's HTTP health check):
--- GET /health?type=readiness|liveness|startup (or 1|2|3), default readiness.
local function health_handler(app, state)
    return function(request)
        local q = request.query.type
        local probe = PROBES[(q or "readiness"):lower()]
        if not probe then
            http.abort_error(400, "unknown probe type '" .. tostring(q) .. "'")
        end
        if probe == "readiness" and state.shutting_down then
            return 503, { status = "shutting down", probe = probe }
        end
        if app.is_healthy then
            local ok, healthy = pcall(app.is_healthy, probe)
            if not ok or not healthy then
                return 503, { status = "unhealthy", probe = probe }
            end
        end
        return { status = "healthy", probe = probe }
    end
end

--- serve's check of the [app:…] factory's result: an HTTP application.
function M.accepts_app(app)
    return type(app) == "table" and app.c ~= nil, "an application made with baseplate.http.app()"
end

function M.make_server(server_config, listener, app, opts)
    local cfg = config.parse_config(server_config, M.spec)
    base.select_io(cfg)
    local o = ffi.new("bp_http_server_options_t")
    C.bp_http_server_options_init(o)
    o.max_header_size = cfg.max_header_size
    o.max_body_size = cfg.max_body_size
    o.header_timeout = cfg.header_timeout
    o.keepalive_timeout = cfg.keepalive_timeout
    o.max_header_count = cfg.max_header_count
    o.body_timeout = cfg.body_timeout
    o.max_concurrency = cfg.max_concurrency
    o.access_log = log.get_logger("baseplate.server.http"):is_enabled_for(log.DEBUG) and 1 or 0
    o.shared_socket = (opts and opts.shared_socket) and 1 or 0

    local state = require("baseplate.server").SERVER_STATE
    if not app:find_route("GET", "/health") then
        app:get("health", "/health", health_handler(app, state))
    end

    local c = C.bp_http_server_start(app.c, listener, o, core.errbuf, core.errbuf_size)
    if c == nil then
        error(core.errmsg(), 0)
    end
    -- The server frees itself when stopped and drained: no ffi.gc here.
    local server = base.wrap(c, { app = app, config = server_config, settings = cfg })
    require("baseplate.server.monitoring").start(server, app, cfg)
    return server
end

return M
