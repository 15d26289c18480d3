/* The live data writer's diff (lua/baseplate/lib/live_data/diff.lua): the
 * two texts it compares come from outside (a file and a ZooKeeper node).
 * The input is the old text, a NUL byte and the new text (no NUL: the
 * new text is empty). Checks: lines_of never loses a byte but its
 * separators; is_utf8 answers; the unified diff of equal texts is empty;
 * otherwise its hunks, applied to the old lines, give the new lines, and
 * their headers count the lines they hold. The module runs from the source
 * tree in a plain Lua state (fuzz-lua.h). */
#include "fuzz-lua.h"

static int ref_check;

static const char check_lua[] =
    "local diff = require('baseplate.lib.live_data.diff')\n"
    "local function apply(old, lines)\n"
    "  if lines[1] ~= '--- ' or lines[2] ~= '+++ ' then return nil, 'no header' end\n"
    "  local out, pos, k = {}, 1, 3\n"
    "  while k <= #lines do\n"
    "    local a1, al, b1, bl = lines[k]:match('^@@ %-(%d+),?(%d*) %+(%d+),?(%d*) @@$')\n"
    "    if not a1 then return nil, 'bad hunk header ' .. lines[k] end\n"
    "    al = al == '' and 1 or tonumber(al)\n"
    "    bl = bl == '' and 1 or tonumber(bl)\n"
    "    local start = tonumber(a1) + (al == 0 and 1 or 0)\n"
    "    while pos < start do out[#out + 1] = old[pos]; pos = pos + 1 end\n"
    "    k = k + 1\n"
    "    local na, nb = 0, 0\n"
    "    while k <= #lines and lines[k]:sub(1, 2) ~= '@@' do\n"
    "      local tag, text = lines[k]:sub(1, 1), lines[k]:sub(2)\n"
    "      if tag == ' ' or tag == '-' then\n"
    "        if old[pos] ~= text then return nil, 'context or removal does not match at ' .. pos end\n"
    "        pos = pos + 1; na = na + 1\n"
    "      end\n"
    "      if tag == ' ' or tag == '+' then out[#out + 1] = text; nb = nb + 1 end\n"
    "      if tag ~= ' ' and tag ~= '-' and tag ~= '+' then return nil, 'bad line tag' end\n"
    "      k = k + 1\n"
    "    end\n"
    "    if na ~= al or nb ~= bl then return nil, 'a hunk header miscounts its lines' end\n"
    "  end\n"
    "  while pos <= #old do out[#out + 1] = old[pos]; pos = pos + 1 end\n"
    "  return out\n"
    "end\n"
    "local SEP = { ['\\n'] = 1, ['\\r'] = 1, ['\\v'] = 1, ['\\f'] = 1, ['\\28'] = 1, ['\\29'] = 1, ['\\30'] = 1 }\n"
    "local function stripped(s)\n"
    "  s = s:gsub('\\194\\133', ''):gsub('\\226\\128[\\168\\169]', '')\n"
    "  return (s:gsub('[\\n\\r\\v\\f\\28\\29\\30]', ''))\n"
    "end\n"
    "return function(input)\n"
    "  local z = input:find('\\0', 1, true)\n"
    "  local a, b = input, ''\n"
    "  if z then a, b = input:sub(1, z - 1), input:sub(z + 1) end\n"
    "  local la, lb = diff.lines_of(a), diff.lines_of(b)\n"
    "  if table.concat(la) ~= stripped(a) then return false, 'lines_of lost bytes' end\n"
    "  diff.is_utf8(a); diff.is_utf8(b)\n"
    "  local d = diff.unified_diff(la, lb)\n"
    "  local same = #la == #lb\n"
    "  if same then for i = 1, #la do if la[i] ~= lb[i] then same = false break end end end\n"
    "  if same then return #d == 0, 'equal texts with a diff' end\n"
    "  local got, why = apply(la, d)\n"
    "  if not got then return false, why end\n"
    "  if #got ~= #lb then return false, 'the patched text has ' .. #got .. ' lines, not ' .. #lb end\n"
    "  for i = 1, #lb do if got[i] ~= lb[i] then return false, 'the patched text differs at line ' .. i end end\n"
    "  return true\n"
    "end\n";

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  if (size > 4096) return 0; /* (the matcher is quadratic: keep runs fast) */
  if (!ref_check) ref_check = fuzz_lua_init("fuzz-diff", check_lua);
  fuzz_lua_run("fuzz-diff", ref_check, data, size);
  return 0;
}
