"""Interop of mpconn with python3's own multiprocessing.connection, in
process: authentication failures and missing keys; the legacy challenge;
the {digest} handshake of CPython >= 3.12 with every digest against a
small model of it (byte by byte too); header forms; Unix socket files;
recv_bytes_into; end of file; fd passing; pickled values. The address
kinds, large messages and handshakes against every CPython on the machine
are in test_versions.py.

Run as `python3 test_connection.py CASE` (CTest does, one entry per case)."""

import ast
import os
import socket
import sys
import time
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Listener
from multiprocessing.reduction import recv_handle, send_handle

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mpconn_testlib as t  # noqa: E402

KEY = t.AUTHKEY
WRONG = b'not the password'


def key_args(key):
    return ['--authkey', key.decode()] if key else []


# ------------------------------------------------------- authentication

def case_wrong_key_c_listener():
    """Python client with the wrong key: AuthenticationError in Python, the
    C listener rejects with MPCONN_ERR_AUTH and then serves a client with the right key."""
    peer, addr = t.start_listener('127.0.0.1:0', *key_args(KEY), 'recv:5', 'send:7')
    with peer:
        pyaddr, family = t.to_python(addr)
        exc = t.Background(Client, pyaddr, family=family, authkey=WRONG).exception(10)
        assert isinstance(exc, AuthenticationError), repr(exc)
        peer.expect('reject MPCONN_ERR_AUTH', timeout=5)
        conn = t.bounded(Client, 10, pyaddr, family=family, authkey=KEY)
        with conn:
            conn.send_bytes(t.pattern(5))
            assert t.recv_bytes(conn) == t.pattern(7)
        out = peer.finish(0)
        assert 'recv 5 ok' in out.splitlines(), out


def case_wrong_key_py_listener():
    """C client with the wrong key: Python's accept raises
    AuthenticationError, the C client fails with MPCONN_ERR_AUTH."""
    with Listener(('127.0.0.1', 0), authkey=KEY) as listener:
        accept = t.Background(listener.accept)
        with t.start_client(t.from_python(listener.address), *key_args(WRONG), 'send:1') as peer:
            exc = accept.exception(10)
            assert isinstance(exc, AuthenticationError), repr(exc)
            peer.finish(3)
            peer.expect('error connect MPCONN_ERR_AUTH', timeout=0)


def case_nokey_python_client_to_c_key():
    """A Python client without key to a C listener with one: the listener
    rejects it, the client sees the challenge as data and then the end, no
    hang; the listener goes on serving a client with the key."""
    peer, addr = t.start_listener(t.tmp_path(), *key_args(KEY), '--handshake-timeout', '10',
                                  'recv:3')
    with peer:
        pyaddr, family = t.to_python(addr)
        t0 = time.monotonic()
        conn = t.bounded(Client, 5, pyaddr, family=family)
        with conn:
            conn.send_bytes(b'hello')
            first = t.recv_bytes(conn, timeout=5)
            assert first.startswith(b'#CHALLENGE#'), first
            seen = []
            for _ in range(3):  # #FAILURE# may come before the end
                try:
                    seen.append(t.bounded(conn.recv_bytes, 5))
                except (EOFError, ConnectionResetError):
                    break
            else:
                raise AssertionError(f'no end of stream after {seen!r}')
        peer.expect('reject ', timeout=5)
        assert time.monotonic() - t0 < 5, 'rejection took until the handshake timeout'
        conn = t.bounded(Client, 10, pyaddr, family=family, authkey=KEY)
        with conn:
            conn.send_bytes(t.pattern(3))
        peer.finish(0)


def case_nokey_c_client_to_py_key():
    """A C client without key to a Python listener with one: the first
    message is #CHALLENGE#, so the C side reports MPCONN_ERR_NOKEY at once and
    hangs up; Python's accept fails instead of waiting."""
    with Listener(('127.0.0.1', 0), authkey=KEY) as listener:
        accept = t.Background(listener.accept)
        t0 = time.monotonic()
        with t.start_client(t.from_python(listener.address), 'recvany') as peer:
            peer.finish(3, timeout=5)
            peer.expect('error recvany MPCONN_ERR_NOKEY', timeout=0)
            assert time.monotonic() - t0 < 3, 'MPCONN_ERR_NOKEY was not prompt'
            exc = accept.exception(5)
            assert isinstance(exc, (EOFError, ConnectionError, AuthenticationError)), repr(exc)


