#!/bin/sh
# make demo: runs the examples end to end, printing what each side sends and
# receives; then, where python3 exists, a C Listener answering a Python
# Client, a C client of a Python manager, and the mpconn command. Cleans up
# after itself.
set -eu
BUILD=${1:-build}
HERE=$(dirname "$0")
EX="$BUILD/examples"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/mpconn-demo-XXXXXX")
PIDS=""
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

# Starts a server in the background (its pid joins PIDS, and SERVER), waits
# for its "listening on" line and puts the address in ADDR.
start() {
    out="$1"
    shift
    "$@" >"$out" 2>&1 &
    SERVER=$!
    PIDS="$PIDS $SERVER"
    i=0
    until grep -q "listening on" "$out" 2>/dev/null; do
        i=$((i + 1))
        if [ $i -gt 200 ] || ! kill -0 "$SERVER" 2>/dev/null; then
            echo "demo: server did not start: $*" >&2
            cat "$out" >&2
            exit 1
        fi
        sleep 0.05
    done
    ADDR=$(sed -n 's/^listening on //p' "$out")
}

echo "== 1. Listener and Client with the authkey 'secret password' (TCP, port chosen by the system)"
start "$TMP/echo.out" "$EX/echo_listener" 127.0.0.1:0 1
addr=$ADDR
echo "listener: listening on $addr"
"$EX/echo_client" "$addr" | sed 's/^/client:   /'
wait
sed 's/^/listener: /' "$TMP/echo.out" | grep -v "listening on"

echo
echo "== 2. Echo server on a Unix socket (mode 0600)"
start "$TMP/unix.out" "$EX/unix_echo_server" "$TMP/echo.sock" 1
echo "server:   listening on $TMP/echo.sock ($(stat -c %A "$TMP/echo.sock"))"
"$EX/unix_echo_client" "$TMP/echo.sock" alpha beta gamma | sed 's/^/client:   /'
wait
sed 's/^/server:   /' "$TMP/unix.out" | grep -v "listening on"

echo
echo "== 3. A parent and a forked child over a Pipe"
"$EX/pipe_fork"
printf '\n== 3b. A parent and a child over a plain pipe pair, handshake and all spoken by hand with <mpconn/proto.h>\n'; "$EX/proto_pipe"

echo
echo "== 4. Values: the Listener sends a record boxed in a list, the Client unpacks it"
start "$TMP/obj.out" "$EX/object_listener" "$TMP/obj.sock"
echo "listener: listening on $ADDR"
"$EX/object_client" "$ADDR" | sed 's/^/client:   /'
wait
sed 's/^/listener: /' "$TMP/obj.out" | grep -v "listening on"

echo
echo "== 5. One process serving three clients at once with mpconn_wait"
"$EX/wait_server" 3

echo
echo "== 6. File descriptors passed between a parent and a forked child"
"$EX/fd_passing"

if command -v python3 >/dev/null 2>&1; then
    echo
    echo "== 7. A C Listener answering a Python multiprocessing.connection Client"
    start "$TMP/py.out" "$EX/echo_listener" "$TMP/py.sock" 1
    addr=$ADDR
    echo "C listener: listening on $addr"
    python3 - "$addr" <<'PY'
import sys
from multiprocessing.connection import Client
with Client(sys.argv[1], authkey=b'secret password') as c:
    for obj in [{'op': 'add', 'args': [1, 2.5, 'x']}, (1, 'two', b'three'), list(range(5))]:
        c.send(obj)
        back = c.recv()
        print(f"python client: sent {obj!r}, got back {back!r}")
PY
    wait
    sed 's/^/C listener: /' "$TMP/py.out" | grep -v "listening on"

    echo
    echo "== 8. A C client of a Python multiprocessing manager (SyncManager)"
    MANAGER_AUTHKEY=demo-$$-key
    export MANAGER_AUTHKEY
    start "$TMP/manager.out" python3 "$HERE/manager_server.py" "$TMP/manager.sock"
    echo "python manager: listening on $ADDR"
    "$EX/manager_client" "$ADDR" | sed 's/^/C client:       /'
    kill "$SERVER"
    wait "$SERVER" 2>/dev/null || true
fi

if command -v python3 >/dev/null 2>&1; then
    echo
    echo "== 8b. Servers: a threaded TCP echo server answering three Python clients at once"
    start "$TMP/threaded.out" "$EX/threaded_echo_server" 127.0.0.1:0
    echo "server: listening on $ADDR"
    python3 - "$ADDR" <<'PY'
import sys, threading
from multiprocessing.connection import Client
host, port = sys.argv[1].rsplit(':', 1)
def client(i):
    with Client((host, int(port)), authkey=b'secret password') as c:
        c.send({'client': i, 'values': [i, i * 1.5]})
        print(f"python client {i}: got back {c.recv()!r}")
