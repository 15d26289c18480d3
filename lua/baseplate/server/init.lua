-- The start-up sequence of baseplate-serve, after Baseplate.py's
-- "Application Startup Sequence": read the config file, configure logging,
-- load the application from [app:NAME] factory, bind the socket, load the
-- server from [server:NAME] factory, log "Listening on …" and hand off to the
-- event loop. Every failure here is one line naming file, section and key.
local ffi = require("ffi")
local core = require("baseplate.core")
local runtime = require("baseplate.runtime")
local ini = require("baseplate.ini")
local log = require("baseplate.log")
local http = require("baseplate.http")

ffi.cdef([[
typedef struct bp_listener_s bp_listener_t;
bp_listener_t *bp_listener_open(const char *endpoint, int backlog, int flags, char *err, size_t errlen);
const char *bp_listener_describe(const bp_listener_t *l);
void bp_listener_free(bp_listener_t *l);
int bp_module_is_baseplate(const char *path);
int bp_module_run_factory(const char *path, const char *symbol, bp_app_t *app,
                          const bp_section_t *config, char *err, size_t errlen);
bp_listener_t *bp_listener_from_fd(int fd, char *err, size_t errlen);
int bp_einhorn_ack(const char *sock_path, int pid, char *err, size_t errlen);
int getpid(void);
int getppid(void);
int bp_worker_spawn(int fd);
int bp_listener_fd(const bp_listener_t *l);
bp_listener_t *bp_listener_reserve(const char *endpoint, int flags, char *err, size_t errlen);
void bp_runtime_request_restart(void);
int bp_newest_mtime(const char *dir, const char *suffix, double *mtime, char *path, size_t pathlen);
int bp_worker_wait(int waiter);
int bp_worker_reap(int *code, int *signum);
int bp_worker_next_ready(void);
int bp_worker_notify_ready(void);
const char *bp_signal_name(int signum);
int bp_process_signal(int pid, int signum);
]])

local C = core.C
local fatal = runtime.fatal

local M = {}

