rockspec_format = "3.0"
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
-- LuaRocks installs the build into the rock's own directory ($(PREFIX)) and
-- then deploys its lua/ into the tree's Lua directory, its lib/ into the
-- tree's C module directory and its bin/ into the tree's bin/. So the Lua
-- modules install into $(LUADIR); libbaseplate, the headers, baseplate.pc
-- and the CMake package stay in the rock's directory (clib/, include/): in
-- lib/ the C library would be deployed as a Lua C module. The tools, copied
-- to the tree's bin/, find the library there (RPATH) and the Lua modules in
-- the tree (../share/lua/5.1 from bin/).
build = {
   type = "cmake",
   variables = {
      CMAKE_BUILD_TYPE = "Release",
      CMAKE_INSTALL_PREFIX = "$(PREFIX)",
      CMAKE_INSTALL_LIBDIR = "clib",
      CMAKE_INSTALL_RPATH = "$(PREFIX)/clib",
      BP_INSTALL_LUADIR = "$(LUADIR)",
      BP_LUA_FROM_BINDIR = "../share/lua/5.1",
      BP_BUILD_TESTS = "OFF",
      BP_BUILD_EXAMPLES = "OFF",
   },
   copy_directories = { "docs", "examples" },
}
test = {
   type = "command",
   command = "make test",
}
