#!/bin/sh
# Demo of the mpconn command: an authenticated `mpconn serve --echo` on a
# temporary Unix socket, talked to by CPython's multiprocessing.connection
# Client (when python3 exists) and by `mpconn send --reply`.
# Usage: sh examples/demo_cli.sh BUILD_DIR
set -eu

build=${1:-build}
mpconn=$build/mpconn
if [ ! -x "$mpconn" ]; then
    echo "demo_cli: no $mpconn; build first (make)" >&2
    exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/mpconn-demo.XXXXXX")
server=
cleanup() {
    if [ -n "$server" ]; then
        kill "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

step() { printf '\n== %s\n' "$*"; }

# The key travels in the environment, never on a command line (ps shows those).
MPCONN_DEMO_KEY=demo-$$-secret
export MPCONN_DEMO_KEY

step "mpconn serve --echo --authkey-env MPCONN_DEMO_KEY   (no ADDRESS: a temporary Unix socket)"
: >"$work/out"
: >"$work/err" # exists before the background job opens it
"$mpconn" serve --echo --authkey-env MPCONN_DEMO_KEY >"$work/out" 2>"$work/err" &
server=$!

# The server says where it listens on standard error; wait for it (at most 5 s).
address=
i=0
while [ $i -lt 50 ]; do
    address=$(sed -n 's/^listening on //p' "$work/err")
    [ -n "$address" ] && break
    kill -0 "$server" 2>/dev/null || break
    sleep 0.1
    i=$((i + 1))
done
if [ -z "$address" ]; then
    echo "demo_cli: the server did not start:" >&2
    cat "$work/err" >&2
    exit 1
fi
echo "listening on $address"

if command -v python3 >/dev/null 2>&1; then
    step "python3: multiprocessing.connection.Client(address, authkey=...)"
    python3 - "$address" <<'EOF'
import os, sys
from multiprocessing.connection import Client

with Client(sys.argv[1], authkey=os.environb[b"MPCONN_DEMO_KEY"]) as c:
    for value in ({"op": "add", "args": [1, 2.5]}, ("tuple", None, True), b"\x00bytes"):
        c.send(value)
        print("sent %r, got back %r" % (value, c.recv()))
    c.send_bytes(b"raw bytes, not a pickle")
    print("sent raw bytes, got back %r" % c.recv_bytes())
EOF
else
    step "python3 not found: skipping the Python client"
fi

step "mpconn send --reply --authkey-env MPCONN_DEMO_KEY ADDRESS VALUE..."
"$mpconn" send --reply --authkey-env MPCONN_DEMO_KEY "$address" \
    "{'op': 'add', 'args': [1, 2.5]}" "[1, 'two', 3.0, None]" "{'set', 'of', 'str'}"

step "the same with --format json, and raw bytes with --bytes"
"$mpconn" send --reply --format json --authkey-env MPCONN_DEMO_KEY "$address" \
    "{'nested': {'list': [1, 2], 'tuple': (3, 4)}}"
"$mpconn" send --reply --bytes --authkey-env MPCONN_DEMO_KEY "$address" "hello, bytes"

step "a wrong key is refused (exit status 1); the server goes on serving"
status=0
MPCONN_DEMO_KEY=wrong "$mpconn" send --authkey-env MPCONN_DEMO_KEY "$address" 1 2>&1 || status=$?
echo "exit status: $status"
if [ "$status" -ne 1 ]; then
    echo "demo_cli: a wrong key was not refused" >&2
    exit 1
fi

step "what the server printed (one line per message)"
cat "$work/out"

step "SIGTERM: the server exits 0 and removes its socket"
kill -TERM "$server"
status=0
wait "$server" || status=$?
server=
echo "server exit status: $status"
grep -v '^listening on ' "$work/err" | sed 's/^/server stderr: /' || true
if [ "$status" -ne 0 ] || [ -e "$address" ]; then
    echo "demo_cli: the server did not shut down cleanly" >&2
    exit 1
fi
echo "socket $address removed"
step "done"
