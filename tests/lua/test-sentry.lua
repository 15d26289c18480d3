-- The Sentry observer's parts that need no server: the DSN, error values,
-- frames from Lua tracebacks, rate limits, the configuration
-- (tests/integration/test-sentry.sh sends events to a stand-in for Sentry).
local t = require("testlib")
local baseplate = require("baseplate")
local sentry = require("baseplate.observers.sentry")

t.test("parse_dsn: the envelope endpoint and the keys", function()
    local d = sentry.parse_dsn("https://pub:sec@sentry.example.com/42")
    t.eq(d.endpoint, "https://sentry.example.com/api/42/envelope/")
    t.eq(d.public_key, "pub")
    t.eq(d.secret_key, "sec")
    d = sentry.parse_dsn("http://pub@127.0.0.1:9000/prefix/path/7")
    t.eq(d.endpoint, "http://127.0.0.1:9000/prefix/path/api/7/envelope/", "a port and a path prefix")
    t.eq(d.secret_key, nil, "no secret")
    d = sentry.parse_dsn("http://pub@[::1]:9000/7")
    t.eq(d.endpoint, "http://[::1]:9000/api/7/envelope/", "IPv6")
end)

t.test("parse_dsn: bad DSNs, never quoted back", function()
    local bad = {
        "", "sentry.example.com/42", "ftp://PK9@host/1", "https://host/42", "https://:SK9@host/42",
        "https://PK9:SK9@host/", "https://PK9:SK9@host/abc", "https://PK9:SK9@ho st/1",
        "https://PK9:SK9@host/1?x=y", string.rep("x", 10000),
    }
    for _, dsn in ipairs(bad) do
        local d, why = sentry.parse_dsn(dsn)
        t.eq(d, nil, dsn:sub(1, 40))
        t.ok(type(why) == "string" and not why:find("SK9", 1, true) and not why:find("PK9", 1, true),
            "the reason does not quote it: " .. tostring(why))
    end
    t.eq(select(2, sentry.parse_dsn(42)), "expected a string")
end)

t.test("describe: class, message, traceback of error values", function()
    local class, msg, tb = sentry.describe("app.lua:3: boom\nstack traceback:\n\tapp.lua:3: in function 'f'")
    t.eq({ class, msg, tb }, { "Error", "app.lua:3: boom", "\tapp.lua:3: in function 'f'" })
    class, msg, tb = sentry.describe("no traceback")
    t.eq({ class, msg, tb }, { "Error", "no traceback" })
    class, msg = sentry.describe({ class = "Kaput", message = "kaput" })
    t.eq({ class, msg }, { "Kaput", "kaput" })
    class, msg = sentry.describe({ name = "Named" })
    t.eq({ class, msg }, { "Named", "Named" })
    class, msg = sentry.describe(setmetatable({}, { __tostring = function() return "shown" end }))
    t.eq({ class, msg }, { "Error", "shown" })
    class, msg = sentry.describe({ message = 12 })
    t.eq({ class, msg }, { "Error", "12" })
end)

