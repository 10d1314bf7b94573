#!/usr/bin/env python3
"""What `make install` and `cmake --install` leave behind, used as a consumer would.

Each `def case_NAME()` is its own CTest entry (`cli.test_install.NAME`), run from the build
directory with MPCONN_BUILD and MPCONN_SOURCE set. Every install goes to a fresh temporary
prefix from the existing build; consumers are built with pkg-config and with
find_package(mpconn), in C and C++, against the shared and the static library.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import casemain  # noqa: E402
from casemain import Failure, check  # noqa: E402
from test_docs import public_functions  # noqa: E402  (of every public header)

BUILD = os.path.abspath(os.environ.get("MPCONN_BUILD", os.getcwd()))
SOURCE = os.path.abspath(
    os.environ.get("MPCONN_SOURCE", os.path.join(os.path.dirname(__file__), "..", "..")))
TIMEOUT = 120  # seconds for any one subprocess (a consumer's cmake configure is the slowest)
with open(os.path.join(SOURCE, "CMakeLists.txt")) as _f:
    VERSION = re.search(r"project\(mpconn VERSION (\S+)", _f.read()).group(1)
# What a consumer asks for: SameMinorVersion offers no other minor while 0.x.
WANT = ".".join(VERSION.split(".")[:2])

# Valid C and C++ alike: a value through a Pipe, printed as Python's repr.
CONSUMER = r"""
#include <mpconn.h>
#include <stdio.h>
#include <stdlib.h>

int main(void)
{
    mpconn_conn *a, *b;
    if (mpconn_pipe(&a, &b, 1, NULL) < 0)
        return 1;
    mpconn_value *v = NULL, *back = NULL;
    char *text = NULL;
    size_t len;
    if (mpconn_pack(&v, NULL, 0, "{s:[i f s]}", "consumer", 1, 2.5, "x") < 0 ||
        mpconn_conn_send(a, v) < 0 || mpconn_conn_recv(b, &back) < 0 ||
        mpconn_value_repr(back, &text, &len) < 0)
        return 1;
    printf("mpconn %s: %s\n", mpconn_version(), text);
    free(text);
    mpconn_value_unref(back);
    mpconn_value_unref(v);
    mpconn_conn_free(a);
    mpconn_conn_free(b);
    return 0;
}
"""
EXPECTED = "mpconn %s: {'consumer': [1, 2.5, 'x']}" % VERSION


def sh(*args, env=None, cwd=None, ok=True):
    """Runs a command to completion; text output. ok=True: it must succeed."""
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=TIMEOUT, env=env,
                       cwd=cwd)
    if ok:
        check(r.returncode == 0, f"failed ({r.returncode}): {' '.join(args)}", r.stdout,
              r.stderr)
    return r


def cache(name, default=""):
    """A setting of the build's CMake cache."""
    with open(os.path.join(BUILD, "CMakeCache.txt")) as f:
        m = re.search(r"^" + name + r":\w+=(.*)$", f.read(), re.M)
    return m.group(1) if m else default


def c_compiler():
    """The C compiler the build uses, so consumers are built as the library was."""
    return cache("CMAKE_C_COMPILER", "cc")


def sanitizer_flags():
    """A library built under make asan needs its sanitizers' runtime in every program."""
    return ["-fsanitize=address,undefined"] if cache("MPCONN_SANITIZE") == "ON" else []


def install(prefix):
    sh("cmake", "--install", BUILD, "--prefix", prefix)
    return prefix


def pkg_env(prefix):
    env = dict(os.environ)
    pc = os.path.join(prefix, "lib", "pkgconfig")
    env["PKG_CONFIG_PATH"] = pc + os.pathsep + env.get("PKG_CONFIG_PATH", "")
    return env


def pkgconfig_consumer(prefix, work):
    """Builds the consumer as the README says (pkg-config + rpath) and runs it."""
    env = pkg_env(prefix)
    flags = sh("pkg-config", "--cflags", "--libs", "mpconn", env=env).stdout.split()
    libdir = sh("pkg-config", "--variable=libdir", "mpconn", env=env).stdout.strip()
    check(os.path.realpath(libdir) == os.path.realpath(os.path.join(prefix, "lib")),
          f"pkg-config's libdir {libdir} is not under {prefix}")
    src = os.path.join(work, "consumer.c")
    with open(src, "w") as f:
        f.write(CONSUMER)
    exe = os.path.join(work, "consumer_pc")
    sh(c_compiler(), *sanitizer_flags(), "-o", exe, src, *flags, f"-Wl,-rpath,{libdir}")
    out = sh(exe).stdout.strip()
    check(out == EXPECTED, f"pkg-config consumer printed {out!r}")


