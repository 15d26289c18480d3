-- baseplate.lib.config: the worked examples of Baseplate.py's documentation,
-- every value type and the exact error messages.
local t = require("testlib")
local ffi = require("ffi")
local config = require("baseplate.lib.config")

pcall(ffi.cdef, [[
int setenv(const char *name, const char *value, int overwrite);
int unsetenv(const char *name);
]])

local function setenv(name, value)
    if value == nil then
        ffi.C.unsetenv(name)
    else
        ffi.C.setenv(name, value, 1)
    end
end

-- The ConfigurationError parse_config raises for raw/spec.
local function config_error(raw, spec)
    local ok, err = pcall(config.parse_config, raw, spec)
    t.ok(not ok, "expected a ConfigurationError")
    t.ok(config.is_configuration_error(err), "not a ConfigurationError: " .. tostring(err))
    return err
end

-- The message a single key's value raises with `parser`.
local function message(parser, value)
    return config_error({ key = value }, { key = parser }).message
end

local function parse_one(parser, value)
    return config.parse_config({ key = value }, { key = parser }).key
end

--------------------------------------------------------------------------------
-- The worked example

local CARDS = config.OneOf{ clubs = 1, spades = 2, diamonds = 3, hearts = 4 }

local function example_spec()
    return {
        simple = config.Boolean,
        cards = config.TupleOf(CARDS),
        nested = {
            once = config.Integer,
            really = {
                deep = config.Timespan,
            },
        },
        some_file = config.File("r"),
        optional = config.Optional(config.Integer, 9001),
        sample_rate = config.Percent,
        interval = config.Fallback(config.Timespan, config.Integer),
        default_from_env = config.DefaultFromEnv(config.String, "BP_TEST_CONFIG_DEFAULT"),
    }
end

local function example_raw(path)
    return {
        simple = "true",
        cards = "clubs, spades, diamonds",
        ["nested.once"] = "1",
        ["nested.really.deep"] = "3 seconds",
        some_file = path,
        sample_rate = "37.1%",
        interval = "30 seconds",
        default_from_env = "blah",
    }
end

local function with_temp_file(contents, fn)
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(contents)
    f:close()
    local ok, err = pcall(fn, path)
    os.remove(path)
    if not ok then error(err, 0) end
end

t.test("the worked example parses as in Baseplate.py", function()
    with_temp_file("cool", function(path)
        local raw = example_raw(path)
        local cfg = config.parse_config(raw, example_spec())
        t.eq(cfg.simple, true)
        t.eq(cfg.cards, { 1, 2, 3 })
        t.eq(cfg.nested.once, 1)
        t.eq(cfg.nested.really.deep, 3)
        t.eq(cfg.some_file:read("*a"), "cool")
        cfg.some_file:close()
        t.eq(cfg.optional, 9001)
        t.near(cfg.sample_rate, 0.371)
        t.eq(cfg.sample_rate, 37.1 / 100)
        t.eq(cfg.interval, 30)
        t.eq(cfg.default_from_env, "blah")
        t.eq(raw.cards, "clubs, spades, diamonds", "raw config untouched")
    end)
end)

t.test("nested keys become nested tables", function()
    local cfg = config.parse_config({
        ["nested.once"] = "1",
        ["nested.really.deep"] = "3 seconds",
        ["nested.really.deeper"] = "2",
    }, {
        nested = {
            once = config.Integer,
            really = { deep = config.Timespan, deeper = config.Integer },
        },
    })
    t.eq(cfg, { nested = { once = 1, really = { deep = 3, deeper = 2 } } })
end)

t.test("Fallback uses the second parser when the first fails", function()
    local interval = config.Fallback(config.Timespan, config.Integer)
    t.eq(parse_one(interval, "30 seconds"), 30)
    t.eq(parse_one(interval, "30"), 30)
    t.eq(parse_one(interval, "1 minute"), 60)
    -- the fallback's error is the one reported
    t.eq(message(interval, "soon"), 'key: expected an integer, got "soon"')
end)

