#!/usr/bin/env python3
"""The programs in examples/, run as make demo runs them, and against CPython where they talk
to it.

Each `def case_NAME()` is its own CTest entry (`cli.test_examples.NAME`), run from the build
directory with MPCONN_BUILD and MPCONN_SOURCE set. Every subprocess has a timeout.
"""
import array
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
from multiprocessing.connection import AuthenticationError, Client, Listener

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import casemain  # noqa: E402
from casemain import Failure, check  # noqa: E402

BUILD = os.path.abspath(os.environ.get("MPCONN_BUILD", os.getcwd()))
SOURCE = os.path.abspath(
    os.environ.get("MPCONN_SOURCE", os.path.join(os.path.dirname(__file__), "..", "..")))
EXAMPLES = os.path.join(BUILD, "examples")
TIMEOUT = 20  # seconds for any one program or wait
KEY = b"secret password"  # the examples' authkey


def example(name):
    return os.path.join(EXAMPLES, name)


def run(*args, env=None, status=0):
    """Runs a program to completion and returns its standard output (text)."""
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=TIMEOUT, env=env)
    check(r.returncode == status, f"{' '.join(args)}: exit {r.returncode}, wanted {status}",
          r.stdout, r.stderr)
    return r.stdout


def lines(text):
    return text.strip().splitlines()


class Server:
    """A server program in the background; .address once it says "listening on"."""

    def __init__(self, *args, env=None):
        self.proc = subprocess.Popen(list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env)
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        ready = sel.select(TIMEOUT)
        sel.close()
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("listening on "):
            self.close()
            raise Failure(f"{args[0]} did not start: {line!r} {self.proc.stderr.read()}")
        self.address = line[len("listening on "):].strip()

    def finish(self):
        """Waits for the server to exit by itself; returns (status, stdout, stderr)."""
        out, err = self.proc.communicate(timeout=TIMEOUT)
        return self.proc.returncode, out, err

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=TIMEOUT)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def py_address(addr):
    if "/" in addr:
        return addr
    host, _, port = addr.rpartition(":")
    return (host, int(port))


RECORD = [{"name": "sensor-1", "readings": [20.5, 21.0, 19.75], "ok": True}]
CLIENT_LINES = [
    "received [record] for sensor-1, ok=True, 3 readings: 20.5 21 19.75",
    "received bytes hello",
    "received 8 bytes into int32[5]: 42 1729 0 0 0",
]


# -------------------------------------------------------------------- cases


def case_echo():
    with Server(example("echo_listener"), "127.0.0.1:0", "1") as s:
        out = run(example("echo_client"), s.address)
        status, sout, serr = s.finish()
    check(lines(out)[:2] == ["sent 'hello', got back 'hello'", "sent 'world', got back 'world'"],
          out)
    check(len(lines(out)) == 4, out)
    check(status == 0 and sout.count("echoing") == 4 and "connection closed" in sout, sout, serr)


def case_unix_echo():
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "echo.sock")
        with Server(example("unix_echo_server"), path, "1") as s:
            check(oct(os.stat(path).st_mode & 0o777) == "0o600", "socket mode is not 0600")
            out = run(example("unix_echo_client"), path, "alpha", "beta")
            status, sout, serr = s.finish()
    check(lines(out) == ["alpha", "beta"], out)
    check(status == 0 and "client pid " in sout and "echo: beta" in sout, sout, serr)


def case_pipe_fork():
    out = lines(run(example("pipe_fork")))
    check(out[1] == "parent sent 2, child answered 4" and out[-1] == "child exited with 0", out)


def case_objects():
    # object_listener and object_client: the record boxed in a list, bytes, bytes into an array.
    with tempfile.TemporaryDirectory() as d:
        with Server(example("object_listener"), os.path.join(d, "obj.sock")) as s:
            out = run(example("object_client"), s.address)
            status, sout, serr = s.finish()
    check(lines(out) == CLIENT_LINES, out)
    check(status == 0, sout, serr)
    check(f"sending {RECORD!r}" in sout, sout)
    check("client answered (thanks, 3)" in sout, sout)


def case_objects_python_client():
    # CPython's Client receives what object_listener sends as the same Python values.
    with Server(example("object_listener"), "127.0.0.1:0") as s:
        with Client(py_address(s.address), authkey=KEY) as c:
            check(c.recv() == RECORD, "record differs")
            check(c.recv_bytes() == b"hello", "bytes differ")
            buf = array.array("i", [0] * 5)
            n = c.recv_bytes_into(buf)
            check(n == 8 and list(buf) == [42, 1729, 0, 0, 0], n, buf)
            c.send(("thanks", 3))
        status, sout, serr = s.finish()
    check(status == 0 and "client answered (thanks, 3)" in sout, sout, serr)


