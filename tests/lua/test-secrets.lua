-- baseplate.lib.secrets: the store over a real secrets file, replaced
-- atomically as the fetcher does while coroutines read; the reference's
-- error texts; secret values never in an error or in tostring(); base64 as
-- Python decodes it (checked against /usr/bin/python3 when it is there).
local t = require("testlib")
local secrets = require("baseplate.lib.secrets")
local runtime = require("baseplate.runtime")
local cjson = require("cjson")

-- os.tmpname makes a unique file: its name plus ".d" is a directory no
-- other run of this test uses at the same time
local dir = os.tmpname() .. ".d"
assert(os.execute("mkdir -p '" .. dir .. "'") == 0)
local path = dir .. "/secrets.json"

local function replace(p, text)
    local f = assert(io.open(p .. ".tmp", "wb"))
    f:write(text)
    f:close()
    assert(os.rename(p .. ".tmp", p))
end

-- Every secret value below, so that the tests can check none leaks.
local VALUES = { "hunter2", "aHVudGVyMg==", "s3cr3t-pw", "0ldk3y", "n3xtk3y", "c3VwZXJzZWNyZXQ=", "vault-t0ken",
    "b4dpadding", "reader-pw" }

local FILE = {
    secrets = {
        ["secret/simple"] = { type = "simple", value = "hunter2" },
        ["secret/simple-b64"] = { type = "simple", value = "aHVudGVyMg==", encoding = "base64" },
        ["secret/versioned"] = { type = "versioned", current = "c3VwZXJzZWNyZXQ=", previous = "MGxkazN5",
            encoding = "base64" },
        ["secret/versioned-plain"] = { type = "versioned", current = "hunter2", previous = "0ldk3y",
            ["next"] = "n3xtk3y" },
        ["secret/creds"] = { type = "credential", username = "reader", password = "s3cr3t-pw" },
        ["secret/creds-b64"] = { type = "credential", username = "reader", password = "reader-pw",
            encoding = "base64" },
        ["secret/creds-nouser"] = { type = "credential", password = "s3cr3t-pw" },
        ["secret/creds-badpw"] = { type = "credential", username = "reader", password = 12 },
        ["secret/no-value"] = { type = "simple" },
        ["secret/no-current"] = { type = "versioned", previous = "0ldk3y" },
        ["secret/bad-b64"] = { type = "simple", value = "b4dpadding=", encoding = "base64" },
        ["secret/rot13"] = { type = "simple", value = "hunter2", encoding = "rot13" },
        ["secret/not-object"] = "hunter2",
    },
    vault = { url = "https://vault.example.com:8200/", token = "vault-t0ken" },
}

local function no_leak(text, what)
    for _, v in ipairs(VALUES) do
        t.ok(not text:find(v, 1, true), (what or "") .. ": a secret value in " .. text)
    end
end

-- The error `fn` raises: its message must be exactly `want`, with no secret.
local function fails(class, want, fn, ...)
    local ok, err = pcall(fn, ...)
    t.ok(not ok, "expected " .. class)
    t.ok(secrets.is_secret_error(err, class), "a " .. class .. ": " .. tostring(err))
    t.eq(err.message, want)
    no_leak(err.message, class)
    no_leak(tostring(err), class)
    return err
end

replace(path, cjson.encode(FILE))
local store = secrets.secrets_store_from_config({ ["secrets.path"] = path })

t.test("secrets_store_from_config: secrets.path, the default path, a prefix", function()
    t.eq(store.path, path)
    local s = secrets.secrets_store_from_config({})
    t.eq(s.path, "/var/local/secrets.json")
    s:close()
    s = secrets.secrets_store_from_config({ ["vault.path"] = path }, nil, "vault.")
    t.eq(s:get_simple("secret/simple"), "hunter2")
    s:close()
end)

t.test("simple secrets: identity and base64", function()
    t.eq(store:get_simple("secret/simple"), "hunter2")
    t.eq(store:get_simple("secret/simple-b64"), "hunter2")
    local v, mtime = store:get_simple_and_mtime("secret/simple")
    t.eq(v, "hunter2")
    t.ok(math.abs(mtime - os.time()) < 10, "mtime")
end)