t.test("DefaultFromEnv reads the environment when the key is empty or missing", function()
    local spec = {
        default_from_env = config.DefaultFromEnv(config.String, "BP_TEST_CONFIG_DEFAULT"),
    }
    setenv("BP_TEST_CONFIG_DEFAULT", "from-env")
    t.eq(config.parse_config({ default_from_env = "blah" }, spec).default_from_env, "blah")
    t.eq(config.parse_config({}, spec).default_from_env, "from-env")
    t.eq(config.parse_config({ default_from_env = "" }, spec).default_from_env, "from-env")

    setenv("BP_TEST_CONFIG_DEFAULT", nil)
    t.eq(config_error({}, spec).message, "default_from_env: no value specified")
    setenv("BP_TEST_CONFIG_DEFAULT", "")
    t.eq(config_error({}, spec).message, "default_from_env: no value specified")

    local with_fallback = { n = config.DefaultFromEnv(config.Integer, "BP_TEST_CONFIG_N", 5) }
    setenv("BP_TEST_CONFIG_N", nil)
    t.eq(config.parse_config({}, with_fallback).n, 5)
    t.eq(config.parse_config({ n = "7" }, with_fallback).n, 7)
    setenv("BP_TEST_CONFIG_N", "12")
    t.eq(config.parse_config({}, with_fallback).n, 12)
    setenv("BP_TEST_CONFIG_N", "twelve")
    t.eq(config_error({}, with_fallback).message,
        'n: expected an integer, got "twelve" (from environment variable BP_TEST_CONFIG_N)')
    setenv("BP_TEST_CONFIG_N", nil)

    t.raises("expected the name of an environment variable", config.DefaultFromEnv, config.String)
end)

t.test("DictOf of a parser", function()
    local raw = {
        ["population.cn"] = "1383890000",
        ["population.in"] = "1317610000",
        ["population.us"] = "325165000",
        ["population.id"] = "263447000",
        ["population.br"] = "207645000",
        ["unrelated"] = "x",
        ["populations.xx"] = "not a number",
    }
    local cfg = config.parse_config(raw, { population = config.DictOf(config.Integer) })
    local n = 0
    for _ in pairs(cfg.population) do n = n + 1 end
    t.eq(n, 5)
    t.eq(cfg.population["br"], 207645000)
    t.eq(cfg.population.cn, 1383890000)

    -- an empty group is an empty table
    t.eq(config.parse_config({}, { population = config.DictOf(config.Integer) }).population, {})
    -- errors name the full key
    raw["population.xx"] = "many"
    t.eq(config_error(raw, { population = config.DictOf(config.Integer) }).message,
        'population.xx: expected an integer, got "many"')
end)

t.test("DictOf of a spec", function()
    local raw = {
        ["countries.cn.population"] = "1383890000",
        ["countries.cn.capital"] = "Beijing",
        ["countries.in.population"] = "1317610000",
        ["countries.in.capital"] = "New Delhi",
        ["countries.us.population"] = "325165000",
        ["countries.us.capital"] = "Washington D.C.",
        ["countries.id.population"] = "263447000",
        ["countries.id.capital"] = "Jakarta",
        ["countries.br.population"] = "207645000",
        ["countries.br.capital"] = "Brasília",
    }
    local cfg = config.parse_config(raw, {
        countries = config.DictOf({
            population = config.Integer,
            capital = config.String,
        }),
    })
    local n = 0
    for _ in pairs(cfg.countries) do n = n + 1 end
    t.eq(n, 5)
    t.eq(cfg.countries["cn"].capital, "Beijing")
    t.eq(cfg.countries["id"].population, 263447000)
    t.eq(cfg.countries.br, { population = 207645000, capital = "Brasília" })

    raw["countries.cn.capital"] = nil
    t.eq(config_error(raw, { countries = config.DictOf({ capital = config.String }) }).message,
        "countries.cn.capital: no value specified")
end)

