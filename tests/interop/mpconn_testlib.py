"""Shared helpers of the interop and fault scripts: run the C test peer
(tests/interop/peer.c) and read its report lines with timeouts, convert
addresses between mpconn's syntax and Python's, run blocking Python calls
with a bound, and dispatch `python3 script CASE` to `case_CASE()`.

Everything here is bounded: every wait has a timeout, every child is
killed on the way out, and each case runs under an alarm."""

import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

from pypeer import from_python, pattern, to_python  # noqa: F401 - shared with 2.7

AUTHKEY = b'secret password'
CASE_ALARM = 150  # seconds; CTest kills at 180

_children = []


def build_dir():
    d = os.environ.get('MPCONN_BUILD')
    if not d:
        raise AssertionError('MPCONN_BUILD is not set (run through ctest)')
    return d


def peer_path():
    p = os.path.join(build_dir(), 'tests', 'peer')
    if not os.access(p, os.X_OK):
        raise AssertionError(f'C test peer not built: {p}')
    return p


class Peer:
    """A running C peer (or, given a command, another program such as
    pypeer.py under some interpreter). Lines of its stdout (stderr merged)
    are collected by a reader thread; expect() waits for one with a timeout."""

    def __init__(self, args, name='peer', command=None):
        self.args = (command or [peer_path()]) + [str(a) for a in args]
        self.name = name
        self.proc = subprocess.Popen(self.args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        _children.append(self.proc)
        self.lines = []
        self._q = queue.Queue()
        self._pos = 0
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self):
        for raw in self.proc.stdout:
            line = raw.decode('utf-8', 'replace').rstrip('\n')
            self._q.put(line)
        self._q.put(None)

    def _drain(self, timeout):
        try:
            line = self._q.get(timeout=timeout)
        except queue.Empty:
            return False
        if line is None:
            self._eof = True
            return False
        self.lines.append(line)
        return True

    def output(self):
        return '\n'.join(self.lines)

    def expect(self, prefix, timeout=10.0):
        """The next not yet matched line starting with prefix."""
        deadline = time.monotonic() + timeout
        while True:
            for i in range(self._pos, len(self.lines)):
                if self.lines[i].startswith(prefix):
                    self._pos = i + 1
                    return self.lines[i]
            left = deadline - time.monotonic()
            if left <= 0 or getattr(self, '_eof', False):
                raise AssertionError(
                    f'{self.name}: no line starting with {prefix!r} within {timeout}s; '
                    f'exit status {self.proc.poll()}; output so far:\n{self.output()}')
            self._drain(min(left, 0.5))

    def skip(self):
        """Forgets the lines printed so far: expect() then waits for new ones."""
        while self._drain(0):
            pass
        self._pos = len(self.lines)

    def send_line(self, text='go'):
        self.proc.stdin.write((text + '\n').encode())
        self.proc.stdin.flush()

    def wait(self, timeout=15.0):
        """Waits for the exit; returns the status, all output collected."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            self._t.join(5)
            while self._drain(0):
                pass
            raise AssertionError(f'{self.name} did not exit within {timeout}s; output:\n'
                                 f'{self.output()}')
        self._t.join(5)
        while self._drain(0):
            pass
        return rc

    def finish(self, expect_rc=0, timeout=15.0):
        rc = self.wait(timeout)
        if rc != expect_rc:
            raise AssertionError(f'{self.name} exited with {rc}, expected {expect_rc}; output:\n'
                                 f'{self.output()}')
        return self.output()

    def maxrss_kb(self):
        line = [ln for ln in self.lines if ln.startswith('maxrss ')]
        if not line:
            raise AssertionError(f'{self.name}: no maxrss line; output:\n{self.output()}')
        return int(line[-1].split()[1])

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()
        for f in (self.proc.stdin, ):
            try:
                f.close()
            except OSError:
                pass
        return False


def start_listener(address, *args, name='C listener'):
    """Starts `peer listen`; returns (peer, its real address in mpconn syntax)."""
    p = Peer(['listen', address] + list(args), name=name)
    line = p.expect('listening on ', timeout=10)
    return p, line[len('listening on '):]


def start_client(address, *args, name='C client'):
    return Peer(['connect', address] + list(args), name=name)


_tmpdirs = []


def tmp_path(name='sock'):
    d = tempfile.mkdtemp(prefix='mpconn-interop-')
    _tmpdirs.append(d)
    return os.path.join(d, name)


def unique_abstract():
    return f'@mpconn-interop-{os.getpid()}-{time.monotonic_ns()}'


def listen_spec(kind):
    """A fresh mpconn listener address of kind unix|abstract|tcp4|tcp6."""
    return {'unix': lambda: tmp_path(), 'abstract': unique_abstract,
            'tcp4': lambda: '127.0.0.1:0', 'tcp6': lambda: '[::1]:0'}[kind]()


def has_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(('::1', 0))
        return True
    except OSError:
        return False


class Background:
    """Runs fn in a daemon thread; result(timeout) returns its value or
    re-raises its exception, and fails if it has not finished in time."""

    def __init__(self, fn, *args, **kwargs):
        self._value = None
        self._exc = None
        self._done = threading.Event()

        def run():
            try:
                self._value = fn(*args, **kwargs)
            except BaseException as e:  # handed to the caller of result()
                self._exc = e
            finally:
                self._done.set()

        self._t = threading.Thread(target=run, daemon=True)
        self._t.start()

    def done(self):
        return self._done.is_set()

    def result(self, timeout=10.0):
        if not self._done.wait(timeout):
            raise AssertionError(f'background call still running after {timeout}s (hang)')
        if self._exc is not None:
            raise self._exc
        return self._value

    def exception(self, timeout=10.0):
        """The exception it raised (fails if it returned normally)."""
        if not self._done.wait(timeout):
            raise AssertionError(f'background call still running after {timeout}s (hang)')
        if self._exc is None:
            raise AssertionError(f'expected an exception, got {self._value!r}')
        return self._exc


def bounded(fn, timeout, *args, **kwargs):
    return Background(fn, *args, **kwargs).result(timeout)


def recv_bytes(conn, timeout=10.0):
    """conn.recv_bytes() that fails instead of hanging when nothing comes."""
    if not conn.poll(timeout):
        raise AssertionError(f'nothing to receive within {timeout}s')
    return conn.recv_bytes()


def raw_recv_message(sock, timeout=5.0):
    """Reads one framed message from a raw socket (4-byte header form)."""
    sock.settimeout(timeout)
    hdr = recv_exact(sock, 4)
    n = int.from_bytes(hdr, 'big', signed=True)
    if n < 0:
        raise AssertionError(f'unexpected header {hdr!r}')
    return recv_exact(sock, n)


def recv_exact(sock, n):
    buf = b''
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError(f'end of stream after {len(buf)} of {n} bytes')
        buf += chunk
    return buf


def frame(payload):
    return len(payload).to_bytes(4, 'big', signed=True) + payload


def raw_connect(addr, timeout=5.0):
    """A plain socket connected to an mpconn address."""
    pyaddr, family = to_python(addr)
    fam = {'AF_UNIX': socket.AF_UNIX, 'AF_INET': socket.AF_INET,
           'AF_INET6': socket.AF_INET6}[family]
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(pyaddr)
    return s


def _cleanup():
    for p in _children:
        if p.poll() is None:
            p.kill()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass
    for d in _tmpdirs:
        for root, dirs, files in os.walk(d, topdown=False):
            for f in files:
                try:
                    os.unlink(os.path.join(root, f))
                except OSError:
                    pass
            try:
                os.rmdir(root)
            except OSError:
                pass


def _alarm(signum, frame):
    raise TimeoutError(f'case did not finish within {CASE_ALARM}s')


def main(namespace):
    """`python3 script CASE` runs case_CASE; with no argument lists the cases."""
    cases = sorted(k[5:] for k in namespace if k.startswith('case_'))
    if len(sys.argv) != 2:
        print('cases:', ' '.join(cases))
        sys.exit(2)
    name = sys.argv[1]
    fn = namespace.get('case_' + name)
    if fn is None:
        print(f'no case {name!r}; cases: {" ".join(cases)}')
        sys.exit(2)
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CASE_ALARM)
    t0 = time.monotonic()
    try:
        fn()
    except BaseException:
        traceback.print_exc()
        print(f'FAIL {name} ({time.monotonic() - t0:.2f}s)')
        sys.stdout.flush()
        _cleanup()
        os._exit(1)  # daemon threads may still block
    signal.alarm(0)
    _cleanup()
    print(f'PASS {name} ({time.monotonic() - t0:.2f}s)')
    sys.stdout.flush()
    os._exit(0)


def unescape(text):
    """Inverse of the peer's print_escaped: '\\xNN' -> byte NN."""
    out = bytearray()
    i = 0
    raw = text.encode('ascii')
    while i < len(raw):
        if raw[i:i + 2] == b'\\x':
            out.append(int(raw[i + 2:i + 4], 16))
            i += 4
        else:
            out.append(raw[i])
            i += 1
    return bytes(out)


