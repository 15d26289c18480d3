-- The HTTP client's address filter (baseplate.clients.http, src/clients/http.c)
-- judged address by address, as Baseplate.py's (Advocate's): every IPv4
-- special range, IPv6 and its forms of them, the allow and deny lists;
-- and the client's configuration and URL helpers. The filter's part in real
-- calls (a name resolving to 127.0.0.1 or ::1, a redirect into loopback) is
-- in tests/integration/test-http-client.sh.
local t = require("testlib")
local ffi = require("ffi")
local http = require("baseplate.clients.http")
local C = require("baseplate.core").C

local why = ffi.new("char[512]")

local function filter(mode, allow_ipv6, setup)
    local f = ffi.gc(C.bp_http_filter_new(mode, allow_ipv6 and 1 or 0), C.bp_http_filter_free)
    if setup then setup(f) end
    return f
end

local function judge(f, ip, port)
    local rc = C.bp_http_filter_check(f, ip, port or 443, why, 512)
    return rc == 0, ffi.string(why)
end

local external = filter(http.FILTER_EXTERNAL, false)
local external6 = filter(http.FILTER_EXTERNAL, true)
local internal = filter(http.FILTER_INTERNAL, false)

t.test("public IPv4 addresses pass an external filter", function()
    for _, ip in ipairs({ "8.8.8.8", "93.184.216.34", "1.1.1.1", "100.63.255.255", "100.128.0.0",
        "172.15.255.255", "172.32.0.0", "11.0.0.1", "192.169.0.1", "223.255.255.254" }) do
        local ok, w = judge(external, ip)
        t.ok(ok, ip .. ": " .. w)
    end
end)

t.test("every IPv4 special range is refused, saying what it is", function()
    local cases = {
        { "0.0.0.0", "this network" }, { "10.0.0.1", "private" }, { "10.255.255.255", "private" },
        { "100.64.0.1", "carrier-grade" }, { "100.127.255.255", "carrier-grade" },
        { "127.0.0.1", "loopback" }, { "127.255.0.1", "loopback" }, { "169.254.169.254", "link-local" },
        { "172.16.0.1", "private" }, { "172.31.255.255", "private" }, { "192.0.0.8", "reserved" },
        { "192.0.2.1", "documentation" }, { "192.88.99.1", "6to4 relay" }, { "192.168.1.1", "private" },
        { "198.18.0.1", "benchmarking" }, { "198.19.255.255", "benchmarking" },
        { "198.51.100.7", "documentation" }, { "203.0.113.9", "documentation" },
        { "224.0.0.1", "multicast" }, { "239.255.255.250", "multicast" }, { "240.0.0.1", "reserved" },
        { "255.255.255.255", "reserved" },
    }
    for _, c in ipairs(cases) do
        local ok, w = judge(external, c[1])
        t.eq(ok, false, c[1])
        t.ok(w:find(c[1], 1, true) and w:find(c[2], 1, true), c[1] .. ": " .. w)
    end
end)

t.test("IPv6 is refused unless allowed", function()
    local ok, w = judge(external, "2606:4700:4700::1111")
    t.eq(ok, false)
    t.ok(w:find("IPv6 is not allowed", 1, true), w)
    ok, w = judge(external6, "2606:4700:4700::1111")
    t.ok(ok, w)
    ok, w = judge(external6, "2a00:1450:4001:80b::200e")
    t.ok(ok, w)
end)

t.test("IPv6 forms of internal addresses are refused", function()
    local cases = {
        { "::1", "loopback" }, { "::", "unspecified" },
        { "::ffff:127.0.0.1", "IPv4-mapped address of 127.0.0.1, a loopback" },
        { "::ffff:10.0.0.1", "IPv4-mapped address of 10.0.0.1, a private" },
        { "::ffff:169.254.169.254", "link-local" },
        { "64:ff9b::7f00:1", "NAT64 address of 127.0.0.1" },
        { "64:ff9b::a9fe:a9fe", "NAT64 address of 169.254.169.254" },
        { "64:ff9b:1::1", "local-use NAT64" },
        { "fc00::1", "unique local" }, { "fd12:3456:789a::1", "unique local" },
        { "fe80::1", "link-local" }, { "fec0::1", "site-local" }, { "ff02::1", "multicast" },
        { "2002:7f00:1::1", "6to4" }, { "2002:0808:0808::1", "6to4" },
        { "2001::1", "Teredo" }, { "2001:db8::1", "documentation" }, { "100::1", "discard" },
        { "::127.0.0.1", "reserved" }, { "4000::1", "outside 2000::/3" },
    }
    for _, c in ipairs(cases) do
        local ok, w = judge(external6, c[1])
        t.eq(ok, false, c[1])
        t.ok(w:find(c[2], 1, true), c[1] .. ": " .. w)
    end
    -- the public IPv4 address inside a mapped or NAT64 address passes
    t.ok((judge(external6, "::ffff:8.8.8.8")))
    t.ok((judge(external6, "64:ff9b::808:808")))
end)

