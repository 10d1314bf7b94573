"""mpconn's TLS against CPython's ssl module, both ways, with every CPython
on the machine: the C peer (peer.c) on a tls: address, and pypeer_tls.py
run by the interpreter under test (ssl plus multiprocessing's framing and
authkey handshake, inside TLS). Messages of 0 and 64 bytes, 1 and 64 MiB,
with and without authkey; mutual TLS; and the failures each side must see:
an untrusted certificate, a name that does not match, a client certificate
required and not sent, a wrong authkey inside TLS.

  python3 test_tls_py.py CASE INTERPRETER [VERSION]
  python3 test_tls_py.py --plan [PYTHON...]     the interpreters found (as
                                                test_versions.py finds them)
                                                and their cases, for CMake

The certificates are tests/tls-certs.sh's, the unit tests' set (made by
`test_tls_conn make_certificates`); a case exits 77 (skipped) without the
openssl command to make them."""

import os
import shlex
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mpconn_testlib as t  # noqa: E402
import pypeer  # noqa: E402
import test_versions as tv  # noqa: E402

KEY = t.AUTHKEY
MIB = 1024 * 1024
SIZES = [0, 64, MIB, 64 * MIB]
PYPEER_TLS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'pypeer_tls.py')
SKIPPED = 77
INTERP = None  # (version, executable) of the interpreter under test


def cases():
    return sorted(k[5:] for k in globals() if k.startswith('case_'))


def plan(given):
    """"run MINOR VERSION EXE CASE..." per interpreter found."""
    by_minor = tv.discover(given)
    for m in sorted(by_minor, key=tv.vtuple):
        ver, exe = by_minor[m]
        print(' '.join(shlex.quote(x) for x in ['run', m, ver, exe] + cases()))
    return 0


# ------------------------------------------------------------ the peers

def cert(name):
    return os.path.join(t.tls_certs(), name)


def server_cert(name='server'):
    return ['--tls-cert', cert(name + '.pem'), '--tls-key', cert(name + '.key')]


def py_peer(mode, address, *args):
    p = t.Peer([mode, address] + list(args), name='CPython %s TLS %s' % (INTERP[0], mode),
               command=[INTERP[1], PYPEER_TLS])
    line = p.expect('pypeer ', timeout=20)
    assert line == 'pypeer ' + INTERP[0], (line, INTERP)
    return p


def py_listener(*args, name='server'):
    p = py_peer('listen', '127.0.0.1:0', '--cert', cert(name + '.pem'),
                '--key', cert(name + '.key'), *args)
    line = p.expect('listening on ', timeout=20)
    return p, line[len('listening on '):]


def py_client(address, *args):
    return py_peer('connect', address, '--ca', cert('ca.pem'), *args)


def c_listener(*args):
    return t.start_listener('tls:127.0.0.1:0', *args)


def c_client(address, *args):
    return t.start_client('tls:' + address, '--tls-ca', cert('ca.pem'), *args)


def key_args(key):
    return ['--authkey', key.decode()] if key else []


def lines(peer, prefix):
    return [ln for ln in peer.lines if ln.startswith(prefix)]


def verify_error_type():
    """The exception a failed certificate check raises: 3.7 made it a
    subclass of SSLError of its own."""
    return 'SSLCertVerificationError' if tv.ver() >= (3, 7) else 'SSLError'


def check_tls_line(peer, peer_subject):
    """pypeer_tls's "tls VERSION CIPHER BITS peer=SUBJECT": TLS 1.3 (every
    interpreter here is built with an OpenSSL that has it)."""
    line = peer.expect('tls ', timeout=0)
    version, _, _, subject = line.split()[1:5]
    assert version == 'TLSv1.3', line
    assert subject == 'peer=' + peer_subject, line


# ------------------------------------------------------------ messages

def py_client_c_listener(key):
    peer, addr = c_listener(*server_cert(), *key_args(key), 'tlsinfo', 'echo')
    with peer:
        rec = ['--record'] if key else []
        with py_client(addr, *key_args(key), *rec, *['sendecho:%d' % n for n in SIZES]) as py:
            py.finish(0, timeout=90)
            assert lines(py, 'sendecho ') == ['sendecho %d ok' % n for n in SIZES], py.output()
            check_tls_line(py, 'commonName=localhost')
            if key:
                tv.check_handshakes(py)
        out = peer.finish(0, timeout=30)
        assert lines(peer, 'echo ') == ['echo %d' % n for n in SIZES] + ['echo eof'], out
        info = peer.expect('tlsinfo ', timeout=0)
        assert info.startswith('tlsinfo TLSv1.3 ') and ' verified=0 ' in info, info


