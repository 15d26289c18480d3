-- The HTTP service and script of the Sentry observer's tests (test-sentry.sh).
local baseplate = require("baseplate")
local http = require("baseplate.http")

local M = {}

local function explode(what)
    error("kaboom: " .. what)
end

function M.make_app(app_config)
    local bp = baseplate.Baseplate(app_config)
    bp:configure_observers()
    local app = http.app(app_config, { baseplate = bp })
    app:get("ok", "/ok", function() return { ok = true } end)
    app:get("fail", "/fail", function(request)
        explode(request.query.what or "nothing")
    end)
    app:get("message", "/message", function(request)
        return { id = request.sentry:capture_message("hello from lua") }
    end)
    app:get("captured", "/captured", function(request)
        local ok, err = pcall(explode, "caught")
        return { ok = ok, id = request.sentry:capture_exception(err) }
    end)
    app:get("classed", "/classed", function(request)
        local ok, err = pcall(error, { class = "Kaput", message = "kaput" })
        return { ok = ok, id = request.sentry:capture_exception(err) or false }
    end)
    app:get("spawned", "/spawned", function()
        baseplate.spawn(function() error("spawned boom") end)
        return { ok = true }
    end)
    app:get("unavailable", "/unavailable", function() http.abort(503) end)
    app:get("raised", "/raised", function() error({ class = "Kaput", message = "kaput raised" }) end)
    app:get("slow", "/slow", function() baseplate.sleep(2) return { ok = true } end)
    return app
end

-- baseplate-script entry points
function M.script_fail(app_config)
    local bp = baseplate.Baseplate(app_config)
    bp:configure_observers()
    explode("in a script")
end

function M.script_span_fail(app_config)
    local bp = baseplate.Baseplate(app_config)
    bp:configure_observers()
    bp:server_context("nightly", function() explode("in a span") end)
end

return M
