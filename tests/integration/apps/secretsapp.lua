-- The app of tests/integration/test-secrets-postgres.sh: the secrets store
-- from the INI file (secrets.path), on every request as request.secrets,
-- and the PostgreSQL client logging in with db.credentials_secret.
local baseplate = require("baseplate")
local http = require("baseplate.http")
local postgres = require("baseplate.clients.postgres")
local secrets = require("baseplate.lib.secrets")

local M = {}

function M.make_app(app_config)
    local store = secrets.secrets_store_from_config(app_config)
    local bp = baseplate.Baseplate(app_config)
    bp:configure_observers()
    bp:add_to_context("secrets", store)
    bp:configure_context({ db = postgres.PostgresClient({ secrets = store }) })
    local app = http.app(app_config, { baseplate = bp })

    app:get("whoami", "/whoami", function(request)
        return { user = request.db:query("SELECT current_user AS u")[1].u }
    end)

    app:get("key", "/key", function(request)
        -- never return a secret in real code: the test checks rotation
        return { current = request.secrets:get_versioned("secret/app/key").current }
    end)

    app:get("error", "/error", function(request)
        local ok, err = pcall(request.db.query, request.db, "SELECT 1")
        return { ok = ok, class = not ok and err.class or nil, message = not ok and err.message or nil }
    end)

    return app
end

return M