def case_objects_python_listener():
    # object_client against CPython's Listener sending the same three messages.
    with Listener(("127.0.0.1", 0), authkey=KEY) as listener:
        addr = "%s:%d" % listener.address
        proc = subprocess.Popen([example("object_client"), addr], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            with listener.accept() as c:
                c.send(RECORD)
                c.send_bytes(b"hello")
                c.send_bytes(array.array("i", [42, 1729]))
                check(c.poll(TIMEOUT), "no answer from object_client")
                answer = c.recv()
            out, err = proc.communicate(timeout=TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    check(answer == ("thanks", 3), answer)
    check(proc.returncode == 0 and lines(out) == CLIENT_LINES, out, err)


def case_wait_server():
    out = run(example("wait_server"), "3")
    got = [l for l in lines(out) if l.startswith("received ")]
    for client in range(3):
        mine = [l for l in got if l.startswith(f"received 'client {client},")]
        check(mine == [f"received 'client {client}, message {i} of 3'" for i in (1, 2, 3)],
              "messages of one client missing or out of order", out)
    check(lines(out)[-1] == "served 3 clients, 9 messages", out)
    check(out.count("accepted connection") == 3 and out.count("a connection closed") == 3, out)


def case_fd_passing():
    out = lines(run(example("fd_passing")))
    check(out == [
        "parent: the child read 43 bytes: written by the parent before passing the fd",
        "parent: the child read from its pipe: written by the parent into the child's pipe",
        "child exited with 0",
    ], out)


def manager_client(python):
    """manager_client against examples/manager_server.py run by the given python."""
    env = dict(os.environ, MANAGER_AUTHKEY="manager-test-key")
    with tempfile.TemporaryDirectory() as d:
        script = os.path.join(SOURCE, "examples", "manager_server.py")
        with Server(python, script, os.path.join(d, "manager.sock"), env=env) as s:
            out = run(example("manager_client"), s.address, env=env)
            run(example("manager_client"), s.address, status=1,
                env=dict(env, MANAGER_AUTHKEY="wrong key"))
    out = lines(out)
    check(re.fullmatch(r"created a shared dict: id '[0-9a-f]+', \d+ methods exposed", out[0]), out)
    # The KeyError arrives pickled, as an instance of a class: refused, and the line says so.
    check(re.fullmatch(r"d\['missing'\] raised in the manager: __getitem__: .*refused.*KeyError",
                       out[4]), out)
    check(out[1:4] + out[5:] == [
        "len(d) = 4",
        "d.get('greeting') = 'hello from C'",
        "d.copy() = {'greeting': 'hello from C', 'n': 3, 'pi': 3.25, 'list': [1, 2, 3]}",
        "the connection still works: d.pop('n') = 3",
        "shared objects in the manager: 1",
        "after decref: 0",
    ], out)


def case_manager_client():
    manager_client(sys.executable)


def case_manager_client_python313():
    # The managers' protocol as CPython 3.13 speaks it ({sha256} handshake), when pyenv has it.
    try:
        prefix = subprocess.run(["pyenv", "prefix", "3.13.0"], capture_output=True, text=True,
                                timeout=TIMEOUT).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        prefix = ""
    python = os.path.join(prefix, "bin", "python")
    if not prefix or not os.access(python, os.X_OK):
        print("skipped: no CPython 3.13.0 through pyenv")
        return
    manager_client(python)


def echo_server_case(name, key=None):
    """One of the async echo servers: two Python clients in turn, then it exits by itself."""
    path = example(name)
    if not os.access(path, os.X_OK):
        print(f"skipped: {name} not built (pkg-config did not find its library)")
        return
    env = dict(os.environ, ECHO_AUTHKEY=key.decode()) if key else None
    with Server(path, "127.0.0.1:0", "2", env=env) as s:
        if key:
            try:
                Client(py_address(s.address), authkey=b"wrong " + key)
                raise Failure("a wrong key was accepted")
            except AuthenticationError:
                pass
        for _ in range(2):
            with Client(py_address(s.address), authkey=key) as c:
                for v in ([1, "two", b"3"], {"k": None}):
                    c.send(v)
                    check(c.recv() == v, "echo of", v)
                big = os.urandom(1 << 20)
                c.send_bytes(big)
                check(c.recv_bytes() == big, "echo of 1 MiB")
        status, out, err = s.finish()
    check(status == 0, f"{name} exit status {status}", out, err)
    check(out.count("accepted a connection") == 2, out)
    check(out.count("connection closed by the client") == 2, out)
    check("echoing a message of 1048576 bytes" in out, out)


def case_async_echo_server():
    echo_server_case("async_echo_server")


def case_async_echo_server_authkey():
    echo_server_case("async_echo_server", key=KEY)


def case_uv_echo_server():
    echo_server_case("uv_echo_server", key=KEY)


def case_uv_server():
    # mpconn_server on the program's own libuv loop: after the last client
    # the server shuts down and uv_run returns by itself.
    echo_server_case("uv_server", key=KEY)


def case_uv_server_sigterm():
    path = example("uv_server")
    if not os.access(path, os.X_OK):
        print("skipped: uv_server not built (pkg-config did not find libuv)")
        return
    with Server(path, "127.0.0.1:0") as s:
        with Client(py_address(s.address)) as c:
            c.send("before the signal")
            check(c.recv() == "before the signal", "echo")
            s.proc.send_signal(signal.SIGTERM)
            try:
                c.recv()
                raise Failure("the connection outlived the shutdown")
            except EOFError:
                pass
        status, out, err = s.finish()
    check(status == 0, f"uv_server exit status {status}", out, err)
    check("signal 15: shutting down" in out and "the loop ran out of work" in out, out)


def case_event_echo_server():
    echo_server_case("event_echo_server", key=KEY)


class LineClient:
    """A client of chat_server, as nc would be: raw lines over TCP."""

    def __init__(self, address):
        self.sock = socket.create_connection(py_address(address), timeout=TIMEOUT)
        self.buf = b""

    def line(self):
        for _ in range(1000):
            if b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                return line.decode()
            data = self.sock.recv(4096)
            if not data:
                raise Failure("chat_server closed the connection")
            self.buf += data
        raise Failure("no whole line")

    def say(self, text):
        self.sock.sendall(text.encode())


def case_chat_server():
    with Server(example("chat_server")) as s:
        members = [LineClient(s.address) for _ in range(3)]
        for i, m in enumerate(members, 1):
            check(m.line() == f"welcome, you are client {i}", "welcome line")
        members[0].say("hello from one\n")
        for m in members[1:]:
            check(m.line() == "client 1: hello from one", "line from client 1")
        members[1].say("two, in")  # a line in two writes
        members[1].say(" two parts\n")
        for m in (members[0], members[2]):
            check(m.line() == "client 2: two, in two parts", "line from client 2")
        members[2].say("three\nand more\n")
        for m in members[:2]:
            check([m.line(), m.line()] == ["client 3: three", "client 3: and more"], "client 3")
        members[0].sock.close()
        members[1].say("one left\n")
        check(members[2].line() == "client 2: one left", "after a member left")
        s.proc.send_signal(signal.SIGTERM)
        status, out, err = s.finish()
    check(status == 0, "chat_server exit status", out, err)
    check("client 1 joined" in out and "client 1 left (closed)" in out, out)


def case_demo():
    # make demo as a whole: every section runs and the script cleans up after itself.
    r = subprocess.run(["sh", os.path.join(SOURCE, "examples", "demo.sh"), BUILD],
                       capture_output=True, text=True, timeout=120, cwd=SOURCE)
    check(r.returncode == 0, "demo failed", r.stdout, r.stderr)
    for want in ["client:   received bytes hello", "served 3 clients, 9 messages",
                 "parent: the child read from its pipe:", "C client:       after decref: 0",
                 "python client: async_echo_server echoed ['hello', 'async_echo_server']",
                 "chat client 3 saw: ['client 1: hi all, client 1 here']", "demo: done"]:
        check(want in r.stdout, f"demo output lacks {want!r}", r.stdout)


def case_tls_echo():
    certs = casemain.tls_cert_dir(BUILD)

    def cert(name):
        return os.path.join(certs, name)

    with Server(example("tls_echo_server"), "tls:127.0.0.1:0", cert("server.pem"),
                cert("server.key"), cert("ca.pem")) as s:
        out = run(example("tls_echo_client"), s.address.replace("127.0.0.1", "localhost"),
                  cert("ca.pem"), cert("client.pem"), cert("client.key"))
        status, sout, serr = s.finish()
    check(lines(out) == ["TLSv1.3 with CN=localhost, verified: 1", "sent 'hello', got back 'hello'",
                         "sent 'world', got back 'world'"], out)
    check(status == 0 and "client CN=client" in sout and sout.count("echoing") == 2 and
          "connection closed: end of file" in sout, sout, serr)


if __name__ == "__main__":
    sys.exit(casemain.main(globals()))
