-- Epoch and time zone helpers, as Baseplate.py's baseplate.lib.datetime
-- (docs/lib-datetime.md):
--
--   local datetime = require("baseplate.lib.datetime")
--   local now = datetime.get_utc_now()  --> { year = 2026, month = 12, day = 5, hour = …, usec = …, utcoffset = 0 }
--   datetime.datetime_to_epoch_seconds({ year = 2026, month = 12, day = 5 })              --> 1796428800
--   datetime.datetime_to_epoch_milliseconds({ year = 1970, month = 1, day = 1, usec = 5000 }) --> 5
--   datetime.epoch_seconds_to_datetime(0)         --> 1970-01-01 00:00:00 UTC, as a table
--
-- A datetime is a table like os.date("!*t")'s: year, month, day, hour, min,
-- sec, plus usec (microseconds, 0 when absent) and utcoffset (seconds east
-- of UTC; a table without it is UTC, as Baseplate.py takes a naive
-- datetime). The calendar is the proleptic Gregorian one of Python's
-- datetime, years 1 to 9999; the arithmetic is ours (no os.time, which
-- would read the local time zone).
local runtime = require("baseplate.runtime")

local type, tostring, error, floor, format = type, tostring, error, math.floor, string.format

local M = {}

--- The wall clock get_utc_now reads (seconds since the epoch); tests may
--- replace it. baseplate.time(), so the test clock holds it.
M.clock = runtime.time

local MIN_YEAR, MAX_YEAR = 1, 9999

local function is_leap(y)
    return y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0)
end

local DAYS = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }
local function days_in_month(y, m)
    if m == 2 and is_leap(y) then return 29 end
    return DAYS[m]
end

-- Days since 1970-01-01 of a civil date (proleptic Gregorian).
local function days_from_civil(y, m, d)
    if m <= 2 then y = y - 1 end
    local era = floor(y / 400)
    local yoe = y - era * 400
    local mp = (m + 9) % 12
    local doy = floor((153 * mp + 2) / 5) + d - 1
    local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
    return era * 146097 + doe - 719468
end

-- The civil date of a count of days since 1970-01-01.
local function civil_from_days(z)
    z = z + 719468
    local era = floor(z / 146097)
    local doe = z - era * 146097
    local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524) - floor(doe / 146096)) / 365)
    local y = yoe + era * 400
    local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))
    local mp = floor((5 * doy + 2) / 153)
    local d = doy - floor((153 * mp + 2) / 5) + 1
    local m = mp < 10 and mp + 3 or mp - 9
    if m <= 2 then y = y + 1 end
    return y, m, d
end

local function whole(v)
    return type(v) == "number" and v == floor(v)
end

local function field(dt, name, lo, hi, default, fn)
    local v = dt[name]
    if v == nil then
        if default == nil then error(fn .. ": the datetime has no " .. name, 3) end
        return default
    end
    if not whole(v) then error(format("%s: %s must be a whole number, not %s", fn, name, tostring(v)), 3) end
    if v < lo or v > hi then error(format("%s: %s must be in %d..%d", fn, name, lo, hi), 3) end
    return v
end

-- Seconds since the epoch of a datetime table (a whole number, floored)
-- and its microseconds (0..999999): apart, as microseconds since the
-- epoch would not fit a double's 53 bits across years 1..9999.
local function to_parts(dt, fn)
    if type(dt) ~= "table" then error(fn .. ": expected a datetime table, not " .. type(dt), 3) end
    local y = field(dt, "year", MIN_YEAR, MAX_YEAR, nil, fn)
    local m = field(dt, "month", 1, 12, nil, fn)
    local d = field(dt, "day", 1, 31, nil, fn)
    if d > days_in_month(y, m) then error(fn .. ": day is out of range for month", 3) end
    local h = field(dt, "hour", 0, 23, 0, fn)
    local mi = field(dt, "min", 0, 59, 0, fn)
    local s = field(dt, "sec", 0, 59, 0, fn)
    local us = field(dt, "usec", 0, 999999, 0, fn)
    local off = dt.utcoffset or 0
    if not whole(off) or off <= -86400 or off >= 86400 then
        error(fn .. ": utcoffset must be a whole number of seconds strictly between -86400 and 86400", 3)
    end
    return days_from_civil(y, m, d) * 86400 + h * 3600 + mi * 60 + s - off, us
