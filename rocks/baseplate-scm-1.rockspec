package = "baseplate"
version = "scm-1"
source = {
   url = "git+https://example.invalid/baseplate.git",
}
description = {
   summary = "Baseplate service runtime: a C core with a LuaJIT API for services",
   detailed = [[
      baseplate runs HTTP services written in Lua (or C) on a libuv event loop,
      with Baseplate.py's configuration files, command line tools, logging
      and telemetry. This rock builds the C core (libbaseplate and the
      baseplate-serve/-script/-shell/-healthcheck tools) with CMake and
      installs the Lua modules.
   ]],
   license = "BSD-3-Clause",
}
dependencies = {
   "lua == 5.1",       -- LuaJIT 2.1
   "lua-cjson",
}
build = {
   type = "cmake",
   variables = {
      CMAKE_BUILD_TYPE = "Release",
      CMAKE_INSTALL_PREFIX = "$(PREFIX)",
      BP_BUILD_TESTS = "OFF",
      BP_BUILD_EXAMPLES = "OFF",
   },
   copy_directories = { "docs", "examples" },
}
test = {
   type = "command",
   command = "make test",
}