t.test("DictOf at the root takes every key", function()
    local cfg = config.parse_config({ a = "1", b = "2", ["c.d"] = "3" },
        config.DictOf(config.Optional(config.Integer)))
    t.eq(cfg, { a = 1, b = 2, c = nil })
end)

--------------------------------------------------------------------------------
-- Errors

t.test("a ConfigurationError says key: reason", function()
    local err = config_error({ ["nested.once"] = "1.5" }, { nested = { once = config.Integer } })
    t.eq(err.message, 'nested.once: expected a whole number, got "1.5"')
    t.eq(tostring(err), 'nested.once: expected a whole number, got "1.5"')
    t.eq(err.key, "nested.once")
    t.eq(err.reason, 'expected a whole number, got "1.5"')
    t.ok(getmetatable(err) == config.ConfigurationError)
    t.ok(config.is_configuration_error(err))
    t.ok(not config.is_configuration_error("nested.once: x"))

    local made = config.ConfigurationError("db.url", "no value specified")
    t.eq(made.message, "db.url: no value specified")
    t.eq(tostring(made), "db.url: no value specified")
end)

t.test("a missing key is an empty value", function()
    t.eq(config_error({}, { db = { url = config.String } }).message, "db.url: no value specified")
    t.eq(config_error({}, { n = config.Integer }).message, "n: no value specified")
    t.eq(config_error({}, { f = config.Float }).message, "f: no value specified")
    t.eq(config_error({}, { b = config.Boolean }).message, "b: no value specified")
    t.eq(config_error({}, { e = config.Endpoint }).message, "e: no value specified")
    t.eq(config_error({}, { s = config.Timespan }).message, "s: no value specified")
    t.eq(config_error({}, { p = config.Percent }).message, "p: no value specified")
    t.eq(config_error({}, { b = config.Base64 }).message, "b: no value specified")
    t.eq(config_error({}, { f = config.File() }).message, "f: no value specified")
    t.eq(config_error({}, { u = config.UnixUser }).message, "u: no value specified")
    t.eq(config_error({}, { g = config.UnixGroup }).message, "g: no value specified")
    t.eq(config_error({}, { c = CARDS }).message, "c: no value specified")
    t.eq(config_error({}, { c = config.TupleOf(CARDS) }).message, "c: no values provided")
    t.eq(config_error({ ["db.url"] = "" }, { db = { url = config.String } }).message,
        "db.url: no value specified")
end)

t.test("the key path of a deep key is in the message", function()
    t.eq(config_error({ ["nested.really.deep"] = "3 fortnights" },
            { nested = { really = { deep = config.Timespan } } }).message,
        'nested.really.deep: unknown unit "fortnights"'
            .. " (expected milliseconds, seconds, minutes, hours or days)")
    t.eq(config_error({}, { nested = { really = { deep = config.Timespan } } }).message,
        "nested.really.deep: no value specified")
end)

t.test("a plain function is a parser; its error(reason) is the reason", function()
    local function even(text)
        local n = tonumber(text)
        if not n or n % 2 ~= 0 then
            error("expected an even number")
        end
        return n
    end
    t.eq(parse_one(even, "4"), 4)
    t.eq(message(even, "3"), "key: expected an even number")
    t.eq(config_error({ ["a.b"] = "x" }, { a = { b = even } }).message,
        "a.b: expected an even number")
    -- level 0 and error(msg, 2) work too
    t.eq(message(function() error("plain", 0) end, "x"), "key: plain")
    t.eq(message(function() error("from the caller", 2) end, "x"), "key: from the caller")
    -- a custom parser sees "" for a missing key, as in Baseplate.py
    t.eq(config.parse_config({}, { key = function(text) return "[" .. text .. "]" end }).key, "[]")
    -- other errors are kept as they are
    local buggy = message(function(text) return text.nope.x end, "x")
    t.ok(buggy:find("^key: .*attempt to index") ~= nil, buggy)
    t.eq(message(function() error({}) end, "x"):sub(1, 12), "key: table: ")
    local custom = setmetatable({}, { __tostring = function() return "custom" end })
    t.eq(message(function() error(custom) end, "x"), "key: custom")
end)