t.test("allow lists punch holes, deny lists close them; ports", function()
    local f = filter(http.FILTER_EXTERNAL, false, function(f)
        assert(C.bp_http_filter_add(f, http.ALLOW, "10.1.0.0/16", nil, 0) == 0)
        assert(C.bp_http_filter_add(f, http.ALLOW, "fd00::1", nil, 0) == 0)
        assert(C.bp_http_filter_add(f, http.DENY, "8.8.8.0/24", nil, 0) == 0)
        assert(C.bp_http_filter_add_port(f, http.ALLOW, 443) == 0)
        assert(C.bp_http_filter_add_port(f, http.ALLOW, 8443) == 0)
        assert(C.bp_http_filter_add_port(f, http.DENY, 8443) == 0)
    end)
    t.ok((judge(f, "10.1.2.3")))
    t.eq((judge(f, "10.2.0.1")), false)
    t.ok((judge(f, "fd00::1")), "an allowed IPv6 address passes even with IPv6 off")
    local ok, w = judge(f, "8.8.8.8")
    t.eq(ok, false)
    t.ok(w:find("denied by the configuration", 1, true), w)
    t.ok((judge(f, "8.8.4.4")))
    ok, w = judge(f, "8.8.4.4", 80)
    t.eq(ok, false)
    t.ok(w:find("port 80 is not allowed", 1, true), w)
    t.eq((judge(f, "8.8.4.4", 8443)), false, "a denied port beats an allowed one")
end)

t.test("bad networks are refused with a message", function()
    local f = filter(http.FILTER_EXTERNAL, false)
    local err = ffi.new("char[256]")
    for _, bad in ipairs({ "", "1.2.3", "1.2.3.4/33", "10.0.0.1/8", "::1/129", "host.example", "1.2.3.4/", "1.2.3.4/x" }) do
        t.eq(C.bp_http_filter_add(f, http.ALLOW, bad, err, 256), require("baseplate.core").EINVAL, bad)
        t.ok(ffi.string(err) ~= "", bad)
    end
    t.eq(C.bp_http_filter_add_port(f, http.ALLOW, 0), require("baseplate.core").EINVAL)
    t.eq(C.bp_http_filter_add_port(f, http.ALLOW, 65536), require("baseplate.core").EINVAL)
    t.eq(C.bp_http_filter_check(f, "nonsense", 80, why, 512), require("baseplate.core").EINVAL)
end)

t.test("an internal filter lets internal addresses through, refuses public ones", function()
    for _, ip in ipairs({ "127.0.0.1", "10.0.0.1", "172.20.1.1", "192.168.0.1", "169.254.1.1", "100.64.0.1",
        "::1", "fd00::1", "fe80::1", "::ffff:10.0.0.1" }) do
        local ok, w = judge(internal, ip, 1234)
        t.ok(ok, ip .. ": " .. w)
    end
    for _, ip in ipairs({ "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8" }) do
        local ok, w = judge(internal, ip)
        t.eq(ok, false, ip)
        t.ok(w:find("not an internal address", 1, true), w)
    end
end)

t.test("configuration: Baseplate.py's keys, errors naming the key", function()
    local f = http.ExternalClient():parse("web", {
        ["web.pool_maxsize"] = "5", ["web.max_retries"] = "1", ["web.pool_block"] = "true",
        ["web.filter.ip_allowlist"] = "10.0.0.0/8, 192.168.1.1", ["web.filter.port_denylist"] = "8000",
        ["web.filter.hostname_denylist"] = "*.corp.example",
    })
    t.eq(f.client._cfg.max_retries, 1)
    t.eq(f.client._pool.size, 5)
    t.ok((judge(f.client._cfg.filter, "10.9.9.9")))
    t.eq((judge(f.client._cfg.filter, "8.8.8.8", 8000)), false)
    local ok, err = pcall(function()
        http.ExternalClient():parse("web", { ["web.filter.ip_allowlist"] = "10.0.0.1/8" })
    end)
    t.eq(ok, false)
    t.ok(tostring(err):find("web.filter.ip_allowlist", 1, true), tostring(err))
    ok, err = pcall(function() http.ExternalClient():parse("web", { ["web.filter.port_allowlist"] = "99999" }) end)
    t.eq(ok, false)
    t.ok(tostring(err):find("web.filter.port_allowlist", 1, true), tostring(err))
    ok, err = pcall(function() http.InternalClient():parse("api", { ["api.pool_maxsize"] = "0" }) end)
    t.eq(ok, false)
    t.ok(tostring(err):find("api.pool_maxsize", 1, true), tostring(err))
end)

t.test("URLs: queries, Location headers, the URL without its query string", function()
    t.eq(http.encode_query({ b = "x y", a = { 1, 2 }, c = "é&=" }), "a=1&a=2&b=x%20y&c=%C3%A9%26%3D")
    t.eq(http.join_url("http://h:1/a/b?q", "/c"), "http://h:1/c")
    t.eq(http.join_url("http://h:1/a/b?q", "c?d"), "http://h:1/a/c?d")
    t.eq(http.join_url("http://h/a", "//other/x"), "http://other/x")
    t.eq(http.join_url("http://h/a", "https://x/y"), "https://x/y")
    local scheme, host, bare = http.split_url("HTTP://user:pw@[::1]:80/p?q=1#f")
    t.eq(scheme, "http")
    t.eq(host, "::1")
    t.eq(bare, "HTTP://user:pw@[::1]:80/p")
end)

t.done()
