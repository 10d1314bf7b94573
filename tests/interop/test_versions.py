"""mpconn against every CPython on the machine, both ways: the C peer
(peer.c) with pypeer.py run by the interpreter under test, as Listener,
Client or manager server. Live handshakes: the {digest} form with 3.12+,
the legacy 20-byte challenge with 3.6-3.11 and 2.7; Unix paths, abstract
names, TCP over IPv4 and IPv6; small and large messages; values through
every pickle protocol the interpreter has.

  python3 test_versions.py CASE INTERPRETER [VERSION]  one case against one
                                              interpreter (of that version)
  python3 test_versions.py --plan [PYTHON...] the interpreters found (python3,
                                              the given ones, pyenv's, PATH's)
                                              and each one's cases, for CMake
  python3 test_versions.py --inventory PYTHON...  checks the planned ones
                                              still run; prints what ran and
                                              what was absent
  python3 test_versions.py --absent X.Y       says X.Y is absent, exits 77

The driver is always python3; only pypeer.py runs under the others."""

import ast
import glob
import math
import os
import shlex
import shutil
import subprocess
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mpconn_testlib as t  # noqa: E402
import pypeer  # noqa: E402

KEY = t.AUTHKEY
WRONG = b'not the password'
MIB = 1024 * 1024
# The versions mpconn claims to speak with; absent ones are reported.
EXPECTED = ('2.7', '3.6', '3.7', '3.8', '3.9', '3.10', '3.11', '3.12', '3.13')
PYPEER = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'pypeer.py')
SKIPPED = 77  # CTest's SKIP_RETURN_CODE for the absent ones
PROBE = ('import sys, multiprocessing.connection; '
         'sys.stdout.write("%d.%d.%d " % sys.version_info[:3] + sys.executable)')


# ------------------------------------------------------- the interpreters

