"""Fault tests: raw Python sockets play the hostile or broken peer of a C
listener or client (tests/interop/peer.c). The C side must fail promptly
with a clear error, keep its memory small, never die of SIGPIPE, and a
listener must go on serving good clients.

Run as `python3 test_faults.py CASE` (CTest does, one entry per case)."""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Client

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mpconn_testlib as t  # noqa: E402

KEY = t.AUTHKEY
KEYARGS = ['--authkey', KEY.decode()]
MIB = 1024 * 1024
RSS_LIMIT_KB = 100 * 1024
AUTH_ERRORS = ('reject MPCONN_ERR_AUTH', 'reject MPCONN_ERR_AUTHPROTO', 'reject MPCONN_ERR_NOKEY')


def huge_header(n):
    """The 12-byte header form: -1 then an 8-byte length."""
    return b'\xff\xff\xff\xff' + n.to_bytes(8, 'big')


def check_rss(peer):
    """The peer's peak RSS as it reports it (VmHWM). getrusage's
    RUSAGE_CHILDREN is no use here: on Linux a child spawned with vfork
    inherits the parent's high-water mark in ru_maxrss."""
    kb = peer.maxrss_kb()
    assert 0 < kb < RSS_LIMIT_KB, f'C peer max RSS {kb} KiB (limit {RSS_LIMIT_KB})'


def good_python_client(addr, payload_len, key=KEY, timeout=10):
    pyaddr, family = t.to_python(addr)
    with t.bounded(Client, timeout, pyaddr, family=family, authkey=key) as conn:
        conn.send_bytes(t.pattern(payload_len))


# ----------------------------------------------------------- frame faults

def case_huge_header_then_close():
    """A header claiming 2**62 bytes, 1 MiB of payload, then the peer
    closes: MPCONN_ERR_EOFMSG promptly, and the C side never allocated the claim."""
    peer, addr = t.start_listener(t.tmp_path(), 'recvany')
    with peer:
        t0 = time.monotonic()
        with t.raw_connect(addr) as s:
            s.sendall(huge_header(2 ** 62) + b'\x55' * MIB)
        peer.finish(3, timeout=10)
        line = peer.expect('error recvany MPCONN_ERR_EOFMSG', timeout=0)
        assert 'end of file during message' in line, line
        assert time.monotonic() - t0 < 5
        check_rss(peer)


def case_huge_header_then_silence():
    """The same claim, then silence: with a receive timeout the C side gives
    up (ETIMEDOUT) with a small memory footprint."""
    peer, addr = t.start_listener(t.tmp_path(), '--recv-timeout', '1', 'recvany')
    with peer:
        with t.raw_connect(addr) as s:
            s.sendall(huge_header(2 ** 62) + b'\x55' * MIB)
            t0 = time.monotonic()
            peer.expect('error recvany ETIMEDOUT', timeout=10)
            assert time.monotonic() - t0 < 5
            peer.finish(3)
        check_rss(peer)


def case_huge_header_max_message():
    """With --max-message the claim alone is refused at once ("bad message
    length"), while the peer is still connected and silent; both header
    forms."""
    headers = [huge_header(2 ** 62), (2 ** 31 - 1).to_bytes(4, 'big'), (1001).to_bytes(4, 'big')]
    peer, addr = t.start_listener(t.tmp_path(), '--max-message', '1000', '--count',
                                  str(len(headers)), '--keep-going', 'recvany')
    with peer:
        for header in headers:
            with t.raw_connect(addr) as s:
                s.sendall(header)
                line = peer.expect('error recvany MPCONN_ERR_MSGSIZE', timeout=3)
                assert 'bad message length' in line, line
        peer.finish(3)
        check_rss(peer)


def case_max_message_allows_limit():
    """--max-message N accepts a message of exactly N bytes (the limit is
    inclusive, as CPython's maxlength is)."""
    peer, addr = t.start_listener(t.tmp_path(), '--max-message', '1000', 'recv:1000')
    with peer:
        good_python_client(addr, 1000, key=None)
        peer.finish(0)