t.test("versioned secrets: the versions, decoded; all_versions in the order current, previous, next", function()
    local v = store:get_versioned("secret/versioned")
    t.eq(v.current, "supersecret")
    t.eq(v.previous, "0ldk3y")
    t.eq(v.next, nil)
    t.eq(v:all_versions(), { "supersecret", "0ldk3y" })
    local p = store:get_versioned("secret/versioned-plain")
    t.eq(p:all_versions(), { "hunter2", "0ldk3y", "n3xtk3y" })
    t.eq(tostring(p), "VersionedSecret(previous=<hidden>, current=<hidden>, next=<hidden>)")
    local one = secrets.from_simple_secret("hunter2")
    t.eq(one:all_versions(), { "hunter2" })
    t.eq(tostring(one), "VersionedSecret(previous=None, current=<hidden>, next=None)")
    -- what baseplate.lib.crypto takes
    local crypto = require("baseplate.lib.crypto")
    local sig = crypto.make_signature(p, "msg", 60)
    t.eq(crypto.validate_signature(p, "msg", sig).version, 1)
end)

t.test("credential secrets", function()
    local c = store:get_credentials("secret/creds")
    t.eq(c.username, "reader")
    t.eq(c.password, "s3cr3t-pw")
    t.eq(tostring(c), "CredentialSecret(username='reader', password=<hidden>)")
    local c2, mtime = store:get_credentials_and_mtime("secret/creds")
    t.eq(c2.password, "s3cr3t-pw")
    t.ok(mtime > 0)
end)

t.test("raw secrets and the vault", function()
    t.eq(store:get_raw("secret/creds").username, "reader")
    local raw, mtime = store:get_raw_and_mtime("secret/simple")
    t.eq(raw.value, "hunter2")
    t.ok(mtime > 0)
    t.eq(store:get_vault_url(), "https://vault.example.com:8200/")
    t.eq(store:get_vault_token(), "vault-t0ken")
    t.ok(store:make_object_for_context("secrets", nil) == store)
end)

t.test("the reference's errors, naming the secret and never its value", function()
    fails("SecretNotFoundError", "secret not found: 'secret/nope'", store.get_simple, store, "secret/nope")
    fails("SecretNotFoundError", "secret not found: \"it's\"", store.get_raw, store, "it's")
    fails("CorruptSecretError", "secret/creds: secret does not have type=simple", store.get_simple, store,
        "secret/creds")
    fails("CorruptSecretError", "secret/simple: secret does not have type=versioned", store.get_versioned, store,
        "secret/simple")
    fails("CorruptSecretError", "secret/simple: secret does not have type=credential", store.get_credentials,
        store, "secret/simple")
    fails("CorruptSecretError", "secret/creds-b64: secret has encoding=base64 rather than encoding=identity",
        store.get_credentials, store, "secret/creds-b64")
    fails("CorruptSecretError", "secret/creds-nouser: secret does not have key 'username'", store.get_credentials,
        store, "secret/creds-nouser")
    fails("CorruptSecretError", "secret/creds-badpw: secret value 'password' is not a string",
        store.get_credentials, store, "secret/creds-badpw")
    fails("CorruptSecretError", "secret/no-value: secret does not have value", store.get_simple, store,
        "secret/no-value")
    fails("CorruptSecretError", "secret/no-current: secret does not have 'current' value", store.get_versioned,
        store, "secret/no-current")
    fails("CorruptSecretError", "secret/bad-b64: unable to decode base64: Incorrect padding", store.get_simple,
        store, "secret/bad-b64")
    fails("CorruptSecretError", "secret/rot13: unknown encoding: 'rot13'", store.get_simple, store, "secret/rot13")
    fails("CorruptSecretError", "secret/not-object: secret is not a JSON object", store.get_simple, store,
        "secret/not-object")
end)

t.test("a missing file: SecretsNotAvailableError with the watcher's reason", function()
    local s = secrets.SecretsStore(dir .. "/missing.json")
    local err = fails("SecretsNotAvailableError", dir .. "/missing.json: no such file", s.get_simple, s, "x")
    t.eq(err.inner.class, "WatchedFileNotAvailableError")
    s:close()
    local started = runtime.now()
    t.raises(dir .. "/missing.json: timed out", secrets.SecretsStore, dir .. "/missing.json", 0.1)
    t.ok(runtime.now() - started >= 0.09)
end)

