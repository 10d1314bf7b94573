#!/usr/bin/env python3
"""The API reference: every public function of the public headers (include/mpconn.h and
include/mpconn/*.h) has a comment there and a section 3 man page (docs/man3) that names it,
every page renders without warnings, and the whole programs among the pages' examples
compile.

Public functions are the MPCONN_API declarations and, in the header-only adapters
(<mpconn/uv.h>, <mpconn/event.h>), their one entry point each, the static inline
mpconn_*_adapter(); the other static functions there are the adapters' internals.

Each `def case_NAME()` is its own CTest entry (`cli.test_docs.NAME`), run with MPCONN_SOURCE
(and MPCONN_BUILD) set.
"""
import glob
import os
import re
import shutil
import subprocess
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import casemain  # noqa: E402
from casemain import check  # noqa: E402

SOURCE = os.path.abspath(
    os.environ.get("MPCONN_SOURCE", os.path.join(os.path.dirname(__file__), "..", "..")))
BUILD = os.path.abspath(os.environ.get("MPCONN_BUILD", os.getcwd()))
HEADERS = [os.path.join(SOURCE, "include", "mpconn.h")] + sorted(
    glob.glob(os.path.join(SOURCE, "include", "mpconn", "*.h")))
PAGES = sorted(glob.glob(os.path.join(SOURCE, "docs", "man3", "*.3")))
TIMEOUT = 30

# The first line of a public function's declaration (or, for an adapter, its definition).
PUBLIC = re.compile(r"^(?:MPCONN_API\b|static\b[^;({]*\bmpconn_\w+_adapter\s*\()")


def header_text(path=None):
    """One header's text, or all of them."""
    if path is None:
        return "\n".join(header_text(h) for h in HEADERS)
    with open(path) as f:
        return f.read()


def prototypes(path):
    """(name, shape, first line, last line) of each public function in one header, in order;
    the shape is its return and parameter types without names."""
    lines = header_text(path).splitlines()
    out = []
    i = 0
    while i < len(lines):
        if not PUBLIC.match(lines[i]):
            i += 1
            continue
        first = i
        while ";" not in lines[i] and "{" not in lines[i]:
            i += 1
        decl = re.split(r"[;{]", " ".join(l.strip() for l in lines[first:i + 1]))[0].strip()
        m = re.match(r"(?:MPCONN_API|static(?:\s+inline)?)\s+(.*?)\b(mpconn_\w+)\s*\((.*)\)$",
                     decl)
        check(m, f"{path}:{first + 1}: cannot read the declaration", decl)
        params = [re.sub(r"\w+$", "", p.strip()).strip() for p in m.group(3).split(",")]
        out.append((m.group(2), (m.group(1).strip(), tuple(params)), first, i))
        i += 1
    return out


def public_functions():
    """Names of the public functions, header by header, in header order."""
    return [name for h in HEADERS for name, _, _, _ in prototypes(h)]


def page_names(path):
    """The names in a page's NAME section (before the \\- that starts its summary)."""
    with open(path) as f:
        text = f.read()
    m = re.search(r"^\.SH NAME\n(.*?)\\-", text, flags=re.M | re.S)
    check(m, f"{path}: no NAME section")
    return [n.strip() for n in m.group(1).replace("\n", " ").split(",") if n.strip()], text


def case_every_function_has_a_page():
    check(PAGES, "no pages in docs/man3")
    functions = public_functions()
    named = {}
    for path in PAGES:
        names, text = page_names(path)
        page = os.path.basename(path)[:-2]
        check(page in names, f"{path}: NAME does not list {page}")
        for n in names:
            check(n not in named, f"{n} is named by {named.get(n)} and {path}")
            named[n] = path
            if n != page and n in functions:
                # The page's synopsis gives the prototype, not only the name.
                check(re.search(r"\b" + n + r"\(", text), f"{path}: no synopsis for {n}")
    missing = [f for f in functions if f not in named]
    check(not missing, "functions without a man page: " + " ".join(missing))
    # A name in a page's NAME that is no identifier of the headers is stale; a page's own
    # name is its topic (mpconn_proto, mpconn_adapters).
    known = set(re.findall(r"\bmpconn_\w+", header_text())) | {"mpconn"}
    pages = {os.path.basename(p)[:-2] for p in PAGES}
    stale = sorted(n for n in named if n not in known | pages)
    check(not stale, "man pages name what the header does not have: " + " ".join(stale))


