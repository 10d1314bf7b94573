"""Property tests of mpconn's values against CPython: random nested values
go through pickle (both directions), repr, the literal parser and JSON, and
must agree with pickle, repr(), ast.literal_eval and json.dumps.

Run as `python3 test_values.py CASE` (ctest does, with MPCONN_BUILD set);
every case uses a fixed seed and a bounded number of values. The C side is
tests/interop/valtool.c, driven in batch mode (length-prefixed records)."""

import ast
import json
import math
import os
import pickle
import pickletools
import random
import struct
import subprocess
import sys
import warnings

N = 300  # random values per case


def valtool(cmd, inputs, proto=None):
    """Runs valtool over a batch; returns [(ok, bytes)] in order."""
    exe = os.path.join(os.environ['MPCONN_BUILD'], 'tests', 'valtool')
    args = [exe, cmd] + ([str(proto)] if proto is not None else []) + ['-n']
    data = b''.join(struct.pack('>I', len(x)) + x for x in inputs)
    r = subprocess.run(args, input=data, capture_output=True, timeout=120)
    if r.returncode != 0:
        raise AssertionError(f'valtool {cmd} exited {r.returncode}: {r.stderr[-2000:]!r}')
    out, pos = [], 0
    buf = r.stdout
    while pos < len(buf):
        status = buf[pos]
        n = struct.unpack('>I', buf[pos + 1:pos + 5])[0]
        out.append((status == 0, buf[pos + 5:pos + 5 + n]))
        pos += 5 + n
    assert len(out) == len(inputs), (len(out), len(inputs))
    return out


# ------------------------------------------------------------ generators

POOLS = [
    (0x20, 0x7e), (0x00, 0x1f), (0x7f, 0xa0), (0xa1, 0xff), (0x100, 0x2fff),
    (0x3000, 0xd7ff), (0xe000, 0xffff), (0x10000, 0x10ffff), (0x370, 0x380),
    (0x2000, 0x2030), (0xe0000, 0xe0080),
]


def rand_str(rng):
    n = rng.choice([0, 1, 2, 5, 12, 30])
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.15:
            out.append(rng.choice('\'"\\\n\r\t\x00 '))
        else:
            lo, hi = rng.choice(POOLS)
            cp = rng.randint(lo, hi)
            if 0xd800 <= cp <= 0xdfff:  # mpconn str values are valid UTF-8
                cp = 0xfffd
            out.append(chr(cp))
    return ''.join(out)


def rand_int(rng):
    r = rng.random()
    if r < 0.4:
        return rng.randint(-300, 300)
    if r < 0.7:
        return rng.randint(-2**64, 2**64)
    if r < 0.9:
        b = rng.choice([63, 64, 65, 127, 128, 200])
        return rng.choice([-1, 1]) * (2**b + rng.randint(-2, 2))
    return rng.randint(-10**rng.randint(20, 1000), 10**rng.randint(20, 1000))


def rand_float(rng, allow_nonfinite):
    r = rng.random()
    if r < 0.3:
        x = struct.unpack('<d', rng.getrandbits(64).to_bytes(8, 'little'))[0]
        if math.isfinite(x) or allow_nonfinite:
            return x
        return 1.5
    if r < 0.6:
        return rng.choice([0.0, -0.0, 0.1, 1e16, 1e-5, 1e22, 5e-324, 1.0, 123456789012345.0,
                           1.2345678901234567e+19, 2.5, -1e-300])
    if r < 0.65 and allow_nonfinite:
        return rng.choice([math.inf, -math.inf])
    return rng.uniform(-1e6, 1e6) * 10**rng.randint(-20, 20)


def rand_hashable(rng, depth, literal):
    r = rng.random()
    if depth > 0 and r < 0.15:
        return tuple(rand_hashable(rng, depth - 1, literal) for _ in range(rng.randint(0, 3)))
    if depth > 0 and r < 0.2 and not literal:
        return frozenset(rand_hashable(rng, depth - 1, literal) for _ in range(rng.randint(0, 3)))
    return rand_scalar(rng, literal, hashable=True)