def c_client_py_listener(key):
    rec = ['--record'] if key else []
    py, addr = py_listener(*key_args(key), *rec, 'echo')
    with py:
        actions = ['tlsinfo']
        for n in SIZES:
            actions += ['send:%d' % n, 'recv:%d' % n]
        with c_client(addr, *key_args(key), *actions) as peer:
            peer.finish(0, timeout=90)
            assert lines(peer, 'recv ') == ['recv %d ok' % n for n in SIZES], peer.output()
            info = peer.expect('tlsinfo ', timeout=0)
            assert info.startswith('tlsinfo TLSv1.3 ') and ' verified=1 ' in info, info
            assert 'subject=CN=localhost' in info, info
        py.finish(0, timeout=30)
        assert lines(py, 'echo ') == ['echo %d' % n for n in SIZES] + ['echo eof'], py.output()
        check_tls_line(py, '-')
        if key:
            tv.check_handshakes(py)


def case_py_client_c_listener_nokey():
    """CPython's ssl client (Connection over SSLSocket) echoes 0 B to 64 MiB
    through mpconn's TLS listener."""
    py_client_c_listener(None)


def case_py_client_c_listener_key():
    """The same with an authkey: CPython's answer_challenge and
    deliver_challenge run inside TLS, in the form of its version."""
    py_client_c_listener(KEY)


def case_c_client_py_listener_nokey():
    """mpconn's TLS client against a CPython listener of ssl and
    multiprocessing framing: 0 B to 64 MiB each way; mpconn verified the
    server's certificate and name."""
    c_client_py_listener(None)


def case_c_client_py_listener_key():
    c_client_py_listener(KEY)


def case_objects_py_client_c_listener():
    """Objects pickled by the interpreter under test, sent through TLS, read
    by mpconn; and mpconn's pickles (protocol 2, which every version reads)
    read back by it."""
    exprs = ["{u'op': u'add', u'args': [1, 2.5, u'x']}", '2 ** 100', "(None, True, b'by')"]
    peer, addr = c_listener(*server_cert(), '--protocol', '2',
                            *(['recvobj'] * len(exprs)), "sendobj:[1, 'two', (3.0,)]")
    with peer:
        with py_client(addr, *['sendobj:' + e for e in exprs], 'recvobj') as py:
            py.finish(0, timeout=30)
            [value] = lines(py, 'value ')
            assert value == 'value ' + pypeer.canon([1, u'two', (3.0, )]), py.output()
        peer.finish(0, timeout=30)
        got = [t.unescape(ln[len('recvobj '):]).decode() for ln in lines(peer, 'recvobj ')]
        assert len(got) == len(exprs), peer.output()
        for text, expr in zip(got, exprs):
            tv.check_c_repr(text, expr)


# ------------------------------------------------------------ mutual TLS

def case_mutual_py_client_c_listener():
    """A C listener that requires a client certificate: CPython's client
    with one gets in and mpconn sees it verified; one without is refused
    (the listener says why and goes on), and CPython sees the refusal."""
    peer, addr = c_listener(*server_cert(), '--tls-ca', cert('ca.pem'), '--require-client-cert',
                            *key_args(KEY), '--count', '1', 'tlsinfo', 'recv:64')
    with peer:
        with py_client(addr, *key_args(KEY), 'send:64') as py:
            py.finish(3, timeout=30)
            line = py.expect('error connect ', timeout=0)
            assert 'SSLError' in line or 'EOFError' in line or 'Connection' in line, line
        line = peer.expect('reject ', timeout=10)
        assert 'MPCONN_ERR_TLSVERIFY' in line and 'no certificate' in line, line
        with py_client(addr, '--cert', cert('client.pem'), '--key', cert('client.key'),
                       *key_args(KEY), 'send:64') as py:
            py.finish(0, timeout=30)
            check_tls_line(py, 'commonName=localhost')
        peer.finish(0, timeout=30)
        info = peer.expect('tlsinfo ', timeout=0)
        assert ' verified=1 ' in info and 'subject=CN=client' in info, info
        assert lines(peer, 'recv ') == ['recv 64 ok'], peer.output()


def case_mutual_c_client_py_listener():
    """A CPython listener that requires a client certificate: mpconn's
    client with one gets in; one without fails, saying the server wanted a
    certificate."""
    py, addr = py_listener('--ca', cert('ca.pem'), '--require-client-cert', *key_args(KEY),
                           '--count', '2', 'recv:64')
    with py:
        with c_client(addr, *key_args(KEY), 'send:64') as peer:
            peer.finish(3, timeout=30)
            line = peer.expect('error connect ', timeout=0)
            assert 'MPCONN_ERR_TLSVERIFY' in line and 'certificate' in line, line
        line = py.expect('error accept ', timeout=10)
        assert 'SSLError' in line, line
        with c_client(addr, '--tls-cert', cert('client.pem'), '--tls-key', cert('client.key'),
                      *key_args(KEY), 'send:64') as peer:
            peer.finish(0, timeout=30)
        py.finish(3, timeout=30)  # the refused first connection
        check_tls_line(py, 'commonName=client')
        assert lines(py, 'recv ') == ['recv 64 ok'], py.output()


