#!/bin/sh
# make bench: runs the C benchmarks (mpconn vs a raw C baseline) and the
# CPython one, then prints one table of ratios against the targets and writes
# it to BUILD/bench/results.md. Usage: sh bench/run.sh [BUILD]
#
# Environment: BENCH_REPS (8), BENCH_TIME (seconds per repetition, 0.2),
# BENCH_LOOP_REPS (3) and BENCH_LOOP_TIME (0.2) for the event-loop rows,
# BENCH_ROUNDS (2: the C and CPython programs alternate, REPS split over them;
# setup rates alternate one repetition at a time instead),
# BENCH_SERVER_ROUNDS (3), BENCH_SERVER_REPS (3) and BENCH_SERVER_TIME (0.2)
# for the server rows, BENCH_CPU (the CPU every process is pinned to; default the last one;
# "none" to let the scheduler place them), PYTHON (python3).
# BENCH=tls runs only the TLS rows (make bench BENCH=tls); BENCH_TLS_ROUNDS
# (5) and BENCH_TLS_TIME (0.2 seconds per sample) shape them. BENCH=server
# runs only the server rows (into BIN/results-server.md).
set -u

BUILD=${1:-build}
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$BUILD/bench
REPS=${BENCH_REPS:-8}
SECS=${BENCH_TIME:-0.2}
PYTHON=${PYTHON:-python3}

for b in bench_conn bench_values bench_print bench_loop bench_server bench_tls bench_tls_ref; do
    if [ ! -x "$BIN/$b" ]; then
        echo "bench: $BIN/$b is missing; build first (make bench BUILD=$BUILD)" >&2
        exit 1
    fi
done

# Pinning everything to one CPU makes ping-pong numbers repeatable (no
# cross-CPU wake-ups, no migrations) on a small shared machine.
PIN=
CPU=${BENCH_CPU:-}
if [ "$CPU" != none ] && command -v taskset >/dev/null 2>&1; then
    if [ -z "$CPU" ]; then
        n=$(nproc 2>/dev/null || echo 1)
        CPU=$((n - 1))
    fi
    PIN="taskset -c $CPU"
else
    CPU=none
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/mpconn-bench.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM
OUT=$TMP/results.txt
: >"$OUT"

# The TLS rows: bench_tls interleaves mpconn with the hand-written OpenSSL
# pair and CPython's ssl itself. Certificates: tests/tls-certs.sh's, made
# once a day.
tls_rows() {
    tstart=0 tend=0
    certs=$BIN/tls-certs-v3-$(date -u +%Y%m%d)
    if [ ! -d "$certs" ]; then
        if ! command -v openssl >/dev/null 2>&1; then
            echo "bench: no openssl command to make certificates: no TLS rows" >&2
            echo "Not measured: no openssl command to make the certificates." >"$TMP/tlstable.md"
            return
        fi
        made=$(mktemp -d "$certs.tmp.XXXXXX") &&
            (cd "$made" && sh "$HERE/../tests/tls-certs.sh" >log 2>&1) &&
            mv "$made" "$certs" || { echo "bench: making certificates failed" >&2; return; }
    fi
    pyargs=
    if command -v "$PYTHON" >/dev/null 2>&1; then
        pyargs="--python $(command -v "$PYTHON") --pyscript $HERE/bench_tls_py.py"
    fi
    tstart=$(date +%s)
    # shellcheck disable=SC2086
    $PIN "$BIN/bench_tls" --certs "$certs" --ref "$BIN/bench_tls_ref" $pyargs \
        --rounds "${BENCH_TLS_ROUNDS:-5}" --time "${BENCH_TLS_TIME:-0.2}" \
        >"$TMP/tlstable.md" || echo "bench: bench_tls failed" >&2
    tend=$(date +%s)
}