def rand_scalar(rng, literal, hashable=False):
    r = rng.random()
    if r < 0.08:
        return None
    if r < 0.15:
        return rng.random() < 0.5
    if r < 0.4:
        return rand_int(rng)
    if r < 0.55:
        return rand_float(rng, not literal)
    if r < 0.85:
        return rand_str(rng)
    b = bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 1, 3, 20])))
    if not hashable and not literal and rng.random() < 0.3:
        return bytearray(b)
    return b


def rand_value(rng, depth=4, literal=False):
    """A random plain value; literal=True keeps to what a literal can write
    (no bytearray, frozenset, inf or nan)."""
    r = rng.random()
    if depth == 0 or r < 0.35:
        return rand_scalar(rng, literal)
    n = rng.choice([0, 1, 2, 3, 5])
    if r < 0.5:
        return [rand_value(rng, depth - 1, literal) for _ in range(n)]
    if r < 0.62:
        return tuple(rand_value(rng, depth - 1, literal) for _ in range(n))
    if r < 0.85:
        return {rand_hashable(rng, 2, literal): rand_value(rng, depth - 1, literal)
                for _ in range(n)}
    if r < 0.93 or literal:
        return {rand_hashable(rng, 2, literal) for _ in range(n)}
    return frozenset(rand_hashable(rng, 2, literal) for _ in range(n))


# ---------------------------------------------------------- comparisons

def has_nan(v):
    if isinstance(v, float):
        return v != v
    if isinstance(v, dict):
        return any(has_nan(k) or has_nan(x) for k, x in v.items())
    if isinstance(v, (list, tuple, set, frozenset)):
        return any(has_nan(x) for x in v)
    return False


def shape(v):
    """Type structure, insensitive to set order: 1 == True == 1.0 is too lax."""
    if isinstance(v, dict):
        return ('dict', tuple((shape(k), shape(x)) for k, x in v.items()))
    if isinstance(v, (set, frozenset)):
        return (type(v).__name__, tuple(sorted(repr(shape(x)) for x in v)))
    if isinstance(v, (list, tuple)):
        return (type(v).__name__, tuple(shape(x) for x in v))
    return type(v).__name__


EVAL_NAMES = {'__builtins__': {}, 'bytearray': bytearray, 'frozenset': frozenset, 'set': set,
              'inf': math.inf, 'nan': math.nan}


def same_repr(c_text, v):
    """C's repr of a value equals Python's repr(v); where sets make the order
    differ, the text must still evaluate back to v."""
    want = repr(v)
    if c_text == want:
        return True
    back = eval(c_text, EVAL_NAMES)  # noqa: S307 - test-only, fixed names
    if has_nan(v):
        return False
    return back == v and shape(back) == shape(v)


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


# ---------------------------------------------------------------- cases

def case_decode_python_pickles():
    """CPython pickles, every protocol 0-5, decode in C to the same repr."""
    rng = random.Random(1001)
    values = [rand_value(rng) for _ in range(N)]
    for proto in range(0, 6):
        outs = valtool('decode', [pickle.dumps(v, protocol=proto) for v in values])
        for v, (ok, text) in zip(values, outs):
            check(ok, f'proto {proto}: decode failed: {text!r} for {v!r}')
            check(same_repr(text.decode(), v),
                  f'proto {proto}: C repr {text.decode()!r} != {v!r}')


def case_encode_loads_in_python():
    """Values built in C from a literal load in CPython as literal_eval's."""
    rng = random.Random(1002)
    values = [rand_value(rng, literal=True) for _ in range(N)]
    texts = [repr(v) for v in values]
    for proto in range(2, 6):
        outs = valtool('encode', [t.encode() for t in texts], proto)
        for t, (ok, data) in zip(texts, outs):
            check(ok, f'proto {proto}: encode failed: {data!r} for {t}')
            want = ast.literal_eval(t)
            got = pickle.loads(data)
            check(got == want and shape(got) == shape(want),
                  f'proto {proto}: {t} loaded as {got!r}')


