-- baseplate.lib.service_discovery over a real Synapse inventory file,
-- rewritten as Synapse does (a temporary file renamed over it) while
-- backends are picked.
local t = require("testlib")
local sd = require("baseplate.lib.service_discovery")
local runtime = require("baseplate.runtime")
local cjson = require("cjson")

-- os.tmpname makes a unique file: its name plus ".d" is a directory no
-- other run of this test uses at the same time
local dir = os.tmpname() .. ".d"
assert(os.execute("mkdir -p '" .. dir .. "'") == 0)
local path = dir .. "/example.json"

local function replace(text)
    local f = assert(io.open(path .. ".tmp", "wb"))
    f:write(text)
    f:close()
    assert(os.rename(path .. ".tmp", path))
end

t.test("no file: no backends, and get_backend raises NoBackendsAvailableError", function()
    local inv = sd.ServiceInventory(dir .. "/missing.json")
    t.eq(inv:get_backends(), {})
    local err = t.raises("no backends available", function() return inv:get_backend() end)
    t.ok(sd.is_no_backends(err))
    t.eq(err.class, "NoBackendsAvailableError")
    inv:close()
end)

t.test("backends as Synapse writes them; a null weight counts as 1", function()
    replace([[ [
      {"host": "10.0.0.1", "port": 9090, "id": 1, "name": "i-one", "weight": 3},
      {"host": "10.0.0.2", "port": 9091, "id": 2, "name": "i-two", "weight": null},
      {"host": "::1", "port": 80, "id": 3, "name": "i-three", "weight": 0}
    ] ]])
    local inv = sd.ServiceInventory(path)
    local b = inv:get_backends()
    t.eq(#b, 3)
    t.eq(b[1].id, 1)
    t.eq(b[1].name, "i-one")
    t.eq(b[1].weight, 3)
    t.eq(b[2].weight, 1)
    t.eq(b[1].endpoint.family, "AF_INET")
    t.eq(b[1].endpoint.address.host, "10.0.0.1")
    t.eq(b[1].endpoint.address.port, 9090)
    t.eq(b[1].endpoint.address[1], "10.0.0.1")
    t.eq(tostring(b[1].endpoint), "10.0.0.1:9090")
    t.eq(b[3].endpoint.family, "AF_INET6")
    t.eq(tostring(b[3].endpoint), "[::1]:80")
    math.randomseed(3)
    local counts = { 0, 0, 0 }
    for _ = 1, 8000 do
        local x = inv:get_backend()
        counts[x.id] = counts[x.id] + 1
    end
    t.eq(counts[3], 0, "weight 0 never chosen")
    t.near(counts[1] / 8000, 0.75, 0.03)
    inv:close()
end)

t.test("all weights zero or an empty inventory: NoBackendsAvailableError", function()
    replace('[{"host": "h", "port": 1, "id": 1, "name": "n", "weight": 0}]')
    local inv = sd.ServiceInventory(path)
    t.eq(#inv:get_backends(), 1)
    t.raises("no backends available", function() return inv:get_backend() end)
    inv:close()
    replace("[]")
    inv = sd.ServiceInventory(path)
    t.eq(inv:get_backends(), {})
    t.raises("no backends available", function() return inv:get_backend() end)
    inv:close()
end)

t.test("a rewrite is seen; a broken or vanished file keeps the backends last read", function()
    replace('[{"host": "a", "port": 1, "id": 1, "name": "a", "weight": 1}]')
    local inv = sd.ServiceInventory(path)
    t.eq(inv:get_backend().name, "a")
    replace('[{"host": "b", "port": 2, "id": 2, "name": "b", "weight": 1}]')
    t.ok(t.wait_until(function() return inv:get_backend().name == "b" end, 2))
    for _, broken in ipairs({ '[{"host": "c"', '{"host": "c"}', '[{"host": "c", "port": 0, "id": 1, "name": "c"}]',
        '[{"host": "c", "port": 1, "id": 1.5, "name": "c"}]', '[{"host": "c", "port": 1, "id": 1, "name": "c", "weight": -1}]' }) do
        replace(broken)
        runtime.sleep(0.1)
        t.eq(inv:get_backend().name, "b", broken)
    end
    os.remove(path)
    runtime.sleep(0.1)
    t.eq(inv:get_backend().name, "b")
    t.eq(#inv:get_backends(), 1)
    inv:close()
end)

t.test("parse_inventory's messages", function()
    t.raises("the inventory is not a JSON array", sd.parse_inventory, '{"a": 1}')
    t.raises("invalid JSON", sd.parse_inventory, "[")
    t.raises("entry 1: not an object", sd.parse_inventory, "[1]")
    t.raises("entry 2: host must be a non-empty string", sd.parse_inventory,
        '[{"host": "a", "port": 1, "id": 1, "name": "a"}, {"port": 1, "id": 1, "name": "a"}]')
    t.raises("entry 1: port must be an integer from 1 to 65535", sd.parse_inventory,
        '[{"host": "a", "port": 65536, "id": 1, "name": "a"}]')
    t.raises("entry 1: name must be a string", sd.parse_inventory, '[{"host": "a", "port": 1, "id": 1}]')
    local inv = sd.parse_inventory('[{"host": "a", "port": 1, "id": 1, "name": "a"}]')
    t.eq(inv.backends[1].weight, 1, "an absent weight counts as 1 too")
end)

t.test("picked while Synapse rewrites the file", function()
    local function file(i)
        local list = {}
        for k = 1, 5 do list[k] = { host = "10.0." .. i .. "." .. k, port = 9000 + k, id = i * 10 + k,
            name = "gen-" .. i, weight = k } end
        return cjson.encode(list)
    end
    replace(file(0))
    local inv = sd.ServiceInventory(path)
    local done, picks, bad = false, 0, 0
    runtime.spawn(function()
        while not done do
            local ok, b = pcall(inv.get_backend, inv)
            if not ok or not b.name:match("^gen%-%d+$") then bad = bad + 1 end
            picks = picks + 1
            runtime.sleep(0.001)
        end
    end)
    for i = 1, 30 do
        replace(file(i))
        runtime.sleep(0.005)
    end
    t.ok(t.wait_until(function() return inv:get_backend().name == "gen-30" end, 2))
    done = true
    runtime.sleep(0.01)
    t.eq(bad, 0)
    t.ok(picks > 10)
    inv:close()
end)

os.execute("rm -rf '" .. dir .. "' '" .. dir:sub(1, -3) .. "'")
t.done()
