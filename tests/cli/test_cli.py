#!/usr/bin/env python3
"""The mpconn command run as a user would, against CPython's multiprocessing.connection.

Each `def case_NAME()` is its own CTest entry (`cli.test_cli.NAME`), run as
`python3 test_cli.py NAME` from the build directory with MPCONN_BUILD and MPCONN_SOURCE
set. Every subprocess has a timeout and every loop is bounded.
"""
import ast
import base64
import json
import os
import pickle
import re
import resource
import select
import selectors
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing.connection import AuthenticationError, Client, Listener
from multiprocessing.reduction import ForkingPickler

BUILD = os.environ.get("MPCONN_BUILD", os.getcwd())
SOURCE = os.environ.get("MPCONN_SOURCE", os.path.join(os.path.dirname(__file__), "..", ".."))
MPCONN = os.path.join(BUILD, "mpconn")
TIMEOUT = 10  # seconds for any one subprocess or wait
KEY_ENV = "MPCONN_TEST_KEY"
LEGACY_PYTHON = sys.version_info < (3, 12)  # answers every challenge with raw HMAC-MD5


# ------------------------------------------------------------------ helpers


def run(*args, input=None, env=None, timeout=TIMEOUT):
    """Runs mpconn to completion; returns the CompletedProcess (bytes)."""
    return subprocess.run([MPCONN, *args], input=input, capture_output=True, timeout=timeout,
                          env=env)


def key_env(key="secret", **more):
    env = dict(os.environ)
    env[KEY_ENV] = key
    env.update(more)
    return env


def py_address(addr):
    """mpconn address text -> what multiprocessing.connection (or a socket) takes."""
    for prefix in ("udp:", "unixgram:"):
        if addr.startswith(prefix):
            addr = addr[len(prefix):]
    if addr.startswith("@"):
        return "\0" + addr[1:]
    if addr.startswith("/"):
        return addr
    host, _, port = addr.rpartition(":")
    return (host.strip("[]"), int(port))


def mp_address(addr):
    """multiprocessing address -> mpconn address text."""
    if isinstance(addr, tuple):
        return "%s:%d" % addr
    return addr


def check(cond, what, *context):
    if not cond:
        raise AssertionError(what + "".join("\n  " + repr(c) for c in context))


def expect_fail(result, status, pattern):
    """Asserts the exit status and a stderr line matching pattern (a regex)."""
    err = result.stderr.decode(errors="replace")
    check(result.returncode == status,
          "exit status %d, expected %d" % (result.returncode, status), err)
    check(re.search(pattern, err), "stderr does not match %r" % pattern, err)
    check(err.startswith("mpconn"), "stderr does not start with 'mpconn'", err)


