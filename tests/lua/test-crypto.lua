-- baseplate.lib.crypto: signatures byte-identical to Baseplate.py's
-- (formats.md "Message signatures"). The vectors below were computed from
-- formats.md with Python's hmac, struct and base64 modules; the last test
-- checks both ways against the same algorithm run by /usr/bin/python3.
local t = require("testlib")
local crypto = require("baseplate.lib.crypto")

local real_clock = crypto.clock
local function at(now, fn)
    crypto.clock = function() return now end
    local ok, err = pcall(fn)
    crypto.clock = real_clock
    if not ok then error(err, 0) end
end

local VECTORS = {
    { "hunter2", "Hello, world!", 2000000000, "AQAAAJQ1d7OoICxk2Z4X1YK95ehmspfY-IJdARV6eCMgrB_4bb1V" },
    { "", "", 4294967295, "AQAA_____-QqEjc0SEDUIsJW5mCDXjU9jyr93MfzNL_2m1-zClsj" },
    { "clé", "héllo ✓", 1234567890, "AQAA0gKWSeDIbSL0sttHrSQkK-11P_IwLQTmy9zWTVddBjRpfH33" },
}

t.test("make_signature: the reference's bytes", function()
    for _, v in ipairs(VECTORS) do
        at(v[3] - 100.5, function()
            t.eq(crypto.make_signature(v[1], v[2], 100.5), v[4], v[2])
        end)
    end
end)

t.test("validate_signature: good, every version tried, info returned", function()
    local v = VECTORS[1]
    at(v[3] - 10, function()
        t.eq(crypto.validate_signature({ current = "new", previous = "hunter2" }, v[2], v[4]),
            { version = 1, expiration = v[3] })
        t.eq(crypto.validate_signature({ current = "x", next = "hunter2" }, v[2], v[4]).expiration, v[3])
        t.eq(crypto.validate_signature(v[1], v[2], v[4] .. "==").version, 1, "padding accepted")
    end)
end)

local function class_of(fn, ...)
    local ok, err = pcall(fn, ...)
    t.ok(not ok, "raised")
    t.ok(crypto.is_signature_error(err), "a SignatureError: " .. tostring(err))
    return err.class, err
end

t.test("validate_signature: unreadable, expired, incorrect", function()
    local v = VECTORS[1]
    at(v[3] - 10, function()
        t.eq(class_of(crypto.validate_signature, v[1], v[2], "garbage"), "UnreadableSignatureError")
        t.eq(class_of(crypto.validate_signature, v[1], v[2], v[4]:sub(1, 51)), "UnreadableSignatureError")
        t.eq(class_of(crypto.validate_signature, v[1], v[2], "AA" .. v[4]:sub(3)), "UnreadableSignatureError",
            "version 0")
        t.eq(class_of(crypto.validate_signature, v[1], v[2], v[4]:sub(1, 51) .. "*"), "UnreadableSignatureError")
        t.eq(class_of(crypto.validate_signature, v[1], v[2] .. "!", v[4]), "IncorrectSignatureError")
        t.eq(class_of(crypto.validate_signature, { current = "a", previous = "b" }, v[2], v[4]),
            "IncorrectSignatureError")
    end)
    at(v[3] + 1, function()
        local class, err = class_of(crypto.validate_signature, v[1], v[2], v[4])
        t.eq(class, "ExpiredSignatureError")
        t.eq(err.expiration, v[3])
    end)
    at(v[3], function() t.eq(crypto.validate_signature(v[1], v[2], v[4]).version, 1, "valid at its second") end)
    t.raises("does not fit 32 bits", crypto.make_signature, "k", "m", 2 ^ 40)
    t.raises("versioned secret", crypto.make_signature, 42, "m", 1)
end)

t.test("interoperates with the reference's algorithm both ways (python3)", function()
    local ours = crypto.make_signature({ current = "s3cret" }, "from lua ✓", 3600)
    local script = [[
import hmac, hashlib, struct, base64, sys, time
key, msg, theirs_msg = b"s3cret", "from lua \u2713", "from python"
sig = sys.argv[1]
raw = base64.urlsafe_b64decode(sig)
ver, exp = struct.unpack("<BxxI", raw[:7])
ok = ver == 1 and time.time() <= exp and hmac.compare_digest(
    hmac.new(key, raw[:7] + msg.encode(), hashlib.sha256).digest(), raw[7:])
header = struct.pack("<BxxI", 1, int(time.time() + 60))
mine = base64.urlsafe_b64encode(header + hmac.new(key, header + theirs_msg.encode(), hashlib.sha256).digest())
print("ok" if ok else "bad", mine.decode())
]]
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(script)
    f:close()
    local p = assert(io.popen("/usr/bin/python3 " .. path .. " '" .. ours .. "'"))
    local out = p:read("*a")
    p:close()
    os.remove(path)
    local verdict, theirs = out:match("^(%S+) (%S+)")
    t.eq(verdict, "ok", "python validates ours")
    t.eq(crypto.validate_signature("s3cret", "from python", theirs).version, 1, "we validate python's")
end)

t.done()