def case_negative_length():
    """Negative lengths other than -1 are malformed headers (MPCONN_ERR_PROTO); the
    listener serves the next connection."""
    peer, addr = t.start_listener(t.tmp_path(), '--count', '3', '--keep-going', 'recvany')
    with peer:
        for header in (b'\xff\xff\xff\xfe', b'\x80\x00\x00\x00'):
            with t.raw_connect(addr) as s:
                s.sendall(header + b'x' * 10)
                line = peer.expect('error recvany MPCONN_ERR_PROTO', timeout=3)
                assert 'negative' in line, line
        pyaddr, family = t.to_python(addr)
        with t.bounded(Client, 10, pyaddr, family=family) as conn:
            conn.send_bytes(b'fine')
        assert peer.expect('recvany ', timeout=5) == 'recvany fine'
        peer.finish(3)


def case_twelve_byte_header_over_limit():
    """An 8-byte length with the top bit set (>= 2**63) is refused as a bad
    length, not allocated."""
    peer, addr = t.start_listener(t.tmp_path(), 'recvany')
    with peer:
        with t.raw_connect(addr) as s:
            s.sendall(huge_header(2 ** 64 - 1))
            line = peer.expect('error recvany ', timeout=3)
        assert 'MPCONN_ERR_MSGSIZE' in line or 'MPCONN_ERR_PROTO' in line, line
        peer.finish(3)
        check_rss(peer)


KILLED_PEER = r'''
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
s.sendall((1000).to_bytes(4, 'big') + b'y' * 100)
print('sent', flush=True)
time.sleep(60)
'''


def case_peer_killed_mid_message():
    """The peer dies (SIGKILL) after 100 of 1000 bytes: MPCONN_ERR_EOFMSG."""
    peer, addr = t.start_listener(t.tmp_path(), 'recvany')
    with peer:
        child = subprocess.Popen([sys.executable, '-c', KILLED_PEER, addr],
                                 stdout=subprocess.PIPE)
        try:
            line = t.bounded(child.stdout.readline, 10)
            assert line == b'sent\n', line
            child.send_signal(signal.SIGKILL)
            child.wait(5)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(5)
        line = peer.expect('error recvany MPCONN_ERR_EOFMSG', timeout=5)
        assert 'end of file during message' in line, line
        peer.finish(3)


def case_slow_peer_recv_timeout():
    """A receive timeout inside a message keeps what was read: the next
    call continues the same message (in the payload, large and small, and
    inside the header)."""
    peer, addr = t.start_listener(t.tmp_path(), '--recv-timeout', '0.3', 'recvretry:100000',
                                  'recvretry:100')
    with peer:
        with t.raw_connect(addr) as s:
            big = t.frame(t.pattern(100000))
            small = t.frame(t.pattern(100))
            # (bytes, whether the C side must time out waiting for more)
            steps = [(big[:50000], True), (big[50000:], False), (small[:2], True),
                     (small[2:50], True), (small[50:], False)]
            for part, stalls in steps:
                peer.skip()
                s.sendall(part)
                if stalls:
                    peer.expect('timeout', timeout=5)
            peer.expect('recv 100 ok', timeout=5)
        peer.finish(0)
        ok = [ln for ln in peer.lines if ln.startswith('recv ')]
        assert ok == ['recv 100000 ok', 'recv 100 ok'], peer.output()


def case_connect_refused():
    """A C client to an address nobody listens on fails at once."""
    with t.start_client(t.tmp_path(), 'send:1') as peer:
        peer.finish(3, timeout=5)
        peer.expect('error connect ENOENT', timeout=0)
    with socket.socket() as s:  # a port that was free a moment ago
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    with t.start_client(f'127.0.0.1:{port}', 'send:1') as peer:
        peer.finish(3, timeout=5)
        peer.expect('error connect ECONNREFUSED', timeout=0)


