"""Many CPython multiprocessing.connection clients at once against mpconn's
async listener (tests/interop/asyncpeer.c, an echo server on mpconn's own
loop): a thousand authenticated clients held open together, each answered
correctly, on a Unix socket and on TCP, on epoll and on poll; clients with
a wrong key among them, refused while the others are served; and peers
that leave abruptly at each stage while the others are served.

Run as `python3 test_async_py.py CASE` (CTest does, one entry per case).
The clients run in worker processes: `test_async_py.py --worker ...`."""

import glob
import os
import select
import sys
import time
from multiprocessing.connection import AuthenticationError, Client

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mpconn_testlib as t  # noqa: E402

KEY = t.AUTHKEY
WRONG_KEY = b'not the password'
WORKER_WAIT = 60  # seconds a worker holds its connections at most


def asyncpeer_path():
    p = os.path.join(t.build_dir(), 'tests', 'asyncpeer')
    if not os.access(p, os.X_OK):
        raise AssertionError(f'async C server not built: {p}')
    return p


def message(proc, i, rnd):
    """What client i of worker proc sends in round rnd: mostly short, one
    large message per worker so that the echo comes back in parts."""
    if i == 0 and rnd == 0:
        return bytes((k * 7 + proc) % 256 for k in range(200 * 1024))
    head = b'%d/%d/%d:' % (proc, i, rnd)
    return head + bytes((proc + i + rnd + k) % 256 for k in range((i * 37 + rnd * 11) % 900))


def worker(args):
    """Opens n clients (every bad_every-th with a wrong key, which must be
    refused), runs the rounds over all of them at once, prints
    "ready GOOD REFUSED", holds the connections until a line on stdin,
    then closes them and prints "closed"."""
    addr, n, rounds, proc, bad_every = args[0], int(args[1]), int(args[2]), int(args[3]), \
        int(args[4])
    pyaddr, family = t.to_python(addr)
    conns = []
    refused = 0
    for i in range(n):
        bad = bad_every and i % bad_every == bad_every - 1
        try:
            c = Client(pyaddr, family=family, authkey=WRONG_KEY if bad else KEY)
        except AuthenticationError:
            if not bad:
                raise
            refused += 1
            continue
        if bad:
            raise AssertionError(f'client {i}: a wrong key was let in')
        conns.append((i, c))
    for rnd in range(rounds):
        for i, c in conns:
            c.send_bytes(message(proc, i, rnd))
        for i, c in conns:
            if not c.poll(30):
                raise AssertionError(f'client {i}: no answer in round {rnd} within 30 s')
            got = c.recv_bytes()
            if got != message(proc, i, rnd):
                raise AssertionError(f'client {i}, round {rnd}: wrong echo ({len(got)} bytes)')
    print(f'ready {len(conns)} {refused}', flush=True)
    select.select([sys.stdin], [], [], WORKER_WAIT)
    for _, c in conns:
        c.close()
    print('closed', flush=True)


def parse_stats(line):
    """"stats accepted=N open=N ..." -> {'accepted': N, 'open': N, ...}"""
    return {k: int(v) for k, v in (f.split('=') for f in line.split()[1:])}


def stats(server):
    server.send_line('stats')
    return parse_stats(server.expect('stats ', timeout=10))


def abrupt_peers(addr, n):
    """n peers each of three kinds: one that connects and goes, one that
    answers the challenge with a bad frame header, and one that
    authenticates, sends half a message and goes."""
    pyaddr, family = t.to_python(addr)
    for _ in range(n):
        t.raw_connect(addr).close()
        with t.raw_connect(addr) as s:
            s.sendall(b'\xff\xff\xff\xfe' + b'x' * 8)
        c = Client(pyaddr, family=family, authkey=KEY)
        os.write(c.fileno(), (65536).to_bytes(4, 'big') + b'y' * 100)
        c.close()


