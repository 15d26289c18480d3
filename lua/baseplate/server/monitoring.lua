-- Process-level runtime metrics (docs/observers.md "Runtime metrics").
--
-- Every monitoring.interval (10 seconds, aligned to the wall clock) a server
-- whose app has a Baseplate with a metrics observer sends gauges prefixed
-- "runtime" and tagged hostname and PID: open_connections and
-- active_requests (monitoring.concurrency), the Lua heap
-- (monitoring.gc.stats), and what the context factories report
-- (monitoring.connection_pool, tagged client=NAME). monitoring.blocked_hub
-- times every stall of the event loop longer than the given timespan.
local ffi = require("ffi")
local runtime = require("baseplate.runtime")
local log = require("baseplate.log")
local metrics = require("baseplate.lib.metrics")
require("baseplate.server") -- declares getpid

local M = {}
local C_monotonic = ffi.C.bp_monotonic
local mlog = log.get_logger("baseplate.server.monitoring")

local function hostname()
    local f = io.open("/proc/sys/kernel/hostname")
    local h = f and f:read("*l")
    if f then f:close() end
    return (h and h ~= "") and h or "localhost"
end

-- A batch whose metrics all carry `base` tags (a list of {k, v}) first.
local Tagged = {}
Tagged.__index = Tagged
for _, kind in ipairs({ "counter", "timer", "gauge", "histogram" }) do
    Tagged[kind] = function(self, name, tags)
        local t = {}
        for i = 1, #self.base do t[i] = self.base[i] end
        if tags then
            local keys = {}
            for k in pairs(tags) do keys[#keys + 1] = k end
            table.sort(keys)
            for _, k in ipairs(keys) do t[#t + 1] = { k, tags[k] } end
        end
        return self.batch[kind](self.batch, name, t)
    end
end
function Tagged:flush() return self.batch:flush() end

local function report(server, bp, client, settings, base)
    local batch = client:batch()
    local tagged = setmetatable({ batch = batch, base = base }, Tagged)
    local mon = settings.monitoring
    if mon.concurrency then
        tagged:gauge("open_connections"):replace(server:connections())
        tagged:gauge("active_requests"):replace(server:active_requests())
    end
    if mon.gc.stats then
        tagged:gauge("lua.memory_bytes"):replace(math.floor(collectgarbage("count") * 1024))
    end
    if mon.connection_pool then
        for name, item in pairs(bp._context) do
            if type(item) == "table" and type(item.report_runtime_metrics) == "function" then
                local t = {}
                for i = 1, #base do t[i] = base[i] end
                t[#t + 1] = { "client", name }
                local ok, err = pcall(item.report_runtime_metrics, item,
                    setmetatable({ batch = batch, base = t }, Tagged))
                if not ok then mlog:error("report_runtime_metrics of %s failed: %s", name, tostring(err)) end
            end
        end
    end
    batch:flush()
end

-- Time stalls of the loop: a timer that should fire every `tick` seconds.
local function watch_loop(server, w)
    local client, threshold, base = w.client, w.threshold, w.base
    local tick = math.min(threshold / 2, 0.05)
    local timer = client:timer("blocked_hub", base)
    while not server.stopped do
        local t0 = C_monotonic()
        runtime.sleep(tick)
        local lag = C_monotonic() - t0 - tick
        if lag >= threshold then
            mlog:warning("event loop blocked for %.0f ms", lag * 1000)
            timer:send(lag)
        end
    end
end

function M.start(server, app, settings)
    local bp = app.baseplate
    local client = bp and bp.metrics_transport and metrics.client(bp.metrics_transport, "runtime")
    if not client then
        mlog:info("No metrics client configured. Server metrics will not be sent.")
        return
    end
    local base = { { "hostname", hostname() }, { "PID", tostring(ffi.C.getpid()) } }
    local interval = settings.monitoring.interval
    runtime.spawn(function()
        while not server.stopped do
            local delay = interval >= 1 and (interval - os.time() % interval) or interval
            -- in steps, so that a stopped server does not wait for the report
            local until_t = C_monotonic() + delay
            while not server.stopped do
                local left = until_t - C_monotonic()
                if left <= 0 then break end
                runtime.sleep(math.min(left, 0.25))
            end
            if server.stopped then break end
            local ok, err = pcall(report, server, bp, client, settings, base)
            if not ok then mlog:error("runtime metrics failed: %s", tostring(err)) end
        end
    end)
    if settings.monitoring.blocked_hub then
        runtime.spawn(watch_loop, server,
            { client = client, threshold = settings.monitoring.blocked_hub, base = base })
    end
end

return M
