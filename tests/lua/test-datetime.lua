-- baseplate.lib.datetime: epoch conversions and the UTC clock, checked
-- against values Python's datetime gives (computed with CPython 3 and
-- written down here).
local t = require("testlib")
local baseplate = require("baseplate")
local testing = require("baseplate.testing")
local datetime = require("baseplate.lib.datetime")

t.test("datetime to epoch seconds and milliseconds", function()
    local dt = { year = 2026, month = 12, day = 5, hour = 17, min = 6, sec = 4, usec = 123456 }
    -- datetime(2026,12,5,17,6,4,123456,tzinfo=timezone.utc).timestamp() == 1796490364.123456
    t.eq(datetime.datetime_to_epoch_seconds(dt), 1796490364)
    t.eq(datetime.datetime_to_epoch_milliseconds(dt), 1796490364123)
    t.eq(datetime.datetime_to_epoch_seconds({ year = 1970, month = 1, day = 1 }), 0)
    -- the first and last days Python's datetime has
    t.eq(datetime.datetime_to_epoch_seconds({ year = 1, month = 1, day = 1 }), -62135596800)
    t.eq(datetime.datetime_to_epoch_milliseconds({ year = 9999, month = 12, day = 31, hour = 23, min = 59, sec = 59,
        usec = 999999 }), 253402300799999)
    -- an offset: 2000-02-29 12:00 at UTC-5 is 17:00 UTC (951843600)
    t.eq(datetime.datetime_to_epoch_seconds({ year = 2000, month = 2, day = 29, hour = 12, utcoffset = -5 * 3600 }),
        951843600)
    -- before the epoch: truncated toward zero, as int()
    t.eq(datetime.datetime_to_epoch_seconds({ year = 1969, month = 12, day = 31, hour = 23, min = 59, sec = 58,
        usec = 500000 }), -1)
    t.eq(datetime.datetime_to_epoch_milliseconds({ year = 1969, month = 12, day = 31, hour = 23, min = 59, sec = 59,
        usec = 999500 }), 0)
    -- os.date("!*t") tables go straight in
    t.eq(datetime.datetime_to_epoch_seconds(os.date("!*t", 1234567890)), 1234567890)
end)

t.test("epoch to UTC datetimes", function()
    local d = datetime.epoch_seconds_to_datetime(1e9 + 0.5)
    -- datetime.fromtimestamp(1e9 + 0.5, timezone.utc): 2001-09-09 01:46:40.500000+00:00, a Sunday, day 252
    t.eq(d, { year = 2001, month = 9, day = 9, hour = 1, min = 46, sec = 40, usec = 500000, wday = 1, yday = 252,
        isdst = false, utcoffset = 0 })
    local e = datetime.epoch_seconds_to_datetime(-1.5)
    t.eq({ e.year, e.month, e.day, e.hour, e.min, e.sec, e.usec }, { 1969, 12, 31, 23, 59, 58, 500000 })
    local m = datetime.epoch_milliseconds_to_datetime(1796490364123)
    t.eq({ m.year, m.month, m.day, m.hour, m.min, m.sec, m.usec }, { 2026, 12, 5, 17, 6, 4, 123000 })
    -- round trips, leap days included
    for _, s in ipairs({ 0, 951782400, 951868800, 4107542400, -62135596800, 253402300799, 68169600 }) do
        t.eq(datetime.datetime_to_epoch_seconds(datetime.epoch_seconds_to_datetime(s)), s, "round trip " .. s)
        local od = os.date("!*t", s)
        local dd = datetime.epoch_seconds_to_datetime(s)
        if s >= 0 then
            t.eq({ dd.year, dd.month, dd.day, dd.hour, dd.min, dd.sec, dd.wday, dd.yday },
                { od.year, od.month, od.day, od.hour, od.min, od.sec, od.wday, od.yday }, "as os.date " .. s)
        end
    end
    t.raises("year 10000 is out of range", datetime.epoch_seconds_to_datetime, 253402300800)
    t.raises("year 0 is out of range", datetime.epoch_milliseconds_to_datetime, -62135596801000)
    t.raises("expected a number", datetime.epoch_seconds_to_datetime, "now")
    t.raises("expected a number", datetime.epoch_seconds_to_datetime, 0 / 0)
end)

t.test("get_utc_now follows baseplate.time(), the test clock too", function()
    local clock = testing.freeze_clock()
    clock:advance(1796490364.123456 - baseplate.time())
    local now = datetime.get_utc_now()
    t.eq({ now.year, now.month, now.day, now.hour, now.min, now.sec, now.utcoffset },
        { 2026, 12, 5, 17, 6, 4, 0 })
    t.near(now.usec, 123456, 2)
    clock:reset()
    t.near(datetime.datetime_to_epoch_seconds(datetime.get_utc_now()), os.time(), 2)
end)

t.test("isoformat", function()
    t.eq(datetime.isoformat({ year = 2026, month = 12, day = 5, hour = 17, min = 6, sec = 4, usec = 123456,
        utcoffset = 5 * 3600 + 1800 }), "2026-12-05T17:06:04.123456+05:30")
    t.eq(datetime.isoformat(datetime.epoch_seconds_to_datetime(0)), "1970-01-01T00:00:00+00:00")
end)

t.test("bad datetimes are refused, naming the field", function()
    local f = datetime.datetime_to_epoch_seconds
    t.raises("expected a datetime table", f, 12)
    t.raises("the datetime has no year", f, { month = 1, day = 1 })
    t.raises("month must be in 1..12", f, { year = 2020, month = 13, day = 1 })
    t.raises("day is out of range for month", f, { year = 2021, month = 2, day = 29 })
    t.raises("year must be in 1..9999", f, { year = 0, month = 1, day = 1 })
    t.raises("sec must be in 0..59", f, { year = 2020, month = 1, day = 1, sec = 60 })
    t.raises("hour must be a whole number", f, { year = 2020, month = 1, day = 1, hour = 1.5 })
    t.raises("utcoffset must be a whole number", f, { year = 2020, month = 1, day = 1, utcoffset = 86400 })
end)

t.done()