# ------------------------------------------------------ handshake faults

def case_silent_peer_does_not_block():
    """Peers that connect and never answer the challenge delay nobody: a
    good client after 20 of them is served well before their handshake
    timeout."""
    peer, addr = t.start_listener('127.0.0.1:0', *KEYARGS, '--handshake-timeout', '10',
                                  'recv:1')
    with peer:
        silent = [t.raw_connect(addr) for _ in range(20)]
        try:
            for s in silent:  # each accepted and challenged; now say nothing
                challenge = t.raw_recv_message(s)
                assert challenge.startswith(b'#CHALLENGE#'), challenge
            t0 = time.monotonic()
            good_python_client(addr, 1, timeout=3)
            peer.expect('recv 1 ok', timeout=3)
            assert time.monotonic() - t0 < 3, 'the good client waited for the silent ones'
            peer.finish(0, timeout=5)
        finally:
            for s in silent:
                s.close()


def case_silent_peer_times_out():
    """The silent peer is dropped at its handshake timeout and reported."""
    peer, addr = t.start_listener(t.tmp_path(), *KEYARGS, '--handshake-timeout', '1',
                                  '--accept-timeout', '4', 'recv:1')
    with peer:
        with t.raw_connect(addr) as silent:
            t.raw_recv_message(silent)
            t0 = time.monotonic()
            line = peer.expect('reject ETIMEDOUT', timeout=5)
            assert 0.5 < time.monotonic() - t0 < 3, line
            silent.settimeout(3)
            rest = silent.recv(100)  # the listener closed it
            assert rest == b'', rest
        good_python_client(addr, 1)
        peer.finish(0)


def case_hangup_during_handshake():
    """Peers that hang up before answering, or half way through the answer,
    are rejected; the listener serves the next client."""
    peer, addr = t.start_listener(t.tmp_path(), *KEYARGS, 'recv:1')
    with peer:
        for partial in (b'', t.frame(b'x' * 16)[:10]):
            with t.raw_connect(addr) as s:
                t.raw_recv_message(s)
                s.sendall(partial)
            line = peer.expect('reject ', timeout=3)
            assert line.startswith(AUTH_ERRORS) or 'MPCONN_ERR_EOF' in line, line
        good_python_client(addr, 1)
        peer.finish(0)


def case_garbage_answer():
    """Garbage instead of the answer to the challenge, framed and unframed:
    each is rejected with a clear authentication error; the listener then
    serves a good client."""
    peer, addr = t.start_listener('127.0.0.1:0', *KEYARGS, '--handshake-timeout', '10',
                                  'recv:1')
    with peer:
        for garbage in (t.frame(b'garbage!' * 5), b'GET / HTTP/1.1\r\nHost: x\r\n\r\n',
                        t.frame(b'{nosuchdigest}' + b'z' * 32), t.frame(b'')):
            with t.raw_connect(addr) as s:
                t.raw_recv_message(s)
                s.sendall(garbage)
                line = peer.expect('reject ', timeout=3)
                assert line.startswith(AUTH_ERRORS), line
                s.settimeout(3)
                try:  # #FAILURE# may come first; then the end
                    for _ in range(4):
                        if not s.recv(4096):
                            break
                    else:
                        raise AssertionError('listener kept the rejected peer connected')
                except ConnectionResetError:
                    pass
        good_python_client(addr, 1)
        peer.expect('recv 1 ok', timeout=5)
        peer.finish(0)


def case_handshake_message_too_long():
    """An answer over 256 bytes is refused (CPython reads at most 256), and
    the listener serves the next client."""
    peer, addr = t.start_listener(t.tmp_path(), *KEYARGS, 'recv:1')
    with peer:
        with t.raw_connect(addr) as s:
            t.raw_recv_message(s)
            s.sendall(t.frame(b'{sha256}' + b'x' * 300))
            line = peer.expect('reject ', timeout=3)
            assert line.startswith(AUTH_ERRORS), line
        good_python_client(addr, 1)
        peer.finish(0)


