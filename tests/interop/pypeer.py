"""The CPython side of the cross-version interop suite (test_versions.py):
a multiprocessing.connection Listener, Client or manager server run by the
interpreter under test, driven from argv and reporting each step as a line.

Written in the subset of Python that 2.7 and 3.6+ share, because it runs
under each of them; test_versions.py (python3) imports canon() and the
address helpers from it.

  pypeer.py listen ADDRESS [OPTIONS] ACTION...   "listening on ADDR", then the
                                                 actions on each accepted
                                                 connection (--count of them)
  pypeer.py connect ADDRESS [OPTIONS] ACTION...  "connected", the actions once
  pypeer.py manager ADDRESS --authkey K          a BaseManager server with
                                                 'get_dict' registered

ADDRESS is in mpconn's syntax: a path, @abstract, HOST:PORT, [V6]:PORT.
Options: --authkey TEXT, --digest NAME (listener, CPython >= 3.12: the
challenge digest), --count N, --record (print what each handshake step
carried, as "handshake deliver|answer challenge=.. response=.. result=..").

Actions (the pattern of an N-byte message is byte i = (i + N) % 251):
  send:N          send the pattern      recv:N        receive and check it
  sendecho:N      send the pattern, receive it back and check it
  echo            send back every message until end of file
  sendobj:EXPR    conn.send(eval(EXPR))
  sendpickle:P:EXPR  send_bytes(pickle.dumps(eval(EXPR), P))
  recvobj         conn.recv(), print "value " + canon(value)
  eof             expect end of file

The first line is "pypeer X.Y.Z". A failure prints "error ACTION TYPE: MSG"
and exits 3 (an accept that fails, "error accept ..."); a mismatch exits 4."""

from __future__ import print_function

import binascii
import os
import re
import pickle
import signal
import socket
import sys

import multiprocessing.connection as mc
from multiprocessing import AuthenticationError

PY2 = sys.version_info[0] == 2
TEXT = type(u'')
INTEGERS = (int, type(2 ** 64))  # 2.7 has int and long
PEER_ALARM = 90  # seconds; the driver gives up earlier


def emit(line):
    sys.stdout.write(line + '\n')
    sys.stdout.flush()


def version():
    return '%d.%d.%d' % sys.version_info[:3]


# ------------------------------------------------------------ addresses

def to_python(addr):
    """mpconn address -> (Python address, family)."""
    if addr.startswith('@'):
        return '\0' + addr[1:], 'AF_UNIX'
    if '/' in addr:
        return addr, 'AF_UNIX'
    if addr.startswith('['):
        host, port = addr[1:].rsplit(']:', 1)
        return (host, int(port)), 'AF_INET6'
    host, port = addr.rsplit(':', 1)
    return (host, int(port)), 'AF_INET'


def from_python(address):
    """A Listener's address -> mpconn address. An abstract name comes back
    as bytes from some versions (3.6) and as str from others."""
    if isinstance(address, bytes) and not PY2:
        address = address.decode('utf-8', 'surrogateescape')
    if not isinstance(address, tuple):
        return '@' + address[1:] if address.startswith('\0') else address
    host, port = address[0], address[1]
    return ('[%s]:%d' if ':' in host else '%s:%d') % (host, port)


# ------------------------------------------------------------ values

def canon(v, sort_dicts=False):
    """A text naming v's type and contents all the way down, the same on
    every interpreter for the same value (2.7's unicode is 'str', its str
    'bytes'). Sets are sorted; dicts too with sort_dicts, for 2.7, whose
    dicts have no order."""
    if v is None or isinstance(v, bool):
        return repr(v)
    if isinstance(v, INTEGERS):
        return 'int:%d' % v
    if isinstance(v, float):
        return 'float:' + repr(v)
    if isinstance(v, TEXT):
        return 'str:' + binascii.hexlify(v.encode('utf-8')).decode('ascii')
    if isinstance(v, bytes):
        return 'bytes:' + binascii.hexlify(v).decode('ascii')
    if isinstance(v, bytearray):
        return 'bytearray:' + binascii.hexlify(bytes(v)).decode('ascii')
    if isinstance(v, list):
        return 'list[' + ','.join(canon(x, sort_dicts) for x in v) + ']'
    if isinstance(v, tuple):
        return 'tuple(' + ','.join(canon(x, sort_dicts) for x in v) + ')'
    if isinstance(v, dict):
        items = [canon(k, sort_dicts) + ':' + canon(x, sort_dicts) for k, x in v.items()]
        return 'dict{' + ','.join(sorted(items) if sort_dicts else items) + '}'
    if isinstance(v, (set, frozenset)):
        return type(v).__name__ + '{' + ','.join(sorted(canon(x, sort_dicts) for x in v)) + '}'
    raise TypeError('not a plain value: %r' % (v, ))


