# The FFI surface stays honest: every function the library exports is
# documented, and every function a Lua module declares with ffi.cdef is
# exported (a stale declaration would only fail when first called).
# tests/lua/test-ffi-decls.lua checks that those declarations (prototypes,
# structs, constants) agree with the C headers.
. "$(dirname "$0")/lib.sh"

exported=$(nm -D --defined-only "$BUILD_DIR/lib/libbaseplate.so" | awk '$2 == "T" || $2 == "D" || $2 == "R" || $2 == "B" {print $3}' | grep '^bp_' | sort -u)
[ -n "$exported" ] && pass "library exports bp_ symbols" || fail "library exports bp_ symbols"
if nm -D --defined-only "$BUILD_DIR/lib/libbaseplate.so" | awk '{print $3}' | grep -v '^bp_' | grep -qv '^_'; then
  fail "only bp_ symbols are exported" "$(nm -D --defined-only "$BUILD_DIR/lib/libbaseplate.so" | awk '{print $3}' | grep -v '^bp_' | grep -v '^_')"
else
  pass "only bp_ symbols are exported"
fi

undocumented=
for sym in $exported; do
  grep -rqw "$sym" "$SOURCE_DIR/docs" || undocumented="$undocumented $sym"
done
check_eq "every exported function is documented in docs/" "${undocumented# }" ""

# The shell's console is exported by the baseplate-shell executable itself
# (only it links libedit); the Lua shell resolves it there.
tool_exported=$(nm -D --defined-only "$BIN/baseplate-shell" | awk '$2 == "T" {print $3}' | grep '^bp_shell_' | sort -u)
[ -n "$tool_exported" ] && pass "baseplate-shell exports its console" || fail "baseplate-shell exports its console"
undocumented=
for sym in $tool_exported; do
  grep -rqw "$sym" "$SOURCE_DIR/docs" || undocumented="$undocumented $sym"
done
check_eq "every function baseplate-shell exports is documented in docs/" "${undocumented# }" ""
exported="$exported
$tool_exported"

declared=$(grep -rhoE '\bbp_[a-z0-9_]+\s*\(' "$SOURCE_DIR/lua" | sed -E 's/\s*\($//' | sort -u)
missing=
for sym in $declared; do
  printf '%s\n' "$exported" | grep -qx "$sym" || missing="$missing $sym"
done
check_eq "every function declared in Lua is exported" "${missing# }" ""
finish