def same(a, b):
    """Equality that also compares types (1 != 1.0 != True) and -0.0 / nan."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return repr(a) == repr(b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return len(a) == len(b) and all(
            same(ka, kb) and same(va, vb) for (ka, va), (kb, vb) in zip(a.items(), b.items()))
    return a == b


def silent_listener():
    """A TCP socket that listens and never accepts by itself; returns it and its address."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    return srv, "127.0.0.1:%d" % srv.getsockname()[1]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Serve:
    """A running `mpconn serve`, with its output collected without blocking."""

    def __init__(self, *args, address=None, env=None, preexec_fn=None):
        argv = [MPCONN, "serve"] + ([address] if address is not None else []) + list(args)
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                  preexec_fn=preexec_fn)
        self.buf = {"out": b"", "err": b""}
        self.sel = selectors.DefaultSelector()
        for name, f in (("out", self.p.stdout), ("err", self.p.stderr)):
            os.set_blocking(f.fileno(), False)
            self.sel.register(f, selectors.EVENT_READ, name)
        try:
            m = self.wait_for("err", rb"listening on (\S+)\n")
        except AssertionError:
            self.kill()
            raise
        self.address = m.group(1).decode()
        self.py = py_address(self.address)

    def pump(self, timeout):
        for key, _ in self.sel.select(timeout):
            data = key.fileobj.read1(65536)
            if data is None:  # nothing after all (non-blocking)
                continue
            if not data:
                self.sel.unregister(key.fileobj)
            else:
                self.buf[key.data] += data

    def wait_for(self, stream, pattern, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(pattern, self.buf[stream])
            if m:
                return m
            left = deadline - time.monotonic()
            if left <= 0 or not self.sel.get_map():
                raise AssertionError("serve: no %r on std%s; out=%r err=%r rc=%r" % (
                    pattern, stream, self.buf["out"], self.buf["err"], self.p.poll()))
            self.pump(min(left, 0.2))

    def lines(self, n, timeout=TIMEOUT):
        """The first n lines of standard output, as text."""
        self.wait_for("out", rb"(?:.*\n){%d}" % n, timeout)
        return self.buf["out"].decode().split("\n")[:n]

    def err(self):
        return self.buf["err"].decode(errors="replace")

    def wait(self, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while self.sel.get_map() and time.monotonic() < deadline:
            self.pump(0.1)
        return self.p.wait(timeout=max(0.1, deadline - time.monotonic()))

    def stop(self, sig=signal.SIGTERM):
        self.p.send_signal(sig)
        return self.wait()

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(timeout=TIMEOUT)
        self.sel.close()
        for f in (self.p.stdout, self.p.stderr):
            if not f.closed:
                f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()


class PyListener:
    """A CPython Listener in a thread that accepts one client and runs handler(conn)."""

    def __init__(self, handler, address=None, family=None, authkey=None):
        if address is None and family is None:
            address = ("127.0.0.1", 0)
        self.l = Listener(address, family=family, authkey=authkey)
        self.l._listener._socket.settimeout(TIMEOUT)  # a bounded accept()
        self.address = mp_address(self.l.address)
        self.result = None
        self.error = None
        self.t = threading.Thread(target=self._run, args=(handler,), daemon=True)
        self.t.start()

    def _run(self, handler):
        try:
            with self.l.accept() as conn:
                self.result = handler(conn)
        except BaseException as e:  # reported by join()
            self.error = e

    def join(self):
        self.t.join(TIMEOUT)
        check(not self.t.is_alive(), "the Python listener did not finish")
        self.l.close()
        return self.result


def recv_all(conn, limit=100):
    """Receives objects until the peer closes."""
    out = []
    for _ in range(limit):
        if not conn.poll(TIMEOUT):
            raise AssertionError("no message from mpconn within %ss" % TIMEOUT)
        try:
            out.append(conn.recv_bytes())
        except EOFError:
            return out
    return out


# Literals as users write them, each checked against ast.literal_eval.
LITERALS = [
    "{'op': 'add', 'args': [1, 2.5]}",
    "None", "True", "False", "0", "-7", "123456789012345678901234567890",
    "-1", "0.1", "-0.0", "1e300", "'héllo \\n wörld 🐍'",
    "b'\\x00\\xffbytes'", "(1,)", "()", "[]", "{}", "{1, 2, 3}",
    "[(1, 'a'), {'k': [None, b'']}, {-1: 2.5}]", "'quote\\'s \"double\"'",
]


# ------------------------------------------------------------ top level


def case_help():
    r = run("--help")
    check(r.returncode == 0 and b"mpconn serve" in r.stdout and b"mpconn send" in r.stdout
          and b"mpconn bench" in r.stdout, "mpconn --help", r)
    for cmd in ("serve", "send", "bench"):
        r = run(cmd, "--help")
        check(r.returncode == 0, cmd + " --help status", r)
        check(r.stdout.startswith(b"usage: mpconn " + cmd.encode()), cmd + " --help text", r)
        r = run(cmd, "-h")
        check(r.returncode == 0 and r.stdout.startswith(b"usage:"), cmd + " -h", r)


def case_version():
    r = run("--version")
    check(r.returncode == 0, "status", r)
    with open(os.path.join(SOURCE, "CMakeLists.txt")) as f:
        version = re.search(r"project\(mpconn VERSION (\S+)", f.read()).group(1)
    check(r.stdout == ("mpconn %s\n" % version).encode(), "version text", r.stdout, version)


def case_usage_errors():
    # Every option and argument of every command that can be wrong, each a usage error
    # (exit 2, nothing on stdout, nothing opened or sent).
    cases = [
        ([], r"usage: mpconn"),
        (["frobnicate"], r"unknown command 'frobnicate'"),
        (["--bogus"], r"unknown option '--bogus'"),
        (["serve", "--bogus"], r"unknown option '--bogus'"),
        (["send", "/tmp/x", "1", "--timeout"], r"'--timeout' needs an argument"),
        (["send"], r"missing ADDRESS"),
        (["send", "/tmp/x", "--authkey-env", "A", "--authkey-file", "/dev/null"],
         r"--authkey-env and --authkey-file exclude each other"),
        (["serve", "--authkey-env", "A", "--authkey-file", "/dev/null"], r"exclude each other"),
        (["send", "/tmp/x", "--timeout", "abc"], r"--timeout: 'abc' is not a number"),
        (["send", "/tmp/x", "--timeout", "-1"], r"--timeout"),
        (["serve", "--count", "0"], r"--count: '0'"),
        (["serve", "--count", "2x"], r"--count"),
        (["serve", "--mode", "999"], r"--mode: '999' is not an octal mode"),
        (["serve", "--max-message", "-1"], r"--max-message: '-1'"),
        (["send", "/tmp/x", "--protocol", "9"], r"--protocol: '9'"),
        (["send", "/tmp/x", "--bytes", "--protocol", "2"], r"--protocol"),
        (["send", "/tmp/x", "--format", "xml"], r"--format: 'xml'"),
        (["send", "/tmp/x", "--digest", "crc32"], r"--digest: 'crc32'"),
        (["serve", "--echo=1"], r"takes no argument"),
        (["serve", "/tmp/a", "/tmp/b"], r"unexpected argument '/tmp/b'"),
        (["bench", "--kind", "bogus"], r"--kind: 'bogus'"),
        (["bench", "--sizes", "1,x"], r"--sizes"),
        (["bench", "--seconds", "0"], r"--seconds"),
        # addresses: syntax errors are usage errors, whichever command
        (["send", "127.0.0.1:99999", "1"], r"port 99999 is out of range"),
        (["send", "127.0.0.1:", "1"], r"missing port"),
        (["send", "127.0.0.1:http", "1"], r"not a decimal number"),
        (["send", "localhost", "1"], r"expected HOST:PORT"),
        (["send", "not an address", "1"], r"not an address"),
        (["send", "[::1]", "1"], r"expected \":PORT\""),
        (["send", "unix:", "1"], r"empty socket path"),
        (["send", "@", "1"], r"empty abstract name"),
        (["serve", "127.0.0.1:99999"], r"out of range"),
        (["serve", "127.0.0.1:"], r"missing port"),
        (["serve", "localhost"], r"expected HOST:PORT"),
        (["serve", ""], r"bad address ''"),
        (["serve", "-"], r"bad address '-'"),
        # serve
        (["serve", "--count"], r"'--count' needs an argument"),
        (["serve", "--count", "-3"], r"--count: '-3'"),
        (["serve", "--mode", "abc"], r"--mode: 'abc'"),
        (["serve", "--mode", "600", "127.0.0.1:0"], r"--mode applies to a Unix socket file"),
        (["serve", "--mode", "600", "[::1]:0"], r"--mode applies to a Unix socket file"),
        (["serve", "--mode", "600", "@mpconn-cli-mode"], r"abstract socket, which has no file"),
        (["serve", "--max-message", "x"], r"--max-message: 'x'"),
        (["serve", "--timeout", "-2"], r"--timeout"),
        (["serve", "--format", "yaml"], r"--format: 'yaml'"),
        (["serve", "--digest", "sha1"], r"--digest: 'sha1'"),
        (["serve", "-x"], r"unknown option '-x'"),
        (["serve", "-qv"], r"unknown option '-qv'"),
        (["serve", "--terminator", "\\n", "--authkey-env", "A"], r"--terminator has no handshake"),
        (["serve", "--authkey-file", "/dev/null", "--terminator", ";"], r"no handshake"),
        (["serve", "--terminator", "\\q"], r"--terminator: '\\q': unknown escape '\\q'"),
        (["serve", "--terminator", "\\x4"], r"\\x needs two hex digits"),
        (["serve", "--terminator", "ab\\"], r"a lone backslash"),
        (["serve", "--terminator", ""], r"--terminator: the string is empty"),
        (["serve", "--terminator", "x" * 33], r"longer than 32 bytes"),
        (["serve", "--max-clients", "0"], r"--max-clients: '0' is not a number >= 1"),
        (["serve", "--max-clients", "two"], r"--max-clients: 'two'"),
        (["serve", "--max-clients"], r"'--max-clients' needs an argument"),
        # send
        (["send", "/tmp/x", "--protocol", "1"], r"--protocol: '1'"),
        (["send", "/tmp/x", "--protocol", "x"], r"--protocol: 'x'"),
        (["send", "/tmp/x", "--protocol"], r"'--protocol' needs an argument"),
        (["send", "/tmp/x", "--max-message", "1.5"], r"--max-message: '1.5'"),
        (["send", "/tmp/x", "--reply=yes"], r"takes no argument"),
        (["send", "/tmp/x", "--authkey-env"], r"'--authkey-env' needs an argument"),
        (["send", "/tmp/x", "'unclosed"], r"bad literal in VALUE 1"),
        # bench
        (["bench", "extra"], r"unexpected argument 'extra'"),
        (["bench", "--transport", "udp"], r"--transport: 'udp'"),
        (["bench", "--sizes", "2G"], r"--sizes"),
        (["bench", "--seconds", "x"], r"--seconds"),
        (["bench", "--digest", "crc32"], r"--digest: 'crc32'"),
        (["bench", "--cpu", "x"], r"--cpu: 'x' is not a CPU number"),
        (["bench", "--cpu", "-1"], r"--cpu: '-1'"),
        (["bench", "--cpu", "100000"], r"--cpu: CPU 100000 is not one this process may use"),
    ]
    for argv, pattern in cases:
        r = run(*argv)
        expect_fail(r, 2, pattern)
        check(r.stdout == b"", "usage error printed on stdout", argv, r.stdout)


def case_runtime_failures():
    # What the command line cannot know beforehand is a runtime failure (exit 1).
    env = dict(os.environ)
    env.pop(KEY_ENV, None)
    with tempfile.TemporaryDirectory() as d:
        empty = os.path.join(d, "empty")
        open(empty, "wb").close()
        cases = [
            (["send", "127.0.0.1:%d" % free_port(), "1"], r"Connection refused"),
            (["send", os.path.join(d, "nobody"), "1"], r"No such file or directory"),
            (["send", "no-such-host.invalid:80", "1"], r"cannot resolve host"),
            (["send", "\\\\.\\pipe\\x", "1"], r"named pipes are not available"),
            (["send", "/tmp/x", "1", "--authkey-env", KEY_ENV], r"is not set"),
            (["send", "/tmp/x", "1", "--authkey-file", os.path.join(d, "no")], r"cannot read"),
            (["send", "/tmp/x", "1", "--authkey-file", empty], r"is empty"),
            (["serve", "--authkey-env", KEY_ENV], r"is not set"),
            (["serve", os.path.join(d, "no", "dir", "sock")], r"cannot bind"),
        ]
        for argv, pattern in cases:
            r = run(*argv, env=env)
            expect_fail(r, 1, pattern)
            check(r.stdout == b"", "failure printed on stdout", argv, r.stdout)


# ------------------------------------------------------------------- send


def case_send_to_python_listener():
    pl = PyListener(recv_all)
    r = run("send", pl.address, *LITERALS)
    check(r.returncode == 0, "send failed", r)
    got = [pickle.loads(m) for m in pl.join()]
    check(pl.error is None, "listener error", pl.error)
    check(len(got) == len(LITERALS), "message count", got)
    for text, obj in zip(LITERALS, got):
        check(same(obj, ast.literal_eval(text)), "value differs", text, obj)


def case_send_unix_authkey_env():
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "sock")
        pl = PyListener(lambda c: c.recv(), address=path, family="AF_UNIX", authkey=b"s3cret")
        r = run("send", path, "{'a': [1, 2]}", "--authkey-env", KEY_ENV, env=key_env("s3cret"))
        check(r.returncode == 0, "send failed", r)
        check(pl.join() == {"a": [1, 2]} and pl.error is None, "received", pl.result, pl.error)


def case_send_authkey_file_exact_bytes():
    with tempfile.TemporaryDirectory() as d:
        keyfile = os.path.join(d, "key")
        with open(keyfile, "wb") as f:
            f.write(b"k\x00ey\n")  # a NUL and a newline: the key is the file, byte for byte
        pl = PyListener(lambda c: c.recv(), authkey=b"k\x00ey\n")
        r = run("send", pl.address, "42", "--authkey-file", keyfile)
        check(r.returncode == 0, "send failed", r)
        check(pl.join() == 42 and pl.error is None, "received", pl.result, pl.error)
        # The same key without its newline is a different key.
        with open(keyfile, "wb") as f:
            f.write(b"k\x00ey")
        pl = PyListener(lambda c: c.recv(), authkey=b"k\x00ey\n")
        r = run("send", pl.address, "42", "--authkey-file", keyfile)
        pl.join()
        expect_fail(r, 1, r"authentication")
        check(isinstance(pl.error, AuthenticationError), "listener error", pl.error)


def case_send_authkey_missing():
    env = dict(os.environ)
    env.pop(KEY_ENV, None)
    r = run("send", "/nonexistent/x", "1", "--authkey-env", KEY_ENV, env=env)
    expect_fail(r, 1, r"environment variable %s is not set" % KEY_ENV)
    r = run("send", "/nonexistent/x", "1", "--authkey-file", "/nonexistent/key")
    expect_fail(r, 1, r"cannot read /nonexistent/key")
    r = run("serve", "--authkey-file", "/dev/null")
    expect_fail(r, 1, r"/dev/null is empty")


def case_send_wrong_key():
    pl = PyListener(lambda c: c.recv(), authkey=b"right")
    r = run("send", pl.address, "1", "--authkey-env", KEY_ENV, env=key_env("wrong"))
    pl.join()
    expect_fail(r, 1, r"authentication with %s failed" % re.escape(pl.address))
    check(isinstance(pl.error, AuthenticationError), "listener error", pl.error)


def case_send_protocol():
    for proto in (2, 3, 4, 5):
        pl = PyListener(lambda c: c.recv_bytes())
        r = run("send", pl.address, "[1, 'two', (3.0,)]", "--protocol", str(proto))
        check(r.returncode == 0, "send failed", r)
        data = pl.join()
        check(data[:2] == bytes([0x80, proto]), "protocol byte", proto, data)
        check(pickle.loads(data) == [1, "two", (3.0,)], "value", data)


def case_send_bytes():
    pl = PyListener(recv_all)
    r = run("send", "--bytes", pl.address, "héllo", "", "{'not': 'parsed'}")
    check(r.returncode == 0, "send failed", r)
    got = pl.join()
    check(got == ["héllo".encode(), b"", b"{'not': 'parsed'}"], "bytes received", got)
    # '-' with --bytes: every line is a message, empty ones included.
    pl = PyListener(recv_all)
    r = run("send", "--bytes", pl.address, "-", input=b"one\n\nthree\n")
    check(r.returncode == 0, "send failed", r)
    got = pl.join()
    check(got == [b"one", b"", b"three"], "stdin bytes received", got)


def case_send_stdin():
    lines = ["{'x': 1}", "", "  [1, 2]", "'last'"]
    pl = PyListener(recv_all)
    r = run("send", pl.address, "0", "-", "99", input="\n".join(lines).encode())
    check(r.returncode == 0, "send failed", r)
    got = [pickle.loads(m) for m in pl.join()]
    check(got == [0, {"x": 1}, [1, 2], "last", 99], "received in order", got)


def case_send_bad_literal():
    srv, addr = silent_listener()
    try:
        r = run("send", addr, "1", "{'a': }", "3")
        expect_fail(r, 2, r"bad literal in VALUE 2: .*column \d+")
        r = run("send", addr, "-", input=b"1\n[2,\n3\n")
        expect_fail(r, 2, r"standard input line 2: .*column \d+")
        # Nothing was sent: nobody even connected.
        ready, _, _ = select.select([srv], [], [], 0.3)
        check(not ready, "mpconn connected although a literal was bad")
    finally:
        srv.close()


def case_send_connection_refused():
    port = free_port()
    r = run("send", "127.0.0.1:%d" % port, "1")
    expect_fail(r, 1, r"^mpconn: cannot connect to 127\.0\.0\.1:%d: Connection refused\n$" % port)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "nobody")
        r = run("send", path, "1")
        expect_fail(r, 1, r"cannot connect to %s: No such file or directory" % re.escape(path))