ts = [threading.Thread(target=client, args=(i,)) for i in range(3)]
for t in ts: t.start()
for t in ts: t.join()
PY
    kill "$SERVER"
    wait "$SERVER" || true
    sed 's/^/server: /' "$TMP/threaded.out" | grep -v "listening on"

    echo
    echo "== 8c. Servers: a forking Unix-socket server with a line protocol (a child per client)"
    start "$TMP/forking.out" "$EX/forking_unix_server" "$TMP/fork.sock"
    echo "server: listening on $ADDR ($(stat -c %A "$TMP/fork.sock"))"
    python3 - "$ADDR" <<'PY'
import socket, sys
for word in ['stressed', 'drawer']:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(sys.argv[1])
        s.sendall(word.encode() + b'\n')
        print(f"python client: sent {word!r}, got {s.makefile().readline().strip()!r}")
PY
    kill "$SERVER"
    wait "$SERVER" || true
    sed 's/^/server: /' "$TMP/forking.out" | grep -v "listening on"

    echo
    echo "== 8d. Servers: a UDP echo server; a datagram too long for its 1024 bytes is reported"
    start "$TMP/udp.out" "$EX/udp_echo_server" udp:127.0.0.1:0
    echo "server: listening on $ADDR"
    python3 - "$ADDR" <<'PY'
import socket, sys
host, port = sys.argv[1][4:].rsplit(':', 1)
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    s.settimeout(5)
    s.sendto(b'hello over udp', (host, int(port)))
    print(f"python client: got back {s.recvfrom(2048)[0]!r}")
    s.sendto(b'x' * 2000, (host, int(port)))
    s.sendto(b'still there?', (host, int(port)))
    print(f"python client: got back {s.recvfrom(2048)[0]!r}")
PY
    kill "$SERVER"
    wait "$SERVER" || true
    sed 's/^/server: /' "$TMP/udp.out" | grep -v "listening on"
fi

if [ -x "$BUILD/mpconn" ] && [ -f "$HERE/demo_cli.sh" ]; then
    echo
    echo "== 9. The mpconn command"
    sh "$HERE/demo_cli.sh" "$BUILD"
fi
if command -v python3 >/dev/null 2>&1; then
    echo
    echo "== 10. Echo servers on an event loop: mpconn's own, libuv's, libevent's (one thread each),"
    echo "       and an mpconn_server started on a libuv loop the program runs (uv_server)"
    for server in async_echo_server uv_echo_server event_echo_server uv_server; do
        [ -x "$EX/$server" ] || { echo "$server: not built (no libuv / libevent found)"; continue; }
        ECHO_AUTHKEY="secret password" start "$TMP/$server.out" "$EX/$server" 127.0.0.1:0 1
        python3 - "$ADDR" "$server" <<'PY'
import sys
from multiprocessing.connection import Client
host, port = sys.argv[1].rsplit(":", 1)
with Client((host, int(port)), authkey=b"secret password") as c:
    c.send(["hello", sys.argv[2]])
    print(f"python client: {sys.argv[2]} echoed {c.recv()!r}")
PY
        wait "$SERVER"
        sed "s/^/$server: /" "$TMP/$server.out" | grep -v "listening on"
    done

    echo
    echo "== 11. A line chat server (asynchat style): three nc-like clients see each other's lines"
    start "$TMP/chat.out" "$EX/chat_server" 127.0.0.1:0
    python3 - "$ADDR" <<'PY'
import socket, sys
host, port = sys.argv[1].rsplit(":", 1)
socks = [socket.create_connection((host, int(port)), timeout=10) for _ in range(3)]
files = [s.makefile("rb") for s in socks]
for f in files:
    print("chat client got:", f.readline().decode().strip())
socks[0].sendall(b"hi all, client 1 here\n")
socks[2].sendall(b"hello from 3\n")
seen = {1: [], 2: [], 3: []}
for i, want in ((1, 1), (2, 2), (3, 1)):
    seen[i] += [files[i - 1].readline().decode().strip() for _ in range(want)]
# Client 2 hears both; which comes first depends on which line the server read first.
assert sorted(seen[2]) == ["client 1: hi all, client 1 here", "client 3: hello from 3"], seen
assert seen[1] == ["client 3: hello from 3"] and seen[3] == ["client 1: hi all, client 1 here"], seen
for i in (1, 2, 3):
    print(f"chat client {i} saw: {seen[i]}")
for s in socks:
    s.close()
PY
    kill "$SERVER"
    wait "$SERVER" 2>/dev/null || true
    sed 's/^/chat server: /' "$TMP/chat.out" | grep -v "listening on"
fi
echo
echo "demo: done"