def case_nokey_c_client_recvinto_small_buffer():
    """The MPCONN_ERR_NOKEY detection does not depend on how the first message is
    read: recv_bytes_into with a buffer smaller than the challenge must
    report MPCONN_ERR_NOKEY too, not MPCONN_ERR_SHORTBUF."""
    with Listener(('127.0.0.1', 0), authkey=KEY) as listener:
        accept = t.Background(listener.accept)
        with t.start_client(t.from_python(listener.address), 'recvinto:10') as peer:
            peer.wait(5)
            peer.expect('error recvinto MPCONN_ERR_NOKEY', timeout=0)
            exc = accept.exception(5)
            assert isinstance(exc, (EOFError, ConnectionError, AuthenticationError)), repr(exc)


def case_key_c_client_to_c_nokey():
    """A C client with key to a C listener without: the client waits for a
    challenge that never comes and fails at its handshake timeout."""
    peer, addr = t.start_listener(t.tmp_path(), 'eof')
    with peer:
        t0 = time.monotonic()
        with t.start_client(addr, *key_args(KEY), '--handshake-timeout', '1') as client:
            client.finish(3, timeout=10)
            elapsed = time.monotonic() - t0
            client.expect('error connect ETIMEDOUT', timeout=0)
        assert 0.9 <= elapsed < 5, f'client failed after {elapsed:.2f}s, timeout was 1s'
        peer.finish(0)
        peer.expect('eof ok', timeout=0)


# --------------------------------------------------------------- legacy

def case_legacy_c_listener_py_client():
    """digest "legacy": the C listener sends CPython 3.11's 20-byte challenge
    and a Python 3.11 client authenticates against it."""
    peer, addr = t.start_listener('127.0.0.1:0', *key_args(KEY), '--digest', 'legacy',
                                  'recv:4', 'send:4')
    with peer:
        with t.raw_connect(addr) as s:
            challenge = t.raw_recv_message(s)
        assert challenge.startswith(b'#CHALLENGE#'), challenge
        assert len(challenge) == len(b'#CHALLENGE#') + 20, challenge
        pyaddr, family = t.to_python(addr)
        conn = t.bounded(Client, 10, pyaddr, family=family, authkey=KEY)
        with conn:
            conn.send_bytes(t.pattern(4))
            assert t.recv_bytes(conn) == t.pattern(4)
        peer.finish(0)


# ------------------------------------- the {digest} form of CPython >= 3.12

class Recording:
    """Wraps a connection and keeps what it received."""

    def __init__(self, conn):
        self.conn = conn
        self.received = []

    def send_bytes(self, data):
        self.conn.send_bytes(data)

    def recv_bytes(self, maxlength=None):
        data = self.conn.recv_bytes(maxlength)
        self.received.append(data)
        return data


def check_modern_challenge(msg, digest):
    prefix = t.CHALLENGE + b'{%s}' % digest.encode()
    assert msg.startswith(prefix) and len(msg) == len(prefix) + 40, msg


def case_modern_digests_c_listener():
    """A C listener delivering each {digest} challenge, against a client
    doing what CPython 3.12 does (and delivering another digest back)."""
    for i, digest in enumerate(t.DIGESTS):
        theirs = t.DIGESTS[(i + 1) % len(t.DIGESTS)]
        peer, addr = t.start_listener(t.tmp_path(), *key_args(KEY), '--digest', digest,
                                      'recv:3', 'send:3')
        with peer:
            with t.bounded(Client, 10, addr) as raw:
                conn = Recording(raw)
                t.bounded(t.answer_challenge_312, 10, conn, KEY)
                check_modern_challenge(conn.received[0], digest)
                t.bounded(t.deliver_challenge_312, 10, conn, KEY, theirs)
                raw.send_bytes(t.pattern(3))
                assert t.recv_bytes(raw) == t.pattern(3)
            peer.finish(0)


def case_modern_digests_c_client():
    """A C client against a listener doing what CPython 3.12 does, each
    {digest} both ways."""
    with Listener(t.tmp_path()) as listener:
        for i, digest in enumerate(t.DIGESTS):
            theirs = t.DIGESTS[(i + 2) % len(t.DIGESTS)]
            accept = t.Background(listener.accept)
            with t.start_client(listener.address, *key_args(KEY), '--digest', theirs,
                                'send:3') as peer:
                with accept.result(10) as raw:
                    conn = Recording(raw)
                    t.bounded(t.deliver_challenge_312, 10, conn, KEY, digest)
                    t.bounded(t.answer_challenge_312, 10, conn, KEY)
                    check_modern_challenge(conn.received[1], theirs)
                    assert t.recv_bytes(raw) == t.pattern(3)
                peer.finish(0)