-- Everything start-up loaded stays alive for the life of the process (C
-- factories may keep pointers into the config file's strings).
M.state = {}

--- Baseplate.py's baseplate.server.SERVER_STATE: `shutting_down` turns true
--- when a SIGTERM, SIGUSR2 or SIGINT starts the graceful shutdown.
M.SERVER_STATE = { shutting_down = false }

--- "file: [section] key: reason"
local function config_error(file, section, key, reason)
    if key then
        fatal(string.format("%s: [%s] %s: %s", file, section, key, reason))
    end
    fatal(string.format("%s: [%s]: %s", file, section, reason))
end
M.config_error = config_error

local function first_line(s)
    s = tostring(s)
    return (s:gsub("\n%s*", " "))
end

--- Configure logging from --debug and an optional [logging] section:
---   level = INFO|DEBUG|…    the root level (--debug forces DEBUG)
---   format = auto|json|text
---   logger.NAME = LEVEL     the level of logger NAME and its children
function M.configure_logging(file, debug)
    local section = file:section("logging", true)
    local function level_of(key, value)
        local ok, lvl = pcall(log.level_from_name, value)
        if not ok then config_error(file.path, "logging", key, first_line(lvl)) end
        return lvl
    end
    if section then
        for key, value in pairs(section) do
            if key == "level" then
                log.set_level("", level_of(key, value))
            elseif key == "format" then
                local f = ({ auto = log.FORMAT_AUTO, json = log.FORMAT_JSON, text = log.FORMAT_TEXT })[value:lower()]
                if not f then
                    config_error(file.path, "logging", key,
                        "expected auto, json or text, got " .. require("baseplate.lib.config").quote(value))
                end
                log.set_format(f)
            elseif key:sub(1, 7) == "logger." and #key > 7 then
                log.set_level(key:sub(8), level_of(key, value))
            else
                config_error(file.path, "logging", key, "unknown key (expected level, format or logger.NAME)")
            end
        end
    end
    if debug then log.set_level("", log.DEBUG) end
end

--- Split "module:callable" (callable defaulting to `default_name`).
local function split_factory(spec, default_name)
    local mod, fn = spec:match("^%s*([%w_%.%-]+)%s*:%s*([%w_%.]+)%s*$")
    if mod then return mod, fn end
    mod = spec:match("^%s*([%w_%.%-]+)%s*$")
    if mod then return mod, default_name end
    return nil
end

--- Find a factory. Returns {kind="lua", fn=function} or {kind="c", path=, symbol=}.
--- Raises a plain string reason on failure.
function M.load_factory(spec, default_name)
    local modname, fname = split_factory(spec, default_name)
    if not modname then
        error("expected 'module:callable', got " .. require("baseplate.lib.config").quote(spec), 0)
    end
    local so
    if not (package.loaded[modname] or package.preload[modname]
            or package.searchpath(modname, package.path)) then
        so = package.searchpath(modname, package.cpath)
        if so and C.bp_module_is_baseplate(so) == 1 then
            return { kind = "c", path = so, symbol = fname, name = modname }
        end
    end
    local ok, mod = pcall(require, modname)
    if not ok then
        local msg = tostring(mod)
        if msg:find("^module '[^']*' not found") then
            error("no module named '" .. modname .. "' (searched package.path and package.cpath,"
                .. " starting with the current directory)", 0)
        end
        error("cannot load module '" .. modname .. "': " .. first_line(msg), 0)
    end
    local fn = type(mod) == "table" and mod[fname] or nil
    local mt = type(fn) == "table" and getmetatable(fn)
    if type(fn) ~= "function" and not (mt and mt.__call) then
        error("module '" .. modname .. "' has no callable '" .. fname .. "'", 0)
    end
    return { kind = "lua", fn = fn, name = modname }
end

local is_configuration_error = require("baseplate.lib.config").is_configuration_error

local function describe_error(err)
    if is_configuration_error(err) then
        return err.key, tostring(err.reason)
    end
    return nil, runtime.message_of(err)
end

--- The section `section_name` and the factory its `factory` key names;
--- every failure is a start-up error naming file, section and key.
--- Returns factory, section table, factory spec.
function M.section_factory(file, section_name, default_name)
    local section = file:section(section_name)
    if not section then
        fatal(string.format("%s: no section [%s]", file.path, section_name))
    end
    local spec = section.factory
    if not spec or spec == "" then
        config_error(file.path, section_name, "factory", "no value specified")
    end
    local ok, factory = pcall(M.load_factory, spec, default_name)
    if not ok then config_error(file.path, section_name, "factory", runtime.message_of(factory)) end
    return factory, section, spec
end

--- Build the application from [app:NAME].
function M.make_app(file, section_name)
    local factory, app_config, spec = M.section_factory(file, section_name, "make_app")
    local ok, app
    if factory.kind == "c" then
        app = http.app(app_config)
        local rc = C.bp_module_run_factory(factory.path, factory.symbol, app.c,
            file:section_ptr(section_name), core.errbuf, core.errbuf_size)
        if rc ~= 0 then
            config_error(file.path, section_name, "factory", spec .. ": " .. core.errmsg())
        end
    else
        local tb
        ok, app = xpcall(factory.fn, function(e)
            tb = debug.traceback(tostring(e), 2)
            return e
        end, app_config)
        if not ok then
            local key, reason = describe_error(app)
            if key then config_error(file.path, section_name, key, reason) end
            log.get_logger("baseplate.server"):debug("%s", tb or "")
            config_error(file.path, section_name, "factory", spec .. " failed: " .. first_line(reason))
        end
    end
    if app == nil then
        config_error(file.path, section_name, "factory", spec .. " returned nil, expected an application")
    end
    return app, app_config, spec
end

--- The server module's word on the app (`accepts_app(app)`: true, or
--- false and what it expects); a module without it takes any app.
function M.check_app(file, section_name, spec, app, server_module)
    local accepts = type(server_module) == "table" and server_module.accepts_app
    if not accepts then return end
    local ok, expected = accepts(app)
    if not ok then
        config_error(file.path, section_name, "factory", spec .. " returned " .. type(app)
            .. ", expected " .. tostring(expected))
    end
end

--- Load the server factory from [server:NAME].
function M.load_server(file, section_name)
    local factory, server_config, spec = M.section_factory(file, section_name, "make_server")
    if factory.kind ~= "lua" then
        config_error(file.path, section_name, "factory", spec .. " is a C module; servers are Lua modules")
    end
    return factory.fn, server_config, package.loaded[factory.name]
end

--- Whether the server factory's module serves on a listening socket
--- (`uses_listener = false`: a server with none, such as a queue consumer).
local function uses_listener(server_module)
    return not (type(server_module) == "table" and server_module.uses_listener == false)
end