def pattern(n):
    block = bytes(bytearray(range(251)))
    start = n % 251
    reps = (start + n) // 251 + 1
    return (block * reps)[start:start + n]


# ------------------------------------------------------------ handshakes

def describe(msg):
    """'{name}N' for a braced message, 'rawN' for a bare one (N bytes after
    the braces)."""
    msg = bytes(msg)
    # A raw MAC is random bytes: it may start with '{' and hold a '}' too
    # (about one answer in 300), so only a digest's name counts as braces.
    m = re.match(br'\{(md5|sha256|sha384|sha3_256|sha3_384)\}', msg)
    if m:
        return m.group(0).decode('ascii') + str(len(msg) - m.end())
    return 'raw' + str(len(msg))


class Recorder(object):
    """Passes send_bytes/recv_bytes through to the real connection and keeps
    what went by, so the handshake functions run unchanged."""

    def __init__(self, conn):
        self.conn = conn
        self.sent = []
        self.got = []

    def send_bytes(self, data, *args):
        self.sent.append(bytes(data))
        return self.conn.send_bytes(data, *args)

    def recv_bytes(self, *args):
        data = self.conn.recv_bytes(*args)
        self.got.append(data)
        return data


def recording(fn, role):
    def run(connection, authkey, *args, **kwargs):
        rec = Recorder(connection)
        try:
            return fn(rec, authkey, *args, **kwargs)
        finally:
            # deliver: sent challenge, got response, sent result; answer: the mirror
            ours, theirs = (rec.sent, rec.got) if role == 'deliver' else (rec.got, rec.sent)
            parts = []
            if ours:
                chal = ours[0]
                if chal.startswith(b'#CHALLENGE#'):
                    chal = chal[len(b'#CHALLENGE#'):]
                parts.append('challenge=' + describe(chal))
            if theirs:
                parts.append('response=' + describe(theirs[0]))
            if len(ours) > 1:
                parts.append('result=' + bytes(ours[1]).decode('ascii', 'replace').strip('#'))
            emit('handshake %s %s' % (role, ' '.join(parts)))
    return run


def record_handshakes():
    mc.deliver_challenge = recording(mc.deliver_challenge, 'deliver')
    mc.answer_challenge = recording(mc.answer_challenge, 'answer')


def wrap_socket(sock):
    """A multiprocessing Connection over a connected socket, as Client makes."""
    if PY2:
        import _multiprocessing
        conn = _multiprocessing.Connection(os.dup(sock.fileno()))
        sock.close()
        return conn
    return mc.Connection(sock.detach())


def client(addr, authkey):
    """multiprocessing.connection.Client, except for IPv6, which Client
    cannot reach (it takes every tuple for AF_INET): there the same steps
    with the right socket."""
    pyaddr, family = to_python(addr)
    if family != 'AF_INET6':
        return mc.Client(pyaddr, family=family, authkey=authkey)
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    sock.connect(pyaddr)
    conn = wrap_socket(sock)
    if authkey is not None:
        mc.answer_challenge(conn, authkey)
        mc.deliver_challenge(conn, authkey)
    return conn


# ------------------------------------------------------------ actions

class Mismatch(Exception):
    pass


def check_pattern(data, n):
    if bytes(data) != pattern(n):
        raise Mismatch('got %d bytes, expected pattern(%d)' % (len(data), n))


