/* The Synapse inventory's parser (lua/baseplate/lib/service_discovery.lua,
 * which decodes with lua-cjson). The input is the file's text. The parser
 * returns the backends or raises a message; every backend has a non-empty
 * host, a port from 1 to 65535, an integer id, a string name and a
 * non-negative integer weight; the lottery is there exactly when some
 * weight is above zero, and what it picks and samples is one of the
 * backends with weight. The module runs from the source tree in a plain Lua
 * state (fuzz-lua.h); baseplate.lib.config (which needs the core) is
 * replaced by the two metatables the parser takes from it. */
#include "fuzz-lua.h"

static int ref_check;

static const char check_lua[] =
    "package.preload['baseplate.lib.config'] = function()\n"
    "  return { EndpointConfiguration = {}, InternetAddress = {} }\n"
    "end\n"
    "local sd = require('baseplate.lib.service_discovery')\n"
    "require('cjson').encode_keep_buffer(false)\n"
    "local function int(v) return type(v) == 'number' and v % 1 == 0 end\n"
    "return function(text)\n"
    "  local ok, inv = pcall(sd.parse_inventory, text)\n"
    "  if not ok then\n"
    "    if type(inv) ~= 'string' or inv == '' then return false, 'an error without a message' end\n"
    "    return true\n"
    "  end\n"
    "  local weighted = {}\n"
    "  for i, b in ipairs(inv.backends) do\n"
    "    local e = b.endpoint\n"
    "    if type(e.host) ~= 'string' or e.host == '' or e.address.host ~= e.host then return false, 'host' end\n"
    "    if not int(e.port) or e.port < 1 or e.port > 65535 then return false, 'port' end\n"
    "    if not int(b.id) or type(b.name) ~= 'string' then return false, 'id or name' end\n"
    "    if not int(b.weight) or b.weight < 0 then return false, 'weight' end\n"
    "    if b.weight > 0 then weighted[b] = true end\n"
    "  end\n"
    "  if (next(weighted) ~= nil) ~= (inv.lottery ~= nil) then return false, 'lottery' end\n"
    "  if inv.lottery then\n"
    "    for _ = 1, 4 do\n"
    "      if not weighted[inv.lottery:pick()] then return false, 'picked a backend without weight' end\n"
    "    end\n"
    "    local n = 0\n"
    "    for _ in pairs(weighted) do n = n + 1 end\n"
    "    local s = inv.lottery:sample(math.min(n, 3))\n"
    "    local seen = {}\n"
    "    for _, b in ipairs(s) do\n"
    "      if not weighted[b] or seen[b] then return false, 'sample' end\n"
    "      seen[b] = true\n"
    "    end\n"
    "  end\n"
    "  return true\n"
    "end\n";

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  if (!ref_check) ref_check = fuzz_lua_init("fuzz-inventory", check_lua);
  fuzz_lua_run("fuzz-inventory", ref_check, data, size);
  return 0;
}