t.test("misuse of the spec is a plain error", function()
    local ok, err = pcall(config.parse_config, {}, { ["a.b"] = config.String })
    t.ok(not ok and type(err) == "string")
    t.ok(err:find("invalid key \"a.b\" in spec", 1, true), err)
    t.raises("invalid spec for a.b: expected a parser or a table, got number",
        config.parse_config, {}, { a = { b = 42 } })
    t.raises("expected a table of raw values", config.parse_config, nil, {})
    t.raises("config.TupleOf: expected a parser function", config.TupleOf, nil)
    t.raises("config.Optional: expected a parser function", config.Optional, "x")
    t.raises("config.Fallback: expected a parser function", config.Fallback, config.Integer)
    t.raises("config.DictOf: invalid spec", config.DictOf, 3)
    t.raises("config.OneOf: expected a table of choices", config.OneOf, {})
    t.raises("config.File: invalid mode", config.File, "/var/lib/whatever.txt")
    t.raises("config.Integer: base must be 0 or 2..36", config.Integer, { base = 99 })
end)

t.test("a custom parser object", function()
    local Both = setmetatable({}, { __index = config.Parser })
    Both.__index = Both
    function Both:parse(key_path, raw)
        local a, b = raw[key_path .. ".a"], raw[key_path .. ".b"]
        if not a or not b then
            error(config.ConfigurationError(key_path, "needs .a and .b"), 0)
        end
        return a .. b
    end
    local spec = { pair = setmetatable({}, Both) }
    t.eq(config.parse_config({ ["pair.a"] = "x", ["pair.b"] = "y" }, spec).pair, "xy")
    t.eq(config_error({}, spec).message, "pair: needs .a and .b")
end)

--------------------------------------------------------------------------------
-- Value types

t.test("String", function()
    t.eq(parse_one(config.String, "hello world"), "hello world")
    t.eq(config.String(" x "), " x ")
    t.raises("no value specified", config.String, "")
end)

t.test("Integer", function()
    t.eq(parse_one(config.Integer, "42"), 42)
    t.eq(parse_one(config.Integer, " -7 "), -7)
    t.eq(config.Integer("1_000"), 1000)
    t.eq(message(config.Integer, "1.5"), 'key: expected a whole number, got "1.5"')
    t.eq(message(config.Integer, "abc"), 'key: expected an integer, got "abc"')
    t.eq(message(config.Integer, "9223372036854775808"),
        'key: integer out of range: "9223372036854775808"')
    -- beyond 2^53 the value stays an exact int64_t
    local big = config.Integer("9223372036854775807")
    t.eq(type(big), "cdata")
    t.ok(big == 9223372036854775807LL)
    t.eq(type(config.Integer("9007199254740992")), "number")
end)

t.test("Integer with a base", function()
    t.eq(parse_one(config.Integer{ base = 16 }, "ff"), 255)
    t.eq(parse_one(config.Integer{ base = 16 }, "0x1f"), 31)
    t.eq(parse_one(config.Integer(nil, 16), "1F"), 31)
    t.eq(parse_one(config.Integer{ base = 0 }, "0x1f"), 31)
    t.eq(parse_one(config.Integer{ base = 0 }, "0o17"), 15)
    t.eq(parse_one(config.Integer{ base = 0 }, "0b101"), 5)
    t.eq(parse_one(config.Integer{ base = 2 }, "101"), 5)
    t.eq(config.Integer("ff", 16), 255)
    t.eq(parse_one(config.Integer(), "10"), 10)
    t.eq(message(config.Integer{ base = 16 }, "xyz"), 'key: expected a base-16 integer, got "xyz"')
    t.eq(message(config.Integer{ base = 0 }, "010"), 'key: expected an integer, got "010"')
end)

