-- The writer's diff (baseplate.lib.live_data.writer): Python's
-- difflib.unified_diff, line for line, so that baseplate-live-data-writer
-- shows what the reference's writer shows. Plain Lua (no FFI): its fuzz
-- target (tests/fuzz/fuzz-diff.c) runs it in a bare Lua state.
local format = string.format

local M = {}

M.CONTEXT = 3 -- lines of context around a change

--- The lines of `text` as Python's str.splitlines() cuts them: at \n,
--- \r\n, \r, \v, \f, \x1c-\x1e, U+0085, U+2028 and U+2029 (UTF-8), a last
--- separator ending the last line.
local function lines_of(text)
    local out, start, i, n = {}, 1, 1, #text
    local byte = string.byte
    while i <= n do
        local c = byte(text, i)
        local sep = 0
        if c == 10 or c == 11 or c == 12 or (c >= 28 and c <= 30) then
            sep = 1
        elseif c == 13 then
            sep = byte(text, i + 1) == 10 and 2 or 1
        elseif c == 0xC2 and byte(text, i + 1) == 0x85 then
            sep = 2
        elseif c == 0xE2 and byte(text, i + 1) == 0x80 then
            local c3 = byte(text, i + 2)
            if c3 == 0xA8 or c3 == 0xA9 then sep = 3 end
        end
        if sep > 0 then
            out[#out + 1] = text:sub(start, i - 1)
            i = i + sep
            start = i
        else
            i = i + 1
        end
    end
    if start <= n then out[#out + 1] = text:sub(start) end
    return out
end
M.lines_of = lines_of

--- Whether `s` is UTF-8 text (else the diff is skipped, as the reference).
function M.is_utf8(s)
    local i, n = 1, #s
    while i <= n do
        local c = s:byte(i)
        local len
        if c < 0x80 then len = 1
        elseif c >= 0xC2 and c <= 0xDF then len = 2
        elseif c >= 0xE0 and c <= 0xEF then len = 3
        elseif c >= 0xF0 and c <= 0xF4 then len = 4
        else return false end
        for k = 1, len - 1 do
            local cc = s:byte(i + k)
            if not cc or cc < 0x80 or cc > 0xBF then return false end
        end
        if len == 3 then
            local c2 = s:byte(i + 1)
            if (c == 0xE0 and c2 < 0xA0) or (c == 0xED and c2 > 0x9F) then return false end
        elseif len == 4 then
            local c2 = s:byte(i + 1)
            if (c == 0xF0 and c2 < 0x90) or (c == 0xF4 and c2 > 0x8F) then return false end
        end
        i = i + len
    end
    return true
end

-- The diff is Python's difflib's (SequenceMatcher: the longest matching
-- block, then the same on each side of it, recursively; lines that occur
-- in more than 1% of a 200-line or longer new text are not used to start
-- a match), so that the writer shows what the reference shows.

-- The longest block of equal lines of a[alo..ahi) and b[blo..bhi)
-- (0-based, half-open): i, j, size.
local function longest_match(a, b, b2j, alo, ahi, blo, bhi)
    local besti, bestj, bestsize = alo, blo, 0
    local j2len = {}
    for i = alo, ahi - 1 do
        local newj2len = {}
        local js = b2j[a[i + 1]]
        if js then
            for _, j in ipairs(js) do
                if j >= blo then
                    if j >= bhi then break end
                    local k = (j2len[j - 1] or 0) + 1
                    newj2len[j] = k
                    if k > bestsize then besti, bestj, bestsize = i - k + 1, j - k + 1, k end
                end
            end
        end
        j2len = newj2len
    end
    while besti > alo and bestj > blo and a[besti] == b[bestj] do
        besti, bestj, bestsize = besti - 1, bestj - 1, bestsize + 1
    end
    while besti + bestsize < ahi and bestj + bestsize < bhi and a[besti + bestsize + 1] == b[bestj + bestsize + 1] do
        bestsize = bestsize + 1
    end
    return besti, bestj, bestsize
end

-- The opcodes turning a into b: { tag, i1, i2, j1, j2 } (0-based,
-- half-open), tag "equal", "replace", "delete" or "insert".
local function opcodes(a, b)
    local b2j, counts = {}, {}
    for j, line in ipairs(b) do
        local js = b2j[line]
        if not js then js = {}; b2j[line] = js end
        js[#js + 1] = j - 1
        counts[line] = (counts[line] or 0) + 1
    end
    if #b >= 200 then -- (difflib's autojunk: popular lines do not start matches)
        local limit = math.floor(#b / 100) + 1
        for line, n in pairs(counts) do
            if n > limit then b2j[line] = nil end
        end
    end
    local blocks, queue = {}, { { 0, #a, 0, #b } }
    while #queue > 0 do
        local q = table.remove(queue)
        local alo, ahi, blo, bhi = q[1], q[2], q[3], q[4]
        local i, j, k = longest_match(a, b, b2j, alo, ahi, blo, bhi)
        if k > 0 then
            blocks[#blocks + 1] = { i, j, k }
            if alo < i and blo < j then queue[#queue + 1] = { alo, i, blo, j } end
            if i + k < ahi and j + k < bhi then queue[#queue + 1] = { i + k, ahi, j + k, bhi } end
        end
    end
    table.sort(blocks, function(x, y) return x[1] < y[1] or (x[1] == y[1] and x[2] < y[2]) end)
    local merged = {}
    for _, bl in ipairs(blocks) do
        local last = merged[#merged]
        if last and last[1] + last[3] == bl[1] and last[2] + last[3] == bl[2] then
            last[3] = last[3] + bl[3]
        else
            merged[#merged + 1] = { bl[1], bl[2], bl[3] }
        end
    end
    merged[#merged + 1] = { #a, #b, 0 }
    local codes, i, j = {}, 0, 0
    for _, bl in ipairs(merged) do
        local ai, bj, size = bl[1], bl[2], bl[3]
        local tag
        if i < ai and j < bj then tag = "replace"
        elseif i < ai then tag = "delete"
        elseif j < bj then tag = "insert" end
        if tag then codes[#codes + 1] = { tag, i, ai, j, bj } end
        i, j = ai + size, bj + size
        if size > 0 then codes[#codes + 1] = { "equal", ai, i, bj, j } end
    end
    return codes
end

-- The opcodes in hunks with `n` lines of context.
local function grouped(codes, n)
    if #codes == 0 then codes = { { "equal", 0, 1, 0, 1 } } end
    local first = codes[1]
    if first[1] == "equal" then
        codes[1] = { "equal", math.max(first[2], first[3] - n), first[3], math.max(first[4], first[5] - n), first[5] }
    end
    local last = codes[#codes]
    if last[1] == "equal" then
        codes[#codes] = { "equal", last[2], math.min(last[3], last[2] + n), last[4], math.min(last[5], last[4] + n) }
    end
    local groups, group = {}, {}
    for _, c in ipairs(codes) do
        local tag, i1, i2, j1, j2 = c[1], c[2], c[3], c[4], c[5]
        if tag == "equal" and i2 - i1 > 2 * n then
            group[#group + 1] = { tag, i1, math.min(i2, i1 + n), j1, math.min(j2, j1 + n) }
            groups[#groups + 1] = group
            group = {}
            i1, j1 = math.max(i1, i2 - n), math.max(j1, j2 - n)
        end
        group[#group + 1] = { tag, i1, i2, j1, j2 }
    end
    if #group > 0 and not (#group == 1 and group[1][1] == "equal") then groups[#groups + 1] = group end
    return groups
end

-- difflib's range: "start,length", "start" for one line, "start-1,0" for none.
local function range(start, stop)
    local beginning, length = start + 1, stop - start
    if length == 1 then return tostring(beginning) end
    if length == 0 then beginning = beginning - 1 end
    return beginning .. "," .. length
end

--- The unified diff of texts `old` and `new` (lists of lines, without
--- newlines), as Python's difflib.unified_diff with its defaults; {} when
--- they are the same.
function M.unified_diff(old, new)
    local out = {}
    for _, group in ipairs(grouped(opcodes(old, new), M.CONTEXT)) do
        if #out == 0 then out[1], out[2] = "--- ", "+++ " end
        local first, last = group[1], group[#group]
        out[#out + 1] = format("@@ -%s +%s @@", range(first[2], last[3]), range(first[4], last[5]))
        for _, c in ipairs(group) do
            local tag, i1, i2, j1, j2 = c[1], c[2], c[3], c[4], c[5]
            if tag == "equal" then
                for k = i1 + 1, i2 do out[#out + 1] = " " .. old[k] end
            else
                if tag ~= "insert" then for k = i1 + 1, i2 do out[#out + 1] = "-" .. old[k] end end
                if tag ~= "delete" then for k = j1 + 1, j2 do out[#out + 1] = "+" .. new[k] end end
            end
        end
    end
    return out
end

return M