def probe(exe):
    """(version text, real executable) of a working interpreter, or None."""
    try:
        r = subprocess.run([exe, '-c', PROBE], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if r.returncode != 0 or not r.stdout:
        return None
    ver, _, real = r.stdout.decode().partition(' ')
    return ver, real or exe


def minor(ver):
    return '.'.join(ver.split('.')[:2])


def candidates(given):
    """(executable, the minor version its name promises or None), in order."""
    root = os.environ.get('PYENV_ROOT') or os.path.expanduser('~/.pyenv')
    found = [(exe, None) for exe in given]
    found += [(exe, None) for exe in
              sorted(glob.glob(os.path.join(root, 'versions', '*', 'bin', 'python')))]
    for m in EXPECTED:
        exe = shutil.which('python' + m)
        if exe:
            found.append((exe, m))
    return found


def discover(given):
    """{minor: (version, executable)}; the first one found of each minor wins,
    so python3 (given first) stands for its own."""
    by_minor = {}
    for exe, promised in candidates(given):
        if promised in by_minor:
            continue  # a pyenv shim, most likely, of a version found already
        got = probe(exe)
        if got and minor(got[0]) not in by_minor and vtuple(got[0]) >= (2, 7):
            by_minor[minor(got[0])] = got
    return by_minor


def vtuple(ver):
    return tuple(int(x) for x in ver.split('.')[:2])


def full_set(ver):
    """2.7 and 3.11+ run every case; 3.6-3.10 the ones marked @every."""
    v = vtuple(ver)
    return v[0] == 2 or v >= (3, 11)


def cases_for(ver):
    names = sorted(k[5:] for k in globals() if k.startswith('case_'))
    return [n for n in names if full_set(ver) or n in EVERY]


def inventory_line(ran, absent):
    return 'interop: ran with %s; absent: %s' % (', '.join(ran) or 'none',
                                                 ', '.join(absent) or 'none')


def plan(given):
    """One line per interpreter found, "run MINOR VERSION EXE CASE...", and
    "absent MINOR" per expected one not found; CMake makes the entries."""
    by_minor = discover(given)
    for m in sorted(by_minor, key=vtuple):
        ver, exe = by_minor[m]
        print(' '.join(shlex.quote(x) for x in ['run', m, ver, exe] + cases_for(ver)))
    for m in EXPECTED:
        if m not in by_minor:
            print('absent ' + m)
    return 0


def inventory(paths):
    """Each planned interpreter must still run; prints the inventory line."""
    ran, broken = [], []
    for exe in paths:
        got = probe(exe)
        (ran if got else broken).append(got[0] if got else exe)
    absent = [m for m in EXPECTED if m not in {minor(v) for v in ran}]
    print(inventory_line(ran, absent))
    if broken:
        print('interop: planned but not runnable now (re-run cmake): ' + ', '.join(broken))
        return 1
    return 0


# ------------------------------------------------------------ the peers

INTERP = None  # (version, executable) of the interpreter under test


def ver():
    return vtuple(INTERP[0])


def py2():
    return ver()[0] == 2


def digest_era():
    """CPython 3.12+ challenges with {digest} and answers in kind."""
    return ver() >= (3, 12)


def highest_protocol():
    return 2 if py2() else 4 if ver() < (3, 8) else 5


def pypeer_run(mode, address, args, what):
    """pypeer.py under the interpreter under test, held to its version."""
    p = t.Peer([mode, address] + list(args), name='CPython %s %s' % (INTERP[0], what),
               command=[INTERP[1], PYPEER])
    line = p.expect('pypeer ', timeout=20)
    assert line == 'pypeer ' + INTERP[0], (line, INTERP)
    return p


def py_listener(address, *args, mode='listen'):
    p = pypeer_run(mode, address, args, mode + 'er')
    line = p.expect('listening on ', timeout=20)
    return p, line[len('listening on '):]


def py_client(address, *args):
    return pypeer_run('connect', address, args, 'client')


def key_args(key):
    return ['--authkey', key.decode()] if key else []


def lines(peer, prefix):
    return [ln for ln in peer.lines if ln.startswith(prefix)]


MAC_LEN = {'md5': 16, 'sha256': 32, 'sha384': 48, 'sha3_256': 32, 'sha3_384': 48}


def answer(digest):
    """What the interpreter under test answers to a challenge of digest
    (None: the legacy 20-byte one)."""
    if digest is None or not digest_era():
        return 'raw16'
    return '{%s}%d' % (digest, MAC_LEN[digest])


def check_handshakes(peer, theirs='sha256', ours='sha256', times=1):
    """The Python side's recorded handshakes (times of them): it
    challenged with ours (or the legacy form before 3.12) and got the
    mpconn answer to it; it answered mpconn's challenge of digest theirs
    (None: legacy)."""
    ours = ours if digest_era() else None
    mine = '{%s}40' % ours if ours else 'raw20'
    c_answer = '{%s}%d' % (ours, MAC_LEN[ours]) if ours else 'raw16'
    chal = '{%s}40' % theirs if theirs else 'raw20'
    want = ['handshake deliver challenge=%s response=%s result=WELCOME' % (mine, c_answer),
            'handshake answer challenge=%s response=%s result=WELCOME' % (chal, answer(theirs))]
    want *= times
    got = lines(peer, 'handshake ')
    assert sorted(got) == sorted(want), (got, want, peer.output())


# ------------------------------------------------------------ the matrix

KINDS = ('unix', 'abstract', 'tcp4', 'tcp6')
SMALL = [0, 1, 16384, 16385, MIB]
LARGE = SMALL + [64 * MIB]  # over Unix paths only: a second each, not four


def sizes_for(kind):
    return LARGE if kind == 'unix' else SMALL


def close_error_ok(peer, kind):
    """2.7 and 3.6 raise when closing an abstract-name Listener (they try to
    unlink the name); that is theirs, and nothing to do with the wire."""
    errs = lines(peer, 'close error ')
    if kind == 'abstract' and ver() < (3, 7):
        return
    assert not errs, peer.output()


def c_listener(kind, key):
    if kind == 'tcp6' and not t.has_ipv6_loopback():
        print('SKIP: no IPv6 loopback on this host')
        return
    sizes = sizes_for(kind)
    peer, addr = t.start_listener(t.listen_spec(kind), *key_args(key), 'echo')
    with peer:
        rec = ['--record'] if key else []
        with py_client(addr, *key_args(key), *rec, *['sendecho:%d' % n for n in sizes]) as py:
            py.finish(0, timeout=60)
            assert lines(py, 'sendecho ') == ['sendecho %d ok' % n for n in sizes], py.output()
            if key:
                check_handshakes(py)
        out = peer.finish(0, timeout=30)
        assert lines(peer, 'echo ') == ['echo %d' % n for n in sizes] + ['echo eof'], out


def py_listener_c_client(kind, key):
    if kind == 'tcp6' and not t.has_ipv6_loopback():
        print('SKIP: no IPv6 loopback on this host')
        return
    sizes = sizes_for(kind)
    rec = ['--record'] if key else []
    py, addr = py_listener(t.listen_spec(kind), *key_args(key), *rec, 'echo')
    with py:
        actions = []
        for n in sizes:
            actions += ['send:%d' % n, 'recv:%d' % n]
        with t.start_client(addr, *key_args(key), *actions) as peer:
            peer.finish(0, timeout=60)
            assert lines(peer, 'recv ') == ['recv %d ok' % n for n in sizes], peer.output()
        py.finish(0, timeout=30)
        assert lines(py, 'echo ') == ['echo %d' % n for n in sizes] + ['echo eof'], py.output()
        if key:
            check_handshakes(py)
        close_error_ok(py, kind)


EVERY = set()  # cases 3.6-3.10 run too


def every(fn):
    EVERY.add(fn.__name__[5:])
    return fn


def _matrix():
    def make(fn, kind, key):
        return lambda: fn(kind, key)
    for kind in KINDS:
        for keyed in ('key', 'nokey'):
            key = KEY if keyed == 'key' else None
            globals()['case_c_listener_%s_%s' % (kind, keyed)] = make(c_listener, kind, key)
            globals()['case_py_listener_%s_%s' % (kind, keyed)] = \
                make(py_listener_c_client, kind, key)


_matrix()
# The representative part of the matrix: each direction, each address kind
# once, with and without key, and the large messages (unix) both ways.
EVERY.update(['c_listener_unix_key', 'c_listener_abstract_nokey', 'c_listener_tcp4_key',
              'c_listener_tcp6_nokey', 'py_listener_unix_nokey', 'py_listener_abstract_key',
              'py_listener_tcp4_nokey', 'py_listener_tcp6_key'])


# ------------------------------------------------------- authentication

@every
def case_wrong_key_c_listener():
    """A Python Client with the wrong key: AuthenticationError there, and
    the C listener rejects it (MPCONN_ERR_AUTH) and serves the right key next."""
    peer, addr = t.start_listener('127.0.0.1:0', *key_args(KEY), 'recv:5')
    with peer:
        with py_client(addr, *key_args(WRONG), 'send:5') as py:
            py.finish(3, timeout=20)
            py.expect('error connect AuthenticationError', timeout=0)
        peer.expect('reject MPCONN_ERR_AUTH', timeout=5)
        with py_client(addr, *key_args(KEY), 'send:5') as py:
            py.finish(0, timeout=20)
        peer.finish(0)
        assert lines(peer, 'recv ') == ['recv 5 ok'], peer.output()


@every
def case_wrong_key_py_listener():
    """A C client with the wrong key: the Python Listener's accept raises
    AuthenticationError, the C client fails with MPCONN_ERR_AUTH."""
    py, addr = py_listener('127.0.0.1:0', *key_args(KEY), 'recv:1')
    with py:
        with t.start_client(addr, *key_args(WRONG), 'send:1') as peer:
            peer.finish(3, timeout=20)
            peer.expect('error connect MPCONN_ERR_AUTH', timeout=0)
        py.finish(3, timeout=20)
        py.expect('error accept AuthenticationError', timeout=0)


DIGESTS = ('sha256', 'md5', 'sha384', 'sha3_256', 'sha3_384', 'legacy')


@every
def case_digests_c_listener():
    """The C listener challenging with each digest (and the legacy form):
    3.12+ answer {digest}+MAC, older ones the raw HMAC-MD5 of the whole
    challenge, which mpconn accepts."""
    for digest in DIGESTS:
        peer, addr = t.start_listener(t.tmp_path(), *key_args(KEY), '--digest', digest,
                                      'recv:3')
        with peer:
            with py_client(addr, *key_args(KEY), '--record', 'send:3') as py:
                py.finish(0, timeout=20)
                check_handshakes(py, theirs=None if digest == 'legacy' else digest)
            peer.finish(0)


def case_digests_py_listener():
    """A Python Listener against a C client that challenges with each
    digest; 3.12+ challenge with each digest too (deliver_challenge's
    digest_name, what Listener.accept does with another digest)."""
    for i, digest in enumerate(DIGESTS[:-1]):
        theirs = DIGESTS[(i + 1) % (len(DIGESTS) - 1)]
        mine = ['--digest', digest] if digest_era() else []
        py, addr = py_listener(t.tmp_path(), *key_args(KEY), *mine, '--record', 'recv:3')
        with py:
            with t.start_client(addr, *key_args(KEY), '--digest', theirs, 'send:3') as peer:
                peer.finish(0, timeout=20)
            py.finish(0, timeout=20)
            check_handshakes(py, theirs=theirs, ours=digest)


def case_no_md5_c_listener():
    """A C listener refusing MD5: 3.12+ clients get in ({sha256} answers),
    older ones answer with MD5 and are rejected."""
    count = 2 if digest_era() else 1  # a rejected client is not counted
    peer, addr = t.start_listener(t.tmp_path(), *key_args(KEY), '--no-md5', '--count',
                                  str(count), '--keep-going', 'recv:2')
    with peer:
        with py_client(addr, *key_args(KEY), 'send:2') as py:
            if digest_era():
                py.finish(0, timeout=20)
            else:
                py.finish(3, timeout=20)
                py.expect('error connect AuthenticationError', timeout=0)
                line = peer.expect('reject MPCONN_ERR_AUTH', timeout=5)
                assert 'MD5' in line, line
        # and a C client still gets in
        with t.start_client(addr, *key_args(KEY), '--no-md5', 'send:2') as c:
            c.finish(0)
        peer.finish(0)


@every
def case_no_md5_c_client():
    """A C client refusing MD5 against a Python Listener: with 3.12+ it
    works; the legacy challenge of older ones needs MD5, so MPCONN_ERR_AUTH."""
    py, addr = py_listener(t.tmp_path(), *key_args(KEY), 'recv:2')
    with py:
        with t.start_client(addr, *key_args(KEY), '--no-md5', 'send:2') as peer:
            if digest_era():
                peer.finish(0, timeout=20)
            else:
                peer.finish(3, timeout=20)
                line = peer.expect('error connect MPCONN_ERR_AUTH', timeout=0)
                assert 'MD5' in line, line
        py.finish(0 if digest_era() else 3, timeout=20)


# --------------------------------------------------------------- values

# Python expressions in the subset 2.7 shares (u'' text, b'' bytes); every
# one is evaluated by the interpreter under test and by this driver.
VALUE_EXPRS = [
    "{u'op': u'add', u'args': [1, 2.5, u'x']}",
    'None', 'True', 'False', '0', '-5', '255', '256', '2 ** 31 - 1', '-2 ** 31', '2 ** 31',
    '2 ** 63', '2 ** 100', '-(2 ** 70)', '0.1', '-0.0', '1e300', "float('-inf')",
    "u''", "u'h\\xe9llo \\u2603 \\U0001f600'", "u'\\x00\\n\\\\'", "b''", "b'ascii only'",
    "bytearray(b'\\x00\\xffba')", 'bytearray()',
    '[]', '[1, [2, [3]]]', '()', '(1,)', "(1, u'two', 3.0)", '((), ((), ()))',
    '{}', "{1: u'a', u'b': (2, 3)}", '{1, 2, 3}', "frozenset([u'x'])", 'set()',
    '[None] * 3', "[u'shared'] * 3", 'list(range(2500))',
    'dict((i, -i) for i in range(1200))',
]


def py2_view(v):
    """What a value sent from 2.7 is: its bytes are 2.7 str, which arrives
    as str (pickle's encoding='ASCII', as in CPython 3)."""
    if isinstance(v, bytes):
        return v.decode('ascii')
    if isinstance(v, list):
        return [py2_view(x) for x in v]
    if isinstance(v, tuple):
        return tuple(py2_view(x) for x in v)
    if isinstance(v, dict):
        return {py2_view(k): py2_view(x) for k, x in v.items()}
    if isinstance(v, (set, frozenset)):
        return type(v)(py2_view(x) for x in v)
    return v


EVAL_NAMES = {'__builtins__': {}, 'bytearray': bytearray, 'frozenset': frozenset, 'set': set,
              'inf': math.inf}


def check_c_repr(text, expr):
    """The C side's repr of what the interpreter sent for expr: Python's
    repr exactly (3.x); for 2.7, the same value (2.7 dicts have no order)."""
    want = eval(expr)  # noqa: S307 - the fixed expressions above
    if not py2():
        assert text == repr(want), (expr, text, repr(want))
        return
    got = eval(text, EVAL_NAMES)  # noqa: S307 - mpconn's repr of plain values
    assert pypeer.canon(got, True) == pypeer.canon(py2_view(want), True), (expr, text)


@every
def case_values_python_to_c():
    """Every expression through each pickle protocol the interpreter has,
    then through Connection.send (multiprocessing's own protocol): the C
    listener decodes each to Python's repr."""
    protos = list(range(highest_protocol() + 1))
    actions = ['sendpickle:%d:%s' % (p, e) for p in protos for e in VALUE_EXPRS]
    actions += ['sendobj:' + e for e in VALUE_EXPRS]
    peer, addr = t.start_listener(t.tmp_path(), *(['recvobj'] * len(actions)), 'eof')
    with peer:
        with py_client(addr, *actions) as py:
            py.finish(0, timeout=60)
        peer.finish(0, timeout=30)
        got = [t.unescape(ln[len('recvobj '):]).decode('utf-8') for ln in lines(peer, 'recvobj ')]
        assert len(got) == len(actions), peer.output()[-3000:]
        for i, text in enumerate(got):
            check_c_repr(text, VALUE_EXPRS[i % len(VALUE_EXPRS)])


LITERALS = [
    "{'op': 'add', 'args': [1, 2.5, 'x']}",
    'None', 'True', 'False', '-7', '255', '65536', '2147483648', '-9223372036854775809',
    '123456789012345678901234567890', '0.25', '-0.0', '1e300', "'text é ☃ 😀'", "''",
    "'\\x00\\n'", "b'\\x00\\x01\\xff'", "b''", '[1, (2, 3), {4: None}]', '()', '(1,)',
    "{'a', 'b'}", 'set()', '{1: 2, 3: 4}', "{'nested': {'list': [[], [[]]], 'f': -1.5e-10}}",
    '[' + ', '.join(str(i) for i in range(2500)) + ']',
    '{' + ', '.join('%d: %d' % (i, -i) for i in range(1200)) + '}',
]


def c_protocols():
    return list(range(2, highest_protocol() + 1))


@every
def case_values_c_to_python():
    """mpconn sends each literal with each pickle protocol the interpreter
    reads (2.7: only 2); Connection.recv gives literal_eval's value, typed
    as in the interpreter (2.7: str arrives as unicode, bytes as str)."""
    protos = c_protocols()
    py, addr = py_listener(t.tmp_path(), '--count', str(len(protos)),
                           *(['recvobj'] * len(LITERALS)), 'eof')
    with py:
        for p in protos:
            with t.start_client(addr, '--protocol', str(p),
                                *['sendobj:' + lit for lit in LITERALS]) as peer:
                peer.finish(0, timeout=30)
        py.finish(0, timeout=30)
        got = [ln[len('value '):] for ln in lines(py, 'value ')]
        want = [pypeer.canon(ast.literal_eval(lit), py2()) for lit in LITERALS] * len(protos)
        assert len(got) == len(want), py.output()[-3000:]
        for i, (g, w) in enumerate(zip(got, want)):
            assert g == w, (protos[i // len(LITERALS)], LITERALS[i % len(LITERALS)], g, w)


@every
def case_default_protocol_c_to_python():
    """mpconn's default pickle protocol (4): read by every 3.x; 2.7 cannot
    (it knows protocols 0-2) and says so, so talking to 2.7 takes
    mpconn_opts_set_pickle_protocol(o, 2)."""
    py, addr = py_listener(t.tmp_path(), 'recvobj')
    with py:
        with t.start_client(addr, "sendobj:{'a': [1, b'x']}") as peer:
            peer.finish(0, timeout=20)
        if py2():
            py.finish(3, timeout=20)
            line = py.expect('error recvobj ValueError', timeout=0)
            assert 'unsupported pickle protocol: 4' in line, line
        else:
            py.finish(0, timeout=20)
            assert lines(py, 'value ') == ['value ' + pypeer.canon({'a': [1, b'x']})], py.output()


def case_bytes_non_ascii_python_to_c():
    """Non-ASCII bytes from Python: 3.x bytes arrive as bytes. A 2.7 str
    (its bytes) is pickled as a Python 2 string, which CPython 3 reads
    with encoding='ASCII' and fails on non-ASCII; mpconn refuses it the
    same way (MPCONN_ERR_PICKLE). 2.7 programs send such bytes as bytearray."""
    exprs = ["bytearray(b'\\x00\\xff')", "u'\\xff'", "b'\\x00\\xffbytes'"]
    peer, addr = t.start_listener(t.tmp_path(), *(['recvobj'] * len(exprs)))
    with peer:
        with py_client(addr, *['sendobj:' + e for e in exprs]) as py:
            py.finish(0, timeout=20)
        if py2():
            peer.finish(3)
            line = peer.expect('error recvobj MPCONN_ERR_PICKLE', timeout=0)
            assert 'non-ASCII Python 2 string' in line, line
            got = [t.unescape(ln[8:]).decode() for ln in lines(peer, 'recvobj ')]
            assert got == ["bytearray(b'\\x00\\xff')", "'ÿ'"], got
        else:
            peer.finish(0)
            got = [t.unescape(ln[8:]).decode() for ln in lines(peer, 'recvobj ')]
            assert got == [repr(eval(e)) for e in exprs], got  # noqa: S307


# -------------------------------------------------------------- manager

def manager_call(addr, protocol, *requests):
    """One C client connection to a manager: sends each request, prints
    the reply; returns the replies as values."""
    actions = []
    for r in requests:
        actions += ['sendobj:' + r, 'recvobj']
    with t.start_client(addr, *key_args(KEY), '--protocol', str(protocol), *actions) as peer:
        peer.finish(0, timeout=20)
    return [eval(t.unescape(ln[len('recvobj '):]).decode(), EVAL_NAMES)  # noqa: S307
            for ln in lines(peer, 'recvobj ')]


def case_manager():
    """The C client plays the part of a manager's proxies against a real
    multiprocessing BaseManager server: the handshake, then the server's
    requests (id, method, args, kwds) answered with ('#RETURN', value):
    dummy, create of a registered callable, accept_connection and calls on
    the shared dict (a method, #GETVALUE, an unknown method's #TRACEBACK),
    decref, number_of_objects, shutdown."""
    proto = 2 if py2() else 4
    p, addr = py_listener(t.tmp_path(), '--authkey', KEY.decode(), '--record', mode='manager')
    with p:
        assert manager_call(addr, proto, "(None, 'dummy', (), {})") == [('#RETURN', None)]
        assert manager_call(addr, proto, "(None, 'number_of_objects', (), {})") == \
            [('#RETURN', 0)]
        [(kind, (ident, exposed))] = manager_call(addr, proto,
                                                  "(None, 'create', ('get_dict',), {})")
        assert kind == '#RETURN' and isinstance(ident, str), (kind, ident)
        assert {'get', 'update', 'items'} <= set(exposed), exposed
        made = pypeer.make_dict()
        replies = manager_call(
            addr, proto, "(None, 'accept_connection', ('mpconn',), {})",
            "(%r, 'get', ('answer',), {})" % ident,
            "(%r, 'update', ({'from C': b'bytes'},), {})" % ident,
            "(%r, '#GETVALUE', (), {})" % ident,
            "(%r, 'no_such_method', (), {})" % ident)
        assert replies[:3] == [('#RETURN', None), ('#RETURN', 42), ('#RETURN', None)], replies
        kind, value = replies[3]
        made['from C'] = b'bytes'
        if py2():  # the bytes are a 2.7 str there, which comes back as str
            made = py2_view(made)
        assert kind == '#RETURN' and pypeer.canon(value, True) == pypeer.canon(made, True), \
            replies[3]
        kind, text = replies[4]
        assert kind == '#TRACEBACK' and 'no_such_method' in text, replies[4]
        assert manager_call(addr, proto, "(None, 'decref', (%r,), {})" % ident) == \
            [('#RETURN', None)]
        assert manager_call(addr, proto, "(None, 'number_of_objects', (), {})") == \
            [('#RETURN', 0)]
        assert manager_call(addr, proto, "(None, 'shutdown', (), {})") == [('#RETURN', None)]
        p.finish(0, timeout=20)
        check_handshakes(p, times=7)  # one per connection


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == '--plan':
        return plan(sys.argv[2:])
    if len(sys.argv) >= 2 and sys.argv[1] == '--inventory':
        return inventory(sys.argv[2:])
    if len(sys.argv) == 3 and sys.argv[1] == '--absent':
        print('interop: CPython %s absent, not tested' % sys.argv[2])
        return SKIPPED
    if len(sys.argv) not in (3, 4):
        print(__doc__)
        return 2
    global INTERP
    # CMake passes the version it planned with; pypeer_run() holds the
    # interpreter to it
    INTERP = (sys.argv[3], sys.argv[2]) if len(sys.argv) == 4 else probe(sys.argv[2])
    if INTERP is None:
        print('interop: %s does not run' % sys.argv[2])
        return 1
    print('interop: CPython %s (%s)' % INTERP)
    sys.argv = sys.argv[:2]
    t.main(globals())


if __name__ == '__main__':
    sys.exit(main())
