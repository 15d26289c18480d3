# `cmake --install` into a prefix, the prefix moved elsewhere, and the
# installed tools run from there with a bare environment: libbaseplate
# (RPATH), the Lua modules, the C module directory and baseplate.pc all
# follow the prefix.
. "$(dirname "$0")/lib.sh"

if ! cmake --install "$BUILD_DIR" --prefix "$TMP/staged" >"$TMP/install.log" 2>&1; then
  fail "cmake --install" "$(cat "$TMP/install.log")"
  finish
fi
mkdir -p "$TMP/elsewhere/deeper"
mv "$TMP/staged" "$TMP/elsewhere/deeper/prefix"
P=$TMP/elsewhere/deeper/prefix
for f in bin/baseplate-serve bin/baseplate-script bin/baseplate-shell bin/baseplate-healthcheck bin/baseplate-trace-publisher bin/baseplate-lint bin/baseplate-test bin/baseplate-mq bin/baseplate-event-publisher \
         bin/baseplate-live-data-watcher bin/baseplate-live-data-writer \
         lib/libbaseplate.so lib/pkgconfig/baseplate.pc share/lua/5.1/baseplate/runtime.lua share/lua/5.1/baseplate/lint_luacheckrc \
         include/baseplate.h; do
  if [ -e "$P/$f" ]; then pass "installed $f"; else fail "installed $f"; fi
done
if grep -q "$TMP/staged" "$P/lib/pkgconfig/baseplate.pc"; then
  fail "baseplate.pc does not name the install-time prefix" "$(cat "$P/lib/pkgconfig/baseplate.pc")"
else
  pass "baseplate.pc does not name the install-time prefix"
fi

# The tools run with nothing from the environment: a wrapper that start_server
# runs in place of the build tree's baseplate-serve.
mkdir -p "$TMP/wrap"
cat >"$TMP/wrap/baseplate-serve" <<EOF
#!/bin/sh
exec env -i PATH=/usr/bin:/bin "$P/bin/baseplate-serve" "\$@"
EOF
chmod +x "$TMP/wrap/baseplate-serve"

# baseplate-script shows where the Lua modules were found.
mkdir -p "$TMP/app"
cat >"$TMP/app/where.lua" <<'EOF'
return {
    run = function()
        print(package.searchpath("baseplate.runtime", package.path))
        print(require("baseplate.core").version)
    end,
}
EOF
printf '[app:main]\n' >"$TMP/app/where.ini"
out=$(cd "$TMP/app" && env -i PATH=/usr/bin:/bin "$P/bin/baseplate-script" where.ini where:run 2>&1)
check_eq "the Lua modules come from the moved prefix" "$out" \
  "$P/bin/../share/lua/5.1/baseplate/runtime.lua
0.1.0"

cp "$SOURCE_DIR"/examples/helloworld/helloworld.* "$TMP/app/"
BIN=$TMP/wrap
if start_server "$TMP/app/helloworld.ini"; then
  pass "installed baseplate-serve starts examples/helloworld"
  check_eq "GET / from the installed server" "$(curl -s "$(url /)")" '{"Hello":"World"}'
  check_eq "installed healthcheck" \
    "$(env -i PATH=/usr/bin:/bin "$P/bin/baseplate-healthcheck" http "127.0.0.1:$PORT" 2>&1)" "OK!"
  stop_server INT
  check_eq "clean exit" "$SERVER_RC" 0
else
  fail "installed baseplate-serve starts examples/helloworld"
fi

# The C example built against the installed baseplate.pc, put in the
# installed module directory, and served from a directory without it.
export PKG_CONFIG_PATH=$P/lib/pkgconfig
moddir=$(pkg-config --variable=moduledir baseplate)
mkdir -p "$moddir"
check_eq "moduledir is in the moved prefix" "$(cd "$moddir" && pwd -P)" "$(cd "$P/lib" && pwd -P)/baseplate"
# shellcheck disable=SC2046
if cc -shared -fPIC -o "$moddir/hello_c.so" "$SOURCE_DIR/examples/c-extension/hello_c.c" \
     $(pkg-config --cflags --libs baseplate) 2>"$TMP/cc.err"; then
  pass "the C example builds with pkg-config against the installed prefix"
  mkdir -p "$TMP/capp"
  cp "$SOURCE_DIR/examples/c-extension/hello_c.ini" "$TMP/capp/"
  if start_server "$TMP/capp/hello_c.ini"; then
    check_eq "the C module is found in the installed module directory" "$(curl -s "$(url /)")" '{"Hello":"C"}'
    stop_server INT
  else
    fail "the C module is found in the installed module directory"
  fi
else
  fail "the C example builds with pkg-config against the installed prefix" "$(cat "$TMP/cc.err")"
fi
finish
