"""The CPython column of make bench's TLS rows: the ssl module under
multiprocessing.connection's framing and authkey handshake, as a Python
program combines them (tests/interop/pypeer_tls.py's Connection over an
SSLSocket), measured as bench_tls measures mpconn, in the same SAMPLE lines.

  python3 bench_tls_py.py --certs DIR [--reps N] [--time S] PART...
  PART: rtt64 tput64M setup_full setup_resumed setup_key (none named: all)

The server is a forked child serving one connection at a time. Connections
close as SSLSocket.close() closes them, without close_notify; a resumed
connection offers the session of the one before (SSLSocket.session)."""

import os
import signal
import socket
import ssl
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'interop'))
import multiprocessing.connection as mc  # noqa: E402

import pypeer_tls  # noqa: E402

MIB = 1024 * 1024
TPUT_SIZE = 64 * MIB
AUTHKEY = b'bench authkey'
pypeer_tls.CLOSE_NOTIFY[0] = False


def run_for(op, secs):
    """Operations per second of op, run for about secs (at least once)."""
    n = 0
    t0 = time.perf_counter()
    while True:
        op()
        n += 1
        t = time.perf_counter()
        if t - t0 >= secs:
            return n / (t - t0)


def cpu_ns(pid):
    """CPU time used by this process and the server child pid, in ns."""
    try:
        with open('/proc/%d/schedstat' % pid) as f:
            child = float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        child = float('nan')
    return time.process_time() * 1e9 + child


def serve(lsock, ctx, mode, key):
    payload = bytes(TPUT_SIZE) if mode == 'source' else b''
    while True:
        raw, _ = lsock.accept()
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            conn = pypeer_tls.TLSConnection(ctx.wrap_socket(raw, server_side=True))
        except (ssl.SSLError, OSError):
            raw.close()
            continue
        try:
            if key:  # what Listener.accept does
                mc.deliver_challenge(conn, key)
                mc.answer_challenge(conn, key)
            if mode == 'source':
                while True:
                    conn.send_bytes(payload)
            while True:
                conn.send_bytes(conn.recv_bytes())
        except (EOFError, OSError, ssl.SSLError, mc.AuthenticationError):
            pass
        conn.close()


def spawn_server(certs, mode, key=None):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(os.path.join(certs, 'bench.pem'), os.path.join(certs, 'bench.key'))
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.bind(('127.0.0.1', 0))
    lsock.listen(128)
    pid = os.fork()
    if pid == 0:
        signal.alarm(300)
        try:
            serve(lsock, ctx, mode, key)
        finally:
            os._exit(0)
    addr = lsock.getsockname()
    lsock.close()
    return pid, addr


class Client(object):
    def __init__(self, certs, addr, key=None, resume=False):
        self.ctx = ssl.create_default_context(cafile=os.path.join(certs, 'ca.pem'))
        self.addr = addr
        self.key = key
        self.resume = resume
        self.session = None
        self.resumed = 0
        self.conn = None

    def connect(self):
        raw = socket.create_connection(self.addr)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tls = self.ctx.wrap_socket(raw, server_hostname='localhost',
                                   session=self.session if self.resume else None)
        self.conn = pypeer_tls.TLSConnection(tls)
        if self.key:  # what Client does
            mc.answer_challenge(self.conn, self.key)
            mc.deliver_challenge(self.conn, self.key)
        return tls

    def setup(self):
        """Connect, handshake, one 1-byte message each way (which also
        takes in the server's tickets), close."""
        tls = self.connect()
        self.conn.send_bytes(b'\x01')
        self.conn.recv_bytes()
        if self.resume:
            self.resumed += tls.session_reused
            self.session = tls.session
        elif tls.session_reused:
            raise AssertionError('a full handshake resumed a session')
        self.conn.close()


def measure(certs, reps, secs, part):
    mode = 'source' if part == 'tput64M' else 'echo'
    key = AUTHKEY if part == 'setup_key' else None
    pid, addr = spawn_server(certs, mode, key)
    try:
        c = Client(certs, addr, key, resume=part in ('setup_resumed', 'setup_key'))
        scale = 1
        if part == 'rtt64':
            c.connect()
            msg = bytes(64)

            def op():
                c.conn.send_bytes(msg)
                c.conn.recv_bytes()
        elif part == 'tput64M':
            c.connect()
            buf = bytearray(TPUT_SIZE)
            scale = TPUT_SIZE / MIB

            def op():
                c.conn.recv_bytes_into(buf)
        else:
            op = c.setup
        run_for(op, secs / 3)  # warm-up
        for _ in range(reps):
            before = c.resumed
            c0, t0 = cpu_ns(pid), time.perf_counter()
            rate = run_for(op, secs)
            elapsed, c1 = time.perf_counter() - t0, cpu_ns(pid)
            if c.resume and c.resumed == before:
                raise AssertionError('no session was resumed')
            print('SAMPLE\ttls_%s\tpy\t%.6g' % (part, rate * scale))
            # both ends' CPU per operation, in microseconds
            print('SAMPLE\ttls_%s_cpu\tpy\t%.6g' % (part, (c1 - c0) / 1e3 / (rate * elapsed)))
            sys.stdout.flush()
        if c.conn:
            c.conn.close()
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


PARTS = ('rtt64', 'tput64M', 'setup_full', 'setup_resumed', 'setup_key')


def main(argv):
    certs, reps, secs, parts = '.', 5, 0.15, []
    args = argv[1:]
    while args:
        a = args.pop(0)
        if a == '--certs':
            certs = args.pop(0)
        elif a == '--reps':
            reps = int(args.pop(0))
        elif a == '--time':
            secs = float(args.pop(0))
        elif a in PARTS:
            parts.append(a)
        else:
            print('usage: bench_tls_py.py --certs DIR [--reps N] [--time S] [%s]...' %
                  '|'.join(PARTS), file=sys.stderr)
            return 2
    for part in parts or PARTS:
        measure(certs, reps, secs, part)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