# --------------------------------------------- CPython >= 3.12 authentication
# CPython 3.11 (the python3 here) only speaks the legacy form: a 20-byte
# challenge, answered with raw HMAC-MD5. The two roles below are a small
# model of the {digest} handshake of CPython >= 3.12 as the protocol notes
# describe it (and as the vectors in tests/data/auth.jsonl show), so that
# form is exercised over real sockets too, on any object with
# send_bytes/recv_bytes.

CHALLENGE, WELCOME, FAILURE = b'#CHALLENGE#', b'#WELCOME#', b'#FAILURE#'
DIGESTS = ('md5', 'sha256', 'sha384', 'sha3_256', 'sha3_384')


class AuthError(Exception):
    pass


def _mac(key, message, name):
    import hmac
    return hmac.new(key, message, name).digest()


def deliver_challenge_312(conn, key, digest='sha256'):
    message = b'{%s}%s' % (digest.encode('ascii'), os.urandom(40))
    conn.send_bytes(CHALLENGE + message)
    response = conn.recv_bytes(256)
    if len(response) == 16:
        ok = response == _mac(key, message, 'md5')
    else:
        name = response[1:response.index(b'}')].decode() if response.startswith(b'{') else ''
        ok = name in DIGESTS and \
            response == b'{%s}' % name.encode() + _mac(key, message, name)
    conn.send_bytes(WELCOME if ok else FAILURE)
    if not ok:
        raise AuthError(f'digest received was wrong: {response!r}')