def wait_stats(server, pred, timeout=10.0):
    """The server's stats once pred holds of them (fails after timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        now = stats(server)
        if pred(now) or time.monotonic() > deadline:
            return now
        time.sleep(0.05)


def newest_cpython():
    """The newest pyenv CPython of 3.12 or later (their clients answer and
    send the {digest} challenge), or None."""
    root = os.environ.get('PYENV_ROOT') or os.path.expanduser('~/.pyenv')
    found = []
    for exe in glob.glob(os.path.join(root, 'versions', '3.*', 'bin', 'python')):
        parts = os.path.basename(os.path.dirname(os.path.dirname(exe))).split('.')
        if len(parts) >= 2 and parts[1].isdigit() and int(parts[1]) >= 12:
            found.append((int(parts[1]), exe))
    return max(found)[1] if found else None


def run_many(kind, backend, procs, per, rounds, bad_every=0, hostile=0, python=sys.executable):
    spec = t.listen_spec(kind)
    server = t.Peer([spec, '--authkey', KEY.decode(), '--backend', backend],
                    name='async C server', command=[asyncpeer_path()])
    with server:
        addr = server.expect('listening on ', timeout=10)[len('listening on '):]
        server.expect(f'backend {backend}', timeout=5)
        workers = [t.Peer(['--worker', addr, per, rounds, k, bad_every], name=f'worker {k}',
                          command=[python, os.path.abspath(__file__)])
                   for k in range(procs)]
        rude = t.Background(abrupt_peers, addr, hostile) if hostile else None
        good = refused = 0
        try:
            for w in workers:
                _, g, r = w.expect('ready ', timeout=90).split()
                good += int(g)
                refused += int(r)
            want_bad = procs * (per // bad_every) if bad_every else 0
            assert refused == want_bad, (refused, want_bad)
            assert good == procs * per - want_bad, good
            if rude:
                rude.result(60)
            now = wait_stats(server, lambda st: st['open'] == good)
            # Every good client is connected at this moment.
            assert now['open'] == good, now
            assert now['peak'] == good, now
            for w in workers:
                w.send_line('close')
            for w in workers:
                w.expect('closed', timeout=30)
                w.finish(0, timeout=30)
        finally:
            for w in workers:
                w.kill()
        wait_stats(server, lambda st: st['open'] == 0)
        server.proc.stdin.close()
        out = server.finish(0, timeout=20)
        final = parse_stats([ln for ln in out.splitlines() if ln.startswith('stats ')][-1])
        assert final['open'] == 0, final
        assert final['accepted'] == good + hostile, final
        # A peer gone before its accept may be dropped unreported.
        assert refused + (hostile > 0) <= final['rejects'] <= refused + 2 * hostile, final
        assert final['messages'] == good * rounds, final
        bad_closes = [ln for ln in out.splitlines() if ln.startswith('closed ')]
        assert len(bad_closes) == hostile, (hostile, bad_closes[:5])
        print(f'{good} CPython clients ({kind}, {backend}, {python}) x {rounds} rounds; '
              f'{refused} wrong keys refused; {final["bytes"]} bytes echoed')


def case_thousand_cpython_clients_unix_epoll():
    run_many('unix', 'epoll', procs=10, per=100, rounds=3)


def case_thousand_cpython_clients_tcp_poll():
    run_many('tcp4', 'poll', procs=10, per=100, rounds=3)


def case_thousand_newest_cpython_clients():
    """The same with the newest CPython here, whose handshake is the
    {digest} one in both directions."""
    python = newest_cpython()
    if python is None:
        print('skipped: no CPython 3.12 or later under pyenv')
        return
    run_many('unix', 'epoll', procs=10, per=100, rounds=2, python=python)


def case_wrong_keys_refused_among_many():
    """One client in ten has the wrong key: each is refused (the reject
    callback counts it), and every other one is served."""
    run_many('unix', 'epoll', procs=4, per=100, rounds=2, bad_every=10)


def case_abrupt_peers_among_many():
    """300 peers that leave mid-way (before the handshake, inside it with a
    bad header, inside a message) while 400 CPython clients are served: the
    server reports each, and answers every good client."""
    run_many('tcp4', 'epoll', procs=4, per=100, rounds=3, hostile=100)


if __name__ == '__main__':
    if len(sys.argv) > 1 and sys.argv[1] == '--worker':
        worker(sys.argv[2:])
    else:
        t.main(globals())
