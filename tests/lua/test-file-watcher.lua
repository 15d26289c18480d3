-- baseplate.lib.file_watcher on real files: replaced atomically (write a
-- temporary file, rename it over the watched one, as the secrets fetcher
-- does), written in place, broken, removed, while coroutines read.
local t = require("testlib")
local fw = require("baseplate.lib.file_watcher")
local runtime = require("baseplate.runtime")

-- os.tmpname makes a unique file: its name plus ".d" is a directory no
-- other run of this test uses at the same time
local dir = os.tmpname() .. ".d"
assert(os.execute("mkdir -p '" .. dir .. "'") == 0)

local function write(path, text)
    local f = assert(io.open(path, "wb"))
    f:write(text)
    f:close()
end

-- As the secrets fetcher writes: a temporary file renamed over the old one.
local function replace(path, text)
    write(path .. ".tmp", text)
    assert(os.rename(path .. ".tmp", path))
end

local calls = 0
local function number_parser(f)
    calls = calls + 1
    local s = f:read("a")
    local n = tonumber(s)
    if not n then error("not a number", 0) end
    return n
end

t.test("a missing file: get_data raises WatchedFileNotAvailableError naming the path", function()
    local path = dir .. "/missing"
    local w = fw.FileWatcher(path, number_parser)
    local err = t.raises(path .. ": no such file", function() return w:get_data() end)
    t.ok(fw.is_not_available(err))
    t.eq(err.class, "WatchedFileNotAvailableError")
    t.eq(err.path, path)
    w:close()
end)

t.test("atomic replacement is seen through the directory's events (no timer)", function()
    local path = dir .. "/renamed"
    write(path, "1")
    calls = 0
    -- A long backoff: only inotify can tell the watcher in time.
    local w = fw.FileWatcher(path, number_parser, { backoff = 3600 })
    t.eq(w:get_data(), 1)
    t.eq(calls, 1)
    t.eq(w:get_data(), 1)
    t.eq(calls, 1, "parsed only when the file changed")
    replace(path, "2")
    t.ok(t.wait_until(function() return w:get_data() == 2 end, 2), "saw the renamed file")
    t.eq(calls, 2)
    local data, mtime = w:get_data_and_mtime()
    t.eq(data, 2)
    t.ok(math.abs(mtime - os.time()) < 5, "mtime is the file's")
    w:close()
end)

t.test("a write in place is seen", function()
    local path = dir .. "/inplace"
    write(path, "10")
    local w = fw.FileWatcher(path, number_parser, { backoff = 3600 })
    t.eq(w:get_data(), 10)
    write(path, "11")
    t.ok(t.wait_until(function() return w:get_data() == 11 end, 2))
    w:close()
end)

t.test("a parse error and a vanished file keep the last good data", function()
    local path = dir .. "/keep"
    write(path, "5")
    local w = fw.FileWatcher(path, number_parser, { backoff = 3600 })
    t.eq(w:get_data(), 5)
    calls = 0
    replace(path, "garbage")
    -- parsed on the get_data() after the read, and the old value still served
    t.ok(t.wait_until(function() return w:get_data() == 5 and calls > 0 end, 2), "the broken file was parsed")
    t.eq(w:get_data(), 5)
    os.remove(path)
    runtime.sleep(0.2)
    t.eq(w:get_data(), 5)
    replace(path, "6")
    t.ok(t.wait_until(function() return w:get_data() == 6 end, 2), "came back")
    w:close()
end)

t.test("a broken first read raises until a good one", function()
    local path = dir .. "/broken-first"
    write(path, "x")
    local w = fw.FileWatcher(path, number_parser, { backoff = 3600 })
    t.raises(path .. ": not a number", function() return w:get_data() end)
    replace(path, "7")
    t.ok(t.wait_until(function() return pcall(w.get_data, w) end, 2))
    t.eq(w:get_data(), 7)
    w:close()
end)

t.test("a file that appears later, in a directory created later, is found by the timer", function()
    local sub = dir .. "/later"
    local path = sub .. "/file"
    local w = fw.FileWatcher(path, number_parser, { backoff = 0.05 })
    t.raises("no such file", function() return w:get_data() end)
    assert(os.execute("mkdir -p '" .. sub .. "'") == 0)
    replace(path, "8")
    t.ok(t.wait_until(function() return pcall(w.get_data, w) end, 2))
    t.eq(w:get_data(), 8)
    -- and from then on the directory's events too
    replace(path, "9")
    t.ok(t.wait_until(function() return w:get_data() == 9 end, 2))
    w:close()
end)

t.test("timeout: waits for the file, or raises when it does not come", function()
    local path = dir .. "/timeout"
    runtime.after(0.1, function() replace(path, "12") end)
    local w = fw.FileWatcher(path, number_parser, 2)
    t.eq(w:get_data(), 12)
    w:close()
    local started = runtime.now()
    local err = t.raises(dir .. "/never: timed out", function()
        return fw.FileWatcher(dir .. "/never", number_parser, { timeout = 0.2, backoff = 0.05 })
    end)
    t.ok(fw.is_not_available(err))
    t.ok(runtime.now() - started >= 0.19, "waited")
end)