def answer_challenge_312(conn, key):
    message = conn.recv_bytes(256)
    if not message.startswith(CHALLENGE):
        raise AuthError(f'not a challenge: {message!r}')
    message = message[len(CHALLENGE):]
    if message.startswith(b'{') and b'}' in message:
        name = message[1:message.index(b'}')].decode()
        answer = b'{%s}' % name.encode() + _mac(key, message, name)
    else:
        answer = _mac(key, message, 'md5')
    conn.send_bytes(answer)
    response = conn.recv_bytes(256)
    if response != WELCOME:
        raise AuthError(f'digest sent was rejected: {response!r}')


class RawConn:
    """Framing over a plain socket that writes every frame in chunk-byte
    pieces (each its own send with TCP_NODELAY where it applies), to feed
    the other side arbitrary splits."""

    def __init__(self, sock, chunk=1, timeout=5.0):
        self.sock = sock
        self.chunk = chunk
        sock.settimeout(timeout)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send_bytes(self, data):
        raw = frame(data)
        for i in range(0, len(raw), self.chunk):
            self.sock.sendall(raw[i:i + self.chunk])

    def recv_bytes(self, maxlength=None):
        data = raw_recv_message(self.sock)
        if maxlength is not None and len(data) > maxlength:
            raise OSError('bad message length')
        return data



# ------------------------------------------------------------ TLS certificates

_tls_certs = []


def tls_certs():
    """The TLS tests' certificate directory (tests/tls-certs.sh's set), got
    the way the CLI suites get it; without the openssl command the case is
    skipped (77)."""
    if not _tls_certs:
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'cli'))
        import casemain
        try:
            _tls_certs.append(casemain.tls_cert_dir(build_dir()))
        except SystemExit as e:  # its skip
            sys.stdout.flush()
            _cleanup()
            os._exit(e.code if isinstance(e.code, int) else 1)
    return _tls_certs[0]
