-- baseplate.lib.random: WeightedLottery's rules on weights, and picks and
-- samples whose frequencies follow the weights (fixed seed, wide bounds).
local t = require("testlib")
local random = require("baseplate.lib.random")

local function len(s) return #s end

t.test("the reference's example", function()
    local words = { "apple", "banana", "cantalope" }
    local lottery = random.WeightedLottery(words, len)
    local picked = lottery:pick()
    t.ok(picked == "apple" or picked == "banana" or picked == "cantalope")
    local s = lottery:sample(2)
    t.eq(#s, 2)
    t.ok(s[1] ~= s[2], "without replacement")
    t.eq(lottery.total_weight, 20)
end)

t.test("weights: empty, all zero, negative, not numbers are errors", function()
    t.raises("items must not be empty", random.WeightedLottery, {}, len)
    t.raises("at least one item must have weight", random.WeightedLottery, { "a", "b" }, function() return 0 end)
    t.raises('weight for "b" must be non-negative', random.WeightedLottery, { "a", "b" },
        function(x) return x == "b" and -1 or 1 end)
    t.raises("must be a finite number", random.WeightedLottery, { "a" }, function() return 0 / 0 end)
    t.raises("must be a finite number", random.WeightedLottery, { "a" }, function() return math.huge end)
    t.raises("must be a finite number", random.WeightedLottery, { "a" }, function() return "3" end)
    t.raises("items must be an array without holes", random.WeightedLottery, { "a", nil, "c" }, len)
    t.raises("weight_key must be a function", random.WeightedLottery, { "a" }, nil)
end)

t.test("pick follows the weights; zero weights are never picked", function()
    math.randomseed(42)
    local items = { { n = "a", w = 1 }, { n = "zero", w = 0 }, { n = "b", w = 3 }, { n = "c", w = 6 } }
    local lottery = random.WeightedLottery(items, function(i) return i.w end)
    local counts = { a = 0, b = 0, c = 0, zero = 0 }
    local N = 20000
    for _ = 1, N do
        local i = lottery:pick()
        counts[i.n] = counts[i.n] + 1
    end
    t.eq(counts.zero, 0)
    t.near(counts.a / N, 0.1, 0.02, "a")
    t.near(counts.b / N, 0.3, 0.02, "b")
    t.near(counts.c / N, 0.6, 0.02, "c")
end)

t.test("pick at the edges of the range (a given random function)", function()
    local r = 0
    local lottery = random.WeightedLottery({ "a", "z", "b" }, function(x) return x == "z" and 0 or 1 end,
        { random = function() return r end })
    t.eq(lottery:pick(), "a")
    r = 0.5 -- ticket 1.0: the first cumulative weight above it is b's (2); z's is 1
    t.eq(lottery:pick(), "b")
    r = 0.9999999
    t.eq(lottery:pick(), "b")
end)

t.test("sample: without replacement, weighted, bounded", function()
    math.randomseed(7)
    local items = { "a", "b", "c", "d" }
    local w = { a = 1, b = 1, c = 8, d = 0 }
    local lottery = random.WeightedLottery(items, function(x) return w[x] end)
    local first_c = 0
    for _ = 1, 5000 do
        local s = lottery:sample(3)
        t.eq(#s, 3)
        local seen = {}
        for _, x in ipairs(s) do
            t.ok(not seen[x], "repeated " .. x)
            seen[x] = true
            t.ok(x ~= "d", "zero weight drawn")
        end
        if s[1] == "c" then first_c = first_c + 1 end
    end
    t.near(first_c / 5000, 0.8, 0.03, "the heaviest first")
    t.eq(lottery:sample(0), {})
    t.raises("sample size is negative or larger than the population", lottery.sample, lottery, 5)
    t.raises("sample size is negative or larger than the population", lottery.sample, lottery, -1)
    t.raises("larger than the number of items with weight (3)", lottery.sample, lottery, 4)
end)

t.done()
