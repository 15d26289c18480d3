-- The service's routes, called through the real HTTP server without a
-- socket (baseplate.testing), against a real PostgreSQL and Redis:
--
--   cd examples/helloworld && baseplate-test
--
-- BP_TEST_PG_URL and BP_TEST_REDIS_URL name the servers (the project's
-- test fixture sets them); else those of helloworld.ini.
local testing = require("baseplate.testing")
local helloworld = require("helloworld")

describe("helloworld", function()
    local client, recorder

    setup(function()
        local app = helloworld.make_app({
            ["db.url"] = os.getenv("BP_TEST_PG_URL") or "postgresql://baseplate@127.0.0.1:5432/baseplate",
            ["redis.url"] = os.getenv("BP_TEST_REDIS_URL") or "redis://127.0.0.1:6379/0",
        })
        recorder = testing.recorder()
        app.baseplate:register(recorder)
        client = testing.client(app)
    end)

    teardown(function() client:close() end)

    it("says hello", function()
        local res = client:get("/")
        assert.are.equal(200, res.status)
        assert.are.same({ Hello = "World" }, res:json())
    end)

    it("asks PostgreSQL the time", function()
        local res = client:get("/time")
        assert.are.equal(200, res.status)
        assert.matches("^%d%d%d%d%-%d%d%-%d%d ", res:json().now)
        local span = recorder:server_span()
        assert.are.equal("time", span.name)
        assert.are.equal("db.execute", span.children[1].name)
    end)

    it("counts visits in Redis", function()
        local first = client:get("/visits"):json().visits
        assert.are.equal(first + 1, client:get("/visits"):json().visits)
    end)

    it("answers 404 for what it does not serve", function()
        assert.are.equal(404, client:get("/nothing").status)
    end)
end)