local LISTEN_REUSEPORT = 1 -- BP_LISTEN_REUSEPORT

--- Bind the listening socket ("host:port", "[::1]:port" or a UNIX path).
--- `share`: with SO_REUSEPORT (our own workers, or `reuse_port = true`);
--- else a port that another socket holds is refused.
function M.bind(endpoint, share)
    local l = C.bp_listener_open(endpoint, 0, share and LISTEN_REUSEPORT or 0, core.errbuf, core.errbuf_size)
    if l == nil then fatal(core.errmsg()) end
    return ffi.gc(l, C.bp_listener_free)
end

local SIGTERM, SIGUSR1 = 15, 10
local code_cell, signal_cell = ffi.new("int[1]"), ffi.new("int[1]")

local function start_wait(waiter)
    local rc = C.bp_worker_wait(waiter)
    return rc
end

-- How a worker ended, for the log.
local function describe_exit(code, signum)
    if signum ~= 0 then return "was killed by " .. ffi.string(C.bp_signal_name(signum)) end
    return "exited with status " .. code
end

M.RESTART_BACKOFF_MAX = 30 -- seconds between restarts of a worker that keeps crashing
M.STARTUP_FAILURES_MAX = 3 -- workers failing before ready, in a row, before giving up

--- Run `n` worker processes on the shared `listener` and supervise them
--- (docs/serve.md "Worker processes"):
--- - a worker that dies after it was ready (serving) is replaced, at once
---   the first time, then after a delay that doubles with each further
---   crash in quick succession (up to RESTART_BACKOFF_MAX seconds);
--- - workers that die before they are ready STARTUP_FAILURES_MAX times in a
---   row (the application cannot start) make the supervisor give up;
--- - SIGTERM, SIGUSR2 and SIGINT stop every worker gracefully (SIGINT is
---   passed on as SIGTERM: from a terminal each worker has had the Ctrl-C
---   already, and a second SIGINT would make it exit at once); the
---   supervisor exits once they all have; SIGUSR1 is passed on.
--- Each worker is the same command line run afresh, with the socket named by
--- BASEPLATE_WORKER_FD.
function M.supervise(n, listener, admin_settings, fail)
    local slog = log.get_logger("baseplate.server")
    local children, count = {}, 0
    -- Each worker records its metrics into a slot of the shared memory
    -- (BASEPLATE_WORKER_SLOT); a dead worker's slot is folded into the
    -- retired totals before the next worker takes it.
    local free_slots = {}
    for i = n, 1, -1 do free_slots[#free_slots + 1] = i end
    local startup_failures = 0
    local crashes, last_crash = 0, -math.huge
    local wanted = n -- workers that should be running or starting
    local stopping = false

    local fd = listener and listener.shared_fd and C.bp_listener_fd(listener.c) or -1
    local function spawn_worker()
        local slot = table.remove(free_slots)
        C.setenv("BASEPLATE_WORKER_SLOT", tostring(slot), 1)
        local pid = C.bp_worker_spawn(fd)
        if pid < 0 then
            free_slots[#free_slots + 1] = slot
            slog:error("cannot start a worker: %s", core.strerror(pid))
            return false
        end
        children[pid] = { started = runtime.now(), ready = false, slot = slot }
        count = count + 1
        return true
    end

    local function stop_all(signum)
        for pid in pairs(children) do C.bp_process_signal(pid, signum) end
    end

    -- A replacement after `delay` seconds (a coroutine of its own, so the
    -- supervisor goes on reaping meanwhile).
    local function respawn_later(delay)
        runtime.spawn(function()
            if delay > 0 then runtime.sleep(delay) end
            if not stopping and count < wanted and not spawn_worker() then
                -- cannot fork now (out of processes, memory): try again
                respawn_later(math.min(math.max(delay * 2, 1), M.RESTART_BACKOFF_MAX))
            end
        end)
    end

    if listener then
        slog:info("Supervising %d workers on %s, PID:%d", n,
            ffi.string(C.bp_listener_describe(listener.c)), M.pid())
    else
        slog:info("Supervising %d workers, PID:%d", n, M.pid())
    end
    if admin_settings then
        local admin = require("baseplate.server.admin")
        admin.serve(admin_settings, admin.supervisor_source(function()
            local list = {}
            for pid, child in pairs(children) do
                if child.ready then list[#list + 1] = { slot = child.slot, pid = pid } end
            end
            table.sort(list, function(x, y) return x.slot < y.slot end)
            return list
        end), fail)
    end
    for _ = 1, n do
        -- (cannot fork now: out of processes or memory; try again later)
        if not spawn_worker() then respawn_later(1) end
    end

    runtime.add_signal_handler(function(signame)
        if signame == "SIGUSR1" then
            stop_all(SIGUSR1)
            return
        end
        if stopping then return end
        stopping = true
        M.SERVER_STATE.shutting_down = true
        slog:info("%s received: stopping %d workers", signame, count)
        stop_all(signame == "SIGUSR2" and 12 or SIGTERM)
        -- no worker to wait for: nothing will wake the loop below
        if count == 0 then C.bp_loop_stop() end
    end)

    local function on_exit(pid, child, code, signum)
        children[pid] = nil
        count = count - 1
        if admin_settings then C.bp_prom_retire(child.slot) end
        free_slots[#free_slots + 1] = child.slot
        if stopping then return end
        local how = describe_exit(code, signum)
        if not child.ready then
            startup_failures = startup_failures + 1
            slog:error("worker PID:%d %s before it was ready", pid, how)
            if startup_failures >= M.STARTUP_FAILURES_MAX then
                slog:error("workers keep exiting at start-up; giving up")
                stopping = true
                M.supervisor_failed = true
                stop_all(SIGTERM)
                return
            end
            respawn_later(0.1 * startup_failures)
            return
        end
        -- A worker that served and died: always replaced, with backoff
        -- when crashes come in quick succession.
        local now = runtime.now()
        if now - last_crash > 2 * M.RESTART_BACKOFF_MAX then crashes = 0 end
        crashes = crashes + 1
        last_crash = now
        local delay = crashes == 1 and 0 or math.min(0.5 * 2 ^ (crashes - 2), M.RESTART_BACKOFF_MAX)
        slog:warning("worker PID:%d %s after %.1fs; starting a new one%s", pid, how,
            now - child.started, delay > 0 and string.format(" in %gs", delay) or "")
        respawn_later(delay)
    end

    while true do
        while true do
            local pid = C.bp_worker_next_ready()
            if pid == 0 then break end
            local child = children[pid]
            if child then
                child.ready = true
                startup_failures = 0
            end
        end
        while true do
            local pid = C.bp_worker_reap(code_cell, signal_cell)
            if pid == 0 then break end
            local child = children[pid]
            if child then on_exit(pid, child, code_cell[0], signal_cell[0]) end
        end
        if stopping and count == 0 then
            if M.supervisor_failed then fatal("workers keep exiting at start-up (see their errors above)") end
            C.bp_loop_stop()
            return
        end
        runtime.await(start_wait) -- read and reap first, then wait: nothing goes unseen
    end
end

--- baseplate-serve's main (run by the core in a coroutine).
--- opts: config_file, app_name, server_name, bind, workers, debug, reload
function M.serve(opts)
    local ok, file = pcall(ini.load, opts.config_file)
    if not ok then fatal(runtime.message_of(file)) end
    M.state.file = file
    M.configure_logging(file, opts.debug)

    local app_section = "app:" .. (opts.app_name or "main")
    local server_section = "server:" .. (opts.server_name or "main")
    if not file:section(server_section) then
        fatal(string.format("%s: no section [%s]", file.path, server_section))
    end
    local einhorn = M.einhorn_worker()
    local io_env = os.getenv("BASEPLATE_SERVER_IO")
    if io_env and io_env ~= "" and io_env ~= "auto" and io_env ~= "uring" and io_env ~= "epoll" then
        local quote = require("baseplate.lib.config").quote
        fatal("BASEPLATE_SERVER_IO: expected auto, uring or epoll, got " .. quote(io_env))
    end
    local is_worker = os.getenv("BASEPLATE_WORKER") == "1"
    local worker_fd = is_worker and tonumber(os.getenv("BASEPLATE_WORKER_FD") or "") or nil
    local listener
    if einhorn then
        listener = M.einhorn_listener()
    elseif worker_fd then
        listener = M.inherited_listener(worker_fd)
    end
    local shared = einhorn or worker_fd ~= nil
    local reuse_port = M.reuse_port(file, server_section)
    local workers = (einhorn or is_worker) and 1 or M.workers(file, server_section, opts.workers)
    -- The admin listener (metrics.prometheus.bind): docs/prometheus.md.
    local function admin_fail(key, reason) config_error(file.path, server_section, key, reason) end
    local admin_settings = require("baseplate.server.admin").settings(file:section(server_section), admin_fail)
    if admin_settings and admin_settings.introspection then runtime.set_track_ages(true) end
    if admin_settings and einhorn then
        -- (each Einhorn worker is started by Einhorn: nobody could sum them)
        admin_fail("metrics.prometheus.bind", "not available under Einhorn (use --workers)")
    end
    if workers > 1 and opts.reload then
        fatal("--reload cannot be combined with more than one worker (it is for development)")
    end
    if workers > 1 then
        -- The supervisor checks what it can without running the app,
        -- reserves the address, and starts the workers; each starts like a
        -- single process would, listening on its own SO_REUSEPORT socket
        -- (the kernel spreads connections). A UNIX socket is shared instead.
        M.section_factory(file, app_section, "make_app")
        local _, _, server_module = M.load_server(file, server_section)
        local endpoint = opts.bind or "127.0.0.1:9090"
        local reserved
        if not uses_listener(server_module) then
            reserved = nil
        elseif endpoint:find("/", 1, true) then
            reserved = { c = M.bind(endpoint), shared_fd = true }
        else
            local l = C.bp_listener_reserve(endpoint, reuse_port and LISTEN_REUSEPORT or 0,
                core.errbuf, core.errbuf_size)
            if l == nil then fatal(core.errmsg()) end
            reserved = { c = ffi.gc(l, C.bp_listener_free) }
        end
        M.state.reserved = reserved
        if admin_settings then require("baseplate.server.admin").init(workers, admin_settings, admin_fail) end
        M.supervise(workers, reserved, admin_settings, admin_fail)
        return nil
    end
    local app, _, app_spec = M.make_app(file, app_section)
    M.state.app = app
    local make_server, server_config, server_module = M.load_server(file, server_section)
    M.check_app(file, app_section, app_spec, app, server_module)
    local admin, under_supervisor
    if admin_settings then
        admin = require("baseplate.server.admin")
        under_supervisor = is_worker and admin.attach(admin_fail)
        if not under_supervisor then admin.init(1, admin_settings, admin_fail) end
        local ok3, err3 = pcall(admin.observe, app)
        if not ok3 then admin_fail("metrics.prometheus.bind", runtime.message_of(err3)) end
    end
    if uses_listener(server_module) then
        listener = listener or M.bind(opts.bind or "127.0.0.1:9090", is_worker or reuse_port)
    else
        listener = nil
    end
    M.state.listener = listener

    -- Workers and Einhorn share one socket between processes.
    opts.shared_socket = shared
    local ok2, server = pcall(make_server, server_config, listener, app, opts)
    if not ok2 then
        local key, reason = describe_error(server)
        config_error(file.path, server_section, key or "factory", first_line(reason))
    end
    M.state.server = server
    if admin then
        admin.start_worker(server, app, under_supervisor)
        if not under_supervisor then admin.serve(admin_settings, admin.local_source, admin_fail) end
    end
    runtime.add_signal_handler(function(signame)
        if signame ~= "SIGUSR1" then M.shutdown(server, signame) end
    end)
    if listener then
        log.get_logger("baseplate.server"):info("Listening on %s, PID:%d",
            ffi.string(C.bp_listener_describe(listener)), M.pid())
    else
        log.get_logger("baseplate.server"):info("Serving (no listening socket), PID:%d", M.pid())
    end
    if einhorn then M.einhorn_ack() end
    if is_worker then C.bp_worker_notify_ready() end
    if opts.reload then M.watch_for_changes(server) end
    return nil
end

local mtime_cell = ffi.new("double[1]")
local path_buf = ffi.new("char[4096]")

local function newest_lua_file()
    C.bp_newest_mtime(".", ".lua", mtime_cell, path_buf, 4096)
    return mtime_cell[0], ffi.string(path_buf)
end

--- --reload (development): once a second, look for a Lua file under the
--- working directory newer than at start-up; on a change, shut down
--- without drain_time and start again with the same command line.
function M.watch_for_changes(server)
    local slog = log.get_logger("baseplate.server")
    local base = newest_lua_file()
    slog:info("--reload: watching Lua files under %s", os.getenv("PWD") or ".")
    runtime.spawn(function()
        while not M.SERVER_STATE.shutting_down do
            runtime.sleep(1)
            local m, path = newest_lua_file()
            if m > base and not M.SERVER_STATE.shutting_down then
                slog:info("%s changed; reloading", path)
                C.bp_runtime_request_restart()
                M.shutdown(server, "reload", true)
                return
            end
        end
    end)
end

--- The graceful shutdown (docs/serve.md): SERVER_STATE.shutting_down, wait
--- drain_time while still serving, stop accepting, let in-flight requests
--- finish up to stop_timeout, then end the loop — whatever else the
--- application still has scheduled.
function M.shutdown(server, signame, no_drain)
    local slog = log.get_logger("baseplate.server")
    if M.SERVER_STATE.shutting_down then return end
    M.SERVER_STATE.shutting_down = true
    local settings = server.settings or {}
    local drain, stop_timeout = settings.drain_time or 0, settings.stop_timeout or 10
    if no_drain then drain = 0 end
    slog:info("%s received: shutting down gracefully (drain_time %gs, stop_timeout %gs)",
        signame or "signal", drain, stop_timeout)
    if server.drain then server:drain() end
    runtime.spawn(function()
        if drain > 0 then runtime.sleep(drain) end
        local in_time = true
        if server.shutdown then
            in_time = server:shutdown(stop_timeout)
        elseif server.stop then
            server:stop()
        end
        if not in_time then
            slog:warning("stop_timeout (%gs) reached with requests still in flight; exiting", stop_timeout)
        end
        -- (the Sentry observer's queue: up to 2 seconds more to send it)
        local sentry = package.loaded["baseplate.observers.sentry"]
        if sentry and sentry.current then sentry.current:flush(2) end
        C.bp_loop_stop()
    end)
end

--- Einhorn (formats.md): a worker when getppid() is EINHORN_MASTER_PID.
function M.einhorn_worker()
    local master = tonumber(os.getenv("EINHORN_MASTER_PID") or "")
    return master ~= nil and master == ffi.C.getppid()
end

--- A listening socket handed down by a parent (Einhorn, or our supervisor).
function M.inherited_listener(fd, what)
    local l = C.bp_listener_from_fd(fd, core.errbuf, core.errbuf_size)
    if l == nil then fatal((what or "inherited socket") .. ": " .. core.errmsg()) end
    return ffi.gc(l, C.bp_listener_free)
end

--- The first socket Einhorn handed down (EINHORN_FD_0).
function M.einhorn_listener()
    local count = tonumber(os.getenv("EINHORN_FD_COUNT") or "")
    local fd = tonumber(os.getenv("EINHORN_FD_0") or "")
    if not count or count < 1 or not fd then
        fatal("running under Einhorn, but EINHORN_FD_COUNT/EINHORN_FD_0 name no socket")
    end
    return M.inherited_listener(fd, "Einhorn socket")
end

--- Tell the Einhorn master this worker is ready (the manual ACK).
function M.einhorn_ack()
    local path = os.getenv("EINHORN_SOCK_PATH")
    if not path or path == "" then
        log.get_logger("baseplate.server"):warning("EINHORN_SOCK_PATH is not set: cannot ACK")
        return
    end
    if C.bp_einhorn_ack(path, M.pid(), core.errbuf, core.errbuf_size) ~= 0 then
        log.get_logger("baseplate.server"):error("Einhorn ACK failed: %s", core.errmsg())
    end
end

--- [server] reuse_port: share the port with other processes that ask the
--- same (SO_REUSEPORT); off by default, so that a second server started on
--- a port already served is refused instead of taking part of its traffic.
function M.reuse_port(file, section)
    local text = (file:section(section) or {}).reuse_port
    if text == nil or text == "" then return false end
    local ok, v = pcall(require("baseplate.lib.config").Boolean, text)
    if not ok then config_error(file.path, section, "reuse_port", runtime.message_of(v)) end
    return v
end

--- The number of worker processes: --workers, else [server] workers, else 1.
function M.workers(file, section, flag)
    local text = flag or (file:section(section) or {}).workers
    if text == nil or text == "" then return 1 end
    local n = tonumber(text)
    if not n or n < 1 or n ~= math.floor(n) or n > 1024 then
        local shown = require("baseplate.lib.config").quote(text)
        if flag then fatal("--workers: expected a whole number from 1 to 1024, got " .. shown) end
        config_error(file.path, section, "workers", "expected a whole number from 1 to 1024, got " .. shown)
    end
    return n
end

function M.pid()
    return ffi.C.getpid()
end

return M