def case_every_function_commented_in_header():
    # Each prototype has a comment right above it (or at the end of its line), or follows one
    # of the same shape that has: a comment may cover siblings such as mpconn_value_list and
    # mpconn_value_tuple, not a run of unrelated functions.
    undocumented = []
    for path in HEADERS:
        lines = header_text(path).splitlines()
        prev = None  # (shape, last line, documented) of the prototype before
        for name, shape, first, last in prototypes(path):
            j = first - 1
            while j >= 0 and lines[j].startswith("typedef"):  # a callback type the comment covers
                j -= 1
            own = lines[j].rstrip().endswith("*/") or lines[last].rstrip().endswith("*/")
            sibling = prev is not None and prev[1] == first - 1 and prev[0] == shape and prev[2]
            documented = own or sibling
            if not documented:
                undocumented.append(f"{os.path.relpath(path, SOURCE)}: {name}")
            prev = (shape, last, documented)
    check(not undocumented, "no comment above:\n" + "\n".join(undocumented))


def render_command(path):
    if shutil.which("man"):
        return ["man", "--warnings", "-l", path]
    if shutil.which("groff"):
        return ["groff", "-man", "-ww", "-z", path]
    if shutil.which("nroff"):
        return ["nroff", "-man", "-ww", path]
    return None


def case_pages_render():
    if render_command(PAGES[0]) is None:
        print("skipped: neither man, groff nor nroff is installed")
        return
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8", MAN_DISABLE_SECCOMP="1")
    for path in PAGES + [os.path.join(SOURCE, "docs", "mpconn.1")]:
        cmd = render_command(path)
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=env)
        check(r.returncode == 0 and not r.stderr.strip(), f"{' '.join(cmd)}:", r.stderr)
        check(os.path.basename(path)[:-2].upper() in r.stdout or cmd[0] == "groff",
              f"{path}: rendered text lacks its title", r.stdout[:500])


def example_programs():
    """(page, source) of each whole program (one with a main) in a page's EXAMPLES."""
    out = []
    for path in PAGES:
        with open(path) as f:
            m = re.search(r"^\.SH EXAMPLES\n(.*?)(?=^\.SH |\Z)", f.read(), flags=re.M | re.S)
        for block in re.findall(r"^\.nf\n(.*?)^\.fi$", m.group(1) if m else "", flags=re.M | re.S):
            if "int main(" in block:
                src = block.replace("\\e", "\\").replace("\\-", "-").replace("\\(aq", "'")
                out.append((os.path.basename(path), src))
    return out


def case_examples_compile():
    # The whole programs of the pages compile against the headers, warnings as errors.
    cc = os.environ.get("CC") or shutil.which("cc")
    if not cc:
        print("skipped: no C compiler")
        return
    programs = example_programs()
    check(len(programs) >= 3, "fewer example programs than expected", [p for p, _ in programs])
    for page, src in programs:
        flags = []
        for header, pkg in (("<mpconn/uv.h>", "libuv"), ("<mpconn/event.h>", "libevent")):
            if header in src:
                r = subprocess.run(["pkg-config", "--cflags", pkg], capture_output=True,
                                   text=True, timeout=TIMEOUT)
                if r.returncode != 0:
                    print(f"{page}: no {pkg} development files, not compiled")
                    flags = None
                    break
                flags += r.stdout.split()
        if flags is None:
            continue
        cmd = [cc, "-std=c11", "-D_POSIX_C_SOURCE=200809L", "-Wall", "-Wextra", "-Werror",
               "-fsyntax-only", "-I", os.path.join(SOURCE, "include"), *flags, "-x", "c", "-"]
        r = subprocess.run(cmd, input=src, capture_output=True, text=True, timeout=TIMEOUT)
        check(r.returncode == 0, f"{page}: its example does not compile", r.stderr, src)
        print(f"{page}: example compiles")


def case_links_point_to_pages():
    # The ".so" pages the build makes for every other name, one per name, each to a real page.
    linkdir = os.path.join(BUILD, "man3-links")
    check(os.path.isdir(linkdir), f"no {linkdir}")
    want = set()
    for path in PAGES:
        names, _ = page_names(path)
        page = os.path.basename(path)[:-2]
        want |= {(n, page) for n in names if n != page}
    got = set()
    for link in os.listdir(linkdir):
        with open(os.path.join(linkdir, link)) as f:
            m = re.fullmatch(r"\.so man3/(\w+)\.3\n", f.read())
        check(m, f"{link}: not a .so line")
        got.add((link[:-2], m.group(1)))
    check(got == want, f"links differ: missing {sorted(want - got)}, extra {sorted(got - want)}")


if __name__ == "__main__":
    sys.exit(casemain.main(globals()))