def case_text_not_utf8_as_surrogateescape():
    """Bytes that are not all UTF-8, made a str in C (mpconn_value_strn),
    load in CPython as b.decode('utf-8', 'surrogateescape'), every protocol
    2-5: valid sequences kept, each other byte the lone surrogate
    U+DC00 + byte."""
    rng = random.Random(1010)
    pieces = [b'a', b'\x00', b'\xc3\xa9', b'\xe2\x82\xac', b'\xf0\x9f\x98\x80', b'\xff', b'\x80',
              b'\xc0\x80', b'\xed\xa0\x80', b'\xed\x9f\xbf', b'\xf4\x90\x80\x80', b'\xe2\x82',
              b'\xf0\x9f\x98', b'\xc2', b'\xe0\x80\x80', b'\xf8\x88\x80\x80\x80']
    texts = [b''.join(rng.choice(pieces) for _ in range(rng.randrange(0, 12))) for _ in range(N)]
    texts += [bytes([b]) for b in range(256)]
    for proto in range(2, 6):
        outs = valtool('text', texts, proto)
        for t, (ok, data) in zip(texts, outs):
            check(ok, f'proto {proto}: failed: {data!r} for {t!r}')
            want = t.decode('utf-8', 'surrogateescape')
            got = pickle.loads(data)
            check(got == want, f'proto {proto}: {t!r} loaded as {got!r}, not {want!r}')
            check(got.encode('utf-8', 'surrogateescape') == t, f'{t!r} does not come back')


def case_c_round_trip():
    """C encode then C decode gives an equal value, every protocol 2-5."""
    rng = random.Random(1003)
    values = [rand_value(rng, literal=True) for _ in range(N)]
    texts = [repr(v) for v in values]
    for proto in range(2, 6):
        outs = valtool('roundtrip', [t.encode() for t in texts], proto)
        for v, (ok, out) in zip(values, outs):
            check(ok, f'proto {proto}: round trip failed: {out!r}')
            check(out.startswith(b'equal '), f'proto {proto}: {out!r} for {v!r}')
            check(same_repr(out[6:].decode(), v), f'proto {proto}: {out!r} for {v!r}')


def variants(rng, v):
    """Other spellings of a value that literal_eval reads the same."""
    if isinstance(v, bool) or v is None:
        return repr(v)
    if isinstance(v, int):
        form = rng.choice(['dec', 'hex', 'oct', 'bin', 'under'])
        sign = '-' if v < 0 else rng.choice(['', '+'])
        m = abs(v)
        if form == 'hex':
            return sign + rng.choice(['0x', '0X']) + format(m, 'x')
        if form == 'oct':
            return sign + '0o' + format(m, 'o')
        if form == 'bin' and m < 2**200:
            return sign + '0b' + format(m, 'b')
        if form == 'under':
            return sign + format(m, '_')
        return sign + str(m)
    if isinstance(v, float):
        return repr(v) if rng.random() < 0.7 else '%.25e' % v
    if isinstance(v, str):
        r = rng.random()
        if r < 0.2 and "'''" not in v and not v.endswith("'") and '\\' not in v \
                and '\r' not in v and '\x00' not in v:
            return "'''" + v + "'''"
        if r < 0.4 and len(v) > 1:
            return repr(v[:1]) + rng.choice([' ', '', '\t']) + repr(v[1:])
        return rng.choice(['', 'u', 'U']) + repr(v)
    if isinstance(v, bytes):
        return rng.choice(['', 'B']) + repr(v)[1:] if rng.random() < 0.3 else repr(v)
    sp = lambda: rng.choice(['', ' ', '  ', '\n', ' # c\n'])  # noqa: E731
    if isinstance(v, list):
        inner = (',' + sp()).join(variants(rng, x) for x in v)
        return '[' + sp() + inner + (',' if v and rng.random() < 0.3 else '') + sp() + ']'
    if isinstance(v, tuple):
        inner = (',' + sp()).join(variants(rng, x) for x in v)
        return '(' + inner + (',' if len(v) == 1 or (v and rng.random() < 0.3) else '') + ')'
    if isinstance(v, dict):
        inner = (',' + sp()).join(variants(rng, k) + sp() + ':' + sp() + variants(rng, x)
                                  for k, x in v.items())
        return '{' + sp() + inner + sp() + '}'
    if isinstance(v, set):
        if not v:
            return 'set()'
        return '{' + ', '.join(variants(rng, x) for x in v) + '}'
    return repr(v)


