#!/usr/bin/env python3
"""`mpconn serve tls:...` and `mpconn send tls:...` run as a user would: the certificate
options, mutual TLS, the authkey inside TLS, SSLKEYLOGFILE, what a failure says, every
--kind and --terminator lines over TLS.

Each `def case_NAME()` is its own CTest entry (`cli.test_cli_tls.NAME`), run from the build
directory with MPCONN_BUILD set. The certificates are the unit tests' set (made by
`tests/test_tls_conn make_certificates` with the openssl command). Every subprocess has a
timeout.
"""
import os
import pickle
import re
import socket
import ssl
import struct
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import casemain  # noqa: E402
from casemain import check  # noqa: E402

BUILD = os.path.abspath(os.environ.get("MPCONN_BUILD", os.getcwd()))
MPCONN = os.path.join(BUILD, "mpconn")
TIMEOUT = 20
KEY_ENV = "MPCONN_TEST_KEY"
_certs = []


def certs():
    if not _certs:
        _certs.append(casemain.tls_cert_dir(BUILD))
    return _certs[0]


def pem(name):
    return os.path.join(certs(), name + ".pem")


def key(name):
    return os.path.join(certs(), name + ".key")


def env(**more):
    e = dict(os.environ)
    e.pop("SSLKEYLOGFILE", None)
    e[KEY_ENV] = "secret"
    e.update(more)
    return e


class Serve:
    """`mpconn serve ADDRESS ARGS` in the background; the address it listens on."""

    def __init__(self, *args, cert="server"):
        cmd = [MPCONN, "serve", "tls:127.0.0.1:0", "--cert", pem(cert), "--key", key(cert), *args]
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env())
        line = self.p.stderr.readline().decode()
        m = re.match(r"listening on (tls:127\.0\.0\.1:(\d+))$", line.strip())
        if not m:
            self.p.kill()
            raise casemain.Failure("serve did not start: " + line + self.p.stderr.read().decode())
        self.address, self.port = m.group(1), int(m.group(2))

    def finish(self):
        """Waits for it (after its --count); returns (status, stdout, stderr)."""
        try:
            out, err = self.p.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.p.kill()
            out, err = self.p.communicate()
            raise casemain.Failure("serve did not exit", out, err)
        return self.p.returncode, out.decode(), err.decode()

    def stop(self):
        self.p.kill()
        self.p.communicate()


def send(*args, **envs):
    r = subprocess.run([MPCONN, "send", *args], capture_output=True, text=True, timeout=TIMEOUT,
                       env=env(**envs))
    return r


def case_serve_and_send_with_authkey_inside_tls():
    s = Serve("--echo", "--count", "1", "--authkey-env", KEY_ENV)
    r = send(s.address, "--ca", pem("ca"), "--authkey-env", KEY_ENV, "--reply", "{'a': [1, 2.5]}")
    check(r.returncode == 0, "send failed", r.stderr)
    check(r.stdout == "{'a': [1, 2.5]}\n", "the echo", r.stdout)
    status, out, err = s.finish()
    check(status == 0 and out == "{'a': [1, 2.5]}\n", "serve", status, out, err)


def case_wrong_authkey_inside_tls_is_refused():
    s = Serve("--count", "1", "--authkey-env", KEY_ENV)
    try:
        r = send(s.address, "--ca", pem("ca"), "--authkey-env", KEY_ENV, "1",
                 MPCONN_TEST_KEY="wrong")
        check(r.returncode == 1, "a wrong key got in", r.stderr)
        check(re.search(r"^mpconn: authentication with tls:127\.0\.0\.1:\d+ failed", r.stderr),
              "message", r.stderr)
    finally:
        s.stop()


def case_send_names_the_verify_failure():
    s = Serve("--count", "1", cert="self")
    try:
        r = send("tls:127.0.0.1:%d" % s.port, "--ca", pem("ca"), "1")
        check(r.returncode == 1, "send succeeded", r.stderr)
        check(re.match(r"mpconn: TLS with 127\.0\.0\.1:\d+ failed: certificate verify failed: "
                       r"self-signed certificate", r.stderr), "message", r.stderr)
    finally:
        s.stop()


def case_send_without_ca_uses_the_system_store():
    # which knows nothing of the test CA
    s = Serve("--count", "1")
    try:
        r = send(s.address, "1", SSL_CERT_FILE=pem("rogue"), SSL_CERT_DIR="/nonexistent")
        check(r.returncode == 1, "send succeeded", r.stderr)
        check("unable to get local issuer certificate" in r.stderr, "message", r.stderr)
    finally:
        s.stop()