def case_send_handshake_timeout():
    # A listener that accepts and never sends its challenge.
    srv, addr = silent_listener()
    try:
        t0 = time.monotonic()
        r = run("send", addr, "1", "--authkey-env", KEY_ENV, "--timeout", "0.5", env=key_env())
        expect_fail(r, 1, r"handshake with %s timed out" % re.escape(addr))
        check(time.monotonic() - t0 < 5, "the timeout was not applied")
    finally:
        srv.close()


def case_send_reply_timeout():
    done = threading.Event()
    pl = PyListener(lambda c: (c.recv(), done.wait(TIMEOUT)))
    r = run("send", pl.address, "1", "--reply", "--timeout", "0.5")
    done.set()
    pl.join()
    expect_fail(r, 1, r"no reply from %s within 0\.5 seconds" % re.escape(pl.address))
    done.clear()
    pl = PyListener(lambda c: (c.recv(), done.wait(TIMEOUT)))
    r = run("send", pl.address, "1", "--reply", "--timeout", "1")
    done.set()
    pl.join()
    expect_fail(r, 1, r"no reply from %s within 1 second$" % re.escape(pl.address))


def case_send_reply_peer_closed():
    pl = PyListener(lambda c: c.recv())
    r = run("send", pl.address, "1", "--reply")
    pl.join()
    expect_fail(r, 1, r"%s closed the connection without replying" % re.escape(pl.address))


PY27_LISTENER = r"""
import sys
from multiprocessing.connection import Listener
l = Listener(('127.0.0.1', 0))
sys.stdout.write('%d\n' % l.address[1])
sys.stdout.flush()
c = l.accept()
if sys.argv[1] == 'report':
    try:
        c.send(c.recv())
    except Exception as e:
        c.send(str(e))
else:
    c.send(c.recv())  # a ValueError here ends the process, closing the connection
"""


def python27():
    try:
        prefix = subprocess.run(["pyenv", "prefix", "2.7.18"], capture_output=True,
                                timeout=TIMEOUT).stdout.decode().strip()
    except (OSError, subprocess.SubprocessError):
        return None
    exe = os.path.join(prefix, "bin", "python")
    return exe if prefix and os.access(exe, os.X_OK) else None