def py_literal(text):
    """('ok', value) or ('err', None), as literal_eval sees the text."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        try:
            return 'ok', ast.literal_eval(text)
        except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
            return 'err', None


def outside_domain(text, value):
    """Python accepts, mpconn refuses on purpose (documented in literal.c)."""
    if '\\N' in text:
        return True

    def walk(v):
        if isinstance(v, (complex, type(Ellipsis))):
            return True
        if isinstance(v, dict):
            return any(walk(k) or walk(x) for k, x in v.items())
        if isinstance(v, (list, tuple, set, frozenset)):
            return any(walk(x) for x in v)
        return False
    return walk(value)


def case_parser_agrees_with_literal_eval():
    """repr() of random values, respelled, parses as literal_eval does."""
    rng = random.Random(1004)
    values = [rand_value(rng, literal=True) for _ in range(N)]
    texts = [repr(v) for v in values] + [variants(rng, v) for v in values]
    outs = valtool('parse', [t.encode() for t in texts])
    for t, (ok, out) in zip(texts, outs):
        status, want = py_literal(t)
        check(status == 'ok', f'test bug: Python rejects {t!r}')
        check(ok, f'C rejects {t!r}: {out.decode(errors="replace")}')
        check(same_repr(out.decode(), want), f'{t!r}: C gives {out.decode()!r}')


def case_parser_rejects_what_literal_eval_rejects():
    """Mutated literals: C and literal_eval accept and refuse the same texts."""
    rng = random.Random(1005)
    base = [repr(rand_value(rng, depth=3, literal=True)) for _ in range(N)]
    alphabet = list(",()[]{}:'\"\\ -+0x_.e#jbruf\n") + ['set()', 'None', "'''", '1_', '0o']
    texts = []
    for t in base:
        for _ in range(3):
            s = t
            for _ in range(rng.randint(1, 3)):
                i = rng.randint(0, len(s))
                op = rng.random()
                if op < 0.4 and s:
                    s = s[:i] + s[i + 1:]
                elif op < 0.8:
                    s = s[:i] + rng.choice(alphabet) + s[i:]
                else:
                    s = s[:i] + s[i:i + 1] * 2 + s[i + 1:]
            texts.append(s)
    outs = valtool('parse', [t.encode('utf-8', 'surrogatepass') for t in texts])
    agreed = 0
    for t, (ok, out) in zip(texts, outs):
        status, want = py_literal(t)
        if status == 'ok' and outside_domain(t, want):
            check(not ok, f'C accepts {t!r}, outside its domain')
            continue
        if status == 'err':
            check(not ok, f'C accepts {t!r} (as {out!r}); literal_eval refuses it')
            check(out.startswith(b'column '), f'error without a column: {out!r}')
        else:
            check(ok, f'C refuses {t!r}: {out.decode(errors="replace")}; '
                      f'literal_eval gives {want!r}')
            check(same_repr(out.decode(), want), f'{t!r}: C {out.decode()!r} vs {want!r}')
        agreed += 1
    check(agreed > len(texts) // 2, f'too few comparable texts: {agreed}')


def case_lone_surrogates_as_cpython():
    """Literals with lone surrogates parse, and print in repr and JSON, as CPython's."""
    rng = random.Random(1008)
    texts = ["'\\ud800'", "'\\udfff'", "'a\\udc00b'", "'\\ud83d\\ude00'", "'\\U0000d800' 'x'",
             "['\\ud800', {'\\udbff': '\\ud7ff\\ue000'}]"]
    for _ in range(200):
        cps = [rng.choice([0xd800, 0xdbff, 0xdc00, 0xdfff, rng.randint(0xd800, 0xdfff),
                           rng.randint(0x20, 0x7e), rng.randint(0xa0, 0xffff), 0x1f600])
               for _ in range(rng.randint(1, 6))]
        texts.append("'" + ''.join('\\u%04x' % c if c < 0x10000 else '\\U%08x' % c
                                   for c in cps) + "'")
    values = [ast.literal_eval(t) for t in texts]
    for cmd, show in (('parse', repr), ('json', json.dumps)):
        for t, v, (ok, out) in zip(texts, values, valtool(cmd, [t.encode() for t in texts])):
            check(ok, f'{cmd} {t!r}: {out!r}')
            check(out.decode('utf-8', 'surrogatepass') == show(v),
                  f'{cmd} {t!r}: C {out!r} vs {show(v)!r}')


