-- Weighted random choice: Baseplate.py's baseplate.lib.random
-- (docs/lib-random.md).
--
--   local random = require("baseplate.lib.random")
--   local lottery = random.WeightedLottery({ "apple", "banana", "cantalope" }, function(w) return #w end)
--   lottery:pick()       --> "banana" (chance 6/20)
--   lottery:sample(2)    --> { "apple", "cantalope" } (without replacement)
local type, tostring, setmetatable, error = type, tostring, setmetatable, error
local floor, math_random = math.floor, math.random

local M = {}

local Lottery = {}
Lottery.__index = Lottery
M.WeightedLottery_mt = Lottery

local function describe(item)
    if type(item) == "string" then return string.format("%q", item) end
    return tostring(item)
end

--- WeightedLottery(items, weight_key[, opts]): items (an array) with the
--- chances weight_key(item) / the sum of all weights. A weight must be a
--- finite non-negative number; no items, or only zero weights, is an error.
--- opts.random: a function returning a number in [0, 1) (math.random by
--- default), for tests.
function M.WeightedLottery(items, weight_key, opts)
    if type(items) ~= "table" then error("WeightedLottery: items must be an array", 2) end
    if type(weight_key) ~= "function" then error("WeightedLottery: weight_key must be a function", 2) end
    local n = #items
    if table.maxn(items) ~= n then error("WeightedLottery: items must be an array without holes", 2) end
    if n == 0 then error("WeightedLottery: items must not be empty", 2) end
    local list, weights, cumulative = {}, {}, {}
    local total = 0
    for i = 1, n do
        local item = items[i]
        local w = weight_key(item)
        if type(w) ~= "number" or w ~= w or w == math.huge then
            error("WeightedLottery: weight for " .. describe(item) .. " must be a finite number, not "
                .. tostring(w), 2)
        end
        if w < 0 then error("WeightedLottery: weight for " .. describe(item) .. " must be non-negative", 2) end
        total = total + w
        list[i], weights[i], cumulative[i] = item, w, total
    end
    if not (total > 0) then error("WeightedLottery: at least one item must have weight", 2) end
    local rng = opts and opts.random or math_random
    return setmetatable({ items = list, weights = weights, cumulative_weights = cumulative,
        total_weight = total, _random = rng }, Lottery)
end

-- The first index whose cumulative weight is above `ticket` (bisect_right).
local function bisect(cumulative, ticket, n)
    local lo, hi = 1, n
    while lo < hi do
        local mid = floor((lo + hi) / 2)
        if cumulative[mid] > ticket then hi = mid else lo = mid + 1 end
    end
    return lo
end

--- One item, each with the chance weight / total weight.
function Lottery:pick()
    local ticket = self._random() * self.total_weight
    return self.items[bisect(self.cumulative_weights, ticket, #self.items)]
end

--- `sample_size` different items (without replacement), each draw with the
--- chances of the items not drawn yet. Items of weight zero are never drawn:
--- a sample larger than the number of items with weight is an error (the
--- reference would loop for ever).
function Lottery:sample(sample_size)
    local items, n = self.items, #self.items
    if type(sample_size) ~= "number" or sample_size % 1 ~= 0 or sample_size < 0 or sample_size > n then
        error("sample size is negative or larger than the population", 2)
    end
    local weights, left, positive = {}, self.total_weight, 0
    for i = 1, n do
        weights[i] = self.weights[i]
        if weights[i] > 0 then positive = positive + 1 end
    end
    if sample_size > positive then
        error("sample size is larger than the number of items with weight (" .. positive .. ")", 2)
    end
    local out = {}
    for k = 1, sample_size do
        local ticket = self._random() * left
        local acc, chosen = 0, nil
        for i = 1, n do
            local w = weights[i]
            if w > 0 then
                acc = acc + w
                chosen = i
                if acc > ticket then break end
            end
        end
        out[k] = items[chosen]
        left = left - weights[chosen]
        weights[chosen] = 0
        if left <= 0 then -- rounding: recount what is left
            left = 0
            for i = 1, n do left = left + weights[i] end
        end
    end
    return out
end

return M