t.test("Float", function()
    t.eq(parse_one(config.Float, "1e3"), 1000)
    t.eq(parse_one(config.Float, " 2.5 "), 2.5)
    t.eq(parse_one(config.Float, "-0.125"), -0.125)
    t.eq(parse_one(config.Float, "inf"), math.huge)
    t.eq(parse_one(config.Float, "-Infinity"), -math.huge)
    local nan = parse_one(config.Float, "nan")
    t.ok(nan ~= nan)
    t.eq(message(config.Float, "1.2.3"), 'key: expected a number, got "1.2.3"')
    t.eq(message(config.Float, "0x10"), 'key: expected a number, got "0x10"')
end)

t.test("Boolean is case-insensitive and only true/false", function()
    t.eq(parse_one(config.Boolean, "true"), true)
    t.eq(parse_one(config.Boolean, "True"), true)
    t.eq(parse_one(config.Boolean, "TRUE"), true)
    t.eq(parse_one(config.Boolean, "false"), false)
    t.eq(parse_one(config.Boolean, "False"), false)
    t.eq(parse_one(config.Boolean, "fAlSe"), false)
    t.eq(message(config.Boolean, "yes"), 'key: expected "true" or "false", got "yes"')
    t.eq(message(config.Boolean, "1"), 'key: expected "true" or "false", got "1"')
    t.eq(message(config.Boolean, "on"), 'key: expected "true" or "false", got "on"')
end)

t.test("Timespan: a whole count and a unit", function()
    t.eq(parse_one(config.Timespan, "30 milliseconds"), 0.03)
    t.eq(parse_one(config.Timespan, "1 millisecond"), 0.001)
    t.eq(parse_one(config.Timespan, "1 second"), 1)
    t.eq(parse_one(config.Timespan, "3 seconds"), 3)
    t.eq(parse_one(config.Timespan, "2 minutes"), 120)
    t.eq(parse_one(config.Timespan, "1 hour"), 3600)
    t.eq(parse_one(config.Timespan, "1 day"), 86400)
    t.eq(parse_one(config.Timespan, "3 days"), 259200)
    t.eq(message(config.Timespan, "3.2 hours"), 'key: the count must be a whole number, got "3.2"')
    t.eq(message(config.Timespan, "2 weeks"),
        'key: unknown unit "weeks" (expected milliseconds, seconds, minutes, hours or days)')
    t.eq(message(config.Timespan, "30"),
        'key: expected a count and a unit, e.g. "30 seconds", got "30"')
    t.eq(message(config.Timespan, "1 2 seconds"),
        'key: expected a count and a unit, e.g. "30 seconds", got "1 2 seconds"')
    t.eq(message(config.Timespan, "infinite"),
        'key: expected a count and a unit, e.g. "30 seconds", got "infinite"')
    -- as Baseplate.py: int(count) takes a sign, rstrip("s") every trailing s
    t.eq(parse_one(config.Timespan, "-5 seconds"), -5)
    t.eq(parse_one(config.Timespan, "-30 milliseconds"), -0.03)
    t.eq(parse_one(config.Timespan, "2 secondss"), 2)
    t.eq(parse_one(config.Timespan, "+1_000 milliseconds"), 1)
    t.eq(message(config.Timespan, "5 s"),
        'key: unknown unit "s" (expected milliseconds, seconds, minutes, hours or days)')
end)