def case_send_to_python27():
    # Python 2.7 unpickles protocols 0 to 2; a protocol-4 pickle makes its recv() raise
    # ValueError('unsupported pickle protocol: 4') in the listener, which sends nothing.
    r = run("send", "--help")
    check(b"2 for Python 2.7" in r.stdout, "--help names the protocol for Python 2.7", r.stdout)
    exe = python27()
    if not exe:
        print("no Python 2.7; skipped")
        return
    for mode, protocol, want in (("crash", None, r"closed the connection without replying to "
                                  r"message 1; a Python 2\.7 peer .* try --protocol 2$"),
                                 ("report", None, r"replied 'unsupported pickle protocol' .* "
                                  r"try --protocol 2$"),
                                 ("crash", "2", None)):
        p = subprocess.Popen([exe, "-c", PY27_LISTENER, mode], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        try:
            port = int(p.stdout.readline())
            args = ["send", "--reply", "127.0.0.1:%d" % port, "[1, 'two']"]
            r = run(*(args + (["--protocol", protocol] if protocol else [])))
        finally:
            p.kill()
            p.communicate(timeout=TIMEOUT)
        if want is None:
            check(r.returncode == 0 and r.stdout == b"[1, 'two']\n", "protocol 2", r)
        else:
            expect_fail(r, 1, want)
            if mode == "report":
                check(r.stdout == b"'unsupported pickle protocol: 4'\n", "reply printed", r)


def case_send_reply_formats():
    with Serve("--echo", "-q") as s:
        r = run("send", "--reply", s.address, *LITERALS)
        check(r.returncode == 0, "send --reply failed", r)
        lines = r.stdout.decode().splitlines()
        check(lines == [repr(ast.literal_eval(t)) for t in LITERALS], "repr replies", lines)
        r = run("send", "--reply", "--format", "json", s.address, "{'a': [1, 2.5, None]}",
                "(True, 'é')")
        check(r.stdout.decode().splitlines() == [json.dumps({"a": [1, 2.5, None]}),
                                                 json.dumps([True, "é"])], "json replies", r)
        r = run("send", "--reply", "--format", "hex", "--protocol", "2", s.address, "[1]")
        check(r.stdout.decode().strip() == pickle.dumps([1], protocol=2).hex(), "hex reply", r)
        r = run("send", "--reply", "--bytes", s.address, "raw")
        check(r.stdout == b"b'raw'\n", "bytes reply", r)


def case_send_no_legacy_md5():
    # An mpconn listener sending the legacy 20-byte challenge wants an MD5 answer.
    with Serve("--digest", "legacy", "--authkey-env", KEY_ENV, "-q", env=key_env()) as s:
        r = run("send", s.address, "1", "--authkey-env", KEY_ENV, env=key_env())
        check(r.returncode == 0, "legacy handshake with MD5 allowed", r)
        r = run("send", s.address, "1", "--authkey-env", KEY_ENV, "--no-legacy-md5",
                env=key_env())
        expect_fail(r, 1, r"authentication with .* failed")
        s.wait_for("err", rb"authentication of peer pid \d+ uid \d+ on .* failed")
    if LEGACY_PYTHON:
        pl = PyListener(lambda c: c.recv(), authkey=b"secret")
        r = run("send", pl.address, "1", "--authkey-env", KEY_ENV, "--no-legacy-md5",
                env=key_env())
        pl.join()
        expect_fail(r, 1, r"authentication with .* failed")


NO_KEY = r"^mpconn: %s requires an authkey: it sent an authentication challenge"


def case_send_no_key_to_auth_server():
    with Serve("-q", "--authkey-env", KEY_ENV, env=key_env()) as s:
        r = run("send", "--reply", s.address, "1")
        expect_fail(r, 1, NO_KEY % re.escape(s.address))
        s.wait_for("err", rb"authentication of peer pid \d+ uid \d+ on .* failed")
        check(s.p.poll() is None, "the server stopped")
        # Without --reply, with one value, several or none: never a silent success, however
        # the challenge and the messages cross.
        for i in range(20):
            values = [[], ["'hello'"], ["1", "2", "3"]][i % 3]
            r = run("send", s.address, *values)
            expect_fail(r, 1, NO_KEY % re.escape(s.address))
            check(b"nothing was delivered" in r.stderr, "what happened", r.stderr)
        check(s.buf["out"] == b"", "the server printed a message", s.buf["out"])


def case_send_no_key_to_python_listener():
    # CPython's accept() raises: EOFError when mpconn found the challenge before sending
    # and hung up, AuthenticationError when the first message went out as a wrong answer.
    for _ in range(5):
        pl = PyListener(lambda c: c.recv(), authkey=b"secret")
        r = run("send", pl.address, "'hello'")
        pl.join()
        expect_fail(r, 1, NO_KEY % re.escape(pl.address))
        check(isinstance(pl.error, (EOFError, AuthenticationError)), "listener error", pl.error)
    # Sending nothing: the listener's answer read meets our end of file.
    pl = PyListener(lambda c: c.recv(), authkey=b"secret")
    r = run("send", pl.address)
    pl.join()
    expect_fail(r, 1, NO_KEY % re.escape(pl.address))
    check(isinstance(pl.error, (EOFError, AuthenticationError)), "listener error", pl.error)


def case_send_no_key_large_first_message():
    # The challenge comes only after the first message has started: the listener drops the
    # too-long "answer" by closing mid-send, which must still read as a key wanted, not as a
    # size limit.
    challenge = b"#CHALLENGE#{sha256}" + b"n" * 40
    for family in (socket.AF_INET, socket.AF_UNIX):
        with tempfile.TemporaryDirectory() as d:
            srv = socket.socket(family)
            path = os.path.join(d, "sock")
            srv.bind(("127.0.0.1", 0) if family == socket.AF_INET else path)
            srv.listen(4)
            addr = "127.0.0.1:%d" % srv.getsockname()[1] if family == socket.AF_INET else path

            def listener():
                conn, _ = srv.accept()
                conn.settimeout(TIMEOUT)
                conn.recv(4096)  # the sender is now inside its first message
                conn.sendall(len(challenge).to_bytes(4, "big") + challenge)
                conn.close()  # with most of the message unread

            t = threading.Thread(target=listener, daemon=True)
            t.start()
            try:
                r = run("send", "--bytes", addr, "-", input=b"x" * (8 << 20) + b"\n")
            finally:
                t.join(TIMEOUT)
                srv.close()
            expect_fail(r, 1, NO_KEY % re.escape(addr))


def case_send_waits_for_close_bounded():
    # A keyless listener that neither closes nor sends: success once the bound runs out.
    srv, addr = silent_listener()
    try:
        t0 = time.monotonic()
        r = run("send", addr, "1", "--timeout", "0.3")
        check(r.returncode == 0 and r.stderr == b"", "send to a silent listener", r)
        check(time.monotonic() - t0 < 5, "the wait was not bounded")
        conn, _ = srv.accept()
        conn.settimeout(TIMEOUT)
        data = b""
        for _ in range(100):  # the message, then the half-close's end of file
            chunk = conn.recv(64)
            if not chunk:
                break
            data += chunk
        body = bytes(ForkingPickler.dumps(1))
        check(data == len(body).to_bytes(4, "big") + body, "what arrived", data)
        conn.close()
    finally:
        srv.close()


def case_send_nothing():
    # No VALUE: connect, authenticate, close; a way to check a listener is there.
    pl = PyListener(recv_all, authkey=b"secret")
    r = run("send", pl.address, "--authkey-env", KEY_ENV, env=key_env())
    check(r.returncode == 0 and r.stdout == b"", "send without values", r)
    check(pl.join() == [] and pl.error is None, "received", pl.result, pl.error)


def case_send_digests():
    for digest in ("sha256", "sha384", "sha3_256", "sha3_384", "md5", "legacy"):
        with Serve("--echo", "-q", "--authkey-env", KEY_ENV, "--digest", digest,
                   env=key_env()) as s:
            r = run("send", "--reply", "--digest", digest, "--authkey-env", KEY_ENV, s.address,
                    "'%s'" % digest, env=key_env())
            check(r.returncode == 0 and r.stdout == b"'%s'\n" % digest.encode(), digest, r)


# ------------------------------------------------------------------ serve


# Objects a Python client sends; serve must print exactly repr() of each.
PY_VALUES = [
    {"op": "add", "args": [1, 2.5]}, None, True, False, 0, -1, 2 ** 100, -(2 ** 64),
    0.1, -0.0, 1e16, 1.5e-300, float("inf"), float("-inf"), float("nan"),
    "", "héllo\n\t'\"\\ \x00 \x7f \u200b 🐍", b"", b"\x00\xff'\"", bytearray(b"ba"),
    [], (), (1,), {}, {1: "a", (2, 3): [4], None: b"x", 2.5: True},
    {3, 1, 2}, frozenset({"a"}), set(), frozenset(), [[[[[]]]]],
]


def case_serve_repr_of_python_values():
    with Serve() as s:
        with Client(s.py) as c:
            for v in PY_VALUES:
                c.send(v)
        lines = s.lines(len(PY_VALUES))
        for v, line in zip(PY_VALUES, lines):
            check(line == repr(v), "repr differs", v, line)


def case_serve_non_pickle_as_bytes():
    import datetime
    import decimal
    data = [b"hello", b"\x00\x01\xfe\xff", b"", b"line\nbreak", "é".encode()]
    with Serve() as s:
        with Client(s.py) as c:
            for d in data:
                c.send_bytes(d)
            # Pickles of what mpconn will not decode show as the pickle's bytes.
            for obj in (datetime.date(2024, 1, 2), decimal.Decimal("1.5")):
                c.send(obj)
        lines = s.lines(len(data) + 2)
        expected = [repr(d) for d in data] + [
            repr(bytes(ForkingPickler.dumps(o))) for o in
            (datetime.date(2024, 1, 2), decimal.Decimal("1.5"))]
        check(lines == expected, "bytes lines", lines, expected)


def case_serve_format_json():
    objs = [{"a": [1, 2.5, None, True]}, "é\n", [1, (2, 3)], 10 ** 30]
    with Serve("--format", "json") as s:
        with Client(s.py) as c:
            for o in objs:
                c.send(o)
            c.send_bytes(b"\x00raw")
        lines = s.lines(len(objs) + 1)
        check(lines[:-1] == [json.dumps(o) for o in objs], "json lines", lines)
        check(json.loads(lines[-1]) == {"$bytes": base64.b64encode(b"\x00raw").decode()},
              "json of a non-pickle message", lines[-1])


# x = (x, x) nested 32 deep, from []: 68 bytes that print as 2^32 "[]".
BOMB = b"\x80\x02]" + b"2\x86" * 32 + b"."
CUT = " ...[cut: longer than the --max-print limit]"


def case_serve_print_limit():
    """A value that expands past --max-print prints cut there, with a marker."""
    with Serve() as s:
        with Client(s.py) as c:
            c.send_bytes(BOMB)
            c.send([1, 2])
        s.wait_for("out", rb"\n\[1, 2\]\n")  # lines() would scan a 1 MiB line per try
        lines = s.buf["out"].decode().split("\n")
        check(len(lines[0]) == (1 << 20) + len(CUT) and lines[0].endswith(CUT),
              "default cut at 1 MiB", len(lines[0]), lines[0][-80:])
        check(lines[0].startswith("(" * 32 + "[], []), ("), "cut text starts as repr",
              lines[0][:80])
        check(lines[1] == "[1, 2]", "next message", lines[1])
    with Serve("--max-print", "100", "--format", "json") as s:
        with Client(s.py) as c:
            c.send_bytes(BOMB)
            c.send("é" * 60)
        lines = s.lines(2)
        x = []
        for _ in range(10):
            x = (x, x)
        check(lines[0] == ("[" * 22 + json.dumps(x))[:100] + CUT, "json cut at 100 bytes", lines[0])
        check(lines[1] == json.dumps("é" * 60)[:100] + CUT, "a str cut", lines[1])
    with Serve("--max-print", "0") as s:
        with Client(s.py) as c:
            big = ["x" * 1000] * 2000
            c.send(big)
        s.wait_for("out", rb"'\]\n")
        check(s.buf["out"].decode() == repr(big) + "\n", "0: no limit")


def case_serve_int_digit_limit():
    """Ints over 4300 digits print as CPython refuses them; --max-int-digits moves it."""
    if hasattr(sys, "set_int_max_str_digits"):
        sys.set_int_max_str_digits(0)
    big = 10 ** 5000
    with Serve() as s:
        with Client(s.py) as c:
            c.send(big)
        line = s.lines(1)[0]
        check(line == repr(bytes(ForkingPickler.dumps(big))), "shown as bytes", line[:80])
        s.wait_for("err", rb"Exceeds the limit \(4300 digits\).*at least 5000 digits")
    for arg in ("5001", "0"):
        with Serve("--max-int-digits", arg) as s:
            with Client(s.py) as c:
                c.send(big)
            check(s.lines(1)[0] == str(big), "printed with --max-int-digits " + arg)
    r = run("send", "/nonexistent/x", "1" * 4301)
    expect_fail(r, 2, r"bad literal in VALUE 1: column 1: Exceeds the limit \(4300 digits\)")
    r = run("serve", "--max-int-digits", "639")
    expect_fail(r, 2, r"--max-int-digits: '639'")


def case_serve_format_hex():
    with Serve("--format", "hex") as s:
        with Client(s.py) as c:
            c.send_bytes(b"\x00\x01abc")
            c.send({"k": 1})
            c.send_bytes(b"")
        lines = s.lines(3)
        check(lines == ["0001616263", bytes(ForkingPickler.dumps({"k": 1})).hex(), ""],
              "hex lines", lines)


def echo_round(address, authkey=None, big=True):
    """A Python client has objects and bytes echoed, unchanged."""
    with Client(address, authkey=authkey) as c:
        for v in PY_VALUES[:-3] + ([{"x": list(range(1000))}] if big else []):
            c.send(v)
            back = c.recv()
            check(same(back, v) or (v != v and back != back), "echo of object", v, back)
        for data in (b"", b"raw \x00 bytes") + ((os.urandom(1 << 20),) if big else ()):
            c.send_bytes(data)
            check(c.recv_bytes() == data, "echo of bytes", len(data))


def case_serve_echo():
    with Serve("--echo", "-q") as s:
        echo_round(s.py)
        s.stop()
        check(s.p.returncode == 0, "exit status", s.err())


def case_serve_echo_authkey():
    with tempfile.TemporaryDirectory() as d:
        keyfile = os.path.join(d, "key")
        with open(keyfile, "wb") as f:
            f.write(b"file key")
        with Serve("--echo", "-q", "--authkey-file", keyfile) as s:
            echo_round(s.py, authkey=b"file key")
        with Serve("--echo", "-q", "--authkey-env", KEY_ENV, env=key_env("env key")) as s:
            echo_round(s.py, authkey=b"env key")
            # mpconn on both ends.
            r = run("send", "--reply", "--authkey-env", KEY_ENV, s.address, "[1, 2]",
                    env=key_env("env key"))
            check(r.returncode == 0 and r.stdout == b"[1, 2]\n", "mpconn send --reply", r)


def refuses_wrong_key(address):
    try:
        Client(address, authkey=b"wrong")
        raise AssertionError("a wrong key was accepted")
    except AuthenticationError:
        pass


def case_serve_wrong_key_keeps_serving():
    with Serve("--echo", "-q", "--authkey-env", KEY_ENV, env=key_env("right")) as s:
        refuses_wrong_key(s.py)
        s.wait_for("err", rb"mpconn: authentication of peer pid \d+ uid \d+ on .* failed")
        r = run("send", s.address, "1", "--authkey-env", KEY_ENV, env=key_env("wrong too"))
        expect_fail(r, 1, r"authentication with .* failed")
        echo_round(s.py, authkey=b"right")
        check(s.p.poll() is None, "the server stopped")


def case_serve_no_legacy_md5():
    with Serve("--echo", "-q", "--authkey-env", KEY_ENV, "--no-legacy-md5", env=key_env()) as s:
        r = run("send", "--reply", s.address, "7", "--authkey-env", KEY_ENV, env=key_env())
        check(r.returncode == 0 and r.stdout == b"7\n", "sha256 client", r)
        if LEGACY_PYTHON:
            try:
                Client(s.py, authkey=b"secret")
                raise AssertionError("a legacy MD5 answer was accepted")
            except AuthenticationError:
                pass
            s.wait_for("err", rb"authentication of peer pid \d+ uid \d+ on .* failed")
        else:
            echo_round(s.py, authkey=b"secret")
        check(s.p.poll() is None, "the server stopped")


def case_serve_count():
    with Serve("--count", "2") as s:
        for i in range(2):
            with Client(s.py) as c:
                c.send(i)
        check(s.wait() == 0, "exit status after --count", s.err())
        check(s.buf["out"] == b"0\n1\n", "output", s.buf["out"])


def signal_case(sig, *kind):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "sock")
        with Serve(*kind, address=path) as s:
            check(s.address == path, "address printed", s.address)
            check(stat.S_ISSOCK(os.stat(path).st_mode), "no socket file")
            with Client(path) as c:  # a client still connected
                c.send("hi")
                s.lines(1)
                check(s.stop(sig) == 0, "exit status", s.err())
            check(not os.path.exists(path), "socket file left behind")
    # The temporary socket of an address-less serve goes too.
    with Serve(*kind) as s:
        check(os.path.exists(s.address), "temporary socket", s.address)
        check(s.stop(sig) == 0, "exit status", s.err())
        check(not os.path.exists(s.address), "temporary socket left behind")


