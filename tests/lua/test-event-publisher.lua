-- The event publisher's pieces (baseplate.sidecars.event_publisher): the
-- v1/v2 batch framing and its 500 KiB limit, the X-Signature value (its
-- HMAC computed with Python's hmac module for this test), gzip that
-- Python's gzip module reads back. The whole sidecar is tested against a
-- collector in tests/integration/test-event-publisher.sh.
local t = require("testlib")
local pub = require("baseplate.sidecars.event_publisher")

t.test("v2 framing: {\"1\":{\"lst\":[\"rec\",N,e1,...]}}", function()
    local b = pub.new_batch(2)
    t.eq(b.n, 0)
    b:add('{"a":1}')
    b:add('{"b":2}')
    t.eq(b:serialize(), '{"1":{"lst":["rec",2,{"a":1},{"b":2}]}}')
    t.eq(b:size_with(nil), #b:serialize())
end)

t.test("v1 framing: a JSON array", function()
    local b = pub.new_batch(1)
    b:add("1"); b:add("[2]")
    t.eq(b:serialize(), "[1,[2]]")
    t.raises("unsupported collector version 3", pub.new_batch, 3)
end)

t.test("batches stay within the size limit (500 KiB by default)", function()
    t.eq(pub.MAX_BATCH_SIZE, 512000)
    local b = pub.new_batch(2)
    local ev = '"' .. string.rep("x", 102398) .. '"' -- 102,400 bytes: the largest event
    local n = 0
    while b:add(ev) do n = n + 1 end
    t.eq(n, 4)
    t.ok(#b:serialize() <= 512000, "within the limit: " .. #b:serialize())
    t.ok(b:size_with(#ev) > 512000, "the next one would not fit")
    -- exactly at the limit fits
    local small = pub.new_batch(1, 10)
    t.ok(small:add("12345678"), "[12345678] is 10 bytes")
    t.ok(not small:add("1"), "[12345678,1] is 12")
    -- a first event always goes, even above the limit (the queue bounds it)
    t.ok(pub.new_batch(1, 4):add("123456"))
end)

t.test("X-Signature: key=NAME, mac=hex HMAC-SHA256 of the uncompressed body", function()
    t.eq(pub.sign("TestKey", "k3y", '{"1":{"lst":["rec",2,{"a":1},{"b":2}]}}'),
        "key=TestKey, mac=b233700c19e8c05703e3e888d5ef3fb2b77d3fc83b4cc40362fe1c2f62dad3b2")
end)

t.test("gzip: one member that Python's gzip module reads back", function()
    local body = string.rep('{"event":"x"},', 1000)
    local gz = pub.gzip(body)
    t.eq(gz:sub(1, 2), "\31\139")
    t.ok(#gz < #body / 10, "compressed")
    local path = os.tmpname()
    local f = io.open(path, "wb"); f:write(gz); f:close()
    local p = io.popen("python3 -c 'import gzip,sys; sys.stdout.write(gzip.open(sys.argv[1]).read().decode())' " .. path)
    local back = p:read("*a")
    p:close()
    os.remove(path)
    t.eq(back, body)
    t.eq(#pub.gzip(""), 20)
end)

t.test("the signing key from the secrets store: simple, versioned, base64; errors name the secret, not its value", function()
    local path = os.tmpname()
    local f = io.open(path, "w")
    f:write('{"secrets": {"a": {"type": "simple", "value": "plain-value"},'
        .. ' "b": {"type": "versioned", "current": "aGVsbG8=", "previous": "eA==", "encoding": "base64"},'
        .. ' "c": {"type": "credential", "username": "u", "password": "p"}}}')
    f:close()
    t.eq(pub.read_secret(path, "a"), "plain-value")
    t.eq(pub.read_secret(path, "b"), "hello")
    local ok, err = pcall(pub.read_secret, path, "nope")
    t.ok(not ok and err == "secret not found: 'nope'", tostring(err))
    ok, err = pcall(pub.read_secret, path, "c")
    t.ok(not ok and err:find("cannot sign", 1, true) and not err:find("p\"", 1, true), tostring(err))
    os.remove(path)
end)

t.done()
