-- The Thrift server: `[server:main] factory = baseplate.server.thrift`.
--
-- make_server(server_config, listener, processor) serves a processor (made
-- with baseplate.thrift.processor by the [app:main] factory) on the bound
-- `listener`; the core's event loop does the rest.
local ffi = require("ffi")
local core = require("baseplate.core")
require("baseplate.server") -- bp_listener_t declarations
require("baseplate.span") -- bp_baseplate_t declarations
local thrift = require("baseplate.thrift")

ffi.cdef([[
typedef struct bp_thrift_server_s bp_thrift_server_t;
typedef struct {
  size_t max_frame_size;
  double message_timeout;
  double idle_timeout;
  int max_concurrency;
  int shared_socket;
} bp_thrift_server_options_t;
void bp_thrift_server_options_init(bp_thrift_server_options_t *o);
size_t bp_thrift_server_options_size(void);
bp_thrift_server_t *bp_thrift_server_start(bp_baseplate_t *bp, int trust_trace_headers,
                                           int handler, bp_listener_t *listener,
                                           const bp_thrift_server_options_t *opts,
                                           char *err, size_t errlen);
]])

local C = core.C

-- A struct shared with C must have one layout on both sides.
assert(ffi.sizeof("bp_thrift_server_options_t") == C.bp_thrift_server_options_size(),
    "bp_thrift_server_options_t: the Lua declaration does not match the core")

local config = require("baseplate.lib.config")
local base = require("baseplate.server.base")

local M = {}

-- The [server:…] keys of the Thrift server (docs/serve.md, docs/thrift.md).
M.spec = base.common_spec()
-- (THeader frames are at most 2^30 - 1 bytes, as in Apache Thrift)
M.spec.max_frame_size = config.Optional(base.whole(1024, 2 ^ 30 - 1), 16 * 1024 * 1024)
M.spec.message_timeout = config.Optional(base.duration, 10)
M.spec.idle_timeout = config.Optional(base.duration, 0)

--- serve's check of the [app:…] factory's result: a Thrift processor.
function M.accepts_app(app)
    return getmetatable(app) == thrift.Processor, "a processor made with baseplate.thrift.processor()"
end

function M.make_server(server_config, listener, processor, opts)
    local cfg = config.parse_config(server_config, M.spec)
    base.select_io(cfg)
    local o = ffi.new("bp_thrift_server_options_t")
    C.bp_thrift_server_options_init(o)
    o.max_frame_size = cfg.max_frame_size
    o.message_timeout = cfg.message_timeout
    o.idle_timeout = cfg.idle_timeout
    o.max_concurrency = cfg.max_concurrency
    o.shared_socket = (opts and opts.shared_socket) and 1 or 0
    local bp = processor.baseplate
    local c = C.bp_thrift_server_start(bp and bp.c or nil, processor.trust_trace_headers and 1 or 0,
        processor.id, listener, o, core.errbuf, core.errbuf_size)
    if c == nil then
        error(core.errmsg(), 0)
    end
    -- The server frees itself when stopped and drained: no ffi.gc here.
    local server = base.wrap(c, { app = processor, config = server_config, settings = cfg })
    require("baseplate.server.monitoring").start(server, processor, cfg)
    return server
end

return M