t.test("NonNegative: the project's timeouts refuse what Timespan now takes", function()
    local timeout = config.NonNegative(config.Timespan)
    t.eq(parse_one(timeout, "5 seconds"), 5)
    t.eq(parse_one(timeout, "0 seconds"), 0)
    t.eq(message(timeout, "-5 seconds"), 'key: must not be negative, got "-5 seconds"')
    t.eq(message(timeout, "soon"), 'key: expected a count and a unit, e.g. "30 seconds", got "soon"')
    t.eq(message(config.NonNegative(config.Integer), "-1"), 'key: must not be negative, got "-1"')
    t.eq(message(config.NonNegative(config.Integer), "-9223372036854775808"),
        'key: must not be negative, got "-9223372036854775808"', "int64 cdata values too")
    t.eq(parse_one(config.Optional(config.NonNegative(config.Timespan), 7), ""), 7)
    t.eq(parse_one(config.NonNegative(config.Optional(config.Timespan)), ""), nil, "nil passes")
    t.eq(parse_one(config.NonNegative(config.TimespanOrInfinite), "infinite"), math.huge)
    t.raises("config.NonNegative: expected a parser function", config.NonNegative, 5)

    -- the clients' own keys use it
    local ok, err = pcall(require("baseplate.clients.thrift").pool_from_config,
        { ["users.endpoint"] = "127.0.0.1:9090", ["users.timeout"] = "-1 seconds" }, "users.")
    t.ok(not ok)
    t.eq(tostring(err), 'users.timeout: must not be negative, got "-1 seconds"')
end)

t.test("TimespanWithLegacyFallback: a timespan or a number of seconds", function()
    t.eq(parse_one(config.TimespanWithLegacyFallback, "30 seconds"), 30)
    t.eq(parse_one(config.TimespanWithLegacyFallback, "30"), 30)
    t.eq(parse_one(config.TimespanWithLegacyFallback, "0.5"), 0.5)
    t.eq(message(config.TimespanWithLegacyFallback, "soon"), 'key: expected a number, got "soon"')
end)

t.test("TimespanOrInfinite", function()
    t.eq(parse_one(config.TimespanOrInfinite, "infinite"), math.huge)
    t.eq(parse_one(config.TimespanOrInfinite, "5 seconds"), 5)
    t.eq(parse_one(config.TimespanOrInfinite, "-5 seconds"), -5)
    t.eq(message(config.TimespanOrInfinite, "forever"),
        'key: expected a count and a unit, e.g. "30 seconds" or "infinite", got "forever"')
end)

t.test("Percent", function()
    t.eq(parse_one(config.Percent, "37.2%"), 37.2 / 100)
    t.near(parse_one(config.Percent, "37.2%"), 0.372)
    t.eq(parse_one(config.Percent, "44%"), 0.44)
    t.eq(parse_one(config.Percent, "100%"), 1)
    t.eq(parse_one(config.Percent, "0%"), 0)
    t.eq(message(config.Percent, "101%"), 'key: percentage must be from 0% to 100%, got "101%"')
    t.eq(message(config.Percent, "-5%"), 'key: percentage must be from 0% to 100%, got "-5%"')
    t.eq(message(config.Percent, "37.2"), 'key: expected a percentage ending in "%", got "37.2"')
    t.eq(message(config.Percent, "lots%"), 'key: expected a number before "%", got "lots%"')
end)

t.test("Endpoint: host:port", function()
    local e = parse_one(config.Endpoint, "127.0.0.1:9090")
    t.eq(e.family, "AF_INET")
    t.eq(e.address.host, "127.0.0.1")
    t.eq(e.address.port, 9090)
    t.eq(e.address[1], "127.0.0.1")
    t.eq(e.address[2], 9090)
    t.eq(e.host, "127.0.0.1")
    t.eq(e.port, 9090)
    t.eq(e.path, nil)
    t.eq(tostring(e), "127.0.0.1:9090")
    t.eq(tostring(e.address), "127.0.0.1:9090")
    t.ok(getmetatable(e) == config.EndpointConfiguration)

    e = parse_one(config.Endpoint, "localhost:80")
    t.eq(e.family, "AF_INET")
    t.eq(e.host, "localhost")
    t.eq(e.port, 80)
end)