def case_modern_md5_refused_by_c_client():
    """A {md5} challenge to a C client with MD5 refused: MPCONN_ERR_AUTH."""
    with Listener(t.tmp_path()) as listener:
        accept = t.Background(listener.accept)
        with t.start_client(listener.address, *key_args(KEY), '--no-md5', 'send:3') as peer:
            with accept.result(10) as raw:
                exc = t.Background(t.deliver_challenge_312, raw, KEY, 'md5').exception(10)
                assert isinstance(exc, (EOFError, ConnectionError)), repr(exc)
            peer.finish(3)
            line = peer.expect('error connect MPCONN_ERR_AUTH', timeout=0)
            assert 'MD5' in line, line


def case_handshake_byte_by_byte():
    """Every handshake message and the first message written one byte per
    send, to a C listener and to a C client."""
    peer, addr = t.start_listener('127.0.0.1:0', *key_args(KEY), 'recv:1000', 'send:7')
    with peer:
        with t.raw_connect(addr) as s:
            conn = t.RawConn(s, chunk=1)
            t.answer_challenge_312(conn, KEY)
            t.deliver_challenge_312(conn, KEY, 'sha384')
            conn.send_bytes(t.pattern(1000))
            assert conn.recv_bytes() == t.pattern(7)
        peer.finish(0)
    with socket.socket() as srv:
        srv.bind(('127.0.0.1', 0))
        srv.listen(1)
        srv.settimeout(10)
        addr = '127.0.0.1:%d' % srv.getsockname()[1]
        with t.start_client(addr, *key_args(KEY), 'recv:300', 'send:2') as peer:
            s, _ = srv.accept()
            with s:
                conn = t.RawConn(s, chunk=1)
                t.deliver_challenge_312(conn, KEY, 'sha3_256')
                t.answer_challenge_312(conn, KEY)
                conn.send_bytes(t.pattern(300))
                assert conn.recv_bytes() == t.pattern(2)
            peer.finish(0)


def case_long_header_form():
    """The 12-byte header (-1, then an 8-byte length) is accepted for any
    size, small ones included, as CPython's reader does."""
    peer, addr = t.start_listener(t.tmp_path(), 'recv:5', 'recv:0', 'recv:70000', 'eof')
    with peer:
        with t.raw_connect(addr) as s:
            for n in (5, 0, 70000):
                s.sendall(b'\xff\xff\xff\xff' + n.to_bytes(8, 'big') + t.pattern(n))
        peer.finish(0)


def case_first_message_with_welcome():
    """The client's last #WELCOME# and its first message (100 kB) in one
    write: the bytes behind the handshake belong to the first message."""
    peer, addr = t.start_listener('127.0.0.1:0', *key_args(KEY), 'recv:100000', 'recv:5')
    with peer:
        with t.raw_connect(addr) as s:
            conn = t.RawConn(s, chunk=1 << 20)
            t.answer_challenge_312(conn, KEY)
            message = b'{sha256}' + os.urandom(40)
            conn.send_bytes(t.CHALLENGE + message)
            answer = conn.recv_bytes()
            assert answer == b'{sha256}' + t._mac(KEY, message, 'sha256'), answer
            s.sendall(t.frame(t.WELCOME) + t.frame(t.pattern(100000)) + t.frame(t.pattern(5)))
            peer.finish(0)


def case_unix_path_stale():
    """A socket file left by a dead listener is taken over."""
    path = t.tmp_path()
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(path)
    dead.listen(1)
    dead.close()  # the file stays, nobody listens: stale
    peer, addr = t.start_listener(path, 'recv:1')
    with peer:
        assert addr == path, addr
        with t.bounded(Client, 10, path) as conn:
            conn.send_bytes(t.pattern(1))
        peer.finish(0)


