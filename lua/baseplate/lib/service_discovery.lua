-- Service discovery through Synapse's file_output: Baseplate.py's
-- baseplate.lib.service_discovery (docs/lib-service-discovery.md;
-- formats.md "Synapse inventory").
--
--   local sd = require("baseplate.lib.service_discovery")
--   local inventory = sd.ServiceInventory("/var/lib/synapse/example.json")
--   local backend = inventory:get_backend()   -- weighted random choice
--   print(backend.endpoint.address.host, backend.endpoint.address.port)
--
-- The inventory file is watched (baseplate.lib.file_watcher): parsed again
-- when Synapse rewrites it; a broken file keeps the backends last read.
local cjson_mod = require("cjson")
local random = require("baseplate.lib.random")

local type, tostring, setmetatable, getmetatable, error, pcall = type, tostring, setmetatable, getmetatable,
    error, pcall
local format = string.format

local cjson = cjson_mod.new()
local null = cjson.null

local M = {}

local NoBackendsAvailableError = {}
NoBackendsAvailableError.__index = NoBackendsAvailableError
NoBackendsAvailableError.__tostring = function(self) return self.class .. ": " .. self.message end
M.NoBackendsAvailableError = NoBackendsAvailableError

--- Whether `err` is a NoBackendsAvailableError.
function M.is_no_backends(err)
    return type(err) == "table" and getmetatable(err) == NoBackendsAvailableError
end

local Backend = {}
Backend.__index = Backend
Backend.__tostring = function(self)
    return format("Backend(id=%s, name=%q, endpoint=%s, weight=%s)", tostring(self.id), self.name,
        tostring(self.endpoint), tostring(self.weight))
end
M.Backend_mt = Backend

local endpoint_mt, address_mt
local function endpoint(host, port)
    if not endpoint_mt then
        local config = require("baseplate.lib.config")
        endpoint_mt, address_mt = config.EndpointConfiguration, config.InternetAddress
    end
    local address = setmetatable({ host, port, host = host, port = port }, address_mt)
    return setmetatable({ family = host:find(":", 1, true) and "AF_INET6" or "AF_INET", address = address,
        host = host, port = port }, endpoint_mt)
end

local function integer(v) return type(v) == "number" and v == v and v % 1 == 0 and v > -2 ^ 53 and v < 2 ^ 53 end

--- Parse an inventory's text: { backends = { Backend… }, lottery = a
--- WeightedLottery or nil (no backend, or none with weight) }, or raises
--- a message naming the entry and what is wrong.
function M.parse_inventory(text)
    local ok, data = pcall(cjson.decode, text)
    if not ok then error("invalid JSON: " .. tostring(data), 0) end
    if type(data) ~= "table" or (next(data) ~= nil and data[1] == nil) then
        error("the inventory is not a JSON array", 0)
    end
    local n = #data
    if table.maxn(data) ~= n then error("the inventory is not a JSON array", 0) end
    local backends, any_weight = {}, false
    for i = 1, n do
        local d = data[i]
        local function bad(why) error(format("entry %d: %s", i, why), 0) end
        if type(d) ~= "table" then bad("not an object") end
        local host, port, id, name, weight = d.host, d.port, d.id, d.name, d.weight
        if type(host) ~= "string" or host == "" then bad("host must be a non-empty string") end
        if not integer(port) or port < 1 or port > 65535 then bad("port must be an integer from 1 to 65535") end
        if not integer(id) then bad("id must be an integer") end
        if type(name) ~= "string" then bad("name must be a string") end
        if weight == nil or weight == null then
            weight = 1 -- formats.md: a null weight counts as 1
        elseif not integer(weight) or weight < 0 then
            bad("weight must be a non-negative integer or null")
        end
        if weight > 0 then any_weight = true end
        backends[i] = setmetatable({ id = id, name = name, endpoint = endpoint(host, port), weight = weight }, Backend)
    end
    local lottery
    if any_weight then
        lottery = random.WeightedLottery(backends, function(b) return b.weight end)
    end
    return { backends = backends, lottery = lottery }
end

local Inventory = {}
Inventory.__index = Inventory
M.ServiceInventory_mt = Inventory

--- ServiceInventory(filename[, opts]): the inventory in the Synapse file
--- `filename`, watched. opts.backoff: seconds between the watcher's own
--- checks (1 s).
function M.ServiceInventory(filename, opts)
    if type(filename) ~= "string" or filename == "" then
        error("ServiceInventory: filename must be a non-empty string", 2)
    end
    local fw = require("baseplate.lib.file_watcher")
    local watcher = fw.FileWatcher(filename, function(_, text) return M.parse_inventory(text) end,
        { backoff = opts and opts.backoff })
    return setmetatable({ filename = filename, _watcher = watcher }, Inventory)
end

local function inventory_of(self)
    local ok, data = pcall(self._watcher.get_data, self._watcher)
    if ok then return data end
    local fw = require("baseplate.lib.file_watcher")
    if fw.is_not_available(data) then return nil end
    error(data, 0)
end

--- Every backend (an array of Backends; empty while the file has never
--- been read). A file that vanished or broke keeps the backends last read.
function Inventory:get_backends()
    local inv = inventory_of(self)
    return inv and inv.backends or {}
end

--- One backend at random, with the chances their weights give; raises
--- NoBackendsAvailableError when there is none (or none with weight).
function Inventory:get_backend()
    local inv = inventory_of(self)
    if not inv or not inv.lottery then
        error(setmetatable({ class = "NoBackendsAvailableError",
            message = "no backends available in " .. self.filename }, NoBackendsAvailableError), 2)
    end
    return inv.lottery:pick()
end

--- Stop watching the file.
function Inventory:close() self._watcher:close() end

return M
