"""The CPython side of the TLS interop suite (test_tls_py.py): a listener or
a client made of the interpreter's own ssl module and multiprocessing's
framing and authentication, as a Python program would combine them.

Written in the subset of Python that 2.7 and 3.6+ share. On 3.x the
connection is multiprocessing.connection.Connection with its _send/_recv
going through an SSLSocket; 2.7's Connection is written in C and cannot be
given a socket object, so there the framing is written out here as 2.7
frames (4-byte big-endian length, then the payload). Either way the
authkey handshake is the interpreter's own answer_challenge and
deliver_challenge, run inside TLS.

  pypeer_tls.py listen ADDRESS [OPTIONS] ACTION...   "listening on ADDR",
                                   then per accepted connection "accepted",
                                   "tls VERSION CIPHER", the actions
  pypeer_tls.py connect ADDRESS [OPTIONS] ACTION...  "connected", "tls ...",
                                   the actions

ADDRESS is HOST:PORT or [V6]:PORT (a "tls:" in front is allowed). Options:
--cert FILE --key FILE (this side's certificate; a listener needs one),
--ca FILE (trust anchors: a client verifies the server against them, a
listener with --require-client-cert its clients), --require-client-cert,
--server-name NAME (client: the name to verify, default localhost: 2.7
matches no IP address), --authkey TEXT, --count N (listener), --record (as
pypeer.py), --no-close-notify (close as SSLSocket.close() does, without
TLS's close_notify; by default a connection is unwrapped first).

Actions as pypeer.py's. A failed TLS handshake prints "error connect TYPE:
MESSAGE" (client) or "error accept TYPE: MESSAGE" (listener, which goes on
to the next connection) and exits 3."""

from __future__ import print_function

import io
import os
import pickle
import signal
import socket
import ssl
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import multiprocessing.connection as mc  # noqa: E402
from multiprocessing import AuthenticationError  # noqa: E402

import pypeer  # noqa: E402
from pypeer import emit  # noqa: E402

PY2 = sys.version_info[0] == 2


# --no-close-notify: close the socket under TLS as SSLSocket.close() does,
# with no close_notify, which the peer must take for a truncation.
CLOSE_NOTIFY = [True]


def close_tls(tls):
    """close_notify both ways (SSLSocket.unwrap), then the socket."""
    if CLOSE_NOTIFY[0]:
        try:
            tls.settimeout(10)
            tls = tls.unwrap()
        except (ssl.SSLError, socket.error, ValueError):
            pass
    tls.close()


def recv_exact(tls, size, eof_first):
    """size bytes from tls; EOFError when the stream ends before the first
    (with eof_first), IOError when it ends later."""
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = tls.recv_into(view[got:], size - got)
        if n == 0:
            if eof_first and got == 0:
                raise EOFError
            raise IOError('got end of file during message')
        got += n
    return buf


class HandFramedConnection(object):
    """2.7: send_bytes/recv_bytes/send/recv/poll/close over an SSLSocket,
    framed as 2.7's C Connection frames them."""

    def __init__(self, tls):
        self._tls = tls

    def send_bytes(self, buf, offset=0, size=None):
        data = memoryview(buf)[offset:None if size is None else offset + size]
        header = struct.pack('!i', len(data))
        if len(data) > 16384:
            self._tls.sendall(header)
            self._tls.sendall(data)
        else:
            self._tls.sendall(header + data.tobytes())

    def recv_bytes(self, maxlength=None):
        size, = struct.unpack('!i', bytes(recv_exact(self._tls, 4, True)))
        if maxlength is not None and size > maxlength:
            raise IOError('bad message length')
        return bytes(recv_exact(self._tls, size, False))

    def send(self, obj):
        self.send_bytes(pickle.dumps(obj, pickle.HIGHEST_PROTOCOL))

    def recv(self):
        return pickle.loads(self.recv_bytes())

    def poll(self, timeout=0.0):
        if self._tls.pending():
            return True
        import select
        return bool(select.select([self._tls], [], [], timeout)[0])

    def close(self):
        close_tls(self._tls)


if not PY2:
    class TLSConnection(mc.Connection):
        """multiprocessing's Connection, its bytes through an SSLSocket:
        the framing, limits and errors are the interpreter's own."""

        def __init__(self, tls):
            mc.Connection.__init__(self, tls.fileno())
            self._tls = tls

        def _close(self, _close=None):
            close_tls(self._tls)

        def _send(self, buf, write=None):
            self._tls.sendall(buf)

        def _recv(self, size, read=None):
            # Connection._recv's errors: EOFError when nothing came at all
            return io.BytesIO(recv_exact(self._tls, size, True))

        def _poll(self, timeout):
            # Records already decrypted are invisible to the descriptor.
            if self._tls.pending():
                return True
            return mc.Connection._poll(self, timeout)