def case_unix_path_live_untouched():
    """The socket file of a live CPython listener is left alone: the C
    listener fails with MPCONN_ERR_ADDRINUSE, and the live listener must not
    see any connection from it (a probe connection makes a CPython
    Listener with an authkey raise from accept(), which ends the usual
    `while True: listener.accept()` server)."""
    path = t.tmp_path()
    with Listener(path, authkey=KEY) as live:
        with t.Peer(['listen', path, 'recv:1'], name='C listener') as peer:
            peer.finish(3, timeout=5)
            peer.expect('error listen MPCONN_ERR_ADDRINUSE', timeout=0)
        accept = t.Background(live.accept)
        client = t.Background(Client, path, authkey=KEY)
        try:
            c2 = accept.result(10)
        except (OSError, EOFError) as e:
            raise AssertionError(f'the live listener accepted a connection from the C '
                                 f'listener\'s probe, and accept() raised {e!r}')
        with c2, client.result(10) as conn:
            conn.send_bytes(b'still there')
            assert t.recv_bytes(c2) == b'still there'


# ------------------------------------------------------ recv_bytes_into

def case_recv_bytes_into_short():
    """100 bytes into a 10-byte buffer: MPCONN_ERR_SHORTBUF with the size 100,
    and the message is kept for the next receive (into or plain)."""
    peer, addr = t.start_listener(t.tmp_path(), 'recvinto:10', 'recvinto:200', 'recvinto:10',
                                  'recvany', 'recvinto:100')
    msg1 = bytes(range(100))
    msg2 = b'0123456789' * 10
    with peer:
        pyaddr, family = t.to_python(addr)
        with t.bounded(Client, 10, pyaddr, family=family) as conn:
            conn.send_bytes(msg1)
            conn.send_bytes(msg2)
            conn.send_bytes(msg1)
            peer.finish(0)
        short = [ln for ln in peer.lines if ln.startswith('recvinto short')]
        assert short == ['recvinto short 100', 'recvinto short 100'], peer.output()
        ok = peer.expect('recvinto ok ', timeout=0)
        assert t.unescape(ok[len('recvinto ok '):]) == msg1, ok
        any_ = peer.expect('recvany ', timeout=0)
        assert t.unescape(any_[len('recvany '):]) == msg2, any_
        ok = peer.expect('recvinto ok ', timeout=0)
        assert t.unescape(ok[len('recvinto ok '):]) == msg1, ok


# ------------------------------------------------------------------ EOF

def case_eof_python_closes_c_listener():
    """Python closes: the C listener's receive returns MPCONN_ERR_EOF."""
    peer, addr = t.start_listener(t.tmp_path(), 'recv:6', 'eof')
    with peer:
        pyaddr, family = t.to_python(addr)
        with t.bounded(Client, 10, pyaddr, family=family) as conn:
            conn.send_bytes(t.pattern(6))
        peer.finish(0)
        peer.expect('eof ok', timeout=0)


def case_eof_python_closes_c_client():
    """A Python listener closes the accepted connection: MPCONN_ERR_EOF in C."""
    with Listener(('127.0.0.1', 0), authkey=KEY) as listener:
        accept = t.Background(listener.accept)
        with t.start_client(t.from_python(listener.address), *key_args(KEY), 'eof') as peer:
            accept.result(10).close()
            peer.finish(0)
            peer.expect('eof ok', timeout=0)


def case_eof_c_closes():
    """The C side closes after a message: Python reads it, then EOFError."""
    peer, addr = t.start_listener('127.0.0.1:0', *key_args(KEY), 'sendtext:bye')
    with peer:
        pyaddr, family = t.to_python(addr)
        with t.bounded(Client, 10, pyaddr, family=family, authkey=KEY) as conn:
            assert t.recv_bytes(conn) == b'bye'
            peer.finish(0)
            assert conn.poll(5), 'end of stream not readable'
            try:
                conn.recv_bytes()
            except EOFError:
                pass
            else:
                raise AssertionError('recv_bytes after the peer closed did not raise EOFError')


# ---------------------------------------------------------- fd passing

def case_fd_c_to_python():
    """mpconn_conn_send_fd -> multiprocessing.reduction.recv_handle."""
    peer, addr = t.start_listener(t.tmp_path(), 'sendfd:hello from C', 'eof')
    with peer:
        with t.bounded(Client, 10, addr) as conn:
            fd = t.bounded(recv_handle, 10, conn)
            try:
                os.lseek(fd, 0, os.SEEK_SET)
                assert os.read(fd, 100) == b'hello from C'
            finally:
                os.close(fd)
        peer.finish(0)
        peer.expect('eof ok', timeout=0)


