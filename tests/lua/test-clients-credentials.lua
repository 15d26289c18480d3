-- credentials_secret on the PostgreSQL and Redis clients, against the real
-- servers of tests/services.sh: PostgreSQL's role bp_secrets logs in only
-- with its password (scram-sha-256 in the fixture's pg_hba.conf); Redis gets
-- an ACL user with a password for the length of the test. The username and
-- password come from a credential secret at connect time (a real secrets
-- file, replaced as the fetcher does to rotate the password), and the
-- password appears in no error and no log line.
local t = require("testlib")
local runtime = require("baseplate.runtime")
local postgres = require("baseplate.clients.postgres")
local redis = require("baseplate.clients.redis")
local secrets = require("baseplate.lib.secrets")
local testing = require("baseplate.testing")
local cjson = require("cjson")

local PG_URL = assert(os.getenv("BP_TEST_PG_URL"), "BP_TEST_PG_URL is set by ctest")
local REDIS_URL = assert(os.getenv("BP_TEST_REDIS_URL"), "BP_TEST_REDIS_URL is set by ctest")
-- the same server and database, with no user in the URL
local PG_NOUSER = PG_URL:gsub("//[^@/]*@", "//")

-- os.tmpname makes a unique file: its name plus ".d" is a directory no
-- other run of this test uses at the same time
local dir = os.tmpname() .. ".d"
assert(os.execute("mkdir -p '" .. dir .. "'") == 0)
local path = dir .. "/secrets.json"

local function write_secrets(pg_password, redis_password)
    local f = assert(io.open(path .. ".tmp", "wb"))
    f:write(cjson.encode({ secrets = {
        ["secret/db"] = { type = "credential", username = "bp_secrets", password = pg_password },
        ["secret/redis"] = { type = "credential", username = "bp_secrets", password = redis_password },
        ["secret/wrong"] = { type = "credential", username = "bp_secrets", password = "Wr0ng-Passw0rd" },
        ["secret/simple"] = { type = "simple", value = "x" },
    } }))
    f:close()
    assert(os.rename(path .. ".tmp", path))
end

write_secrets("bp-secrets-pw-1", "r3dis-pw-1")
local store = secrets.SecretsStore(path)

local function pg(extra, with_store)
    local raw = { ["db.url"] = PG_NOUSER, ["db.pool_size"] = "2" }
    for k, v in pairs(extra or {}) do raw["db." .. k] = v end
    local factory = postgres.PostgresClient({ secrets = with_store ~= false and store or nil }):parse("db", raw)
    return factory:make_object_for_context("db", nil), factory
end

-- Every password of the test: none may show in a message or a log line.
local PASSWORDS = { "bp-secrets-pw-1", "bp-secrets-pw-2", "r3dis-pw-1", "r3dis-pw-2", "Wr0ng-Passw0rd" }
local function no_password(text, what)
    for _, p in ipairs(PASSWORDS) do
        t.ok(not text:find(p, 1, true), what .. " shows a password: " .. text)
    end
end

local capture = testing.capture_logs()

t.test("postgres: without credentials the role cannot log in (the feature is needed)", function()
    local db = pg({ url = PG_NOUSER:gsub("//", "//bp_secrets@") })
    local err = t.raises("password", function() return db:query("SELECT 1") end)
    no_password(tostring(err.message), "the error")
end)

t.test("postgres: credentials_secret logs in as the secret's user", function()
    local db = pg({ credentials_secret = "secret/db" })
    t.eq(db:query("SELECT current_user AS u")[1].u, "bp_secrets")
    t.eq(db:query("SELECT $1::int + 1 AS n", 41)[1].n, 42)
end)

t.test("postgres: the secret's user and password take the place of the URL's", function()
    local db = pg({ url = PG_NOUSER:gsub("//", "//someone:Wr0ng-Passw0rd@"), credentials_secret = "secret/db" })
    t.eq(db:query("SELECT current_user AS u")[1].u, "bp_secrets")
end)

t.test("postgres: a wrong password fails, and the error does not show it", function()
    local db = pg({ credentials_secret = "secret/wrong" })
    local err = t.raises("password authentication failed", function() return db:query("SELECT 1") end)
    t.eq(err.class, "ConnectionError")
    no_password(err.message, "the error")
    no_password(tostring(err), "the error")
end)

t.test("postgres: a missing or wrong secret is a connection error naming the secret", function()
    local db = pg({ credentials_secret = "secret/nope" })
    local err = t.raises("credentials_secret: secret not found: 'secret/nope'", function() return db:query("SELECT 1") end)
    t.eq(err.class, "ConnectionError")
    db = pg({ credentials_secret = "secret/simple" })
    t.raises("credentials_secret: secret/simple: secret does not have type=credential",
        function() return db:query("SELECT 1") end)
end)

t.test("postgres: credentials_secret without a secrets store is a configuration error", function()
    t.raises("db.credentials_secret: a secrets store is needed", pg, { credentials_secret = "secret/db" }, false)
end)

t.test("postgres: a rotated password is used by the next connection", function()
    local db, factory = pg({ credentials_secret = "secret/db" })
    t.eq(db:query("SELECT 1 AS one")[1].one, 1)
    db:execute("ALTER ROLE bp_secrets PASSWORD 'bp-secrets-pw-2'")
    write_secrets("bp-secrets-pw-2", "r3dis-pw-1")
    t.ok(t.wait_until(function()
        return store:get_credentials("secret/db").password == "bp-secrets-pw-2"
    end, 3), "the store saw the new file")
    local fresh = pg({ credentials_secret = "secret/db" })
    t.eq(fresh:query("SELECT current_user AS u")[1].u, "bp_secrets")
    -- put the fixture back
    fresh:execute("ALTER ROLE bp_secrets PASSWORD 'bp-secrets-pw-1'")
    write_secrets("bp-secrets-pw-1", "r3dis-pw-1")
    t.ok(t.wait_until(function()
        return store:get_credentials("secret/db").password == "bp-secrets-pw-1"
    end, 3))
    local _ = factory
end)

-- Redis: an ACL user for this test, removed at the end.
local admin = redis.RedisClient():parse("r", { ["r.url"] = REDIS_URL }):make_object_for_context("r", nil)
admin:execute_command("ACL", "SETUSER", "bp_secrets", "reset", "on", ">r3dis-pw-1", "~*", "+@all")

local function rc(extra, with_store)
    local raw = { ["r.url"] = REDIS_URL }
    for k, v in pairs(extra or {}) do raw["r." .. k] = v end
    return redis.RedisClient({ secrets = with_store ~= false and store or nil }):parse("r", raw)
        :make_object_for_context("r", nil)
end

t.test("redis: credentials_secret authenticates as the secret's ACL user", function()
    local r = rc({ credentials_secret = "secret/redis" })
    t.eq(r:execute_command("ACL", "WHOAMI"), "bp_secrets")
    r:execute_command("SET", "bp-creds-test", "1")
    t.eq(r:execute_command("GET", "bp-creds-test"), "1")
end)

t.test("redis: a wrong password fails, and the error does not show it", function()
    local r = rc({ credentials_secret = "secret/wrong" })
    local err = t.raises("AUTH failed", function() return r:execute_command("PING") end)
    no_password(tostring(err.message), "the error")
end)

t.test("redis: a missing secret, no store", function()
    local r = rc({ credentials_secret = "secret/nope" })
    t.raises("credentials_secret: secret not found: 'secret/nope'", function() return r:execute_command("PING") end)
    t.raises("r.credentials_secret: a secrets store is needed", rc, { credentials_secret = "secret/redis" }, false)
end)

t.test("redis: a rotated password is used by the next connection", function()
    admin:execute_command("ACL", "SETUSER", "bp_secrets", "resetpass", ">r3dis-pw-2")
    write_secrets("bp-secrets-pw-1", "r3dis-pw-2")
    t.ok(t.wait_until(function()
        return store:get_credentials("secret/redis").password == "r3dis-pw-2"
    end, 3))
    local r = rc({ credentials_secret = "secret/redis" })
    t.eq(r:execute_command("ACL", "WHOAMI"), "bp_secrets")
end)

admin:execute_command("DEL", "bp-creds-test")
admin:execute_command("ACL", "DELUSER", "bp_secrets")

t.test("no log line shows a password", function()
    local lines = {}
    for _, r in ipairs(capture:records()) do lines[#lines + 1] = cjson.encode(r) end
    no_password(table.concat(lines, "\n"), "the logs")
    capture:stop()
end)

store:close()
os.execute("rm -rf '" .. dir .. "' '" .. dir:sub(1, -3) .. "'")
runtime.sleep(0)
t.done()
