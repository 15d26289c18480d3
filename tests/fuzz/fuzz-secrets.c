/* The secrets file's parser (lua/baseplate/lib/secrets.lua, which decodes
 * with lua-cjson) and every getter of the store over what it parsed. The
 * input is the file's text. The parser either returns the file's object or
 * raises a message; every getter (get_raw, get_simple, get_versioned,
 * get_credentials, get_vault_url, get_vault_token) on every secret either
 * returns or raises one of the module's errors (a Lua runtime error is a
 * bug), and every error message is one of the module's templates filled
 * with the secret's path and encoding: never a secret's value. The module
 * runs from the source tree in a plain Lua state (fuzz-lua.h): it needs only
 * cjson at load. */
#include "fuzz-lua.h"

static int ref_check;

static const char check_lua[] =
    "local secrets = require('baseplate.lib.secrets')\n"
    "require('cjson').encode_keep_buffer(false)\n"
    "local FIXED = {}\n"
    "for _, m in ipairs({ 'secret does not have type=simple', 'secret does not have type=versioned',\n"
    "    'secret does not have type=credential', \"secret does not have key 'username'\",\n"
    "    \"secret does not have key 'password'\", 'secret does not have value',\n"
    "    \"secret does not have 'current' value\", 'secret is not a JSON object',\n"
    "    'unable to decode base64: Incorrect padding' }) do FIXED[m] = true end\n"
    "for _, k in ipairs({ 'value', 'current', 'previous', 'next', 'username', 'password' }) do\n"
    "  FIXED[\"secret value '\" .. k .. \"' is not a string\"] = true\n"
    "end\n"
    /* An error's message is one of the templates filled with the secret's
     * path and encoding, nothing else: no value can be in it. */
    "local function unexpected(err, attrs, path)\n"
    "  local msg = err.message\n"
    "  if err.class == 'SecretNotFoundError' then\n"
    "    return msg ~= 'secret not found: ' .. secrets.py_repr(path) and msg ~= 'secret not found: '\n"
    "      .. secrets.py_repr('vault.url') and msg ~= 'secret not found: ' .. secrets.py_repr('vault.token')\n"
    "  end\n"
    "  if err.class ~= 'CorruptSecretError' then return true end\n"
    "  local prefix = path .. ': '\n"
    "  if msg:sub(1, #prefix) ~= prefix then return true end\n"
    "  local rest = msg:sub(#prefix + 1)\n"
    "  if FIXED[rest] then return false end\n"
    "  local enc = type(attrs) == 'table' and attrs.encoding\n"
    "  if rest == 'unknown encoding: ' .. secrets.py_repr(enc) then return false end\n"
    "  if rest == 'secret has encoding=' .. tostring(enc) .. ' rather than encoding=identity' then return false end\n"
    "  if rest:match('^unable to decode base64: Invalid base64%-encoded string: number of data characters '\n"
    "    .. '%(%d+%) cannot be 1 more than a multiple of 4$') then return false end\n"
    "  return true\n"
    "end\n"
    "local GETTERS = { 'get_raw', 'get_simple', 'get_versioned', 'get_credentials' }\n"
    "return function(text)\n"
    "  local ok, data = pcall(secrets.parse_secrets_file, text)\n"
    "  if not ok then\n"
    "    if type(data) ~= 'string' or data == '' then return false, 'parse error without a message' end\n"
    "    return true\n"
    "  end\n"
    "  if type(data) ~= 'table' then return false, 'the parser returned a ' .. type(data) end\n"
    "  local store = setmetatable({ path = '/fuzz', parser = secrets.parse_secrets_fetcher,\n"
    "    _watcher = { get_data_and_mtime = function() return data, 1 end } }, secrets.SecretsStore_mt)\n"
    "  local paths, n = { 'missing' }, 0\n"
    "  if type(data.secrets) == 'table' then\n"
    "    for k in pairs(data.secrets) do\n"
    "      n = n + 1\n"
    "      if n > 64 then break end\n"
    "      paths[#paths + 1] = k\n"
    "    end\n"
    "  end\n"
    "  for _, p in ipairs(paths) do\n"
    "    if type(p) == 'string' then\n"
    "      local attrs = type(data.secrets) == 'table' and data.secrets[p]\n"
    "      for _, g in ipairs(GETTERS) do\n"
    "        local ok2, err = pcall(store[g], store, p)\n"
    "        if not ok2 then\n"
    "          if not secrets.is_secret_error(err) then return false, g .. ': ' .. tostring(err) end\n"
    "          if unexpected(err, attrs, p) then return false, g .. ': unexpected message: ' .. err.message end\n"
    "        end\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  for _, g in ipairs({ 'get_vault_url', 'get_vault_token' }) do\n"
    "    local ok2, err = pcall(store[g], store)\n"
    "    if not ok2 and not (secrets.is_secret_error(err) and not unexpected(err, nil, '')) then\n"
    "      return false, g .. ': ' .. tostring(err.message or err)\n"
    "    end\n"
    "  end\n"
    "  return true\n"
    "end\n";

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  if (!ref_check) ref_check = fuzz_lua_init("fuzz-secrets", check_lua);
  fuzz_lua_run("fuzz-secrets", ref_check, data, size);
  return 0;
}