t.test("replaced atomically while coroutines read: the new secrets, never a failure", function()
    local p = dir .. "/rotating.json"
    local function file(i)
        return cjson.encode({ secrets = { ["secret/key"] = { type = "versioned", current = "key-" .. i,
            previous = i > 0 and ("key-" .. (i - 1)) or nil } } })
    end
    replace(p, file(0))
    local s = secrets.SecretsStore(p)
    local failures, reads, done, last = 0, 0, false, 0
    for _ = 1, 3 do
        runtime.spawn(function()
            while not done do
                local ok, v = pcall(s.get_versioned, s, "secret/key")
                if not ok then failures = failures + 1 else
                    local n = tonumber(v.current:match("%d+"))
                    if n < last then failures = failures + 1 end
                    last = n
                end
                reads = reads + 1
                runtime.sleep(0.001)
            end
        end)
    end
    for i = 1, 50 do
        replace(p, file(i))
        runtime.sleep(0.003)
    end
    t.ok(t.wait_until(function() return s:get_versioned("secret/key").current == "key-50" end, 3))
    done = true
    runtime.sleep(0.01)
    t.eq(failures, 0)
    t.ok(reads > 20, "reads: " .. reads)
    t.eq(s:get_versioned("secret/key").previous, "key-49")
    s:close()
end)

t.test("a corrupt file keeps the last good secrets; the warning quotes no secret", function()
    local p = dir .. "/corrupt.json"
    replace(p, cjson.encode(FILE))
    local s = secrets.SecretsStore(p)
    t.eq(s:get_simple("secret/simple"), "hunter2")
    local testing = require("baseplate.testing")
    local capture = testing.capture_logs({ quiet = true })
    do
        replace(p, '{"secrets": {"secret/simple": {"type": "simple", "value": "hunter2"')
        t.ok(t.wait_until(function()
            return s:get_simple("secret/simple") == "hunter2" and s._watcher._err ~= nil
        end, 2))
        replace(p, '["hunter2"]')
        t.ok(t.wait_until(function()
            s:get_simple("secret/simple")
            return s._watcher._err == "the secrets file is not a JSON object"
        end, 2))
    end
    local text = {}
    for _, r in ipairs(capture:records()) do text[#text + 1] = r.message end
    capture:stop()
    text = table.concat(text, "\n")
    t.ok(text:find("could not parse", 1, true), "warned: " .. text)
    no_leak(text, "log")
    t.eq(s:get_simple("secret/simple"), "hunter2")
    s:close()
end)

t.test("FakeSecretsStore: the reference's example", function()
    local fake = secrets.FakeSecretsStore({
        secrets = { ["secret/foo/bar"] = { type = "versioned", current = "hunter2" } },
    })
    local v = fake:get_versioned("secret/foo/bar")
    t.eq(v.current, "hunter2")
    t.eq(v.previous, nil)
    t.eq(v.next, nil)
    fails("SecretNotFoundError", "secret not found: 'secret/other'", fake.get_simple, fake, "secret/other")
end)

t.test("base64 decoded as Python's base64.b64decode", function()
    local cases = { "aHVudGVyMg==", "aHVudGVyMg", "aGk", "aGk=", "a", "aHVud\nGVyMg==", "aH!VudGVyMg==", "",
        "YQ==YQ==", "YWJj", "YQ=", "=YQ==", "Y=Q==", "YQ=a=", "////", "-_-_" }
    math.randomseed(7)
    local alphabet = "AQw/+=!\n"
    for _ = 1, 300 do
        local n = math.random(0, 12)
        local s = {}
        for i = 1, n do
            local k = math.random(1, #alphabet)
            s[i] = alphabet:sub(k, k)
        end
        cases[#cases + 1] = table.concat(s)
    end
    local have_python = os.execute("python3 -c 'import base64' 2>/dev/null") == 0
    if not have_python then
        io.write("(python3 not found: checking the fixed expectations only)\n")
        t.eq(secrets.b64decode("aHVudGVyMg=="), "hunter2")
        return
    end
    local input = dir .. "/b64-cases.json"
    local f = assert(io.open(input, "wb"))
    f:write(cjson.encode(cases))
    f:close()
    local py = [[
import base64, json, sys
out = []
for s in json.load(open(sys.argv[1])):
    try: out.append({"ok": base64.b64decode(s).hex()})
    except Exception as e: out.append({"err": str(e)})
print(json.dumps(out))
]]
    local pf = assert(io.open(dir .. "/b64.py", "wb"))
    pf:write(py)
    pf:close()
    local h = assert(io.popen("python3 '" .. dir .. "/b64.py' '" .. input .. "'"))
    local want = cjson.decode(h:read("*a"))
    h:close()
    for i, s in ipairs(cases) do
        local got, why = secrets.b64decode(s)
        if want[i].ok then
            t.eq(got and (got:gsub(".", function(c) return string.format("%02x", c:byte()) end)), want[i].ok,
                string.format("%q", s))
        else
            t.eq(why, want[i].err, string.format("%q", s))
        end
    end
end)

store:close()
os.execute("rm -rf '" .. dir .. "' '" .. dir:sub(1, -3) .. "'")
t.done()