def case_big_int_decimal_as_cpython():
    """Big ints in decimal, both ways, as CPython's str() and int() (limit lifted)."""
    rng = random.Random(1009)
    xs = []
    for digits in (19, 20, 512, 513, 4300, 4301, 9865, 16385, 70000):
        xs += [rng.randrange(10 ** (digits - 1), 10 ** digits), 10 ** digits - 1,
               -10 ** (digits - 1)]
    texts = [str(x).encode() for x in xs]  # CPython 3.11's str() is quadratic: once each
    for cmd, inputs in (('parse', texts), ('decode', [pickle.dumps(x, 4) for x in xs])):
        for t, (ok, out) in zip(texts, valtool(cmd, inputs)):
            check(ok and out == t, f'{cmd}: {t[:40]}... ({len(t)} chars)')


def case_float_repr_and_parse():
    """Float text both ways: shortest repr and correctly rounded parsing."""
    rng = random.Random(1006)
    xs = [2.0**e for e in range(-1074, 1024)] + [-(2.0**e) * 1.5 for e in range(-1074, 1023)]
    for _ in range(5000):
        x = struct.unpack('<d', rng.getrandbits(64).to_bytes(8, 'little'))[0]
        if math.isfinite(x):
            xs.append(x)
    for _ in range(1000):
        x = float(f'{rng.randint(1, 10**17)}e{rng.randint(-340, 310)}')
        if math.isfinite(x):
            xs.append(x)
    texts = [repr(x) for x in xs] + ['%.30e' % x for x in xs[:500]]
    outs = valtool('parse', [t.encode() for t in texts])
    for t, (ok, out) in zip(texts, outs):
        check(ok, f'{t}: {out!r}')
        check(out.decode() == repr(float(t)), f'{t}: C gives {out.decode()}')


def case_json_matches_json_dumps():
    """Values JSON holds natively come out exactly as json.dumps writes them."""
    rng = random.Random(1007)

    def jv(depth):
        r = rng.random()
        if depth == 0 or r < 0.4:
            return rng.choice([None, True, False, rand_int(rng), rand_float(rng, False),
                               rand_str(rng)])
        if r < 0.7:
            return [jv(depth - 1) for _ in range(rng.randint(0, 4))]
        return {rand_str(rng): jv(depth - 1) for _ in range(rng.randint(0, 4))}
    values = [jv(4) for _ in range(N)]
    outs = valtool('json', [repr(v).encode() for v in values])
    for v, (ok, out) in zip(values, outs):
        check(ok, f'json failed: {out!r}')
        check(out.decode() == json.dumps(v), f'{v!r}: {out.decode()!r} != {json.dumps(v)!r}')


# ------------------------------------------------------- hostile values

def repickle(objs_or_pickles, proto):
    """mpconn decodes each pickle and encodes it again with proto."""
    outs = valtool('repickle', objs_or_pickles, proto)
    for ok, data in outs:
        check(ok, f'repickle failed: {data!r}')
    return [data for _, data in outs]


def case_lone_surrogates_round_trip():
    """Strs with lone surrogates (pickled by CPython with surrogatepass)
    come back from mpconn as the same strings, from every protocol."""
    texts = ['\ud800', 'a\udfffb', '\ud83d\ude00', '\udc00\ud800', 'x\ud800\U0001f600\ud7ff\ue000',
             '\\ud800\n\x00\ud800' * 50]
    rng = random.Random(1008)
    for _ in range(100):
        texts.append(''.join(chr(rng.choice([rng.randint(0xd800, 0xdfff), rng.randint(0x20, 0x7e),
                                             rng.randint(0x80, 0x10ffff)]))
                             for _ in range(rng.randint(1, 12))))
    values = texts + [[t, (t,), {t: t}] for t in texts[:20]]
    for proto in range(0, 6):
        pickles = [pickle.dumps(v, protocol=proto) for v in values]
        for out_proto in (2, 4, 5):
            for v, data in zip(values, repickle(pickles, out_proto)):
                got = pickle.loads(data)
                check(got == v and type(got) is type(v), f'{proto}->{out_proto}: {got!r} != {v!r}')
    outs = valtool('decode', [pickle.dumps(t, 4) for t in texts])
    for t, (ok, text) in zip(texts, outs):
        check(ok, f'decode failed: {text!r}')
        check(ast.literal_eval(text.decode('utf-8', 'surrogatepass')) == t,
              f'repr {text!r} is not {t!r}')