end

--- Seconds since the epoch of dt (a whole number, truncated toward zero, as
--- Python's int()).
function M.datetime_to_epoch_seconds(dt)
    local secs, us = to_parts(dt, "datetime_to_epoch_seconds")
    if secs < 0 and us > 0 then return secs + 1 end
    return secs
end

--- Milliseconds since the epoch of dt (a whole number, truncated toward zero).
function M.datetime_to_epoch_milliseconds(dt)
    local secs, us = to_parts(dt, "datetime_to_epoch_milliseconds")
    local ms = secs * 1000 + floor(us / 1000)
    if ms < 0 and us % 1000 > 0 then return ms + 1 end
    return ms
end

-- A UTC datetime table of whole seconds since the epoch and microseconds.
local function from_parts(secs, usec, fn)
    if usec >= 1000000 then secs, usec = secs + 1, usec - 1000000 end
    local days = floor(secs / 86400)
    local sod = secs - days * 86400
    local y, m, d = civil_from_days(days)
    if y < MIN_YEAR or y > MAX_YEAR then error(format("%s: year %d is out of range", fn, y), 3) end
    local yday = days - days_from_civil(y, 1, 1) + 1
    return {
        year = y, month = m, day = d,
        hour = floor(sod / 3600), min = floor(sod % 3600 / 60), sec = sod % 60,
        usec = usec,
        wday = (days + 4) % 7 + 1, -- as os.date's: 1 is Sunday (1970-01-01 was a Thursday)
        yday = yday,
        isdst = false,
        utcoffset = 0,
    }
end

local function check_number(v, fn)
    if type(v) ~= "number" or v ~= v or v == math.huge or v == -math.huge then
        error(fn .. ": expected a number, not " .. tostring(v), 3)
    end
end

-- Round to the nearest microsecond, halves to even (as Python's
-- utcfromtimestamp).
local function round_even(x)
    local f = floor(x)
    local diff = x - f
    if diff > 0.5 or (diff == 0.5 and f % 2 == 1) then return f + 1 end
    return f
end

--- The UTC datetime of sec seconds since the epoch (a fraction gives usec,
--- rounded to the nearest microsecond).
function M.epoch_seconds_to_datetime(sec)
    check_number(sec, "epoch_seconds_to_datetime")
    local secs = floor(sec)
    return from_parts(secs, round_even((sec - secs) * 1000000), "epoch_seconds_to_datetime")
end

--- The UTC datetime of ms milliseconds since the epoch.
function M.epoch_milliseconds_to_datetime(ms)
    check_number(ms, "epoch_milliseconds_to_datetime")
    local secs = floor(ms / 1000)
    return from_parts(secs, round_even((ms - secs * 1000) * 1000), "epoch_milliseconds_to_datetime")
end

--- Now, as a UTC datetime (utcoffset 0), to the microsecond.
function M.get_utc_now()
    local now = M.clock()
    local secs = floor(now)
    return from_parts(secs, round_even((now - secs) * 1000000), "get_utc_now")
end

--- ISO 8601 text of dt: "2026-12-05T17:06:04.123456+00:00" (no fraction
--- when usec is 0), as Python's isoformat of an aware datetime.
function M.isoformat(dt)
    to_parts(dt, "isoformat") -- (checks it)
    local s = format("%04d-%02d-%02dT%02d:%02d:%02d", dt.year, dt.month, dt.day, dt.hour or 0, dt.min or 0,
        dt.sec or 0)
    if (dt.usec or 0) ~= 0 then s = s .. format(".%06d", dt.usec) end
    local off = dt.utcoffset or 0
    local sign = off < 0 and "-" or "+"
    off = math.abs(off)
    s = s .. format("%s%02d:%02d", sign, floor(off / 3600), floor(off % 3600 / 60))
    if off % 60 ~= 0 then s = s .. format(":%02d", off % 60) end
    return s
end

return M