def raw_server(family=socket.AF_INET):
    s = socket.socket(family, socket.SOCK_STREAM)
    if family == socket.AF_UNIX:
        path = t.tmp_path()
        s.bind(path)
        addr = path
    else:
        s.bind(('127.0.0.1', 0))
        addr = '127.0.0.1:%d' % s.getsockname()[1]
    s.listen(4)
    s.settimeout(10)
    return s, addr


def case_garbage_challenge():
    """A C client with a key meets a server that sends garbage instead of a
    challenge: framed text, unframed text, a too short challenge, a 300-byte
    challenge. Each fails promptly with an authentication error."""
    srv, addr = raw_server()
    with srv:
        cases = [
            (t.frame(b'hello, this is not a challenge'), None),
            (b'HTTP/1.0 400 Bad Request\r\n\r\n', None),
            (t.frame(b'#CHALLENGE#' + b'12345'), 'MPCONN_ERR_AUTHPROTO'),
            (t.frame(b'#CHALLENGE#' + b'c' * 300), None),
        ]
        for data, code in cases:
            t0 = time.monotonic()
            with t.start_client(addr, *KEYARGS, '--handshake-timeout', '10', 'send:1') as peer:
                conn, _ = srv.accept()
                with conn:
                    conn.sendall(data)
                    peer.finish(3, timeout=5)
                line = peer.expect('error connect ', timeout=0)
                if code:
                    assert line.startswith(f'error connect {code}:'), (data, line)
                else:
                    assert line.split()[2].rstrip(':') in ('MPCONN_ERR_AUTHPROTO', 'MPCONN_ERR_NOKEY', 'MPCONN_ERR_AUTH'), \
                        (data, line)
                assert time.monotonic() - t0 < 3, f'{data!r}: not prompt'


# ---------------------------------------------------- writes to a dead peer

def write_to_closed(family):
    srv, addr = raw_server(family)
    with srv:
        with t.start_client(addr, 'wait', 'sendloop:65536') as peer:
            conn, _ = srv.accept()
            peer.expect('connected', timeout=5)
            conn.close()
            peer.send_line('go')
            rc = peer.wait(15)
            assert rc == 3, f'exit status {rc} (-13 is death by SIGPIPE); output:\n' \
                            f'{peer.output()}'
            line = peer.expect('error sendloop', timeout=0)
            assert 'EPIPE' in line or 'ECONNRESET' in line, line
            assert 'Broken pipe' in line or 'reset' in line, line


def case_write_to_closed_peer_tcp():
    """Sending to a TCP peer that closed: an EPIPE/ECONNRESET error, no
    SIGPIPE death."""
    write_to_closed(socket.AF_INET)


def case_write_to_closed_peer_unix():
    write_to_closed(socket.AF_UNIX)


def case_write_to_closed_peer_c_listener():
    """The same from the listener side: a Python client closes, the C
    listener's send fails with an error instead of killing it."""
    peer, addr = t.start_listener(t.tmp_path(), *KEYARGS, 'wait', 'sendloop:65536')
    with peer:
        pyaddr, family = t.to_python(addr)
        conn = t.bounded(Client, 10, pyaddr, family=family, authkey=KEY)
        peer.expect('accepted', timeout=5)
        conn.close()
        peer.send_line('go')
        rc = peer.wait(15)
        assert rc == 3, f'exit status {rc} (-13 is death by SIGPIPE); output:\n{peer.output()}'
        line = peer.expect('error sendloop', timeout=0)
        assert 'EPIPE' in line or 'ECONNRESET' in line, line


# ------------------------------------------------------ passed descriptors

def open_fds(peer):
    return len(os.listdir(f'/proc/{peer.proc.pid}/fd'))