def case_serve_sigint():
    signal_case(signal.SIGINT)


def case_serve_sigterm():
    signal_case(signal.SIGTERM)


def case_serve_port0():
    with Serve(address="127.0.0.1:0") as s:
        m = re.fullmatch(r"127\.0\.0\.1:(\d+)", s.address)
        check(m and int(m.group(1)) != 0, "real port printed", s.address)
        with Client(("127.0.0.1", int(m.group(1)))) as c:
            c.send("port")
        check(s.lines(1) == ["'port'"], "message", s.buf)


def case_serve_ipv6():
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        print("no IPv6 loopback; skipped")
        return
    with Serve("--echo", "-q", address="[::1]:0") as s:
        check(re.fullmatch(r"\[::1\]:\d+", s.address), "v6 address", s.address)
        r = run("send", "--reply", s.address, "'v6'")
        check(r.stdout == b"'v6'\n", "v6 echo", r)
    with Serve("--echo", "-q", address="udp:[::1]:0") as s:
        check(re.fullmatch(r"udp:\[::1\]:\d+", s.address), "v6 datagram address", s.address)
        r = run("send", "--bytes", "--reply", s.address, "v6")
        check(r.stdout == b"b'v6'\n", "v6 datagram echo", r)


def case_serve_abstract():
    if not sys.platform.startswith("linux"):
        return
    name = "@mpconn-cli-test-%d" % os.getpid()
    with Serve("--echo", "-q", address=name) as s:
        check(s.address == name, "abstract address", s.address)
        with Client("\0" + name[1:]) as c:
            c.send(1)
            check(c.recv() == 1, "abstract echo")


def case_serve_mode():
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "sock")
        with Serve("--mode", "600", address=path):
            check(stat.S_IMODE(os.stat(path).st_mode) == 0o600, "mode",
                  oct(os.stat(path).st_mode))


def case_serve_max_message():
    with Serve("--echo", "-q", "--max-message", "100") as s:
        with Client(s.py) as c:
            c.send_bytes(b"x" * 100)
            check(c.recv_bytes() == b"x" * 100, "a message at the limit")
            c.send_bytes(b"x" * 101)
            try:
                c.recv_bytes()
                raise AssertionError("a message over the limit was echoed")
            except (EOFError, ConnectionResetError):
                pass
        # The async connection knows only that the header claims more than the limit.
        s.wait_for("err", rb"bad message length: more than 100 bytes \(--max-message\)")
        echo_round(s.py, big=False)  # still serving
    # The default limit is 64 MiB: a header claiming more is refused at once.
    with Serve("-q") as s:
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(TIMEOUT)
        sock.connect(s.address)
        sock.sendall((64 * 1024 * 1024 + 1).to_bytes(4, "big"))
        s.wait_for("err", rb"bad message length: more than 67108864 bytes")
        check(sock.recv(1) == b"", "connection not closed")
        sock.close()


def case_send_over_listener_limit():
    # The listener refuses the header and closes with the rest unread: the sender's write
    # is cut short, and it says what probably happened.
    with Serve("-q", "--max-message", "1000") as s:
        big = b"x" * (8 << 20) + b"\n"
        r = run("send", "--bytes", s.address, "-", input=big)
        expect_fail(r, 1, r"cannot send message 1 \(8388608 bytes\) to %s: the listener closed "
                    r"the connection" % re.escape(s.address))
        check(b"--max-message" in r.stderr and b"size limit" in r.stderr, "hint", r.stderr)
        s.wait_for("err", rb"bad message length: more than 1000 bytes")
        # With --reply the same refusal is named too.
        r = run("send", "--bytes", "--reply", s.address, "-", input=big)
        expect_fail(r, 1, r"--max-message")


def case_serve_concurrent():
    with Serve("--echo", "-q") as s:
        # A client stuck in the middle of a message blocks nobody.
        stuck = socket.socket(socket.AF_UNIX)
        stuck.settimeout(TIMEOUT)
        stuck.connect(s.address)
        stuck.sendall(b"\x00\x00\x00\x10abc")
        clients = [Client(s.py) for _ in range(5)]
        for i, c in enumerate(clients):
            c.send(("hello", i))
        for i, c in reversed(list(enumerate(clients))):
            check(c.recv() == ("hello", i), "reply to client %d" % i)
        # The stuck one finishes its message and gets it back.
        stuck.sendall(b"d" * 13)
        data = b""
        for _ in range(100):
            if len(data) >= 20:
                break
            chunk = stuck.recv(64)
            if not chunk:
                break
            data += chunk
        check(data == b"\x00\x00\x00\x10abc" + b"d" * 13, "the split message", data)
        for c in clients:
            c.close()
        stuck.close()


