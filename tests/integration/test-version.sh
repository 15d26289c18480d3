# --version on every tool (the live data tools too): "PROG VERSION" on stdout, exit status 0, as
# argparse's action="version"; listed in --help and in the usage.
. "$(dirname "$0")/lib.sh"

version=$(sed -n 's/^project(baseplate VERSION \([0-9.]*\).*/\1/p' "$SOURCE_DIR/CMakeLists.txt")
for tool in serve script shell healthcheck live-data-watcher live-data-writer; do
  out=$("$BIN/baseplate-$tool" --version 2>"$TMP/err"; echo "rc=$?")
  check_eq "baseplate-$tool --version" "$out" "baseplate-$tool $version
rc=0"
  check_eq "baseplate-$tool --version: nothing on stderr" "$(cat "$TMP/err")" ""
  check_contains "baseplate-$tool --help lists --version" "$("$BIN/baseplate-$tool" --help)" \
    "  --version             show program's version number and exit"
  check_contains "baseplate-$tool usage shows [--version]" "$("$BIN/baseplate-$tool" 2>&1)" "[--version]"
done
# With other arguments, wherever it stands among the options.
out=$("$BIN/baseplate-serve" --debug no-such.ini --version; echo "rc=$?")
check_eq "--version after other arguments" "$out" "baseplate-serve $version
rc=0"
# After baseplate-script's entrypoint it belongs to the function.
printf 'return { run = function(_, args) print(table.concat(args, " ")) end }\n' >"$TMP/args.lua"
printf '[app:main]\n' >"$TMP/args.ini"
check_eq "--version after the entrypoint goes to the function" \
  "$(cd "$TMP" && "$BIN/baseplate-script" args.ini args:run --version 2>&1)" "--version"
finish
