"""make bench, CPython part: the same measurements as bench_conn.c and
bench_values.c, made with CPython's multiprocessing.connection and pickle, in
the same arrangement (peer in a forked process, best of N interleaved reps).

Prints lines "RESULT <id> py <best> <median> <unit>" for bench/run.sh.
`bench_py.py --gen DIR` writes the pickles bench_values decodes."""

import argparse
import os
import pickle
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Client, Listener, Pipe

KEY = b'bench authkey'
REPS = 5
SECS = 0.15


def small_value():
    return {'op': 'add', 'args': [1, 2.5, 'x']}


def big_value():
    """About 1 MiB of pickle: 5000 dicts of ints, floats, short strs, bytes,
    a tuple, a bool and None. Deterministic, so C decodes the same bytes."""
    rng = random.Random(42)
    return [{'id': i, 'score': rng.random() * 1000, 'name': 'item%05d' % i,
             'tag': rng.choice(['red', 'green', 'blue']),
             'count': rng.randrange(-2**40, 2**40),
             'blob': bytes(rng.randrange(256) for _ in range(128)),
             'pos': (i, -i, rng.random()), 'ok': i % 3 == 0, 'none': None}
            for i in range(5000)]


def result(ident, rates, unit):
    print('RESULT\t%s\tpy\t%.6g\t%.6g\t%s' % (ident, max(rates), statistics.median(rates), unit),
          flush=True)


def run_for(op, secs, max_ops=10_000_000):
    """Operations per second of op over about secs (clock read per batch)."""
    n, batch = 0, 1
    t0 = tb = time.perf_counter()
    while n < max_ops:
        for _ in range(batch):
            op()
        n += batch
        t = time.perf_counter()
        if t - t0 >= secs:
            break
        if t - tb < 1e-3 and batch < (1 << 20):
            batch *= 2
        tb = t
    return n / (t - t0)


def measure(ident, op, unit, scale=1.0, max_ops=10_000_000):
    run_for(op, SECS / 3, max_ops)
    result(ident, [run_for(op, SECS, max_ops) * scale for _ in range(REPS)], unit)


def nodelay(conn):
    s = socket.socket(fileno=os.dup(conn.fileno()))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.close()


def fork(child):
    """Runs child() in a forked process that never returns to the caller."""
    pid = os.fork()
    if pid == 0:
        signal.alarm(300)  # a peer never outlives the benchmark by long
        code = 0
        try:
            child()
        except BaseException:  # noqa: B902 - the child must never escape
            code = 1
        os._exit(code)
    return pid


def reap(pid):
    os.waitpid(pid, 0)


def connected(transport, peer):
    """A connection whose other end runs peer(conn) in a forked child."""
    if transport == 'socketpair':
        a, b = Pipe(duplex=True)
        pid = fork(lambda: (a.close(), peer(b)))
        b.close()
        return a, pid
    addr = ('127.0.0.1', 0) if transport == 'tcp' else None
    listener = Listener(addr, family='AF_INET' if transport == 'tcp' else 'AF_UNIX')
    address = listener.address

    def child():
        c = Client(address)
        if transport == 'tcp':
            nodelay(c)
        peer(c)
    pid = fork(child)
    conn = listener.accept()
    listener.close()
    if transport == 'tcp':
        nodelay(conn)
    return conn, pid


def echo(c):
    try:
        while True:
            c.send_bytes(c.recv_bytes())
    except (EOFError, OSError):
        pass


def echo_obj(c):
    try:
        while True:
            c.send(c.recv())
    except (EOFError, OSError):
        pass


def sender(size):
    def run(c):
        payload = b'x' * size
        try:
            while True:
                c.send_bytes(payload)
        except OSError:
            pass
    return run


def bench_rtt():
    for transport in ('socketpair', 'unix', 'tcp'):
        for size in (1, 64, 4096):
            conn, pid = connected(transport, echo)
            msg = b'x' * size

            def op():
                conn.send_bytes(msg)
                conn.recv_bytes()
            measure('rtt_%s_%d' % (transport, size), op, 'k round trips/s', 1e-3)
            conn.close()
            reap(pid)


def bench_throughput():
    for transport in ('socketpair', 'unix'):
        for size in (1 << 20, 64 << 20):
            conn, pid = connected(transport, sender(size))
            buf = bytearray(size)

            def op():
                if conn.recv_bytes_into(buf) != size:
                    raise RuntimeError('short message')
            measure('tput_%s_%dMiB' % (transport, size >> 20), op, 'MiB/s', size / (1 << 20),
                    1_000_000)
            conn.close()
            reap(pid)