def run_action(conn, action):
    name, _, arg = action.partition(':')
    if name == 'send':
        conn.send_bytes(pattern(int(arg)))
        emit('sent ' + arg)
    elif name == 'recv':
        check_pattern(conn.recv_bytes(), int(arg))
        emit('recv %s ok' % arg)
    elif name == 'sendecho':
        n = int(arg)
        conn.send_bytes(pattern(n))
        check_pattern(conn.recv_bytes(), n)
        emit('sendecho %d ok' % n)
    elif name == 'echo':
        while True:
            try:
                data = conn.recv_bytes()
            except EOFError:
                emit('echo eof')
                return
            conn.send_bytes(data)
            emit('echo %d' % len(data))
    elif name == 'sendobj':
        conn.send(eval(arg))
        emit('sendobj ok')
    elif name == 'sendpickle':
        proto, _, expr = arg.partition(':')
        conn.send_bytes(pickle.dumps(eval(expr), int(proto)))
        emit('sendpickle ok')
    elif name == 'recvobj':
        emit('value ' + canon(conn.recv(), sort_dicts=PY2))
    elif name == 'eof':
        try:
            data = conn.recv_bytes()
        except EOFError:
            emit('eof ok')
        else:
            raise Mismatch('a %d-byte message instead of the end' % len(data))
    else:
        emit('error usage: unknown action ' + action)
        sys.exit(2)


def run_actions(conn, actions):
    for action in actions:
        try:
            run_action(conn, action)
        except Mismatch as e:
            emit('mismatch %s: %s' % (action, e))
            return 4
        except Exception as e:
            emit('error %s %s: %s' % (action.partition(':')[0], type(e).__name__, e))
            return 3
    emit('done')
    return 0


def close_listener(listener):
    """2.7 and 3.6 try to unlink an abstract name when closing, and raise."""
    try:
        listener.close()
    except (TypeError, ValueError) as e:
        emit('close error %s: %s' % (type(e).__name__, e))


def run_listener(addr, opts, actions):
    pyaddr, family = to_python(addr)
    key = opts['authkey']
    digest = opts['digest']
    listener = mc.Listener(pyaddr, family=family, authkey=None if digest else key)
    emit('listening on ' + from_python(listener.address))
    status = 0
    for _ in range(opts['count']):
        try:
            conn = listener.accept()
            if digest:  # what Listener.accept does, with another digest
                mc.deliver_challenge(conn, key, digest_name=digest)
                mc.answer_challenge(conn, key)
        except (AuthenticationError, EOFError, IOError, OSError) as e:
            emit('error accept %s: %s' % (type(e).__name__, e))
            status = 3
            continue
        emit('accepted')
        status = run_actions(conn, actions) or status
        conn.close()
    close_listener(listener)
    return status


def run_client(addr, opts, actions):
    try:
        conn = client(addr, opts['authkey'])
    except (AuthenticationError, EOFError, IOError, OSError) as e:
        emit('error connect %s: %s' % (type(e).__name__, e))
        return 3
    emit('connected')
    status = run_actions(conn, actions)
    conn.close()
    return status


def make_dict():
    return {u'answer': 42, u'list': [1, 2.5, u'x'], u'nested': {u'k': (None, True)}}


def run_manager(addr, opts):
    """A manager server in this process: the C client plays the proxies."""
    from multiprocessing.managers import BaseManager

    class Manager(BaseManager):
        pass
    Manager.register('get_dict', callable=make_dict)
    pyaddr, _ = to_python(addr)
    server = Manager(address=pyaddr, authkey=opts['authkey']).get_server()
    emit('listening on ' + from_python(server.address))
    server.serve_forever()  # until a 'shutdown' request, which exits
    return 0


def main(argv):
    if len(argv) < 3 or argv[1] not in ('listen', 'connect', 'manager'):
        emit('error usage: pypeer.py listen|connect|manager ADDRESS [OPTIONS] ACTION...')
        return 2
    opts = {'authkey': None, 'digest': None, 'count': 1}
    actions = []
    args = argv[3:]
    while args:
        a = args.pop(0)
        if a == '--record':
            record_handshakes()
        elif a in ('--authkey', '--digest', '--count'):
            v = args.pop(0)
            opts[a[2:]] = int(v) if a == '--count' else v.encode('ascii') if a == '--authkey' \
                else v
        else:
            actions.append(a)
    signal.alarm(PEER_ALARM)
    emit('pypeer ' + version())
    if argv[1] == 'manager':
        return run_manager(argv[2], opts)
    if argv[1] == 'listen':
        return run_listener(argv[2], opts, actions)
    return run_client(argv[2], opts, actions)


if __name__ == '__main__':
    sys.exit(main(sys.argv))