def cmake_consumer(prefix, work, static=True, cxx=True, extra=(), ok=True):
    """A CMake project using find_package(mpconn); returns the configure result."""
    proj = os.path.join(work, "proj")
    os.makedirs(proj, exist_ok=True)
    langs = "C CXX" if cxx else "C"
    comps = " COMPONENTS static" if static else ""
    lists = [
        "cmake_minimum_required(VERSION 3.20)",
        f"project(consumer LANGUAGES {langs})",
        f"find_package(mpconn {WANT} REQUIRED{comps})",
        "add_executable(consumer_c main.c)",
        "target_link_libraries(consumer_c PRIVATE mpconn::mpconn)",
    ]
    if cxx:
        lists += ["add_executable(consumer_cxx main.cpp)",
                  "target_link_libraries(consumer_cxx PRIVATE mpconn::mpconn)"]
    if static:
        lists += ["add_executable(consumer_static main.c)",
                  "target_link_libraries(consumer_static PRIVATE mpconn::mpconn_static)"]
    with open(os.path.join(proj, "CMakeLists.txt"), "w") as f:
        f.write("\n".join(lists) + "\n")
    for name in ("main.c", "main.cpp"):
        with open(os.path.join(proj, name), "w") as f:
            f.write(CONSUMER)
    bld = os.path.join(work, "proj-build")
    san = " ".join(sanitizer_flags())
    r = sh("cmake", "-S", proj, "-B", bld, f"-DCMAKE_PREFIX_PATH={prefix}",
           f"-DCMAKE_C_COMPILER={c_compiler()}", f"-DCMAKE_C_FLAGS={san}",
           f"-DCMAKE_CXX_FLAGS={san}", f"-DCMAKE_EXE_LINKER_FLAGS={san}", *extra, ok=ok)
    if r.returncode == 0:
        sh("cmake", "--build", bld, "-j", "2")
    return r, bld


def run_consumer(exe):
    out = sh(exe).stdout.strip()
    check(out == EXPECTED, f"{exe} printed {out!r}")


# -------------------------------------------------------------------- cases


def case_pkgconfig_any_prefix():
    # Two prefixes from one build, and a third place the first tree is moved to:
    # mpconn.pc must name wherever it lies, not the prefix the build was configured with.
    with tempfile.TemporaryDirectory() as d:
        a = install(os.path.join(d, "a"))
        b = install(os.path.join(d, "b"))
        moved = os.path.join(d, "moved")
        os.rename(a, moved)
        for prefix in (b, moved):
            work = tempfile.mkdtemp(dir=d)
            pkgconfig_consumer(prefix, work)


def case_make_install_prefix():
    # make install PREFIX=DIR in a build directory that already exists (make check made it).
    # DESTDIR keeps a make install that ignored PREFIX inside the temporary directory too.
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, DESTDIR=os.path.join(d, "dest"))
        want = os.path.join(d, "p")
        prefix = env["DESTDIR"] + want
        r = sh("make", "-C", SOURCE, "install", f"BUILD={BUILD}", f"PREFIX={want}", "JOBS=2",
               env=env)
        check(f"Installing: {prefix}/include/mpconn.h" in r.stdout,
              "make install did not install to PREFIX", r.stdout)
        for f in ("include/mpconn.h", "lib/libmpconn.so", "lib/libmpconn.a", "bin/mpconn",
                  "lib/pkgconfig/mpconn.pc", "lib/cmake/mpconn/mpconnConfig.cmake"):
            check(os.path.exists(os.path.join(prefix, f)), f"{f} missing under PREFIX")
        pkgconfig_consumer(prefix, d)


def case_make_install_builds_no_tests():
    # make install asks the build for the installed targets only: the tests are not among them.
    r = sh("make", "-n", "-C", SOURCE, "install", f"BUILD={BUILD}", "PREFIX=/nonexistent")
    check("--target mpconn_install_parts" in r.stdout, "make install builds everything", r.stdout)
    r = sh("cmake", "--build", BUILD, "--target", "help")
    check("mpconn_install_parts" in r.stdout, "no mpconn_install_parts target", r.stdout)


