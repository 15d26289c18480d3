# `luarocks make` with rocks/baseplate-scm-1.rockspec into a fresh tree: the
# Lua modules land in the tree's Lua directory, libbaseplate is not taken for
# a Lua C module, and the tree's baseplate-serve runs the example.
. "$(dirname "$0")/lib.sh"

if ! command -v luarocks >/dev/null; then
  fail "luarocks is installed (scripts/install-deps)"
  finish
fi
# A copy of the sources: luarocks builds in the current directory.
mkdir -p "$TMP/src"
tar -C "$SOURCE_DIR" --exclude=./.git --exclude='./build*' -cf - . | tar -C "$TMP/src" -xf -
T=$TMP/tree
# lua-cjson comes from Debian's package, not from a rock: --deps-mode=none.
if (cd "$TMP/src" && CMAKE_BUILD_PARALLEL_LEVEL=2 luarocks make --deps-mode=none --tree "$T" \
      rocks/baseplate-scm-1.rockspec) >"$TMP/rock.log" 2>&1; then
  pass "luarocks make"
else
  fail "luarocks make" "$(tail -n 20 "$TMP/rock.log")"
  finish
fi
for f in share/lua/5.1/baseplate/runtime.lua share/lua/5.1/baseplate/init.lua \
         share/lua/5.1/baseplate/server/http.lua bin/baseplate-serve bin/baseplate-shell; do
  if [ -e "$T/$f" ]; then pass "in the tree: $f"; else fail "in the tree: $f"; fi
done
check_eq "no libbaseplate among the tree's C modules" "$(find "$T/lib/lua" -name 'libbaseplate*' 2>/dev/null)" ""
manifest=$T/lib/luarocks/rocks-5.1/manifest
check_contains "the manifest lists the Lua modules" "$(cat "$manifest")" '["baseplate.runtime"]'
if grep -q '"libbaseplate' "$manifest"; then
  fail "the manifest has no module named libbaseplate" "$(grep -n libbaseplate "$manifest")"
else
  pass "the manifest has no module named libbaseplate"
fi
check_eq "the tree's tool runs" "$(env -i PATH=/usr/bin:/bin "$T/bin/baseplate-serve" --version)" \
  "baseplate-serve 0.1.0"

mkdir -p "$TMP/wrap" "$TMP/app"
cat >"$TMP/wrap/baseplate-serve" <<EOF
#!/bin/sh
exec env -i PATH=/usr/bin:/bin "$T/bin/baseplate-serve" "\$@"
EOF
chmod +x "$TMP/wrap/baseplate-serve"
cp "$SOURCE_DIR"/examples/helloworld/helloworld.* "$TMP/app/"
BIN=$TMP/wrap
if start_server "$TMP/app/helloworld.ini"; then
  pass "the tree's baseplate-serve starts examples/helloworld"
  check_eq "GET /" "$(curl -s "$(url /)")" '{"Hello":"World"}'
  stop_server INT
  check_eq "clean exit" "$SERVER_RC" 0
else
  fail "the tree's baseplate-serve starts examples/helloworld"
fi
finish