def case_server_name_and_insecure_no_verify():
    s = Serve("--count", "2", cert="other")
    r = send(s.address, "--ca", pem("ca"), "--server-name", "other.example", "'named'")
    check(r.returncode == 0, "--server-name", r.stderr)
    r = send(s.address, "--insecure-no-verify", "'unchecked'")
    check(r.returncode == 0, "--insecure-no-verify", r.stderr)
    check("--insecure-no-verify" in r.stderr and "not checked" in r.stderr, "its warning",
          r.stderr)
    status, out, err = s.finish()
    check(status == 0 and out == "'named'\n'unchecked'\n", "serve", status, out, err)


def case_mutual_tls_required():
    s = Serve("--count", "1", "--ca", pem("ca"), "--require-client-cert", "-v")
    r = send(s.address, "--ca", pem("ca"), "--reply", "1")
    check(r.returncode == 1, "a client without a certificate got in", r.stderr)
    check("requires a client certificate" in r.stderr, "client's message", r.stderr)
    r = send(s.address, "--ca", pem("ca"), "1")  # without --reply: the wait for the close
    check(r.returncode == 1, "a client without a certificate got in", r.stderr)
    check(re.match(r"mpconn: TLS with 127\.0\.0\.1:\d+ failed: .*requires a client certificate",
                   r.stderr), "client's message", r.stderr)
    r = send(s.address, "--ca", pem("ca"), "--cert", pem("client"), "--key", key("client"), "2")
    check(r.returncode == 0, "mutual TLS", r.stderr)
    status, out, err = s.finish()
    check(status == 0 and out == "2\n", "serve", status, out, err)
    check("the client sent no certificate and this server requires one" in err, "reject", err)
    check("client certificate CN=client" in err, "the verified client", err)


def case_sslkeylogfile_is_honoured():
    s = Serve("--count", "1")
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "keys.txt")
        r = send(s.address, "--ca", pem("ca"), "1", SSLKEYLOGFILE=log)
        check(r.returncode == 0, "send", r.stderr)
        with open(log) as f:
            text = f.read()
        check(re.search(r"^CLIENT_(HANDSHAKE_)?TRAFFIC_SECRET", text, flags=re.M), "key log", text)
        check(os.stat(log).st_mode & 0o077 == 0, "the key log is private")
    s.finish()


def case_tls_options_need_a_tls_address():
    r = send("127.0.0.1:1", "--ca", pem("ca"), "1")
    check(r.returncode == 2 and "--ca applies to tls: addresses only" in r.stderr, "send",
          r.stderr)
    r = subprocess.run([MPCONN, "serve", "tls:127.0.0.1:0"], capture_output=True, text=True,
                       timeout=TIMEOUT)
    check(r.returncode == 2 and "needs --cert FILE" in r.stderr, "serve without --cert",
          r.stderr)
    r = subprocess.run([MPCONN, "serve", "tls:127.0.0.1:0", "--cert", pem("server"), "--key",
                        key("server"), "--insecure-no-verify"], capture_output=True, text=True,
                       timeout=TIMEOUT)
    check(r.returncode == 2 and "is a client option" in r.stderr, "serve, client option",
          r.stderr)
    r = send("tls:127.0.0.1:1", "--require-client-cert", "1")
    check(r.returncode == 2 and "is a server option" in r.stderr, "send, server option",
          r.stderr)
    r = send("tls:127.0.0.1:1", "--ca", "/nonexistent/ca.pem", "1")
    check(r.returncode == 1 and r.stderr.startswith("mpconn: --ca: "), "a missing CA file",
          r.stderr)


def case_plaintext_send_to_a_tls_serve():
    s = Serve("--count", "1")
    try:
        r = send("127.0.0.1:%d" % s.port, "--reply", "1")
        check(r.returncode == 1, "a plaintext client was served", r.stderr)
        line = s.p.stderr.readline().decode()
        check("did not speak TLS" in line, "serve's report", line)
    finally:
        s.stop()


def kind_case(kind):
    s = Serve("--kind", kind, "--echo", "-v", "--count", "2", "--max-clients", "4",
              "--authkey-env", KEY_ENV)
    try:
        for v in ("[1, 'two']", "b'three'"):
            r = send(s.address, "--ca", pem("ca"), "--authkey-env", KEY_ENV, "--reply", v)
            check(r.returncode == 0 and r.stdout == v + "\n", "send to --kind " + kind, r.stdout,
                  r.stderr)
    except BaseException:
        s.stop()
        raise
    status, out, err = s.finish()
    check(status == 0 and out == "[1, 'two']\nb'three'\n", "serve --kind " + kind, status, out,
          err)
    check(re.search(r"connection from .*\(TLSv1\.[23], ", err), "-v names the TLS version", err)