def case_find_package_shared_and_static():
    with tempfile.TemporaryDirectory() as d:
        prefix = install(os.path.join(d, "p"))
        cxx = shutil.which("c++") is not None
        if not cxx:
            print("no c++ compiler: the C++ consumer is skipped")
        _, bld = cmake_consumer(prefix, d, static=True, cxx=cxx)
        for name in ["consumer_c", "consumer_static"] + (["consumer_cxx"] if cxx else []):
            run_consumer(os.path.join(bld, name))
        # The static consumer carries the library: it runs with the prefix gone.
        shutil.rmtree(prefix)
        run_consumer(os.path.join(bld, "consumer_static"))


def case_find_package_shared_without_openssl():
    # A user of the shared library needs no OpenSSL development files.
    with tempfile.TemporaryDirectory() as d:
        prefix = install(os.path.join(d, "p"))
        no_ssl = ["-DCMAKE_DISABLE_FIND_PACKAGE_OpenSSL=ON"]
        _, bld = cmake_consumer(prefix, os.path.join(d, "shared"), static=False, cxx=False,
                                extra=no_ssl)
        run_consumer(os.path.join(bld, "consumer_c"))
        # Asking for the static library makes OpenSSL required, and its absence is said.
        r, _ = cmake_consumer(prefix, os.path.join(d, "static"), static=True, cxx=False,
                              extra=no_ssl, ok=False)
        check(r.returncode != 0, "static component configured without OpenSSL", r.stdout)
        check("OpenSSL" in r.stdout + r.stderr, "the failure does not name OpenSSL", r.stderr)


def case_installed_examples_build():
    # The example sources installed beside the docs build against the installed library.
    with tempfile.TemporaryDirectory() as d:
        prefix = install(os.path.join(d, "p"))
        exdir = os.path.join(prefix, "share", "doc", "mpconn", "examples")
        sources = sorted(f for f in os.listdir(exdir) if f.endswith(".c"))
        want = sorted(f for f in os.listdir(os.path.join(SOURCE, "examples")) if f.endswith(".c"))
        check(sources == want, f"installed examples {sources} differ from {want}")
        check(os.path.exists(os.path.join(exdir, "manager_server.py")), "no manager_server.py")
        env = pkg_env(prefix)
        flags = sh("pkg-config", "--cflags", "--libs", "mpconn", env=env).stdout.split()
        rpath = "-Wl,-rpath," + os.path.join(prefix, "lib")
        for src in sources:
            exe = os.path.join(d, src[:-2])
            sh(c_compiler(), *sanitizer_flags(), "-std=c11", "-D_POSIX_C_SOURCE=200809L", "-Wall",
               "-Werror", "-o", exe, os.path.join(exdir, src), *flags, rpath)
        out = sh(os.path.join(d, "fd_passing")).stdout
        check(out.endswith("child exited with 0\n"), out)


def case_man_pages_installed():
    # man3 holds a page, or a .so pointer to one, under the name of every public function of
    # every public header.
    functions = public_functions()
    with tempfile.TemporaryDirectory() as d:
        prefix = install(os.path.join(d, "p"))
        man3 = os.path.join(prefix, "share", "man", "man3")
        missing = [f for f in functions if not os.path.exists(os.path.join(man3, f + ".3"))]
        check(not missing, "no man3 page for: " + " ".join(missing))
        check(os.path.exists(os.path.join(prefix, "share", "man", "man1", "mpconn.1")),
              "no mpconn(1)")
        if not shutil.which("man"):
            print("no man command: pages not rendered")
            return
        env = dict(os.environ, MANWIDTH="80", MAN_DISABLE_SECCOMP="1")
        for name, title in (("mpconn_conn_send", "MPCONN_CONN(3)"),
                            ("mpconn_client", "MPCONN_CLIENT(3)"),
                            ("mpconn_value_dict_get_str", "MPCONN_VALUE(3)"),
                            ("mpconn_reader_get", "MPCONN_PROTO(3)"),
                            ("mpconn_loop_run", "MPCONN_LOOP(3)"),
                            ("mpconn_async_send", "MPCONN_ASYNC(3)"),
                            ("mpconn_uv_adapter", "MPCONN_ADAPTERS(3)")):
            out = sh("man", "-M", os.path.join(prefix, "share", "man"), "3", name, env=env).stdout
            check(title in out, f"man 3 {name} does not show {title}", out[:300])


if __name__ == "__main__":
    sys.exit(casemain.main(globals()))
