-- A small script for baseplate-script: run(app_config, args) gets the
-- [app:NAME] section of the config file and the rest of the command line.
--
--   $ baseplate-script printer.ini printer:run Goodbye.
--   Hello! Goodbye.
--   $ baseplate-script printer.ini --app-name=bizarro printer:run Goodbye.
--   !olleH Goodbye.
local M = {}

function M.run(app_config, args)
    if #args ~= 1 then
        io.stderr:write("usage: baseplate-script printer.ini printer:run NAME\n")
        return 2 -- the exit status
    end
    print(app_config.message .. " " .. args[1])
end

return M
