"""What the Python suites in tests/cli share: a failed check, and running one named case.

A suite defines `def case_NAME()` functions and ends with `sys.exit(casemain.main(globals()))`;
CTest runs `python3 SCRIPT NAME` once per case.
"""
import os
import re
import subprocess
import sys


class Failure(Exception):
    pass


def check(cond, *what):
    if not cond:
        raise Failure("\n".join(str(w) for w in what))


def tls_cert_dir(build):
    """The TLS tests' certificate directory, which `tests/test_tls_conn make_certificates` makes
    with the openssl command (exits 77, skipped, without it)."""
    r = subprocess.run([os.path.join(build, "tests", "test_tls_conn"), "make_certificates"],
                       capture_output=True, text=True, timeout=120)
    if r.returncode == 77:
        print("skipped: no openssl command to make certificates")
        sys.exit(77)
    m = re.search(r"^certificates: (.+)$", r.stdout, flags=re.M)
    check(r.returncode == 0 and m, "cannot make the certificates", r.stdout, r.stderr)
    return m.group(1)


def main(namespace):
    script = os.path.basename(sys.argv[0])
    names = sorted(n[5:] for n in namespace if n.startswith("case_"))
    if len(sys.argv) != 2 or sys.argv[1] not in names:
        print(f"usage: {script} CASE\ncases: " + " ".join(names), file=sys.stderr)
        return 2
    try:
        namespace["case_" + sys.argv[1]]()
    except Failure as e:
        print(f"FAIL {sys.argv[1]}: {e}", file=sys.stderr)
        return 1
    print(f"ok {sys.argv[1]}")
    return 0