t.test("frames: oldest first, names, lines, context, in_app", function()
    local src = os.tmpname()
    local f = assert(io.open(src, "w"))
    for i = 1, 20 do f:write("line ", i, "\n") end
    f:close()
    local tb = table.concat({
        "\t[C]: in function 'error'",
        "\t" .. src .. ":10: in function 'inner'",
        "\t" .. src .. ":15: in function <" .. src .. ":14>",
        "\t(tail call): ?",
        "\t/nowhere/app.lua:3: in main chunk",
        "\t[C]: ?",
    }, "\n")
    local fr = sentry.frames(tb)
    os.remove(src)
    t.eq(#fr, 4, "C functions with a name, Lua frames; no tail calls")
    t.eq(fr[1]["function"], "(main chunk)")
    t.eq(fr[1].context_line, nil, "an unreadable file: no context")
    t.eq(fr[1].in_app, true)
    t.eq(fr[2]["function"], "(anonymous function at " .. src .. ":14)")
    t.eq(fr[3]["function"], "inner")
    t.eq(fr[3].lineno, 10)
    t.eq(fr[3].context_line, "line 10")
    t.eq(fr[3].pre_context, { "line 5", "line 6", "line 7", "line 8", "line 9" })
    t.eq(fr[3].post_context, { "line 11", "line 12", "line 13", "line 14", "line 15" })
    t.eq({ fr[4].filename, fr[4]["function"], fr[4].in_app }, { "[C]", "error", false })
    local big = {}
    for i = 1, 500 do big[i] = "\tx.lua:" .. i .. ": in function 'f'" end
    t.eq(#sentry.frames(table.concat(big, "\n")), sentry.MAX_FRAMES, "at most MAX_FRAMES")
    t.eq(#sentry.frames(nil), 0)
    t.eq(#sentry.frames("garbage\n\n:::: in\n"), 0)
end)

t.test("pause_of: X-Sentry-Rate-Limits, Retry-After, the default", function()
    t.eq(sentry.pause_of({ headers = { ["retry-after"] = "7" } }), 7)
    t.eq(sentry.pause_of({ headers = { ["retry-after"] = "Wed, 21 Oct 2015 07:28:00 GMT" } }), sentry.DEFAULT_PAUSE)
    t.eq(sentry.pause_of({ headers = {} }), sentry.DEFAULT_PAUSE)
    t.eq(sentry.pause_of({ headers = { ["x-sentry-rate-limits"] = "60:transaction:key, 2700:default;error:organization",
        ["retry-after"] = "3" } }), 2700, "the error category's limit")
    t.eq(sentry.pause_of({ headers = { ["x-sentry-rate-limits"] = "30::organization" } }), 30, "all categories")
    t.eq(sentry.pause_of({ headers = { ["x-sentry-rate-limits"] = "60:transaction", ["retry-after"] = "3" } }), 3,
        "other categories only: Retry-After")
end)

t.test("configure_observers: sentry keys", function()
    local function configure(cfg)
        local bp = baseplate.Baseplate(cfg)
        bp:configure_observers()
        return bp
    end
    local dsn = "http://pub:sec@127.0.0.1:9/1"
    t.raises("sentry.dsn: expected http(s)://", configure, { ["sentry.dsn"] = "nope" })
    t.raises("sentry.sample_rate:", configure, { ["sentry.dsn"] = dsn, ["sentry.sample_rate"] = "2" })
    t.raises("sentry.ignore_errors: not a class name", configure, { ["sentry.dsn"] = dsn, ["sentry.ignore_errors"] = "a b" })
    local bp = configure({ ["sentry.environment"] = "x" })
    t.eq(bp.sentry_client, nil, "no DSN: no observer")
    bp = configure({ ["sentry.dsn"] = dsn, ["sentry.release"] = "r1", ["sentry.server_name"] = "web-1",
        ["sentry.ignore_errors"] = "mod.Kaput" })
    local c = bp.sentry_client
    t.eq({ c.release, c.server_name, c.environment, c.sample_rate }, { "r1", "web-1", "production", 1 })
    t.ok(c.ignore.Kaput and c.ignore["mod.Kaput"], "ignore by the last part of a dotted name")
    t.ok(not tostring(c):find("sec", 1, true), "tostring without the secret: " .. tostring(c))
    t.eq(c:capture_error({ class = "Kaput" }), nil, "ignored")
    t.eq(c:capture_error(nil), nil)
    -- a context gets context.sentry
    baseplate.Baseplate({}):server_context("job", function() end)
    bp:server_context("job", function(context)
        t.eq(getmetatable(context.sentry), sentry.Hub)
        t.raises("capture_message: expected a message", context.sentry.capture_message, context.sentry)
    end)
    -- (nothing is sent: the sender's first wait is for the next loop iteration)
    c.sample_rate = 0
    t.eq(c:capture_message("x"), nil, "sample_rate 0: dropped")
end)

t.done()
