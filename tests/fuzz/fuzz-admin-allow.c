/* The admin listener's address rules (lua/baseplate/server/admin_allow.lua,
 * the `admin.allow` key and each connection's address). The input is the
 * key's text; its first line is also tried as a client address. The parser
 * returns false (anyone), a non-empty list of rules, or raises a message;
 * loopback is always allowed, and every address that parsed as a rule of
 * its own full length is allowed by the rules. The module runs from the
 * source tree in a plain Lua state (fuzz-lua.h). */
#include "fuzz-lua.h"

static int ref_check;

static const char check_lua[] =
    "local allow = require('baseplate.server.admin_allow')\n"
    "return function(text)\n"
    "  local ok, rules = pcall(allow.parse, text)\n"
    "  if not ok then\n"
    "    if type(rules) ~= 'string' or rules == '' then return false, 'an error without a message' end\n"
    "    rules = {}\n"
    "  elseif rules ~= false then\n"
    "    if type(rules) ~= 'table' or #rules == 0 then return false, 'no rules' end\n"
    "    for _, r in ipairs(rules) do\n"
    "      if #r[1] ~= 16 or r[2] < 0 or r[2] > 128 then return false, 'a bad rule' end\n"
    "    end\n"
    "    for item in text:gmatch('[^,%s]+') do\n"
    "      if not item:find('/', 1, true) and not allow.allowed(item, rules) then\n"
    "        return false, 'an address of the list is refused: ' .. item\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  for _, a in ipairs({ '127.0.0.1', '127.1.2.3', '::1' }) do\n"
    "    if not allow.allowed(a, rules) then return false, 'loopback refused' end\n"
    "  end\n"
    "  local first = text:match('^[^\\n]*')\n"
    "  local r = allow.allowed(first, rules)\n"
    "  if type(r) ~= 'boolean' then return false, 'not a boolean' end\n"
    "  return true\n"
    "end\n";

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  if (!ref_check) ref_check = fuzz_lua_init("fuzz-admin-allow", check_lua);
  fuzz_lua_run("fuzz-admin-allow", ref_check, data, size);
  return 0;
}