# ------------------------------------------------------------ failures

def case_untrusted_c_listener():
    """mpconn presents a certificate of a CA CPython does not trust:
    CPython's handshake fails with its verification error (SSLError before
    3.7), and the listener hears the alert and goes on serving."""
    peer, addr = c_listener(*server_cert('untrusted'), '--accept-timeout', '20')
    with peer:
        with py_client(addr, 'send:1') as py:
            py.finish(3, timeout=30)
            line = py.expect('error connect ', timeout=0)
            assert line.startswith('error connect %s: ' % verify_error_type()), line
            assert 'CERTIFICATE_VERIFY_FAILED' in line or 'certificate verify failed' in line, \
                line
        line = peer.expect('reject ', timeout=10)
        assert 'MPCONN_ERR_TLSVERIFY' in line and 'unknown CA' in line, line


def case_untrusted_py_listener():
    """CPython presents a certificate of a CA mpconn does not trust: the
    client fails with MPCONN_ERR_TLSVERIFY naming the reason; CPython hears the
    alert."""
    py, addr = py_listener(name='untrusted')
    with py:
        with c_client(addr, 'send:1') as peer:
            peer.finish(3, timeout=30)
            line = peer.expect('error connect MPCONN_ERR_TLSVERIFY', timeout=0)
            assert 'unable to get local issuer certificate' in line, line
        py.finish(3, timeout=30)
        line = py.expect('error accept ', timeout=0)
        assert 'SSLError' in line and 'UNKNOWN_CA' in line.upper().replace(' ', '_'), line


def case_name_mismatch_py_client():
    """CPython asks for another name than mpconn's certificate holds: its
    hostname check fails."""
    peer, addr = c_listener(*server_cert(), '--accept-timeout', '20')
    with peer:
        with py_client(addr, '--server-name', 'other.example', 'send:1') as py:
            py.finish(3, timeout=30)
            line = py.expect('error connect ', timeout=0)
            assert line.startswith('error connect %s: ' % verify_error_type()) or \
                'CertificateError' in line, line
            assert 'other.example' in line or 'mismatch' in line.lower() or \
                "doesn't match" in line, line


def case_close_without_close_notify():
    """SSLSocket.close() sends no close_notify: mpconn takes the end for a
    truncation (MPCONN_ERR_TRUNCATED), never for a clean end of file; after an
    unwrap() it is a clean one. (The client reads before it goes: a socket
    closed with the server's session tickets unread sends a reset.)"""
    peer, addr = c_listener(*server_cert(), '--count', '2', '--keep-going', 'echo')
    with peer:
        with py_client(addr, '--no-close-notify', 'sendecho:3') as py:
            py.finish(0, timeout=30)
        line = peer.expect('error echo ', timeout=10)
        assert line.startswith('error echo MPCONN_ERR_TRUNCATED: ') and 'close_notify' in line, line
        with py_client(addr, 'sendecho:3') as py:
            py.finish(0, timeout=30)
        peer.finish(3, timeout=30)
        assert lines(peer, 'echo eof') == ['echo eof'], peer.output()


def case_wrong_key_inside_tls():
    """A CPython client with the wrong authkey: the TLS handshake succeeds,
    the HMAC one inside it does not (AuthenticationError there, MPCONN_ERR_AUTH in
    the listener, which then serves the right key)."""
    peer, addr = c_listener(*server_cert(), *key_args(KEY), 'recv:5')
    with peer:
        with py_client(addr, *key_args(b'not the password'), 'send:5') as py:
            py.finish(3, timeout=30)
            py.expect('error connect AuthenticationError', timeout=0)
        peer.expect('reject MPCONN_ERR_AUTH', timeout=10)
        with py_client(addr, *key_args(KEY), 'send:5') as py:
            py.finish(0, timeout=30)
        peer.finish(0, timeout=30)


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == '--plan':
        return plan(sys.argv[2:])
    if len(sys.argv) not in (3, 4):
        print(__doc__)
        return 2
    global INTERP
    INTERP = (sys.argv[3], sys.argv[2]) if len(sys.argv) == 4 else tv.probe(sys.argv[2])
    if INTERP is None:
        print('interop: %s does not run' % sys.argv[2])
        return 1
    tv.INTERP = INTERP  # its version decides the handshake forms checked
    print('interop: CPython %s (%s), TLS' % INTERP)
    sys.argv = sys.argv[:2]
    t.main(globals())


if __name__ == '__main__':
    sys.exit(main())