def file_holding(text):
    f = tempfile.TemporaryFile()
    f.write(text)
    f.flush()
    f.seek(0)
    return f


def case_unsolicited_fds_do_not_fill_the_table():
    """A peer that attaches descriptors to ordinary messages (8 to each)
    fills no descriptor table: the C side closes them as they come, and
    its echoes still arrive."""
    peer, addr = t.start_listener(t.tmp_path(), 'echo')
    with peer, file_holding(b'x') as f, t.raw_connect(addr) as s:
        s.sendall(t.frame(b'first'))
        assert t.raw_recv_message(s) == b'first'
        before = open_fds(peer)
        for i in range(30):
            socket.send_fds(s, [t.frame(b'msg %d' % i)], [f.fileno()] * 8)
            assert t.raw_recv_message(s) == b'msg %d' % i
            assert open_fds(peer) <= before, f'{open_fds(peer)} descriptors open, {before} before'


def case_recv_fd_after_unsolicited():
    """recv_fd gives the descriptor sent with its count byte, not one that
    came earlier with a message."""
    peer, addr = t.start_listener(t.tmp_path(), 'recvany', 'recvfd')
    with peer, file_holding(b'decoy') as decoy, file_holding(b'real') as real, \
            t.raw_connect(addr) as s:
        socket.send_fds(s, [t.frame(b'hello')], [decoy.fileno()])
        socket.send_fds(s, [b'\x01'], [real.fileno()])
        assert peer.expect('recvany ', timeout=5) == 'recvany hello'
        line = peer.expect('recv', timeout=5)
        assert line == 'recvfd real', line
        peer.finish(0)


def raw_client_handshake(s, key=KEY):
    """The client side of the handshake over a raw socket, up to the final
    WELCOME, which is left to the caller."""
    conn = t.RawConn(s, chunk=4096)
    t.answer_challenge_312(conn, key)
    message = b'{sha256}' + os.urandom(40)
    conn.send_bytes(t.CHALLENGE + message)
    response = conn.recv_bytes(256)
    assert response == b'{sha256}' + t._mac(key, message, 'sha256'), response


def case_fd_right_behind_the_handshake():
    """A descriptor passed in the same read as the client's last handshake
    message reaches recv_fd (a plain recv() would let the kernel drop it)."""
    peer, addr = t.start_listener(t.tmp_path(), *KEYARGS, 'recvfd')
    with peer, file_holding(b'behind') as f, t.raw_connect(addr) as s:
        raw_client_handshake(s)
        socket.send_fds(s, [t.frame(t.WELCOME) + b'\x01'], [f.fileno()])
        line = peer.expect('recvfd', timeout=5)
        assert line == 'recvfd behind', line
        peer.finish(0)


def case_fds_during_handshake_closed():
    """Descriptors attached to handshake messages are closed, and the
    handshake goes on."""
    peer, addr = t.start_listener(t.tmp_path(), *KEYARGS, 'recv:1')
    with peer, file_holding(b'x') as f:
        before = open_fds(peer)
        with t.raw_connect(addr) as s:
            conn = t.RawConn(s, chunk=4096)
            challenge = conn.recv_bytes(256)[len(t.CHALLENGE):]
            answer = b'{sha256}' + t._mac(KEY, challenge, 'sha256')
            socket.send_fds(s, [t.frame(answer)], [f.fileno()] * 8)
            assert conn.recv_bytes(256) == t.WELCOME
            message = b'{sha256}' + os.urandom(40)
            socket.send_fds(s, [t.frame(t.CHALLENGE + message)], [f.fileno()] * 8)
            conn.recv_bytes(256)
            conn.send_bytes(t.WELCOME)
            peer.expect('accepted', timeout=5)
            assert open_fds(peer) <= before + 1, f'{open_fds(peer)} open, {before} before'
            s.sendall(t.frame(t.pattern(1)))
            peer.finish(0)


if __name__ == '__main__':
    t.main(globals())