def connection(tls):
    return HandFramedConnection(tls) if PY2 else TLSConnection(tls)


def split_address(addr):
    if addr.startswith('tls:'):
        addr = addr[4:]
    pyaddr, family = pypeer.to_python(addr)
    return pyaddr, socket.AF_INET6 if family == 'AF_INET6' else socket.AF_INET


def client_context(opts):
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=opts['ca'])
    if opts['cert']:
        ctx.load_cert_chain(opts['cert'], opts['key'])
    return ctx


def server_context(opts):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(opts['cert'], opts['key'])
    if opts['require']:
        ctx.load_verify_locations(opts['ca'])
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def tls_line(tls):
    name, _, bits = tls.cipher()
    cert = tls.getpeercert()
    subject = ''
    if cert:
        subject = ','.join('%s=%s' % kv for rdn in cert.get('subject', ()) for kv in rdn)
    emit('tls %s %s %d peer=%s' % (tls.version() if hasattr(tls, 'version') else '?', name,
                                   bits, subject or '-'))


def error_line(step, e):
    emit('error %s %s: %s' % (step, type(e).__name__, e))


FAILURES = (ssl.SSLError, ssl.CertificateError, socket.error, AuthenticationError, EOFError, IOError, OSError)


def run_listener(addr, opts, actions):
    pyaddr, family = split_address(addr)
    ctx = server_context(opts)
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(pyaddr)
    sock.listen(16)
    emit('listening on ' + pypeer.from_python(sock.getsockname()[:2]))
    status = 0
    for _ in range(opts['count']):
        raw, _ = sock.accept()
        try:
            tls = ctx.wrap_socket(raw, server_side=True)
        except FAILURES as e:
            raw.close()
            error_line('accept', e)
            status = 3
            continue
        conn = connection(tls)
        try:
            if opts['authkey'] is not None:  # what Listener.accept does
                mc.deliver_challenge(conn, opts['authkey'])
                mc.answer_challenge(conn, opts['authkey'])
        except FAILURES as e:
            conn.close()
            error_line('accept', e)
            status = 3
            continue
        emit('accepted')
        tls_line(tls)
        status = pypeer.run_actions(conn, actions) or status
        conn.close()
    sock.close()
    return status


def run_client(addr, opts, actions):
    pyaddr, family = split_address(addr)
    ctx = client_context(opts)
    raw = socket.socket(family, socket.SOCK_STREAM)
    try:
        raw.connect(pyaddr)
        tls = ctx.wrap_socket(raw, server_hostname=opts['server_name'])
        conn = connection(tls)
        if opts['authkey'] is not None:  # what Client does
            mc.answer_challenge(conn, opts['authkey'])
            mc.deliver_challenge(conn, opts['authkey'])
    except FAILURES as e:
        raw.close()
        error_line('connect', e)
        return 3
    emit('connected')
    tls_line(tls)
    status = pypeer.run_actions(conn, actions)
    conn.close()
    return status


def main(argv):
    if len(argv) < 3 or argv[1] not in ('listen', 'connect'):
        emit('error usage: pypeer_tls.py listen|connect ADDRESS [OPTIONS] ACTION...')
        return 2
    opts = {'authkey': None, 'count': 1, 'cert': None, 'key': None, 'ca': None,
            'require': False, 'server_name': 'localhost'}
    actions = []
    args = argv[3:]
    while args:
        a = args.pop(0)
        if a == '--record':
            pypeer.record_handshakes()
        elif a == '--no-close-notify':
            CLOSE_NOTIFY[0] = False
        elif a == '--require-client-cert':
            opts['require'] = True
        elif a in ('--authkey', '--count', '--cert', '--key', '--ca', '--server-name'):
            v = args.pop(0)
            name = a[2:].replace('-', '_')
            opts[name] = int(v) if a == '--count' else v.encode('ascii') if a == '--authkey' \
                else v
        else:
            actions.append(a)
    signal.alarm(pypeer.PEER_ALARM)
    emit('pypeer ' + pypeer.version())
    if argv[1] == 'listen':
        return run_listener(argv[2], opts, actions)
    return run_client(argv[2], opts, actions)


if __name__ == '__main__':
    sys.exit(main(sys.argv))