# A table of SAMPLE lines: sample_table ROUNDS REPS SECS NOTE SAMPLES ROWS.
sample_table() {
awk -F'\t' -v rounds="$1" -v reps="$2" -v secs="$3" -v note="$4" '
function num(x) {
    if (x >= 100) return sprintf("%.0f", x)
    if (x >= 10) return sprintf("%.1f", x)
    return sprintf("%.2f", x)
}
# Median, lowest and highest of the samples of key k.
function stats(k,    n, i, j, t, a) {
    n = cnt[k]
    for (i = 1; i <= n; i++) a[i] = v[k, i]
    for (i = 2; i <= n; i++)
        for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
    lo = a[1]; hi = a[n]
    med = n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function key(id, col,    p) {
    p = index(col, "@")
    return p ? (id substr(col, p + 1)) SUBSEP substr(col, 1, p - 1) : id SUBSEP col
}
function cell(id, col,    k) {
    k = key(id, col)
    if (!(k in cnt)) return "n/a"
    stats(k)
    return lo == hi ? num(med) : num(med) " (" num(lo) "–" num(hi) ")"
}
FILENAME == ARGV[1] {
    if ($1 == "SAMPLE") { k = $2 SUBSEP $3; v[k, ++cnt[k]] = $4 + 0 }
    else if ($1 == "MISSING" && !seen[$2]++) missing = missing "\n- " $2
    next
}
{
    n = split($0, f, "|")
    if (f[1] == "#") {
        ncol = split(f[3], cols, ";")
        head = "| " f[2]; sep = "| ---"
        for (i = 1; i <= ncol; i++) {
            split(cols[i], cl, ":"); colid[i] = cl[1]
            head = head " | " cl[2]; sep = sep " | ---:"
        }
        printf "%s%s | Target | Result |\n%s | --- | --- |\n", (ntab++ ? "\n" : ""), head, sep
        next
    }
    if (n < 3) next
    line = "| " f[2]
    for (i = 1; i <= ncol; i++) line = line " | " cell(f[1], colid[i])
    nc = split(f[3], checks, " "); verdict = ""; target = ""
    for (i = 1; i <= nc; i++) {
        c = checks[i]; ceil = ""; p = index(c, "^")
        if (p) { ceil = substr(c, p + 1); c = substr(c, 1, p - 1) }
        p = index(c, ">="); op = ">="
        if (!p) { p = index(c, "<="); op = "<=" }
        col = substr(c, 1, p - 1); lim = substr(c, p + 2) + 0
        target = target (target == "" ? "" : ", ") col " " (op == ">=" ? "≥" : "≤") " " substr(c, p + 2)
        k = key(f[1], col)
        if (!(k in cnt)) { r = "n/a"; nna++ }
        else {
            stats(k); ok = op == ">=" ? med >= lim : med <= lim
            r = ok ? "PASS" : "MISS"
            if (ok) npass++; else nmiss++
            if (ceil != "" && (key(f[1], ceil) in cnt)) {
                stats(key(f[1], ceil))
                if (med < lim) { r = r " (beyond the ceiling: " ceil " " num(med) ")"; nbeyond++ }
            }
        }
        verdict = verdict (verdict == "" ? "" : ", ") r
    }
    printf "%s | %s | %s |\n", line, target, verdict
}
END {
    printf "\nMedian (lowest–highest) over %d rounds x %d repetitions of %ss; targets are checked on the median. ", rounds, reps, secs
    printf "Ratios are taken within one repetition, in which the implementations ran one after the other. "
    printf "%s %d PASS, %d MISS, %d n/a.", note, npass, nmiss, nna
    if (nbeyond) printf " %d of the targets are above what the hand-written server itself reaches here (its ratio, raw/CPython, is below the target): no server can meet them on this machine in that configuration.", nbeyond
    printf "\n"
    if (missing != "") printf "Not measured:%s\n", missing
}
' "$5" "$6"
}

# The server rows: bench_server runs mpconn_server's kinds and CPython's
# socketserver servers (bench_server_py.py), interleaved; SROUNDS rounds
# pinned, then one unpinned (a row id gains _unpinned).
server_rows() {
    SRV_OUT=$TMP/server.txt
    : >"$SRV_OUT"
    SROUNDS=${BENCH_SERVER_ROUNDS:-3}
    SREPS=${BENCH_SERVER_REPS:-3}
    SSECS=${BENCH_SERVER_TIME:-0.2}
    SPY=
    [ $have_py = 1 ] && SPY="--python $PYTHON --pyserver $HERE/bench_server_py.py"
    sstart=$(date +%s)
    round=1
    while [ $round -le "$SROUNDS" ]; do
        echo "bench: round $round/$SROUNDS: servers (reps $SREPS x ${SSECS}s, cpu $CPU)..." >&2
        # shellcheck disable=SC2086
        $PIN "$BIN/bench_server" --reps "$SREPS" --time "$SSECS" $SPY >>"$SRV_OUT" ||
            echo "bench: bench_server failed" >&2
        round=$((round + 1))
    done
    echo "bench: servers, unpinned..." >&2
    # shellcheck disable=SC2086
    "$BIN/bench_server" --reps "$SREPS" --time "$SSECS" $SPY echo conn shutdown |
        sed 's/^\(SAMPLE\t[a-z0-9_]*\)\t/\1_unpinned\t/' >>"$SRV_OUT" || echo "bench: bench_server failed" >&2
    send=$(date +%s)
    cat >"$TMP/srvrows" <<'EOF'
#|64 B echo, 100 connections, TCP, round trips/s|loop:loop;threads:threads;fork:fork;raw:raw C;py_threading:CPython threading;py_forking:CPython forking;threads/loop:threads/loop;fork/loop:fork/loop;threads/py:threads/CPython;fork/py:fork/CPython;raw/py:raw/CPython threading;loop/raw:loop/raw;threads/raw:threads/raw;fork/raw:fork/raw
srv_echo64|pinned to one CPU|threads/py>=3^raw/py
srv_echo64_unpinned|unpinned|threads/py>=3^raw/py
#|Connection per request (connect, one 64 B echo, close), TCP, connections/s|loop:loop;threads:threads;fork:fork;raw:raw C;py_threading:CPython threading;py_forking:CPython forking;loop/py:loop/CPython threading;threads/py:threads/CPython;fork/py:fork/CPython;raw/py:raw/CPython threading;loop/raw:loop/raw;threads/raw:threads/raw;fork/raw:fork/raw
srv_conn|pinned to one CPU|loop/py>=3^raw/py threads/py>=3^raw/py
srv_conn_unpinned|unpinned|loop/py>=3^raw/py threads/py>=3^raw/py
#|Shutdown with 100 clients connected, ms (mpconn_server_shutdown to serve_forever's return, all reaped)|loop:loop;threads:threads;fork:fork;fork_floor:a forking server by hand (FORK's floor)
srv_shutdown|pinned to one CPU|loop<=10 threads<=10 fork<=10
srv_shutdown_unpinned|unpinned|loop<=10 threads<=10 fork<=10
#|UDP echo, 64 B, 16 datagrams in flight, datagrams/s|raw:recvfrom/sendto loop;loop:loop;threads:threads;loop/raw:loop/raw;threads/raw:threads/raw
srv_udp64|pinned to one CPU|loop/raw>=0.9
#|Server CPU per operation (us, pinned; the scheduler's count, blind to other load)|raw:raw C (TCP epoll server, UDP recvfrom/sendto loop);loop:loop;threads:threads;py_threading:CPython threading
srv_echo64_cpu|64 B echo round trip, 100 connections|
srv_udp64_cpu|UDP echo, one datagram|
EOF
    sample_table "$SROUNDS" "$SREPS" "$SSECS" \
        "Client and servers pinned to CPU $CPU except the unpinned rows (one round). raw C: a hand-written epoll server (bench_server.c's serve_raw: accept, TCP_NODELAY, read a frame, write it back, close at end of stream; no handshake, no hooks), the ceiling of any server here. CPython: socketserver's ThreadingTCPServer and ForkingTCPServer with request_queue_size 128 and max_children 256 (its defaults, 5 and 40, would refuse or stall 100 clients); mpconn_server with a cap of 256." \
        "$SRV_OUT" "$TMP/srvrows" >"$TMP/srvtable.md"
}

if [ "${BENCH:-}" = tls ]; then
    tls_rows
    {
        printf '### TLS (%s s)\n\n' "$((tend - tstart))"
        cat "$TMP/tlstable.md"
        printf '\n%s; %s; %s.\n' "$(uname -srm)" \
            "$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: //')" \
            "$("$PYTHON" -c 'import sys, ssl; print("CPython " + sys.version.split()[0] + ", " + ssl.OPENSSL_VERSION)' 2>/dev/null)"
    } >"$BIN/results-tls.md"
    cat "$BIN/results-tls.md"
    echo "bench: table written to $BIN/results-tls.md" >&2
    exit 0
fi

if [ "${BENCH:-}" = server ]; then
    have_py=0
    command -v "$PYTHON" >/dev/null 2>&1 && have_py=1
    server_rows
    {
        printf '### Servers (%s s)\n\n' "$((send - sstart))"
        cat "$TMP/srvtable.md"
        printf '\n%s; %s; %s.\n' "$(uname -srm)" \
            "$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: //')" \
            "$([ $have_py = 1 ] && "$PYTHON" -c 'import sys; print("CPython " + sys.version.split()[0])')"
    } >"$BIN/results-server.md"
    cat "$BIN/results-server.md"
    echo "bench: table written to $BIN/results-server.md" >&2
    exit 0
fi

have_py=0
if command -v "$PYTHON" >/dev/null 2>&1 && "$PYTHON" "$HERE/bench_py.py" --gen "$TMP"; then
    have_py=1
else
    echo "bench: no CPython ($PYTHON): its column stays empty, and pickle needs it" >&2
fi

# The C and CPython programs run one after the other, so they would see
# different background load; alternating them in rounds (each round a share
# of the repetitions) spreads the load over both.
ROUNDS=${BENCH_ROUNDS:-2}
per=$(((REPS + ROUNDS - 1) / ROUNDS))
start=$(date +%s)
round=1
while [ $round -le "$ROUNDS" ]; do
    echo "bench: round $round/$ROUNDS: C connections (reps $per x ${SECS}s, cpu $CPU)..." >&2
    $PIN "$BIN/bench_conn" --reps "$per" --time "$SECS" memory rtt throughput >>"$OUT" ||
        echo "bench: bench_conn failed" >&2
    if [ $have_py = 1 ]; then
        echo "bench: round $round/$ROUNDS: C values..." >&2
        $PIN "$BIN/bench_values" --reps "$per" --time "$SECS" --data "$TMP" >>"$OUT" ||
            echo "bench: bench_values failed" >&2
        echo "bench: round $round/$ROUNDS: CPython $("$PYTHON" -c 'import sys; print(sys.version.split()[0])')..." >&2
        $PIN "$PYTHON" "$HERE/bench_py.py" --reps "$per" --time "$SECS" memory rtt throughput pickle intmem \
            >>"$OUT" || echo "bench: bench_py.py failed" >&2
    fi
    echo "bench: round $round/$ROUNDS: C printing..." >&2
    $PIN "$BIN/bench_print" --reps "$per" --time "$SECS" >>"$OUT" || echo "bench: bench_print failed" >&2
    round=$((round + 1))
done

# Setup rates are compared with CPython's, which is measured by another
# program: on a machine whose speed drifts from second to second, a ratio
# is only fair when both sides sample the same stretch of time. So the two
# alternate one repetition at a time, REPS times over. A handshake is a
# dialogue of two processes, and pinned to one CPU every step is a context
# switch, so each repetition also runs unpinned.
unpinned='s/^RESULT\t\(setup_[a-z]*\)\t/RESULT\t\1_unpinned\t/'
rep=1
while [ $rep -le "$REPS" ]; do
    echo "bench: setup rates, repetition $rep/$REPS (pinned, then unpinned)..." >&2
    $PIN "$BIN/bench_conn" --reps 1 --time "$SECS" setup >>"$OUT" || echo "bench: bench_conn failed" >&2
    if [ $have_py = 1 ]; then
        $PIN "$PYTHON" "$HERE/bench_py.py" --reps 1 --time "$SECS" setup >>"$OUT" ||
            echo "bench: bench_py.py failed" >&2
        "$BIN/bench_conn" --reps 1 --time "$SECS" setup | sed "$unpinned" >>"$OUT"
        "$PYTHON" "$HERE/bench_py.py" --reps 1 --time "$SECS" setup | sed "$unpinned" >>"$OUT"
    fi
    rep=$((rep + 1))
done

# The event-loop rows: bench_loop holds the load generator and the C
# servers, starts the asyncio one, and interleaves them itself; its rounds
# give the ranges (every repetition of every round is one sample).
LOOP_OUT=$TMP/loop.txt
: >"$LOOP_OUT"
LREPS=${BENCH_LOOP_REPS:-3}
LSECS=${BENCH_LOOP_TIME:-0.2}
lstart=$(date +%s)
round=1
while [ $round -le "$ROUNDS" ]; do
    echo "bench: round $round/$ROUNDS: event loop (reps $LREPS x ${LSECS}s, cpu $CPU)..." >&2
    if [ $have_py = 1 ]; then
        $PIN "$BIN/bench_loop" --reps "$LREPS" --time "$LSECS" --python "$PYTHON" \
            --pyserver "$HERE/bench_loop_py.py" >>"$LOOP_OUT" || echo "bench: bench_loop failed" >&2
    else
        $PIN "$BIN/bench_loop" --reps "$LREPS" --time "$LSECS" >>"$LOOP_OUT" ||
            echo "bench: bench_loop failed" >&2
    fi
    round=$((round + 1))
done
# Unpinned, the load generator and a server may each have a CPU: the rates
# again (a row id gains _unpinned), once.
echo "bench: event loop, unpinned (echo, accept)..." >&2
if [ $have_py = 1 ]; then
    "$BIN/bench_loop" --reps "$LREPS" --time "$LSECS" --python "$PYTHON" \
        --pyserver "$HERE/bench_loop_py.py" echo accept
else
    "$BIN/bench_loop" --reps "$LREPS" --time "$LSECS" echo accept
fi | sed 's/^\(SAMPLE\t[a-z0-9_]*\)\t/\1_unpinned\t/' >>"$LOOP_OUT" ||
    echo "bench: bench_loop failed" >&2
end=$(date +%s)
tls_rows

# One row per line: result id | what | mpconn's implementation | the
# reference of the target (raw, py, or mem for an upper bound) | target.
cat >"$TMP/rows" <<'EOF'
rtt_socketpair_1|round trip 1 B, socketpair|mpconn|raw|0.95
rtt_socketpair_64|round trip 64 B, socketpair|mpconn|raw|0.95
rtt_socketpair_4096|round trip 4 KiB, socketpair|mpconn|raw|0.95
rtt_unix_1|round trip 1 B, Unix socket|mpconn|raw|0.95
rtt_unix_64|round trip 64 B, Unix socket|mpconn|raw|0.95
rtt_unix_4096|round trip 4 KiB, Unix socket|mpconn|raw|0.95
rtt_tcp_1|round trip 1 B, TCP|mpconn|raw|0.95
rtt_tcp_64|round trip 64 B, TCP|mpconn|raw|0.95
rtt_tcp_4096|round trip 4 KiB, TCP|mpconn|raw|0.95
rtt_socketpair_1|round trip 1 B, socketpair, recv_bytes (alloc)|mpconn_alloc|raw|0.95
rtt_socketpair_64|round trip 64 B, socketpair, recv_bytes (alloc)|mpconn_alloc|raw|0.95
rtt_socketpair_4096|round trip 4 KiB, socketpair, recv_bytes (alloc)|mpconn_alloc|raw|0.95
rtt_unix_1|round trip 1 B, Unix socket, recv_bytes (alloc)|mpconn_alloc|raw|0.95
rtt_unix_64|round trip 64 B, Unix socket, recv_bytes (alloc)|mpconn_alloc|raw|0.95
rtt_unix_4096|round trip 4 KiB, Unix socket, recv_bytes (alloc)|mpconn_alloc|raw|0.95
rtt_tcp_1|round trip 1 B, TCP, recv_bytes (alloc)|mpconn_alloc|raw|0.95
rtt_tcp_64|round trip 64 B, TCP, recv_bytes (alloc)|mpconn_alloc|raw|0.95
rtt_tcp_4096|round trip 4 KiB, TCP, recv_bytes (alloc)|mpconn_alloc|raw|0.95
tput_socketpair_1MiB|one-way 1 MiB messages, socketpair, recv_bytes_into|mpconn|raw|0.90
tput_socketpair_64MiB|one-way 64 MiB messages, socketpair, recv_bytes_into|mpconn|raw|0.90
tput_unix_1MiB|one-way 1 MiB messages, Unix socket, recv_bytes_into|mpconn|raw|0.90
tput_unix_64MiB|one-way 64 MiB messages, Unix socket, recv_bytes_into|mpconn|raw|0.90
mem_recv_64MiB|peak RSS growth receiving 64 MiB with recv_bytes|mpconn|mem|68
setup_unix|authenticated connect+close, Unix socket (sha256)|mpconn|py|3
setup_unix|authenticated connect+close, Unix socket (legacy)|mpconn_legacy|py|3
setup_tcp|authenticated connect+close, TCP (sha256)|mpconn|py|3
setup_tcp|authenticated connect+close, TCP (legacy)|mpconn_legacy|py|3
setup_unix|the handshake's messages by hand in C, no crypto (floor), Unix socket|raw_handshake|py|3
setup_tcp|the handshake's messages by hand in C, no crypto (floor), TCP|raw_handshake|py|3
setup_unix|authenticated connect+close, Unix socket, client without pipelining|mpconn_nopipe|py|3
setup_tcp|authenticated connect+close, TCP, client without pipelining|mpconn_nopipe|py|3
setup_unix_unpinned|authenticated connect+close, Unix socket (sha256), unpinned|mpconn|py|3
setup_tcp_unpinned|authenticated connect+close, TCP (sha256), unpinned|mpconn|py|3
setup_unix_unpinned|the handshake's messages by hand in C, no crypto (floor), Unix socket, unpinned|raw_handshake|py|3
setup_tcp_unpinned|the handshake's messages by hand in C, no crypto (floor), TCP, unpinned|raw_handshake|py|3
pickle_small_encode|pickle encode, small dict|mpconn|py|1.0
pickle_small_decode|pickle decode, small dict|mpconn|py|1.0
pickle_big_encode|pickle encode, ~1 MiB structure|mpconn|py|1.0
pickle_big_decode|pickle decode, ~1 MiB structure|mpconn|py|1.0
obj_rtt_socketpair|object round trip (send/recv small dict) vs raw 64 B, socketpair|mpconn|raw|0.85
print_int_4300|repr of a 4300-digit int (CPython's limit)|mpconn|max|1000
print_int_1M|repr of a 1,000,000-digit int, digit limit lifted|mpconn|max|5
print_int_growth|repr time growth 4300 -> 1,000,000 digits as an exponent (quadratic: 2)|mpconn|max|1.7
print_bomb|repr of the 68-byte pickle x = (x, x) 32 deep: refused at the 64 MiB default|mpconn|max|3
print_bomb_cut|the same cut at 1 MiB (the CLI's default)|mpconn|max|0.1
mem_ints_small|memory per int unpickling 2M small ints (0..255; peak RSS growth)|mpconn|pymem|1.05
mem_ints_wide|memory per int unpickling 2M ints of 1000..2^30 (peak RSS growth)|mpconn|pymem|1.05
hostile_dag_keys|decode of a 742-byte pickle: equal 26-deep tuple DAGs as keys of one dict|mpconn|ms|10
EOF

awk -F'\t' -v reps="$((per * ROUNDS))" -v rounds="$ROUNDS" -v secs="$SECS" -v cpu="$CPU" '
function num(x) {
    if (x >= 100) return sprintf("%.0f", x)
    if (x >= 10) return sprintf("%.1f", x)
    return sprintf("%.2f", x)
}
function cell(id, impl) {
    if (!((id, impl) in best)) return "n/a"
    if (best[id, impl] == med[id, impl]) return num(best[id, impl])
    return num(best[id, impl]) " (" num(med[id, impl]) ")"
}
function ratio(id, a, b) {
    if (!((id, a) in best) || !((id, b) in best) || best[id, b] <= 0) return ""
    return best[id, a] / best[id, b]
}
function fmt_ratio(r) { return r == "" ? "n/a" : sprintf("%.2f", r) }
FILENAME == ARGV[1] {
    # Several rounds: the best of the bests (the lowest for memory), the
    # median of the medians.
    if ($1 == "RESULT") {
        k = $2 SUBSEP $3; unit[$2] = $6
        low = $6 == "MiB" || $6 == "s" || $6 == "us" || $6 == "exponent" || $6 == "ms" || $6 ~ /^B\//
        if (!(k in best) || (low ? $4 < best[k] : $4 > best[k])) best[k] = $4
        n = ++nmed[k]; meds[k, n] = $5
        for (i = n; i > 1 && meds[k, i - 1] > meds[k, i]; i--) {
            t = meds[k, i]; meds[k, i] = meds[k, i - 1]; meds[k, i - 1] = t
        }
        med[k] = n % 2 ? meds[k, (n + 1) / 2] : (meds[k, n / 2] + meds[k, n / 2 + 1]) / 2
    }
    else if ($1 == "MISSING") missing = missing "\n" $2
    next
}
{
    n = split($0, f, "|")
    if (n < 5) next
    id = f[1]; mp = f[3]; ref = f[4]; tgt = f[5]
    rr = ratio(id, mp, "raw"); rp = ratio(id, mp, "py"); pr = ratio(id, "py", "raw")
    if (ref == "mem" || ref == "max") {
        target = "<= " tgt " " (ref == "mem" ? "MiB" : unit[id])
        have = ((id, mp) in best)
        ok = have && best[id, mp] <= tgt
    } else if (ref == "ms") {
        target = "<= " tgt " ms"
        have = ((id, mp) in best)
        ok = have && best[id, mp] <= tgt
    } else if (ref == "pymem") {
        target = "<= " tgt "x CPython"
        have = rp != ""
        ok = have && rp <= tgt
    } else {
        target = ">= " tgt "x " (ref == "py" ? "CPython" : "raw")
        r = ref == "py" ? rp : rr
        have = r != ""
        ok = have && r >= tgt
    }
    verdict = have ? (ok ? "PASS" : "MISS") : "n/a"
    if (have) { if (ok) npass++; else nmiss++ } else nna++
    printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", f[2], unit[id] == "" ? "" : unit[id],
        cell(id, "raw"), cell(id, mp), cell(id, "py"), fmt_ratio(rr), fmt_ratio(rp), fmt_ratio(pr),
        target, verdict
}
BEGIN {
    print "| What | Unit | raw C | mpconn | CPython | mpconn/raw | mpconn/CPython | CPython/raw | Target | Result |"
    print "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"
}
END {
    printf "\nBest of %d repetitions of %ss in %d rounds (median in parentheses); ratios from the best. ", reps, secs, rounds
    printf "Setup rows: the C and CPython programs alternate one repetition at a time. "
    printf "Rates: higher is better; times, exponents and memory (MiB, B/int): lower. All processes pinned to CPU %s except the unpinned rows. ", cpu
    printf "%d PASS, %d MISS, %d n/a.\n", npass, nmiss, nna
    if (missing != "") printf "Not measured:%s\n", missing
}
' "$OUT" "$TMP/rows" >"$TMP/table.md"

# The event-loop tables: "#|title|col:label;..." starts a table (a column
# col@suffix reads row id + suffix), then "id|what|checks", each check
# col>=x or col<=x on the median; col>=x^ceil also says when the median of
# column ceil (what a hand-written server reaches) is below x itself.
cat >"$TMP/looprows" <<'EOF'
#|64 B echo, round trips/s|raw:raw epoll;uv:libuv;py:asyncio;mpconn:mpconn;mpconn/raw:mpconn/raw;mpconn/uv:mpconn/libuv
echo64_unix_100|100 connections, Unix socket|mpconn/raw>=0.90 mpconn/uv>=1.0
echo64_unix_1000|1,000 connections, Unix socket|mpconn/raw>=0.90 mpconn/uv>=1.0
echo64_tcp_100|100 connections, TCP|mpconn/raw>=0.90 mpconn/uv>=1.0
echo64_tcp_1000|1,000 connections, TCP|mpconn/raw>=0.90 mpconn/uv>=1.0
echo64_unix_100_unpinned|100 connections, Unix socket, unpinned|mpconn/raw>=0.90 mpconn/uv>=1.0
echo64_unix_1000_unpinned|1,000 connections, Unix socket, unpinned|mpconn/raw>=0.90 mpconn/uv>=1.0
echo64_tcp_100_unpinned|100 connections, TCP, unpinned|mpconn/raw>=0.90 mpconn/uv>=1.0
echo64_tcp_1000_unpinned|1,000 connections, TCP, unpinned|mpconn/raw>=0.90 mpconn/uv>=1.0
#|64 B echo, server CPU per round trip (us, pinned)|raw:raw epoll;uv:libuv;py:asyncio;mpconn:mpconn;mpconn/raw:mpconn/raw;mpconn/uv:mpconn/libuv
echo64_unix_100_cpu|100 connections, Unix socket|
echo64_unix_1000_cpu|1,000 connections, Unix socket|
echo64_tcp_100_cpu|100 connections, TCP|
echo64_tcp_1000_cpu|1,000 connections, TCP|
echo1M_unix_1_cpu|1 MiB, 1 connection, Unix socket|
echo1M_unix_10_cpu|1 MiB, 10 connections, Unix socket|
echo1M_tcp_1_cpu|1 MiB, 1 connection, TCP|
echo1M_tcp_10_cpu|1 MiB, 10 connections, TCP|
#|64 B echo, latency (us)|raw@_p50:raw p50;raw@_p99:raw p99;uv@_p50:libuv p50;uv@_p99:libuv p99;py@_p50:asyncio p50;py@_p99:asyncio p99;mpconn@_p50:mpconn p50;mpconn@_p99:mpconn p99
echo64_unix_100|100 connections, Unix socket|
echo64_unix_1000|1,000 connections, Unix socket|
echo64_tcp_100|100 connections, TCP|
echo64_tcp_1000|1,000 connections, TCP|
#|1 MiB echo, round trips/s|raw:raw epoll;uv:libuv;py:asyncio;mpconn:mpconn;mpconn/raw:mpconn/raw;mpconn/uv:mpconn/libuv
echo1M_unix_1|1 connection, Unix socket|mpconn/raw>=0.90
echo1M_unix_10|10 connections, Unix socket|mpconn/raw>=0.90
echo1M_tcp_1|1 connection, TCP|mpconn/raw>=0.90
echo1M_tcp_10|10 connections, TCP|mpconn/raw>=0.90
#|Idle authenticated connections, server VmRSS growth (bytes per connection)|mpconn:mpconn;uv:libuv;py:asyncio;mpconn@_conns:connections
idle_unix|10,000 connections on one loop, Unix socket|mpconn<=512
#|p99 latency (us) of 100 echo connections, flood of 1,000 handshakes|quiet:no flood;flood:flood;flood/quiet:flood/quiet
flood_silent_unix|silent peers, Unix socket|flood/quiet<=2
flood_half_unix|peers stalled after half a frame header, Unix socket|flood/quiet<=2
flood_silent_tcp|silent peers, TCP|flood/quiet<=2
flood_half_tcp|peers stalled after half a frame header, TCP|flood/quiet<=2
flood_silent_unix_apart|silent peers, Unix socket, flooder on another CPU|flood/quiet<=2
flood_half_unix_apart|peers stalled after half a frame header, Unix socket, flooder on another CPU|flood/quiet<=2
flood_silent_tcp_apart|silent peers, TCP, flooder on another CPU|flood/quiet<=2
flood_half_tcp_apart|peers stalled after half a frame header, TCP, flooder on another CPU|flood/quiet<=2
flood_silent_unix_raw|silent peers, Unix socket, the hand-written server without authkey (the floor)|
flood_half_unix_raw|peers stalled after half a frame header, Unix socket, the hand-written server (the floor)|
flood_silent_tcp_raw|silent peers, TCP, the hand-written server (the floor)|
flood_half_tcp_raw|peers stalled after half a frame header, TCP, the hand-written server (the floor)|
flood_silent_unix_uv|silent peers, Unix socket, the libuv server with the same authkey|
flood_half_unix_uv|peers stalled after half a frame header, Unix socket, the libuv server with the same authkey|
flood_silent_tcp_uv|silent peers, TCP, the libuv server with the same authkey|
flood_half_tcp_uv|peers stalled after half a frame header, TCP, the libuv server with the same authkey|
#|Handshakes in progress, server VmRSS growth (bytes per handshake)|mpconn:mpconn
hsmem_unix|1,000 silent peers in their handshakes, Unix socket|mpconn<=512
hsmem_tcp|1,000 silent peers in their handshakes, TCP|mpconn<=512
#|Authenticated connections accepted per second|blocking:mpconn_listener;mpconn:async listener;mpconn/blocking:async/blocking
accept_unix|connect + handshake + close, Unix socket|mpconn/blocking>=1.0
accept_tcp|connect + handshake + close, TCP|mpconn/blocking>=1.0
accept_unix_unpinned|connect + handshake + close, Unix socket, unpinned|mpconn/blocking>=1.0
accept_tcp_unpinned|connect + handshake + close, TCP, unpinned|mpconn/blocking>=1.0
EOF
sample_table "$ROUNDS" "$LREPS" "$LSECS" \
    "Load generator and servers pinned to CPU $CPU except the unpinned rows (one round). Server CPU: its scheduler time (/proc/PID/schedstat) over the round trips it served." \
    "$LOOP_OUT" "$TMP/looprows" >"$TMP/looptable.md"

server_rows

{
    cat "$TMP/table.md"
    printf '\n### Event loop and async connections (%s s)\n\n' "$((end - lstart))"
    cat "$TMP/looptable.md"
    printf '\n### Servers (%s s)\n\n' "$((send - sstart))"
    cat "$TMP/srvtable.md"
    printf '\n### TLS (%s s)\n\n' "$((tend - tstart))"
    cat "$TMP/tlstable.md"
    printf '\n%s; %s; %s; %s s.\n' "$(uname -srm)" \
        "$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: //')" \
        "$([ $have_py = 1 ] && "$PYTHON" -c 'import sys; print("CPython " + sys.version.split()[0])')" \
        "$((send - start))"
} >"$BIN/results.md"
cat "$BIN/results.md"
echo "bench: table written to $BIN/results.md" >&2
