-- Kafka consumer factories for the queue-consumer server
-- (baseplate.server.queue_consumer): Baseplate.py's InOrderConsumerFactory
-- and FastConsumerFactory (docs/consumers.md#kafka).
--
--   local kafka = require("baseplate.frameworks.queue_consumer.kafka")
--   return kafka.InOrderConsumerFactory.new({
--       name = "kafka_consumer.link_consumer_v0", baseplate = bp,
--       bootstrap_servers = "127.0.0.1:9092", group_id = "service.link_consumer",
--       topics = { "new_links", "edited_links" },
--       handler_fn = function(context, data, message) ... end,
--   })
--
-- librdkafka (src/clients/kafka.c) consumes on its own threads and wakes
-- the loop through a pipe; the pump coroutine takes batches of
-- kafka_consume_batch_size messages, and the handler coroutines run each in
-- its own server span.
local ffi = require("ffi")
local core = require("baseplate.core")
local runtime = require("baseplate.runtime")
local log = require("baseplate.log")
local config = require("baseplate.lib.config")
local span_mod = require("baseplate.span")
local qc = require("baseplate.server.queue_consumer")
local kcore = require("baseplate.clients.kafka_core")
local cjson = require("cjson")

local C = core.C
local ffi_string, tonumber, tostring, type, pairs, ipairs, pcall, error, setmetatable =
    ffi.string, tonumber, tostring, type, pairs, ipairs, pcall, error, setmetatable

local M = {}
local klog = log.get_logger("baseplate.frameworks.queue_consumer.kafka")

-- How long a revoke waits for the messages being handled on the revoked
-- partitions, and a close for the group to be left (seconds).
M.REVOKE_TIMEOUT = 30
-- The longest the pump sleeps without asking librdkafka (it must be asked
-- now and then: max.poll.interval.ms).
local IDLE_POLL = 0.5

--------------------------------------------------------------------------------
-- Trace context from message headers (the HTTP header names, formats.md)

local TRACE_HEADERS = { ["x-trace"] = "trace_id", ["x-span"] = "span_id", ["x-parent"] = "parent_id",
                        ["x-sampled"] = "sampled", ["x-flags"] = "flags" }

local name_cell = ffi.new("const char *[1]")
local value_cell = ffi.new("const char *[1]")
local len_cell = ffi.new("size_t[1]")

local function headers_of(m)
    local h = {}
    for i = 0, m.nheaders - 1 do
        if C.bp_kafka_header(m, i, name_cell, value_cell, len_cell) == core.OK then
            local v = value_cell[0]
            h[ffi_string(name_cell[0])] = v ~= nil and ffi_string(v, len_cell[0]) or ""
        end
    end
    return h
end

local function trace_info_of(headers)
    if not headers then return nil end
    local t = {}
    for k, v in pairs(headers) do
        local f = TRACE_HEADERS[k:lower()]
        if f then t[f] = v end
    end
    if not t.trace_id or not t.span_id then return nil end
    local flags = t.flags and tonumber(t.flags) or nil
    local ok, ti = pcall(span_mod.TraceInfo.from_upstream, t.trace_id, t.parent_id, t.span_id,
        t.sampled ~= nil and t.sampled == "1" or nil, flags)
    if not ok then
        klog:debug("ignoring invalid trace headers: %s", tostring(ti))
        return nil
    end
    return ti
end

--------------------------------------------------------------------------------
-- Options

local function check_options(kind, o)
    if type(o) ~= "table" then error(kind .. ".new: expected a table of options", 3) end
    local name = o.name
    if type(name) ~= "string" or not name:match("^kafka_consumer%.[%w_%-%.]+$") then
        error(kind .. ".new: name must look like 'kafka_consumer.{group_name}', got " .. tostring(name), 3)
    end
    if type(o.group_id) ~= "string" or not o.group_id:match("^[^.]+%.[^.].*$") then
        error(kind .. ".new: group_id must look like '{service_name}.{group_name}', got "
            .. tostring(o.group_id), 3)
    end
    if type(o.bootstrap_servers) ~= "string" or o.bootstrap_servers == "" then
        error(kind .. ".new: bootstrap_servers: a comma-delimited list of brokers is required", 3)
    end
    local topics = o.topics
    if type(topics) == "string" then
        local t = {}
        for s in topics:gmatch("[^,%s]+") do t[#t + 1] = s end
        topics = t
    end
    if type(topics) ~= "table" or #topics == 0 then error(kind .. ".new: topics: at least one topic", 3) end
    if type(o.handler_fn) ~= "function" then error(kind .. ".new: handler_fn must be a function", 3) end
    if o.baseplate == nil then error(kind .. ".new: baseplate is required", 3) end
    local batch = o.kafka_consume_batch_size or 1
    if type(batch) ~= "number" or batch < 1 or batch > 100000 or batch % 1 ~= 0 then
        error(kind .. ".new: kafka_consume_batch_size must be a whole number from 1 to 100000", 3)
    end
    if o.message_unpack_fn ~= nil and type(o.message_unpack_fn) ~= "function" then
        error(kind .. ".new: message_unpack_fn must be a function", 3)
    end
    if o.kafka_config ~= nil and type(o.kafka_config) ~= "table" then
        error(kind .. ".new: kafka_config must be a table of librdkafka properties", 3)
    end
    return topics, batch
end

--- The factory options from an app config's `{prefix}` keys
--- (kafka.bootstrap_servers, kafka.group_id, kafka.topics,
--- kafka.consume_batch_size, kafka.librdkafka.*): a table to give to
--- new() with name, baseplate and handler_fn added.
function M.options_from_config(app_config, prefix)
    prefix = prefix or "kafka."
    local cfg = config.parse_config_at(app_config, prefix, {
        bootstrap_servers = config.String,
        group_id = config.String,
        topics = config.TupleOf(config.String),
        consume_batch_size = config.Optional(config.Integer, 1),
    })
    -- (librdkafka's property names have dots of their own: taken as they are)
    local pass = {}
    local lp = prefix .. "librdkafka."
    for k, v in pairs(app_config) do
        if type(k) == "string" and k:sub(1, #lp) == lp and #k > #lp then pass[k:sub(#lp + 1)] = v end
    end
    return { bootstrap_servers = cfg.bootstrap_servers, group_id = cfg.group_id, topics = cfg.topics,
             kafka_consume_batch_size = cfg.consume_batch_size, kafka_config = pass }
end

--------------------------------------------------------------------------------
-- The factory

local Factory = {}
Factory.__index = Factory

local function new_factory(kind, in_order, o)
    local topics, batch = check_options(kind, o)
    local props = {}
    for k, v in pairs(o.kafka_config or {}) do props[k] = tostring(v) end
    props["bootstrap.servers"] = o.bootstrap_servers
    props["group.id"] = o.group_id
    if props["auto.offset.reset"] == nil then props["auto.offset.reset"] = "earliest" end
    -- (bounded waits when every broker is down: a close gives up after this)
    if props["socket.timeout.ms"] == nil then props["socket.timeout.ms"] = "10000" end
    local conf = kcore.conf_array(props)
    local k = C.bp_kafka_consumer_new(conf.arr, in_order and 1 or 0, core.errbuf, core.errbuf_size)
    if k == nil then error(kind .. ".new: " .. core.errmsg(), 2) end
    local self = setmetatable({
        kind = kind, in_order = in_order, name = o.name, baseplate = o.baseplate, bp = o.baseplate,
        topics = topics, batch_size = batch, handler_fn = o.handler_fn,
        message_unpack_fn = o.message_unpack_fn or cjson.decode,
        health_check_fn = o.health_check_fn,
        k = ffi.gc(k, C.bp_kafka_free),
        partitions = {}, -- "topic\0partition" -> its state (in-order)
        counts = { handled = 0, failed = 0, invalid = 0, skipped = 0 },
    }, Factory)
    return self
end

--- Baseplate.py's InOrderConsumerFactory.new: one message at a time per
--- partition, each offset committed after its message was handled.
M.InOrderConsumerFactory = {
    new = function(o) return new_factory("InOrderConsumerFactory", true, o) end,
}
--- Baseplate.py's FastConsumerFactory.new: concurrent handling; librdkafka
--- commits what was consumed in the background.
M.FastConsumerFactory = {
    new = function(o) return new_factory("FastConsumerFactory", false, o) end,
}

--------------------------------------------------------------------------------
-- Partition state (in-order): a FIFO lock, and whether it was revoked

local function part_key(topic, partition) return topic .. "\0" .. partition end

local function new_part(topic, partition)
    return { topic = topic, partition = partition, busy = false, waiters = {}, revoked = false,
             failed = false }
end

local function start_lock_wait(id, ps)
    ps.waiters[#ps.waiters + 1] = id
    return core.AGAIN
end

local function lock(ps)
    while ps.busy do runtime.await(start_lock_wait, ps) end
    ps.busy = true
end

local function unlock(ps)
    ps.busy = false
    local w = table.remove(ps.waiters, 1)
    if w then runtime.wake(w, core.OK) end
end

--------------------------------------------------------------------------------
-- The pump

local Pump = {}
Pump.__index = Pump
local unhandled

function Factory:build_pump_worker(queue)
    return setmetatable({ f = self, queue = queue, stopped = false,
                          msgs = ffi.new("bp_kafka_message_t[?]", self.batch_size) }, Pump)
end

local function start_wait(id, k)
    return C.bp_kafka_wait(k, id)
end

-- Wait (up to `seconds`) until librdkafka has something for us.
local function wait_queue(f, seconds)
    local rc = runtime.await_timeout(seconds, start_wait, f.k)
    if rc == core.ETIMEDOUT then C.bp_kafka_unwait(f.k) end
    return rc
end

local count_cell = ffi.new("int[1]")
local topic_cell = ffi.new("const char *[1]")
local part_cell = ffi.new("int32_t[1]")

local function rebalance_parts(k, n)
    local list = {}
    for i = 0, n - 1 do
        if C.bp_kafka_rebalance_partition(k, i, topic_cell, part_cell) == core.OK then
            list[#list + 1] = { ffi_string(topic_cell[0]), tonumber(part_cell[0]) }
        end
    end
    return list
end

-- Serve the pending rebalances: an assignment starts fresh partition
-- states; a revoke stops the partitions (what is queued for them is
-- abandoned, not committed: their next owner reads it from the committed
-- offset), waits for the messages being handled on them (whose offsets are
-- committed as usual), then gives them up.
local function serve_rebalances(f, only_assign)
    local k = f.k
    while true do
        local kind = C.bp_kafka_rebalance_pending(k, count_cell)
        if kind == 0 or (only_assign and kind ~= kcore.ASSIGN) then return end
        local parts = rebalance_parts(k, count_cell[0])
        if kind == kcore.ASSIGN then
            for _, p in ipairs(parts) do
                local key = part_key(p[1], p[2])
                local old = f.partitions[key]
                if old then old.revoked = true end
                f.partitions[key] = new_part(p[1], p[2])
            end
            klog:info("%s: assigned %d partition(s)", f.name, #parts)
        else
            local held = {}
            for _, p in ipairs(parts) do
                local key = part_key(p[1], p[2])
                local ps = f.partitions[key]
                if ps then
                    ps.revoked = true
                    f.partitions[key] = nil
                    held[#held + 1] = ps
                end
            end
            local deadline = runtime.now() + M.REVOKE_TIMEOUT
            for _, ps in ipairs(held) do
                while (ps.busy or #ps.waiters > 0) and runtime.now() < deadline do runtime.sleep(0.005) end
            end
            klog:info("%s: revoked %d partition(s)", f.name, #parts)
        end
        C.bp_kafka_rebalance_done(k)
    end
end

-- Copy a batch into Lua messages and release it.
local function take_batch(f, msgs, n)
    local out = {}
    for i = 0, n - 1 do
        local m = msgs[i]
        local topic = ffi_string(m.topic)
        local partition = tonumber(m.partition)
        local ps
        if f.in_order then
            local key = part_key(topic, partition)
            ps = f.partitions[key]
            if not ps then
                ps = new_part(topic, partition)
                f.partitions[key] = ps
            end
        end
        out[i + 1] = {
            topic = topic, partition = partition, offset = tonumber(m.offset),
            timestamp = tonumber(m.timestamp),
            key = m.key ~= nil and ffi_string(m.key, m.key_len) or nil,
            value = m.payload ~= nil and ffi_string(m.payload, m.len) or nil,
            headers = m.nheaders > 0 and headers_of(m) or nil,
            _ps = ps,
        }
    end
    C.bp_kafka_release(msgs, n)
    return out
end

-- The fast consumer's messages from batch[first] on, consumed but never to
-- be handled (the server stops): their offsets are committed all the same,
-- so they are logged, as ranges of offsets per partition.
unhandled = function(f, batch, first)
    local ranges, order = {}, {}
    for i = first, #batch do
        local m = batch[i]
        local key = m.topic .. " [" .. m.partition .. "]"
        local r = ranges[key]
        if r and m.offset == r[#r][2] + 1 then
            r[#r][2] = m.offset
        elseif r then
            r[#r + 1] = { m.offset, m.offset }
        else
            ranges[key] = { { m.offset, m.offset } }
            order[#order + 1] = key
        end
    end
    if #order == 0 then return end
    local parts = {}
    for _, key in ipairs(order) do
        local list = {}
        for _, r in ipairs(ranges[key]) do
            list[#list + 1] = r[1] == r[2] and tostring(r[1]) or (r[1] .. "-" .. r[2])
        end
        parts[#parts + 1] = key .. " offsets " .. table.concat(list, ",")
    end
    klog:warning("%s: %d consumed message(s) not handled, their offsets committed all the same "
        .. "(the fast consumer): %s", f.name, #batch - first + 1, table.concat(parts, "; "))
end

function Pump:run()
    local f, queue, msgs = self.f, self.queue, self.msgs
    local n = #f.topics
    local arr = ffi.new("const char *[?]", n)
    for i, t in ipairs(f.topics) do arr[i - 1] = t end
    if C.bp_kafka_subscribe(f.k, arr, n, core.errbuf, core.errbuf_size) ~= core.OK then
        error(f.name .. ": " .. core.errmsg(), 0)
    end
    klog:info("%s: consuming %s as group member", f.name, table.concat(f.topics, ", "))
    while not self.stopped do
        local got = C.bp_kafka_consume(f.k, msgs, f.batch_size)
        if got < 0 then break end
        serve_rebalances(f, true)
        if got > 0 then
            local batch = take_batch(f, msgs, got)
            for i = 1, #batch do
                if not queue:put(batch[i]) then
                    -- (the server stops: what was not queued is not
                    -- committed by the in-order consumer, so it is read
                    -- again after a restart; the fast one commits it)
                    if not f.in_order then unhandled(f, batch, i) end
                    return
                end
            end
        end
        serve_rebalances(f, false)
        if got < f.batch_size and not self.stopped then wait_queue(f, IDLE_POLL) end
    end

end

function Pump:stop()
    self.stopped = true
    C.bp_kafka_unwait(self.f.k)
end

--- The messages queued but not handled at shutdown: not committed by the
--- in-order consumer, so the group reads them again; the fast consumer
--- commits what it consumed (Baseplate.py's FastConsumerFactory: librdkafka
--- stores each offset as it is consumed and commits it on closing), so they
--- are never handled, and it says which.
function Pump:give_back(messages)
    if self.f.in_order then
        klog:debug("%s: %d queued message(s) not handled; not committed", self.f.name, #messages)
    else
        unhandled(self.f, messages, 1)
    end
end

--- After the handlers finished: leave the group (committing what was
--- handled first), serving librdkafka until it is done or `timeout` passes.
function Pump:close(timeout)
    local f = self.f
    if f.closed then return true end
    f.closed = true
    local deadline = runtime.now() + math.max(timeout or 0, 1)
    if C.bp_kafka_consumer_close(f.k) ~= core.OK then return false end
    local msgs = self.msgs
    while C.bp_kafka_closed(f.k) == 0 and runtime.now() < deadline do
        local got = C.bp_kafka_consume(f.k, msgs, f.batch_size)
        if got > 0 then
            -- (none: the partitions were paused; were one handed out, the
            -- fast consumer would commit it unhandled, and says so)
            if f.in_order then C.bp_kafka_release(msgs, got) else unhandled(f, take_batch(f, msgs, got), 1) end
        end
        if got < 0 then break end
        for _, ps in pairs(f.partitions) do ps.revoked = true end
        serve_rebalances(f, false)
        if C.bp_kafka_closed(f.k) ~= 0 then break end
        wait_queue(f, math.min(0.1, math.max(deadline - runtime.now(), 0.001)))
    end
    local closed = C.bp_kafka_closed(f.k) ~= 0
    if not closed then klog:warning("%s: leaving the group did not finish in time", f.name) end
    return closed
end

--------------------------------------------------------------------------------
-- Handlers

local Handler = {}
Handler.__index = Handler

-- How long a handler waits for its commit to be answered (seconds).
M.COMMIT_TIMEOUT = 10

local function start_commit(id, k, msg)
    return C.bp_kafka_commit(k, msg.topic, msg.partition, msg.offset + 1, id)
end

function Factory:build_message_handler()
    return setmetatable({ f = self }, Handler)
end

-- The message's span: Baseplate.py's tags.
local function run_message(context, f, msg, state)
    local ok, data = pcall(f.message_unpack_fn, msg.value)
    if not ok then
        state.invalid = true
        klog:error("%s: skipping invalid message %s [%d] offset %d: %s", f.name, msg.topic, msg.partition,
            msg.offset, tostring(data))
        return
    end
    f.handler_fn(context, data, msg)
end

local function process(f, msg)
    local tags = { ["kafka.topic"] = msg.topic, ["kafka.partition"] = msg.partition,
                   ["kafka.offset"] = msg.offset, ["kafka.timestamp"] = msg.timestamp,
                   ["kafka.key"] = msg.key }
    local state = {}
    local ok, err = pcall(qc.handle_message, f.bp, f.name, trace_info_of(msg.headers), tags,
        run_message, f, msg, state)
    if state.invalid then f.counts.invalid = f.counts.invalid + 1 end
    return ok, err
end

function Handler:handle(msg)
    local f = self.f
    if not f.in_order then
        local ok, err = process(f, msg)
        if ok then
            f.counts.handled = f.counts.handled + 1
            return
        end
        -- As Baseplate.py's: the error stops the server (as a SIGTERM
        -- would); the offset was stored when the message was consumed and
        -- is committed on closing, so the message is not handled again.
        f.counts.failed = f.counts.failed + 1
        error(string.format("%s: handling %s [%d] offset %d failed; committed all the same (the fast "
            .. "consumer): %s", f.name, msg.topic, msg.partition, msg.offset, tostring(err)), 0)
    end
    local ps = msg._ps
    if ps.revoked or ps.failed or ps.blocked then
        f.counts.skipped = f.counts.skipped + 1
        return
    end
    lock(ps)
    if ps.revoked or ps.failed or ps.blocked then -- (while waiting)
        f.counts.skipped = f.counts.skipped + 1
        unlock(ps)
        return
    end
    local ok, err = process(f, msg)
    if ok then
        f.counts.handled = f.counts.handled + 1
        -- Committed before the partition's next message is handled (as
        -- Baseplate.py's commit(asynchronous=False)): a process that dies
        -- handles again only the message it was committing.
        local rc = runtime.await_timeout(M.COMMIT_TIMEOUT, start_commit, f.k, msg)
        if rc == core.ECANCELED then
            -- The group is rebalancing: handle nothing more here; if the
            -- partition comes back, reading resumes after this message.
            ps.blocked = true
        elseif rc ~= core.OK then
            klog:warning("%s: committing %s [%d] offset %d: %s", f.name, msg.topic, msg.partition,
                msg.offset + 1, rc == core.ETIMEDOUT and "no answer in time" or ffi_string(C.bp_kafka_error(f.k)))
        end
        unlock(ps)
        return
    end
    -- Not committed, nor is anything after it on this partition: the
    -- server stops (as a SIGTERM would) and the message is read again.
    ps.failed = true
    f.counts.failed = f.counts.failed + 1
    unlock(ps)
    error(string.format("%s: handling %s [%d] offset %d failed; not committed: %s", f.name, msg.topic,
        msg.partition, msg.offset, tostring(err)), 0)
end

return M