def case_fd_c_to_python_between_messages():
    """Message, fd, message from C: CPython reads them in order."""
    peer, addr = t.start_listener(t.tmp_path(), 'send:50', 'sendfd:between', 'send:3', 'eof')
    with peer:
        with t.bounded(Client, 10, addr) as conn:
            assert t.recv_bytes(conn) == t.pattern(50)
            fd = t.bounded(recv_handle, 10, conn)
            try:
                assert os.read(fd, 100) == b'between'
            finally:
                os.close(fd)
            assert t.recv_bytes(conn) == t.pattern(3)
        peer.finish(0)


def send_file_fd(conn, pid, text):
    path = t.tmp_path('file')
    with open(path, 'wb') as f:
        f.write(text)
    fd = os.open(path, os.O_RDONLY)
    try:
        send_handle(conn, fd, pid)
    finally:
        os.close(fd)


def case_fd_python_to_c():
    """multiprocessing.reduction.send_handle -> mpconn_conn_recv_fd."""
    peer, addr = t.start_listener(t.tmp_path(), 'recvfd', 'eof')
    with peer:
        with t.bounded(Client, 10, addr) as conn:
            send_file_fd(conn, peer.proc.pid, b'hello from Python')
            peer.expect('recvfd ', timeout=10)
        peer.finish(0)
        assert 'recvfd hello from Python' in peer.lines, peer.output()


def case_fd_after_message():
    """A message and a passed fd right behind it: the fd survives the
    connection's read-ahead of the message."""
    peer, addr = t.start_listener(t.tmp_path(), 'recv:100', 'recvfd', 'recv:1', 'eof')
    with peer:
        with t.bounded(Client, 10, addr) as conn:
            conn.send_bytes(t.pattern(100))
            send_file_fd(conn, peer.proc.pid, b'fd behind a message')
            conn.send_bytes(t.pattern(1))
            peer.expect('recv 1 ok', timeout=10)
        peer.finish(0)
        assert 'recvfd fd behind a message' in peer.lines, peer.output()


# --------------------------------------------------------------- values

VALUES = [
    {'op': 'add', 'args': [1, 2.5, 'x']},
    None, True, False, 0, -5, 2 ** 100, -(2 ** 70), 0.1, 1e300, float('-inf'),
    '', 'héllo ☃ \U0001f600', b'', b'\x00\xffbytes', bytearray(b'ba'),
    [], [1, [2, [3]]], (), (1,), (1, 'two', 3.0), {}, {1: 'a', 'b': (2, 3)},
    {1, 2, 3}, frozenset({'x'}), set(), [None] * 3,
]


def case_objects_python_to_c():
    """Python send()s plain values; the C listener recv()s them and prints
    mpconn_value_repr, which must equal Python's repr."""
    peer, addr = t.start_listener(t.tmp_path(), *(['recvobj'] * len(VALUES)), 'eof')
    with peer:
        with t.bounded(Client, 10, addr) as conn:
            for v in VALUES:
                conn.send(v)
        peer.finish(0)
        got = [t.unescape(ln[len('recvobj '):]).decode('utf-8')
               for ln in peer.lines if ln.startswith('recvobj ')]
        assert got == [repr(v) for v in VALUES], (got, [repr(v) for v in VALUES])


LITERALS = [
    "{'op': 'add', 'args': [1, 2.5, 'x']}",
    'None', 'True', '-7', '123456789012345678901234567890', '0.25', "'text é'",
    "b'\\x00\\x01'", '[1, (2, 3), {4: None}]', '()', '(1,)', "{'a', 'b'}",
    "{'nested': {'list': [[], [[]]], 'f': -1.5e-10}}",
]


def same(a, b):
    """Equal and of the same types all the way down (1 == 1.0 == True is
    not enough here)."""
    if type(a) is not type(b) or a != b:
        return False
    if isinstance(a, (list, tuple)):
        return all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return True


def case_objects_c_to_python():
    """C parses literals with mpconn_value_parse and mpconn_conn_send()s
    them; Python's recv() equals ast.literal_eval of the same text."""
    with Listener(t.tmp_path()) as listener:
        actions = [f'sendobj:{lit}' for lit in LITERALS]
        with t.start_client(listener.address, *actions) as peer:
            with t.Background(listener.accept).result(10) as conn:
                for lit in LITERALS:
                    if not conn.poll(10):
                        peer.wait(5)
                        raise AssertionError(f'nothing received for {lit}; peer output:\n'
                                             f'{peer.output()}')
                    got = conn.recv()
                    want = ast.literal_eval(lit)
                    assert same(got, want), (lit, got)
            peer.finish(0)


if __name__ == '__main__':
    t.main(globals())
