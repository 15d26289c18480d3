# examples/thrift as the README tours it: served, called by python3-thrift
# (examples/thrift/call.py), asked for its health.
. "$(dirname "$0")/lib.sh"

start_server "$SOURCE_DIR/examples/thrift/greeter.ini" || { fail "the example starts"; finish; }
call() { /usr/bin/python3 "$SOURCE_DIR/examples/thrift/call.py" "$1" "$PORT" 2>&1; }
check_eq "greet" "$(call Ada)" "Hello, Ada! (greeted 1 times)"
check_eq "greet again" "$(call Ada)" "Hello, Ada! (greeted 2 times)"
check_eq "a declared exception" "$(call '')" "InvalidName: a name cannot be empty"
check_contains "the handler's log line carries the trace" "$(cat "$LOG")" "greeting Ada (trace "
stop_server TERM
check_eq "stops on SIGTERM" "$SERVER_RC" 0
finish
