#!/usr/bin/env python3
"""The layers of src/ hold: each folder compiles against an include root of its own in the
build tree (build/layers/<folder>) that holds only itself and the folders below it, so an
include that points up a layer does not build; and the protocol layer links alone.

Each `def case_NAME()` is its own CTest entry (`cli.test_layers.NAME`), run with MPCONN_BUILD
and MPCONN_SOURCE set.
"""
import os
import re
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import casemain  # noqa: E402
from casemain import check  # noqa: E402

BUILD = os.path.abspath(os.environ.get("MPCONN_BUILD", os.getcwd()))
SOURCE = os.path.abspath(
    os.environ.get("MPCONN_SOURCE", os.path.join(os.path.dirname(__file__), "..", "..")))
TIMEOUT = 60

# What each folder may include, as CMakeLists.txt says (MPCONN_BELOW_<folder>).
BELOW = {
    "base": ["base"],
    "proto": ["base", "proto"],
    "net": ["base", "net"],
    "conn": ["base", "proto", "net", "tls", "conn"],
    "loop": ["base", "loop"],
    "async": ["base", "proto", "net", "tls", "conn", "async"],
    "tls": ["base", "net", "tls"],
}
# One internal header of each folder.
HEADER = {
    "base": "base/err.h",
    "proto": "proto/frame.h",
    "net": "net/transport.h",
    "conn": "conn/opts.h",
    "loop": "loop/loop_internal.h",
    "async": "async/async_internal.h",
    "tls": "tls/tls_internal.h",
}


def cache(name):
    with open(os.path.join(BUILD, "CMakeCache.txt")) as f:
        m = re.search(r"^" + name + r":[A-Z]+=(.*)$", f.read(), flags=re.M)
    return m.group(1) if m else ""


def compiler():
    return cache("CMAKE_C_COMPILER") or "cc"


def compiles(folder, header):
    """Whether a file of folder that includes header compiles."""
    cmd = [compiler(), "-std=c11", "-D_POSIX_C_SOURCE=200809L", "-fsyntax-only",
           "-I", os.path.join(SOURCE, "include"), "-I", os.path.join(BUILD, "layers", folder),
           "-x", "c", "-"]
    r = subprocess.run(cmd, input=f'#include "{header}"\n', capture_output=True, text=True,
                       timeout=TIMEOUT)
    return r.returncode == 0, r.stderr


def case_include_roots_hold_the_layers_below():
    for folder in BELOW:
        check(os.path.isdir(os.path.join(BUILD, "layers", folder)),
              f"no include root build/layers/{folder}")
        for other, header in HEADER.items():
            ok, err = compiles(folder, header)
            if other in BELOW[folder]:
                check(ok, f"src/{folder} cannot include {header}, a layer below it:", err)
            else:
                check(not ok, f"src/{folder} can include {header}, which is not below it")


def case_sources_include_only_layers_below():
    # What the compiler enforces, said for every file: a quoted include names a folder
    # at or below the file's own (or the public mpconn/).
    bad = []
    for folder, below in BELOW.items():
        d = os.path.join(SOURCE, "src", folder)
        for name in sorted(os.listdir(d)):
            if not name.endswith((".c", ".h")):
                continue
            with open(os.path.join(d, name)) as f:
                for inc in re.findall(r'^#include "([a-z_]+)/', f.read(), flags=re.M):
                    if inc not in below and inc != "mpconn":
                        bad.append(f"src/{folder}/{name} includes {inc}/")
    check(not bad, "upward includes:", *bad)


def case_protocol_layer_links_alone():
    # Every object of mpconn_proto in one program, with no library but libcrypto and libm:
    # an undefined symbol of another layer would fail the link.
    if cache("MPCONN_FUZZ") == "ON":
        return  # its objects need the fuzzer's runtime
    lib = os.path.join(BUILD, "libmpconn_proto.a")
    check(os.path.exists(lib), f"{lib} is not built")
    flags = ["-fsanitize=address,undefined"] if cache("MPCONN_SANITIZE") == "ON" else []
    with tempfile.TemporaryDirectory() as tmp:
        main = os.path.join(tmp, "main.c")
        with open(main, "w") as f:
            f.write("int main(void)\n{\n    return 0;\n}\n")
        cmd = [compiler(), *flags, main, "-o", os.path.join(tmp, "alone"),
               "-Wl,--whole-archive", lib, "-Wl,--no-whole-archive", "-lcrypto", "-lm"]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
        check(r.returncode == 0, "mpconn_proto does not link alone:", r.stderr)


if __name__ == "__main__":
    sys.exit(casemain.main(globals()))