def case_neighbouring_big_ints_set():
    """set(range(2**64 - 600, 2**64)) and its like decode (their hashes
    collided when big ints hashed by their double value)."""
    values = [set(range(2**64 - 600, 2**64)), frozenset(range(-2**70, -2**70 + 700)),
              {2**100 + i: i for i in range(600)},
              {2**64: 'a', 2.0**64: 'b', 1: 'c', 1.0: 'd', True: 'e', -0.0: 'f', 0: 'g'}]
    for proto in range(0, 6):
        pickles = [pickle.dumps(v, protocol=proto) for v in values]
        for v, data in zip(values, repickle(pickles, 4)):
            got = pickle.loads(data)
            check(got == v and shape(got) == shape(v), f'{proto}: {got!r}'[:200])


def case_nan_keys_dict():
    """A dict of 1000 NaN keys (each NaN its own key) decodes and comes back
    with 1000 keys; so does any mix with NaNs in tuples. (pickle never
    memoises floats, so each NaN it writes is a new object; a hand-made
    pickle that shares one is tested in test_pickle.c.)"""
    d = {float('nan'): i for i in range(1000)}
    n = float('nan')
    mixed = {n: 1, float('nan'): 2, 'x': [n, n], (n,): 3, (n, 1): 4, frozenset([n]): 5}
    for proto in range(0, 6):
        got, got2 = [pickle.loads(x) for x in
                     repickle([pickle.dumps(d, protocol=proto), pickle.dumps(mixed, protocol=proto)],
                              4)]
        check(len(got) == 1000 and sorted(got.values()) == list(range(1000)),
              f'{proto}: {len(got)} keys')
        check(all(k != k for k in got), f'{proto}: not all NaN keys')
        want = pickle.loads(pickle.dumps(mixed, protocol=proto))
        check(len(got2) == len(want) == 6 and repr(got2) == repr(want), f'{proto}: {got2!r}')


def dag(depth, leaf):
    x = leaf
    for _ in range(depth):
        x = ((x, x), (x, x))
    return x


def case_equal_dag_keys():
    """Two separately built equal tuple DAGs as keys: one key, and mpconn's
    pickle of it loads equal in CPython. Deep ones (4^26 leaves as trees)
    decode and re-encode quickly, still shared."""
    for depth in (3, 6, 8):
        v = {dag(depth, 'leaf'): 1, dag(depth, 'leaf'): 2, 'other': [dag(depth, 1.5)] * 2}
        for proto in range(0, 6):
            data = repickle([pickle.dumps(v, protocol=proto)], 4)[0]
            got = pickle.loads(data)
            check(got == v, f'depth {depth} proto {proto}: not equal')
    # Hand-built: CPython itself would take hours to hash these keys.
    def dag_ops(depth, memo):
        out = b'K\x01'
        for _ in range(2 * depth):
            out += b'\x94j' + struct.pack('<I', memo) + b'\x86'
            memo += 1
        return out, memo
    a, memo = dag_ops(26, 0)
    b, memo = dag_ops(26, memo)
    pk = b'\x80\x04}(' + a + b'K\x01' + b + b'K\x02u.'
    data = repickle([pk], 4)[0]
    # CPython cannot load it either (hashing the key would take hours): read
    # its opcodes instead. One key, each of the 52 tuples written once.
    ops = [op.name for op, _, _ in pickletools.genops(data)]
    check(ops.count('TUPLE2') == 52 and ops.count('SETITEM') == 1, f'{ops!r}'[:300])
    check(len(data) < len(pk), f'{len(data)} bytes: sharing lost')

def main():
    if hasattr(sys, 'set_int_max_str_digits'):
        sys.set_int_max_str_digits(0)  # big ints of the tests exceed 4300 digits rarely
    if len(sys.argv) != 2 or 'case_' + sys.argv[1] not in globals():
        names = sorted(n[5:] for n in globals() if n.startswith('case_'))
        print('usage: test_values.py CASE\ncases: ' + ' '.join(names), file=sys.stderr)
        return 2
    globals()['case_' + sys.argv[1]]()
    print('ok', sys.argv[1])
    return 0


if __name__ == '__main__':
    sys.exit(main())