def bench_memory():
    """Peak RSS growth of a fresh child receiving 64 MiB with recv_bytes."""
    size = 64 << 20
    best = None
    for _ in range(2):
        a, b = Pipe(duplex=True)
        rd, wr = os.pipe()

        def child():
            a.close()
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            m = b.recv_bytes()
            after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            assert len(m) == size
            os.write(wr, b'%d' % (after - before))
        pid = fork(child)
        b.close()
        os.close(wr)
        a.send_bytes(b'm' * size)
        growth = int(os.read(rd, 64)) / 1024
        os.close(rd)
        a.close()
        reap(pid)
        best = growth if best is None else min(best, growth)
    result('mem_recv_64MiB', [best], 'MiB')


def bench_setup():
    for transport in ('unix', 'tcp'):
        tmp = tempfile.mkdtemp(prefix='mpconn-bench-')
        if transport == 'unix':
            listener = Listener(os.path.join(tmp, 'sock'), 'AF_UNIX', authkey=KEY)
        else:
            listener = Listener(('127.0.0.1', 0), 'AF_INET', authkey=KEY)
        address = listener.address

        def serve():
            while True:
                try:
                    listener.accept().close()
                except Exception:  # a failed handshake: go on serving
                    pass
        pid = fork(serve)

        def op():
            Client(address, authkey=KEY).close()
        measure('setup_%s' % transport, op, 'connections/s', 1.0, 200_000)
        os.kill(pid, signal.SIGTERM)
        reap(pid)
        listener.close()
        shutil.rmtree(tmp, ignore_errors=True)


def bench_pickle():
    small = small_value()
    big = big_value()
    sp = pickle.dumps(small, 4)
    bp = pickle.dumps(big, 4)
    measure('pickle_small_encode', lambda: pickle.dumps(small, 4), 'k ops/s', 1e-3)
    measure('pickle_small_decode', lambda: pickle.loads(sp), 'k ops/s', 1e-3)
    measure('pickle_big_encode', lambda: pickle.dumps(big, 4), 'ops/s')
    measure('pickle_big_decode', lambda: pickle.loads(bp), 'ops/s')
    conn, pid = connected('socketpair', echo_obj)

    def op():
        conn.send(small)
        conn.recv()
    measure('obj_rtt_socketpair', op, 'k round trips/s', 1e-3)
    conn.close()
    reap(pid)


INTS = 2_000_000


def int_lists():
    """A list of small ints (0..255, which CPython and mpconn share) and one
    of ints that each need an object."""
    return {'small': [i % 256 for i in range(INTS)],
            'wide': [1000 + i * 517 for i in range(INTS)]}


INTMEM_CHILD = """
import pickle, sys
def hwm():  # this process's own peak RSS in KiB (ru_maxrss keeps the parent's)
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM:'):
            return int(line.split()[1])
data = open(sys.argv[1], 'rb').read()
before = hwm()
got = pickle.loads(data)
print(hwm() - before, len(got))
"""


def bench_intmem():
    """Peak RSS growth per int of a fresh interpreter unpickling the int
    lists (fresh, so that no memory freed earlier is reused)."""
    tmp = tempfile.mkdtemp(prefix='mpconn-bench-')
    try:
        for name, v in int_lists().items():
            path = os.path.join(tmp, name)
            with open(path, 'wb') as f:
                f.write(pickle.dumps(v, 4))
            out = subprocess.run([sys.executable, '-c', INTMEM_CHILD, path], check=True,
                                 capture_output=True, text=True).stdout.split()
            result('mem_ints_%s' % name, [int(out[0]) * 1024 / int(out[1])], 'B/int')
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def gen(directory):
    with open(os.path.join(directory, 'small.pickle'), 'wb') as f:
        f.write(pickle.dumps(small_value(), 4))
    with open(os.path.join(directory, 'big.pickle'), 'wb') as f:
        f.write(pickle.dumps(big_value(), 4))
    for name, v in int_lists().items():
        with open(os.path.join(directory, 'ints_%s.pickle' % name), 'wb') as f:
            f.write(pickle.dumps(v, 4))


def main():
    global REPS, SECS
    p = argparse.ArgumentParser()
    p.add_argument('--reps', type=int, default=REPS)
    p.add_argument('--time', type=float, default=SECS)
    p.add_argument('--gen', metavar='DIR')
    p.add_argument('parts', nargs='*')
    args = p.parse_args()
    if args.gen:
        gen(args.gen)
        return
    REPS = max(1, min(15, args.reps))
    SECS = args.time if 0 < args.time <= 10 else SECS
    parts = args.parts or ['memory', 'rtt', 'throughput', 'setup', 'pickle']
    for name in parts:
        globals()['bench_' + name]()


if __name__ == '__main__':
    sys.exit(main())
