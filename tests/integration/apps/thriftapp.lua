-- The Thrift service of the integration tests (thrift/testsvc.thrift).
local thrift = require("baseplate.thrift")
local Baseplate = require("baseplate").Baseplate
local runtime = require("baseplate.runtime")

local M = {}

local HERE = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"

function M.make_processor(app_config)
    local schema = thrift.load(HERE .. "thrift/testsvc.thrift")
    local NotFound = schema:struct("NotFound")
    local Undeclared = schema:struct("Undeclared")
    local bp = Baseplate(app_config)
    bp:configure_observers()
    local notes = {}
    local handler = {}

    function handler.whoami() return "thriftapp" end
    function handler.echo(_, value) return value end
    function handler.add(_, a, b) return a + b end
    function handler.get(_, id)
        if id == 1LL then return "one" end
        error(NotFound:new({ message = "no such id", id = id, code = id == 404LL and 404 or nil }))
    end
    function handler.fail(_, how)
        if how == "undeclared" then error(Undeclared:new({ message = "not in the IDL" })) end
        if how == "app" then error(thrift.ApplicationException(thrift.app_error.UNKNOWN, "told to")) end
        error("boom: " .. how)
    end
    function handler.note(_, text) notes[#notes + 1] = text end
    function handler.last_note() return notes[#notes] or "" end
    function handler.headers(context) return context.headers end
    function handler.trace(context)
        local s = context.span
        return string.format("%s %s %s %s", tostring(s.trace_id), tostring(s.id), tostring(s.parent_id),
            context.method)
    end
    function handler.budget(context) return context.deadline_budget or -1 end
    function handler.sleep(_, seconds) runtime.sleep(seconds) end

    if app_config.c_method then -- methods written in C (thrift_c_method.c)
        handler.add = thrift.c_method(app_config.c_method, "add_c")
        handler.note = thrift.c_method(app_config.c_method, "note_c")
        handler.fail = thrift.c_method(app_config.c_method, "fail_c")
    end

    return thrift.processor(schema:service("Test"), handler, { baseplate = bp, app_config = app_config })
end

return M