t.test("Endpoint: an empty host and int()'s ports, as Baseplate.py", function()
    local e = parse_one(config.Endpoint, ":80")
    t.eq(e.family, "AF_INET")
    t.eq(e.host, "")
    t.eq(e.port, 80)
    t.eq(e.address.host, "")
    t.eq(tostring(e), ":80", "as Python's str(address)")
    t.eq(config.socket_host(e.host), "0.0.0.0", "INADDR_ANY: every interface, or this host")
    t.eq(config.socket_host("example.com"), "example.com")
    e = parse_one(config.Endpoint, "localhost: +8_0")
    t.eq(e.host, "localhost")
    t.eq(e.port, 80)
end)

t.test("Endpoint: [v6addr]:port", function()
    local e = parse_one(config.Endpoint, "[::1]:80")
    t.eq(e.family, "AF_INET6")
    t.eq(e.host, "::1")
    t.eq(e.port, 80)
    t.eq(e.address.host, "::1")
    t.eq(tostring(e), "[::1]:80")
    t.eq(tostring(e.address), "[::1]:80")
end)

t.test("Endpoint: UNIX socket paths", function()
    local e = parse_one(config.Endpoint, "/run/x.sock")
    t.eq(e.family, "AF_UNIX")
    t.eq(e.address, "/run/x.sock")
    t.eq(e.path, "/run/x.sock")
    t.eq(e.host, nil)
    t.eq(tostring(e), "/run/x.sock")
end)

t.test("Endpoint errors", function()
    t.eq(message(config.Endpoint, "localhost"), 'key: no port specified in "localhost"')
    t.eq(message(config.Endpoint, "localhost:http"),
        'key: invalid port "http" (expected a number from 0 to 65535)')
    t.eq(message(config.Endpoint, "localhost:70000"),
        'key: invalid port "70000" (expected a number from 0 to 65535)')
    t.eq(message(config.Endpoint, "localhost:-1"),
        'key: invalid port "-1" (expected a number from 0 to 65535)')
    t.eq(message(config.Endpoint, "my host:80"), 'key: invalid host "my host"')
    t.eq(message(config.Endpoint, "::1:80"),
        'key: too many ":" in "::1:80" (write IPv6 addresses in brackets, e.g. "[::1]:80")')
    t.eq(message(config.Endpoint, "[nope]:80"), 'key: invalid IPv6 address "nope"')
end)