t.test("a file larger than max_size is not read", function()
    local path = dir .. "/big"
    write(path, "1234567")
    local w = fw.FileWatcher(path, number_parser, { max_size = 4 })
    t.raises(path .. ": ", function() return w:get_data() end)
    w:close()
    w = fw.FileWatcher(path, number_parser, { max_size = 7 })
    t.eq(w:get_data(), 1234567)
    w:close()
end)

t.test("text mode: universal newlines, newline and encodings; binary mode untouched", function()
    local path = dir .. "/text"
    write(path, "a\r\nb\rc\n\xc3\xa9")
    local function lines(f)
        local out = {}
        for l in f:lines() do out[#out + 1] = l end
        return out
    end
    local w = fw.FileWatcher(path, lines)
    t.eq(w:get_data(), { "a", "b", "c", "\xc3\xa9" })
    w:close()
    w = fw.FileWatcher(path, function(_, text) return text end, { newline = "" })
    t.eq(w:get_data(), "a\r\nb\rc\n\xc3\xa9")
    w:close()
    w = fw.FileWatcher(path, lines, { newline = "\r\n" })
    t.eq(w:get_data(), { "a", "b\rc\n\xc3\xa9" })
    w:close()
    w = fw.FileWatcher(path, function(_, text) return text end, { encoding = "latin-1", newline = "" })
    t.eq(w:get_data(), "a\r\nb\rc\n\xc3\x83\xc2\xa9")
    w:close()
    w = fw.FileWatcher(path, function(_, text) return text end, { encoding = "ascii" })
    t.raises("'ascii' codec can't decode byte at position 7", function() return w:get_data() end)
    w:close()
    write(path, "\xff\r\n")
    w = fw.FileWatcher(path, function(_, text) return text end)
    t.raises("'utf-8' codec can't decode byte at position 0", function() return w:get_data() end)
    w:close()
    w = fw.FileWatcher(path, function(f) return f:read("a") end, { binary = true })
    t.eq(w:get_data(), "\xff\r\n")
    w:close()
end)

t.test("bad arguments are the caller's error", function()
    local path = dir .. "/args"
    t.raises("binary mode doesn't take an encoding argument",
        fw.FileWatcher, path, number_parser, { binary = true, encoding = "utf-8" })
    t.raises("binary mode doesn't take a newline argument",
        fw.FileWatcher, path, number_parser, { binary = true, newline = "\n" })
    t.raises("unknown encoding: klingon", fw.FileWatcher, path, number_parser, { encoding = "klingon" })
    t.raises("illegal newline value", fw.FileWatcher, path, number_parser, { newline = "x" })
    t.raises("parser must be a function", fw.FileWatcher, path, nil)
    t.raises("path must be a non-empty string", fw.FileWatcher, "", number_parser)
    t.raises("FileWatcher: " .. dir .. "/: ", fw.FileWatcher, dir .. "/", number_parser)
end)

t.test("readers never see a partial file while it is replaced over and over", function()
    local path = dir .. "/busy"
    local function payload(i) return string.rep(tostring(i % 10), 20000) .. ":" .. i end
    replace(path, payload(0))
    local w = fw.FileWatcher(path, function(f)
        local s = f:read("a")
        local body, n = s:match("^(%d+):(%d+)$")
        assert(body and #body == 20000 and body == string.rep(tostring(n % 10), 20000), "a partial file")
        return tonumber(n)
    end, { backoff = 3600 })
    local last, bad, reads, done = 0, 0, 0, false
    for _ = 1, 4 do
        runtime.spawn(function()
            while not done do
                local n = w:get_data()
                if n < last then bad = bad + 1 end
                last = n
                reads = reads + 1
                runtime.sleep(0.001)
            end
        end)
    end
    for i = 1, 100 do
        replace(path, payload(i))
        runtime.sleep(0.002)
    end
    t.ok(t.wait_until(function() return w:get_data() == 100 end, 3), "the last version is seen")
    done = true
    runtime.sleep(0.01)
    t.eq(bad, 0, "went backwards")
    t.ok(reads > 50, "readers ran while files were replaced: " .. reads)
    w:close()
end)

t.test("FakeFileWatcher", function()
    local f = fw.FakeFileWatcher()
    t.raises("/fake-file-watcher: no value set", function() return f:get_data() end)
    f.data = "test"
    t.eq(f:get_data(), "test")
    local d, m = f:get_data_and_mtime()
    t.eq(d, "test")
    t.eq(m, 1234)
end)

t.test("a collected watcher lets go of its handles", function()
    local path = dir .. "/gc"
    write(path, "1")
    for _ = 1, 50 do fw.FileWatcher(path, number_parser) end
    collectgarbage()
    collectgarbage()
    runtime.sleep(0.05)
end)

os.execute("rm -rf '" .. dir .. "' '" .. dir:sub(1, -3) .. "'")
t.done()