def case_serve_broken_client():
    with Serve("--echo", "-q") as s:
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(TIMEOUT)
        sock.connect(s.address)
        sock.sendall(b"\x00\x00\x00\x0aabc")  # 10 announced, 3 sent, then gone
        sock.close()
        s.wait_for("err", rb"mpconn: .*end of file")
        echo_round(s.py)


def case_serve_idle_timeout():
    with Serve("--echo", "-q", "--timeout", "1") as s:
        with Client(s.py) as c:
            c.send(1)
            check(c.recv() == 1, "echo before the timeout")
            t0 = time.monotonic()
            check(c.poll(TIMEOUT), "the server did not close an idle client")
            try:
                c.recv()
                raise AssertionError("message from the server")
            except EOFError:
                pass
            check(time.monotonic() - t0 < 5, "closed too late")
        s.wait_for("err", rb"no message for 1 second; closing")
        echo_round(s.py)


def case_serve_address_errors():
    r = run("serve", "/nonexistent-dir/sock")
    expect_fail(r, 1, r"cannot bind /nonexistent-dir/sock")
    with Serve(address="127.0.0.1:0") as s:
        r = run("serve", s.address)
        expect_fail(r, 1, r"cannot bind %s" % re.escape(s.address))
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "sock")
            with Serve(address=path):
                r = run("serve", path)
                expect_fail(r, 1, r"address in use")
    r = run("serve", "127.0.0.1:99999")
    expect_fail(r, 2, r"out of range")


def case_serve_stdout_closed():
    stdout_closed_case()


def case_serve_threads_stdout_closed():
    stdout_closed_case("--kind", "threads")


def case_serve_fork_stdout_closed():
    # A child that cannot print tells the parent, which ends the server.
    stdout_closed_case("--kind", "fork")


def stdout_closed_case(*kind):
    # A reader that goes away is an error (exit 1), and the socket file still goes.
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "sock")
        with Serve(*kind, address=path) as s:
            s.sel.unregister(s.p.stdout)
            s.p.stdout.close()
            with Client(path) as c:
                c.send("nobody reads this")
            check(s.wait() == 1, "exit status", s.err())
            check("cannot write to standard output" in s.err(), "message", s.err())
            check(not os.path.exists(path), "socket file left behind")


def case_serve_verbose():
    with Serve("-v") as s:
        with Client(s.py) as c:
            c.send(1)
        s.wait_for("err", rb"connection from peer pid \d+ uid \d+")
        s.wait_for("err", rb"peer pid \d+ uid \d+ closed the connection")


# ------------------------------------------------- serve on the event loop


def within(seconds, fn, *args):
    """Runs fn(*args) in a thread; its result, or an AssertionError after seconds."""
    out = {}

    def body():
        try:
            out["value"] = fn(*args)
        except BaseException as e:  # re-raised below
            out["error"] = e
    t = threading.Thread(target=body, daemon=True)
    t.start()
    t.join(seconds)
    check(not t.is_alive(), "%s did not finish within %ss" % (fn.__name__, seconds))
    if "error" in out:
        raise out["error"]
    return out.get("value")


def recv_exactly(sock, n):
    data = b""
    for _ in range(10000):
        if len(data) >= n:
            break
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def vmrss(pid):
    """Resident memory of a process, in bytes."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS for %d" % pid)


def cpu_seconds(pid):
    """User plus system CPU time of a process."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def case_serve_terminator_echo():
    with Serve("--terminator", r"\r\n", "--echo", "--max-message", "16",
               address="127.0.0.1:0") as s:
        a = socket.create_connection(s.py, timeout=TIMEOUT)
        b = socket.create_connection(s.py, timeout=TIMEOUT)
        a.sendall(b"hello\r\n")
        check(recv_exactly(a, 7) == b"hello\r\n", "line echo")
        # A line split across writes, the terminator itself split too.
        for part in (b"wor", b"ld\r", b"\n"):
            a.sendall(part)
            time.sleep(0.05)
        check(recv_exactly(a, 7) == b"world\r\n", "split line echo")
        a.sendall(b"x\r\n\x00\xff'\r\n\r\n")  # three lines in one write, one empty
        check(recv_exactly(a, 10) == b"x\r\n\x00\xff'\r\n\r\n", "lines in one write")
        check(s.lines(5) == ["b'hello'", "b'world'", "b'x'", "b\"\\x00\\xff'\"", "b''"],
              "lines print as bytes", s.buf["out"])
        # A pickle is a line's bytes too, never decoded.
        b.sendall(pickle.dumps(1, protocol=2) + b"\r\n")
        check(s.lines(6)[5] == repr(pickle.dumps(1, protocol=2)), "a pickle line", s.buf["out"])
        # Past --max-message without a terminator: that client goes, the other stays.
        a.sendall(b"y" * 40)
        check(recv_exactly(a, 1) == b"", "an overlong line did not close its client")
        s.wait_for("err", rb"line longer than 16 bytes \(--max-message\)")
        recv_exactly(b, len(pickle.dumps(1, protocol=2)) + 2)
        b.sendall(b"still here\r\n")
        check(recv_exactly(b, 12) == b"still here\r\n", "the other client")
        a.close()
        b.close()
    # Other escapes; a terminator longer than one byte that is not a line end.
    with Serve("--terminator", r"\x00;", "--format", "hex", address="127.0.0.1:0") as s:
        with socket.create_connection(s.py, timeout=TIMEOUT) as c:
            c.sendall(b"ab\x00;\x00\x00;")
            check(s.lines(2) == ["6162", "00"], "hex lines", s.buf["out"])


def case_serve_max_clients():
    max_clients_case()


def max_clients_case(*kind):
    with Serve("--echo", "-q", "-v", "--max-clients", "2", *kind, address="127.0.0.1:0") as s:
        clients = [Client(s.py) for _ in range(5)]  # the backlog completes the connects
        for i, c in enumerate(clients):
            c.send(i)
        unserved, serving, done = list(range(5)), [], []

        def answered():
            for i in [i for i in unserved if clients[i].poll(0)]:
                check(clients[i].recv() == i, "echo of client %d" % i)
                unserved.remove(i)
                serving.append(i)
            check(len(serving) <= 2, "more than 2 clients served at once", serving)

        for _ in range(5):
            want = min(2, len(serving) + len(unserved))
            deadline = time.monotonic() + TIMEOUT
            while len(serving) < want and time.monotonic() < deadline:
                answered()
                time.sleep(0.01)
            check(len(serving) == want, "clients not served", serving, unserved, s.err())
            time.sleep(0.3)  # anyone let in past the limit would answer by now
            answered()
            i = serving.pop(0)
            clients[i].close()
            done.append(i)
        check(sorted(done) == list(range(5)) and not unserved, "not all served", done)
        # The server's own account agrees: never more than 2 open at once.
        for _ in range(100):
            if s.err().count("closed the connection") >= 5:
                break
            s.pump(0.1)
        now, most = 0, 0
        for line in s.err().splitlines():
            now += ("connection from" in line) - ("closed the connection" in line)
            most = max(most, now)
        check(most == 2, "connections open at once, by the server's log", most, s.err())
    # A handshake under way holds its slot: a silent peer keeps the next client waiting.
    with Serve("--echo", "-q", "--max-clients", "1", "--authkey-env", KEY_ENV, *kind,
               env=key_env(), address="127.0.0.1:0") as s:
        silent = socket.create_connection(s.py, timeout=TIMEOUT)
        check(len(silent.recv(1)) == 1, "no challenge for the first peer")
        done = {}

        def real():
            with Client(s.py, authkey=b"secret") as c:
                c.send("waited")
                done["echo"] = c.recv()
        t = threading.Thread(target=real, daemon=True)
        t.start()
        t.join(0.5)
        check(t.is_alive(), "a second client was served past --max-clients 1", done)
        silent.close()
        t.join(5)
        check(not t.is_alive() and done.get("echo") == "waited", "not served once the slot freed",
              done, s.err())


# ------------------------------------------------- serve --kind threads|fork