def case_kind_loop():
    kind_case("loop")


def case_kind_threads():
    kind_case("threads")


def case_kind_fork():
    kind_case("fork")


def case_terminator_lines_over_tls():
    s = Serve("--terminator", "\\n", "--echo", "--count", "1")
    try:
        ctx = ssl.create_default_context(cafile=pem("ca"))
        with socket.create_connection(("127.0.0.1", s.port), timeout=TIMEOUT) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as c:
                c.sendall(b"one\ntw")
                c.sendall(b"o\n")
                got = b""
                while len(got) < 8:
                    chunk = c.recv(64)
                    if not chunk:
                        break
                    got += chunk
                check(got == b"one\ntwo\n", "the echoed lines", got)
    except BaseException:
        s.stop()
        raise
    status, out, err = s.finish()
    check(status == 0 and out == "b'one'\nb'two'\n", "serve's lines", status, out, err)


def case_terminator_over_tls_needs_the_loop_kind():
    for kind in ("threads", "fork"):
        r = subprocess.run([MPCONN, "serve", "tls:127.0.0.1:0", "--cert", pem("server"), "--key",
                            key("server"), "--terminator", "\\n", "--kind", kind],
                           capture_output=True, text=True, timeout=TIMEOUT)
        check(r.returncode == 2 and "runs on --kind loop only" in r.stderr, kind, r.stderr)


def case_python_ssl_clients_every_kind():
    # CPython's ssl module speaking the multiprocessing framing by hand
    ctx = ssl.create_default_context(cafile=pem("ca"))
    for kind in ("loop", "threads", "fork"):
        s = Serve("--kind", kind, "--echo", "--count", "3")
        try:
            conns = []
            for i in range(3):  # all connected before any talks
                raw = socket.create_connection(("127.0.0.1", s.port), timeout=TIMEOUT)
                conns.append(ctx.wrap_socket(raw, server_hostname="127.0.0.1"))
            for i, c in enumerate(conns):
                body = pickle.dumps({"n": i}, protocol=2)
                c.sendall(struct.pack("!i", len(body)) + body)
                got = b""
                while len(got) < 4 + len(body):
                    chunk = c.recv(4096)
                    check(chunk, kind + ": the stream ended early", got)
                    got += chunk
                check(pickle.loads(got[4:]) == {"n": i}, kind + ": the echo", got)
            for c in conns:
                c.close()
        except BaseException:
            s.stop()
            raise
        status, out, err = s.finish()
        check(status == 0 and out == "{'n': 0}\n{'n': 1}\n{'n': 2}\n", kind, status, out, err)


def bench(*args):
    return subprocess.run([MPCONN, "bench", "--tls", "--seconds", "0.05", *args],
                          capture_output=True, text=True, timeout=TIMEOUT)


def case_bench_tls_rows():
    r = bench("--sizes", "64,4k", "--kind", "rtt,throughput,handshake")
    check(r.returncode == 0, "bench --tls", r.stdout, r.stderr)
    lines = r.stdout.splitlines()
    check(lines[1].startswith("# tls: a throwaway self-signed"), "how it ran", r.stdout)
    rows = [line.split() for line in lines if not line.startswith(("#", "kind"))]
    check([(k, t, n) for k, t, n, *_ in rows] ==
          [("rtt", "tls", "64"), ("rtt", "tls", "4096"), ("throughput", "tls", "64"),
           ("throughput", "tls", "4096"), ("handshake", "tls", "-")], "the rows", r.stdout)
    check(all(float(row[3]) > 0 for row in rows), "every row measured something", r.stdout)
    check(re.match(r"# tls: TLSv1\.[23], \S+, \d+ bits$", lines[-1]), "the version", r.stdout)


def case_bench_tls_with_a_given_certificate():
    r = bench("--sizes", "64", "--cert", pem("server"), "--key", key("server"))
    check(r.returncode == 0, "bench --tls --cert", r.stdout, r.stderr)
    check("# tls: certificate " + pem("server") in r.stdout, "names the certificate", r.stdout)
    check(re.search(r"^rtt +tls +64 ", r.stdout, flags=re.M), "its row", r.stdout)
    r = subprocess.run([MPCONN, "bench", "--cert", pem("server")], capture_output=True,
                       text=True, timeout=TIMEOUT)
    check(r.returncode == 2 and "apply with --tls only" in r.stderr, "--cert without --tls",
          r.stderr)
    r = bench("--transport", "unix")
    check(r.returncode == 2 and "--transport does not apply" in r.stderr, "--transport", r.stderr)


if __name__ == "__main__":
    sys.exit(casemain.main(globals()))