t.test("Base64", function()
    t.eq(parse_one(config.Base64, "Y29vbA=="), "cool")
    t.eq(parse_one(config.Base64, "AP8="), "\0\255")
    t.eq(message(config.Base64, "Y29vbA"), "key: incorrect base64 padding")
    t.eq(message(config.Base64, "Y29v!A=="), "key: invalid base64 character '!' at offset 4")
    -- bigger than the module's scratch buffer
    local chunk = "QUJD" -- "ABC"
    local text = chunk:rep(4000)
    local decoded = parse_one(config.Base64, text)
    t.eq(#decoded, 12000)
    t.eq(decoded, ("ABC"):rep(4000))
end)

t.test("File", function()
    with_temp_file("cool", function(path)
        local f = parse_one(config.File(), path)
        t.eq(f:read("*a"), "cool")
        f:close()
        f = parse_one(config.File{ mode = "rb" }, path)
        t.eq(f:read("*a"), "cool")
        f:close()
        f = parse_one(config.File("a"), path)
        f:write("er")
        f:close()
        f = io.open(path)
        t.eq(f:read("*a"), "cooler")
        f:close()
    end)
    local msg = message(config.File("r"), "/nonexistent/baseplate-test.txt")
    t.ok(msg:find("key: could not open file: /nonexistent/baseplate-test.txt", 1, true) == 1, msg)
end)

t.test("UnixUser and UnixGroup", function()
    t.eq(parse_one(config.UnixUser, "root"), 0)
    t.eq(parse_one(config.UnixUser, "0"), 0)
    t.eq(parse_one(config.UnixUser, "1234"), 1234)
    t.eq(parse_one(config.UnixGroup, "root"), 0)
    t.eq(parse_one(config.UnixGroup, "0"), 0)
    t.eq(message(config.UnixUser, "no-such-user-bp"), 'key: unknown user "no-such-user-bp"')
    t.eq(message(config.UnixGroup, "no-such-group-bp"), 'key: unknown group "no-such-group-bp"')
end)

t.test("OneOf", function()
    local suits = config.OneOf{ hearts = "H", spades = "S" }
    t.eq(parse_one(suits, "hearts"), "H")
    t.eq(parse_one(suits, "spades"), "S")
    t.eq(message(suits, "clubs"), 'key: expected one of hearts, spades, got "clubs"')
    t.eq(message(suits, "Hearts"), 'key: expected one of hearts, spades, got "Hearts"')
    local bools = config.OneOf{ ["true"] = true, ["false"] = false }
    t.eq(parse_one(bools, "false"), false)
    local formats = config.OneOf{ "json", "text" }
    t.eq(parse_one(formats, "json"), "json")
    t.eq(message(formats, "xml"), 'key: expected one of json, text, got "xml"')
end)

t.test("TupleOf", function()
    t.eq(parse_one(config.TupleOf(config.Integer), "1,2,3"), { 1, 2, 3 })
    t.eq(parse_one(config.TupleOf(config.Integer), " 4 , 5,, 6 ,"), { 4, 5, 6 })
    t.eq(parse_one(config.TupleOf(config.String), "a"), { "a" })
    -- INI continuation lines arrive joined with "\n"
    local backends = parse_one(config.TupleOf(config.Endpoint), "a.example:80,\n b.example:81")
    t.eq(#backends, 2)
    t.eq(tostring(backends[2]), "b.example:81")
    local hosts = parse_one(config.TupleOf(config.String),
        "a.example:80,\nb.example:80\nc.example:80")
    t.eq(hosts, { "a.example:80", "b.example:80", "c.example:80" })
    t.eq(parse_one(config.TupleOf(CARDS), "clubs, spades, diamonds"), { 1, 2, 3 })
    t.eq(message(config.TupleOf(CARDS), "clubs, jokers"),
        'key: expected one of clubs, diamonds, hearts, spades, got "jokers"')
    t.eq(message(config.TupleOf(config.Integer), ""), "key: no values provided")
    t.eq(message(config.TupleOf(config.Integer), " , ,"), "key: no values provided")
    t.eq(message(config.TupleOf(config.Integer), "1, b"), 'key: expected an integer, got "b"')
    -- wrapped in Optional, an empty list is fine
    t.eq(parse_one(config.Optional(config.TupleOf(config.Integer), {}), ""), {})
end)

t.test("Optional", function()
    local opt = config.Optional(config.Integer, 9001)
    t.eq(parse_one(opt, "5"), 5)
    t.eq(parse_one(opt, ""), 9001)
    t.eq(parse_one(opt, "   "), 9001)
    t.eq(config.parse_config({}, { key = opt }).key, 9001)
    t.eq(config.parse_config({}, { key = config.Optional(config.Integer) }).key, nil)
    t.eq(message(opt, "x"), 'key: expected an integer, got "x"')
end)

t.test("primitives are fine under repeated use (one shared scratch buffer)", function()
    for i = 1, 200 do
        t.eq(config.Integer(tostring(i)), i)
        t.eq(config.Timespan(i .. " seconds"), i)
        local ok, err = pcall(config.Integer, i .. ".5")
        t.ok(not ok)
        t.eq(err, 'expected a whole number, got "' .. i .. '.5"')
    end
end)

t.done()
