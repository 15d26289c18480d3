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
  int access_log;
} bp_http_server_options_t;
void bp_http_server_options_init(bp_http_server_options_t *o);
bp_http_server_t *bp_http_server_start(bp_app_t *app, bp_listener_t *listener,
                                       const bp_http_server_options_t *opts,
                                       char *err, size_t errlen);
void bp_http_server_stop(bp_http_server_t *server);
int bp_http_server_connections(const bp_http_server_t *server);
int bp_http_server_active_requests(const bp_http_server_t *server);
]])

local C = core.C
local log = require("baseplate.log")

local M = {}

local Server = {}
Server.__index = Server

--- Stop accepting and close once in-flight requests are answered.
function Server:stop()
    if self.c ~= nil and not self.stopped then
        self.stopped = true
        C.bp_http_server_stop(self.c)
    end
end

function Server:connections()
    return self.stopped and 0 or C.bp_http_server_connections(self.c)
end

function Server:active_requests()
    return self.stopped and 0 or C.bp_http_server_active_requests(self.c)
end

function M.make_server(server_config, listener, app, opts)
    local o = ffi.new("bp_http_server_options_t")
    C.bp_http_server_options_init(o)
    o.access_log = log.get_logger("baseplate.server.http"):is_enabled_for(log.DEBUG) and 1 or 0
    local c = C.bp_http_server_start(app.c, listener, o, core.errbuf, core.errbuf_size)
    if c == nil then
        error(core.errmsg(), 0)
    end
    -- The server frees itself when stopped and drained: no ffi.gc here.
    return setmetatable({ c = c, app = app, config = server_config }, Server)
end

return M