def kind_echo_case(kind):
    """Echo with an authkey from Python clients, several at once; values printed."""
    with Serve("--kind", kind, "--echo", "-q", "--authkey-env", KEY_ENV,
               env=key_env("kind key")) as s:
        errors = []

        def one():
            try:
                echo_round(s.py, authkey=b"kind key", big=False)
            except BaseException as e:  # reported below
                errors.append(e)
        threads = [threading.Thread(target=one, daemon=True) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
        check(not errors and not any(t.is_alive() for t in threads), "echo", errors, s.err())
        echo_round(s.py, authkey=b"kind key")  # 1 MiB too
        r = run("send", "--reply", "--authkey-env", KEY_ENV, s.address, "[1, 2]",
                env=key_env("kind key"))
        check(r.returncode == 0 and r.stdout == b"[1, 2]\n", "mpconn send --reply", r)
        refuses_wrong_key(s.py)
        s.wait_for("err", rb"mpconn: .*handshake")
        echo_round(s.py, authkey=b"kind key", big=False)
        check(s.stop() == 0, "exit status", s.err())
    # Printing, -v, --count: the same lines as the loop kind.
    with Serve("--kind", kind, "-v", "--count", "2") as s:
        for i in range(2):
            with Client(s.py) as c:
                c.send({"n": i})
                c.send_bytes(b"raw")
        check(s.wait() == 0, "exit status after --count", s.err())
        # Clients are served at once: one's lines may come between another's.
        check(sorted(s.buf["out"].split(b"\n")) == [b"", b"b'raw'", b"b'raw'", b"{'n': 0}",
                                                    b"{'n': 1}"], "output", s.buf["out"])
        check(s.err().count("connection from peer pid") == 2, "-v lines", s.err())
        check(s.err().count("closed the connection") == 2, "-v lines", s.err())


def kind_lines_case(kind):
    with Serve("--kind", kind, "--terminator", r"\r\n", "--echo", "--max-message", "16",
               address="127.0.0.1:0") as s:
        a = socket.create_connection(s.py, timeout=TIMEOUT)
        for part in (b"hel", b"lo\r", b"\nx\r\n"):
            a.sendall(part)
            time.sleep(0.05)
        check(recv_exactly(a, 10) == b"hello\r\nx\r\n", "line echo")
        check(s.lines(2) == ["b'hello'", "b'x'"], "lines print as bytes", s.buf["out"])
        a.sendall(b"y" * 40)
        check(recv_exactly(a, 1) == b"", "an overlong line did not close its client")
        s.wait_for("err", rb"line longer than 16 bytes \(--max-message\)")
        a.close()
        with socket.create_connection(s.py, timeout=TIMEOUT) as b:
            b.sendall(b"cut")
        s.wait_for("err", rb"got end of file inside a line")
    with Serve("--kind", kind, "--timeout", "0.3", "-v", address="127.0.0.1:0") as s:
        with socket.create_connection(s.py, timeout=TIMEOUT) as c:
            check(recv_exactly(c, 1) == b"", "a silent client was not closed")
        s.wait_for("err", rb"no message for 0.3 seconds; closing the connection")


def case_serve_threads_echo():
    kind_echo_case("threads")


def case_serve_fork_echo():
    kind_echo_case("fork")


def case_serve_threads_lines():
    kind_lines_case("threads")


def case_serve_fork_lines():
    kind_lines_case("fork")


def case_serve_threads_max_clients():
    max_clients_case("--kind", "threads")


def case_serve_fork_max_clients():
    max_clients_case("--kind", "fork")


def case_serve_threads_signals():
    signal_case(signal.SIGTERM, "--kind", "threads")
    signal_case(signal.SIGINT, "--kind", "threads")


def case_serve_fork_signals():
    signal_case(signal.SIGTERM, "--kind", "fork")
    signal_case(signal.SIGINT, "--kind", "fork")


def children_of(pid):
    """(pid, state) of every process whose parent is pid."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append((int(name), fields[0]))
    return out


def case_serve_fork_no_zombie():
    # Each client's child is reaped when it exits, not at the next connection.
    with Serve("--kind", "fork", "--echo", "-q") as s:
        held = Client(s.py)  # its child stays while the others come and go
        held.send(0)
        check(held.recv() == 0, "echo")
        for i in range(5):
            with Client(s.py) as c:
                c.send(i)
                check(c.recv() == i, "echo")
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            kids = children_of(s.p.pid)
            if len(kids) == 1:
                break
            time.sleep(0.02)
        check(kids and all(state != "Z" for _, state in kids) and len(kids) == 1,
              "children of the server", kids)
        held.close()
        while time.monotonic() < deadline and children_of(s.p.pid):
            time.sleep(0.02)
        check(children_of(s.p.pid) == [], "children left", children_of(s.p.pid))
        check(s.stop() == 0, "exit status", s.err())


def case_serve_kind_usage():
    for args, pattern in [
        (["--kind", "bogus"], r"--kind: 'bogus' is not one of loop, threads, fork"),
        (["--kind"], r"'--kind' needs an argument"),
        (["udp:127.0.0.1:0", "--kind", "fork"], r"datagram servers have no fork kind"),
        (["udp:127.0.0.1:0", "--authkey-env", KEY_ENV], r"datagrams have no handshake"),
        (["unixgram:@x", "--terminator", "x"], r"--terminator applies to stream"),
        (["udp:127.0.0.1:0", "--timeout", "1"], r"--timeout applies to stream"),
        (["udp:127.0.0.1:0", "--max-clients", "2"], r"--max-clients caps the threads"),
        (["udp:127.0.0.1:0", "--mode", "600"], r"--mode applies to a Unix socket file"),
        (["unixgram:@x", "--mode", "600"], r"abstract socket"),
        (["udp:127.0.0.1", "--echo"], r"missing port"),
        (["udp:[::1:80"], r"expected \[V6\]:PORT"),
    ]:
        r = run("serve", *args, env=key_env())
        expect_fail(r, 2, pattern)
        check(r.stdout == b"", "stdout of a usage error", args, r.stdout)
    for args, pattern in [
        (["udp:127.0.0.1:9", "--bytes", "x", "--authkey-env", KEY_ENV],
         r"datagrams have no handshake"),
        (["udp:127.0.0.1", "--bytes", "x"], r"missing port"),
        (["udp:127.0.0.1:9", "--bytes", "x", "--count", "0"], r"--count: '0'"),
    ]:
        r = run("send", *args, env=key_env())
        expect_fail(r, 2, pattern)


# -------------------------------------------------------------- datagrams


def dgram_echo_case(address, *kind):
    with Serve("--echo", "-v", "--max-message", "16", *kind, address=address) as s:
        check(s.address.startswith(address.split(":")[0] + ":"), "address", s.address)
        if s.address.startswith("udp:"):
            host, port = s.address[4:].rsplit(":", 1)
            peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            peer.bind(("127.0.0.1", 0))
            target = (host, int(port))
            name = "127.0.0.1:%d" % peer.getsockname()[1]
        else:
            d = tempfile.mkdtemp()
            peer = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            name = os.path.join(d, "peer")
            peer.bind(name)
            target = s.py
        peer.settimeout(TIMEOUT)
        peer.sendto(b"hello", target)
        check(peer.recvfrom(100)[0] == b"hello", "echo")
        peer.sendto(b"\x00\xff'", target)
        check(peer.recvfrom(100)[0] == b"\x00\xff'", "echo of odd bytes")
        peer.sendto(pickle.dumps(1), target)
        check(peer.recvfrom(100)[0] == pickle.dumps(1), "echo of a pickle")
        check(s.lines(3) == ["b'hello'", "b\"\\x00\\xff'\"", repr(pickle.dumps(1))],
              "datagrams print as bytes", s.buf["out"])
        # A Unix sender's credentials come with its name.
        who = "" if s.address.startswith("udp:") else r" \(pid %d uid %d\)" % (os.getpid(),
                                                                             os.getuid())
        s.wait_for("err", (r"datagram of 5 bytes from %s%s\n" % (re.escape(name), who)).encode())
        # Longer than --max-message: reported with its length, never printed cut.
        peer.sendto(b"y" * 40, target)
        s.wait_for("err", rb"datagram of 40 bytes from .* is longer than the 16-byte buffer")
        peer.sendto(b"after", target)
        check(peer.recvfrom(100)[0] == b"after", "served after a long one")
        check(s.lines(4)[3] == "b'after'", "no line for the long one", s.buf["out"])
        # mpconn on both ends (a unixgram sender binds a name of its own).
        r = run("send", "--bytes", "--reply", s.address, "one", "two", "--count", "2")
        check(r.returncode == 0 and r.stdout == b"b'one'\nb'two'\nb'one'\nb'two'\n",
              "mpconn send --reply", r)
        peer.close()
        check(s.stop() == 0, "exit status", s.err())
    if not s.address.startswith("udp:"):
        os.unlink(name)
        os.rmdir(d)


def case_serve_udp():
    dgram_echo_case("udp:127.0.0.1:0")
    dgram_echo_case("udp:127.0.0.1:0", "--kind", "threads", "--max-clients", "2")


def case_serve_unixgram():
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "dgram")
        dgram_echo_case("unixgram:" + path)
        check(not os.path.exists(path), "socket file left behind")
    dgram_echo_case("unixgram:@mpconn-cli-dgram-%d" % os.getpid(), "--kind", "threads")


def case_serve_unixgram_unbound_sender():
    # A sender bound to no name cannot be answered: said, and the server goes on.
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "dgram")
        with Serve("--echo", "-v", address="unixgram:" + path) as s:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as u:
                u.sendto(b"anon", path)
            s.wait_for("err", rb"datagram of 4 bytes from an unbound sender \(pid %d uid %d\)"
                       % (os.getpid(), os.getuid()))
            s.wait_for("err", rb"cannot be answered")
            check(s.lines(1) == ["b'anon'"], "printed", s.buf["out"])
            r = run("send", "--bytes", "--reply", s.address, "named")
            check(r.stdout == b"b'named'\n", "echo after", r)


def case_serve_unixgram_mode():
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "dgram")
        old = os.umask(0o077)
        try:
            for mode in ("600", "666"):
                with Serve("--mode", mode, address="unixgram:" + path) as s:
                    check(stat.S_IMODE(os.stat(path).st_mode) == int(mode, 8), "mode",
                          oct(os.stat(path).st_mode))
                    check(s.stop() == 0, "exit status", s.err())
        finally:
            os.umask(old)


def case_serve_dgram_count_and_signals():
    with Serve("--count", "2", address="udp:127.0.0.1:0") as s:
        r = run("send", "--bytes", s.address, "a", "b")
        check(r.returncode == 0, "send", r)
        check(s.wait() == 0, "exit status after --count", s.err())
        check(s.buf["out"] == b"b'a'\nb'b'\n", "output", s.buf["out"])
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "dgram")
        for sig in (signal.SIGTERM, signal.SIGINT):
            with Serve(address="unixgram:" + path) as s:
                check(s.stop(sig) == 0, "exit status", s.err())
                check(not os.path.exists(path), "socket file left behind")


def case_send_udp_to_python():
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.settimeout(TIMEOUT)
    address = "udp:127.0.0.1:%d" % peer.getsockname()[1]
    got = []

    def answer(n):
        for _ in range(n):
            data, sender = peer.recvfrom(65536)
            got.append(data)
            peer.sendto(data.upper(), sender)
    t = threading.Thread(target=answer, args=(3,), daemon=True)
    t.start()
    r = run("send", "--bytes", "--reply", address, "abc", "--count", "3")
    t.join(TIMEOUT)
    check(r.returncode == 0 and r.stdout == b"b'ABC'\n" * 3, "replies", r)
    check(got == [b"abc"] * 3, "datagrams", got)
    # Pickled values are datagrams too.
    r = run("send", address, "{'k': 1}")
    check(r.returncode == 0, "send", r)
    check(peer.recvfrom(65536)[0] == pickle.dumps({"k": 1}, protocol=4), "pickled datagram")
    # No answer within --timeout.
    t0 = time.monotonic()
    r = run("send", "--bytes", "--reply", "--timeout", "0.3", address, "silence")
    expect_fail(r, 1, r"no reply from udp:127.0.0.1:\d+ to message 1 within 0.3 seconds")
    check(time.monotonic() - t0 < TIMEOUT, "the wait was not bounded")
    peer.close()
    # Nobody there: a Unix path refuses at once.
    r = run("send", "--bytes", "unixgram:/nonexistent/mpconn-dgram", "x")
    expect_fail(r, 1, r"nobody takes datagrams at unixgram:/nonexistent/mpconn-dgram")


def case_serve_silent_flood():
    # Silent peers in their handshake lock nobody out: a real client is served at once.
    with Serve("--echo", "-q", "--authkey-env", KEY_ENV, env=key_env(),
               address="127.0.0.1:0") as s:
        silent = []
        try:
            for _ in range(300):
                silent.append(socket.create_connection(s.py, timeout=TIMEOUT))

            def real():
                with Client(s.py, authkey=b"secret") as c:
                    c.send(["real", 1])
                    return c.recv()
            check(within(5, real) == ["real", 1], "the real client's echo")
            check(s.p.poll() is None, "the server stopped")
        finally:
            for sock in silent:
                sock.close()


def case_serve_rejects_rate_limited():
    # Forty failed handshakes in a burst print a few lines and a count, not forty lines.
    with Serve("--authkey-env", KEY_ENV, env=key_env("right"), address="127.0.0.1:0") as s:
        for _ in range(40):
            try:
                Client(s.py, authkey=b"wrong")
                raise AssertionError("a wrong key was accepted")
            except AuthenticationError:
                pass
        s.wait_for("err", rb"\(\d+ more such messages in the last 1 s not shown\)")
        lines = s.err().splitlines()[1:]
        check(2 <= len(lines) <= 8, "%d lines for 40 rejects" % len(lines), s.err())
        shown = sum("authentication of" in l for l in lines)
        hidden = sum(int(m) for m in re.findall(r"\((\d+) more such", s.err()))
        check(shown + hidden == 40, "rejects shown and counted", shown, hidden, s.err())
        with Client(s.py, authkey=b"right") as c:
            c.send("still served")
        s.wait_for("out", rb"'still served'\n")


def case_serve_echo_backpressure():
    # A sender that never reads its echoes is not read from: it costs bounded memory, and
    # another client's round trip goes through meanwhile.
    with Serve("--echo", "-q", address="127.0.0.1:0") as s:
        rss0 = vmrss(s.p.pid)
        hog = socket.create_connection(s.py, timeout=TIMEOUT)
        mib = b"m" * (1 << 20)
        progress = {"sent": 0}

        def flood():
            try:
                hog.sendall((8 << 20).to_bytes(4, "big") + mib * 8)
                progress["sent"] += 8
                for _ in range(120):
                    hog.sendall((1 << 20).to_bytes(4, "big") + mib)
                    progress["sent"] += 1
            except OSError:
                pass
        t = threading.Thread(target=flood, daemon=True)
        t.start()
        try:
            time.sleep(1)  # the flood fills what the server lets it

            def round_trip():
                with Client(s.py) as c:
                    c.send_bytes(b"x" * 1000)
                    return c.recv_bytes()
            check(within(5, round_trip) == b"x" * 1000, "the other client's echo")
            grew = vmrss(s.p.pid) - rss0
            check(grew < 64 << 20, "the server's memory grew by %d MiB" % (grew >> 20))
            check(t.is_alive() and progress["sent"] < 128, "the whole flood was taken in",
                  progress)
        finally:
            hog.shutdown(socket.SHUT_RDWR)
            t.join(TIMEOUT)
            hog.close()
        check(s.p.poll() is None, "the server stopped")


def case_serve_emfile():
    # Out of descriptors: the server neither spins nor floods standard error, and serves
    # again once descriptors are free.
    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    with Serve(address="127.0.0.1:0", preexec_fn=low_limit) as s:
        conns = []
        try:
            for _ in range(100):
                conns.append(socket.create_connection(s.py, timeout=TIMEOUT))
            cpu0 = cpu_seconds(s.p.pid)
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                s.pump(0.1)
            used = cpu_seconds(s.p.pid) - cpu0
            check(used < 0.5, "the server used %.2f s of CPU in 2 s" % used, s.err())
        finally:
            for c in conns:
                c.close()
        check(re.search(r"out of file descriptors", s.err()), "EMFILE not reported", s.err())
        lines = s.err().splitlines()
        check(len(lines) <= 8, "%d lines on stderr" % len(lines), s.err())

        def served():
            with Client(s.py) as c:
                c.send("after")
        for _ in range(50):  # the server sees the closes in its own time
            try:
                within(5, served)
                break
            except (ConnectionError, EOFError, OSError):
                time.sleep(0.1)
        s.wait_for("out", rb"'after'\n")
        check(len(s.err().splitlines()) <= 8, "stderr after the closes", s.err())


# ------------------------------------------------------------------ bench


def case_bench():
    r = run("bench", "--seconds", "0.05", "--sizes", "64,1k", "--kind",
            "rtt,throughput,handshake", timeout=60)
    check(r.returncode == 0, "bench failed", r)
    lines = r.stdout.decode().splitlines()
    # How it ran comes first: unpinned here, on the CPUs this process may use.
    check(re.fullmatch(r"# unpinned: both processes may run on CPUs [0-9,-]+ \(--cpu N .*\)",
                       lines[0]), "placement line", lines[0])
    rows = [l.split() for l in lines[1:]]
    check(rows[0] == ["kind", "transport", "size", "messages/s", "MB/s"], "header", rows[0])
    kinds = {(row[0], row[1]) for row in rows[1:]}
    check(kinds == {(k, t) for k in ("rtt", "throughput", "handshake")
                    for t in ("socketpair", "unix", "tcp")} - {("handshake", "socketpair")},
          "rows", rows)
    check(all(float(row[3]) > 0 for row in rows[1:]), "rates", rows)


def case_bench_cpu():
    cpu = sorted(os.sched_getaffinity(0))[-1]
    r = run("bench", "--cpu", str(cpu), "--seconds", "0.05", "--sizes", "64", "--transport",
            "socketpair", timeout=60)
    check(r.returncode == 0, "bench --cpu failed", r)
    lines = r.stdout.decode().splitlines()
    check(lines[0] == "# pinned: both processes on CPU %d" % cpu, "placement line", lines)
    check(lines[1].split()[0] == "kind" and len(lines) == 3, "table", lines)


# ------------------------------------------------------------------- demo


def case_demo():
    script = os.path.join(SOURCE, "examples", "demo_cli.sh")
    r = subprocess.run(["sh", script, BUILD], capture_output=True, timeout=60)
    check(r.returncode == 0, "demo failed", r.stdout.decode(), r.stderr.decode())


def main():
    names = sorted(n[5:] for n in globals() if n.startswith("case_"))
    if len(sys.argv) != 2 or sys.argv[1] not in names:
        print("usage: test_cli.py CASE\ncases: " + " ".join(names), file=sys.stderr)
        return 2
    if not os.access(MPCONN, os.X_OK):
        print("no mpconn binary at " + MPCONN, file=sys.stderr)
        return 1
    globals()["case_" + sys.argv[1]]()
    print("ok " + sys.argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
