"""The server kinds (tests/interop/server_peer.c on mpconn_server) against
CPython peers: 100 concurrent multiprocessing.connection clients with an
authkey, and 100 line-protocol clients on raw handlers, for every kind and
stream family; shutdown by SIGTERM with clients connected, leaving no
thread, descriptor, child or socket file; the cap on handlers; failing and
crashing handlers; datagram servers (echo, truncation, unbound senders).

Run as `python3 test_servers_py.py CASE` (CTest does, one entry per case)."""

import os
import signal
import socket
import sys
import threading
import time
from multiprocessing.connection import Client

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mpconn_testlib as t  # noqa: E402
import pypeer  # noqa: E402

KEY = t.AUTHKEY
SHUTDOWN_BOUND = 5.0  # seconds; generous: a prompt shutdown takes milliseconds


def server_path():
    p = os.path.join(t.build_dir(), 'tests', 'server_peer')
    if not os.access(p, os.X_OK):
        raise AssertionError(f'server peer not built: {p}')
    return p


def start(kind, form, address, *args):
    """Starts server_peer; returns (peer, its address in mpconn syntax).
    Forking servers drain at shutdown unless told otherwise: a child still
    running finish when its client has its answer would be ended by the
    shutdown's SIGTERM and not counted."""
    if kind == 'fork' and '--drain' not in args:
        args = args + ('--drain', '1')
    if form == 'framed' and not address.startswith(('udp:', 'unixgram:')):
        args = ('--authkey', KEY.decode()) + args
    p = t.Peer([kind, form, address] + list(args), name=f'{kind} server', command=[server_path()])
    line = p.expect('listening on ', timeout=10)
    return p, line[len('listening on '):]


def stop(peer, address=None):
    """SIGTERM, a bounded wait for the exit, and the check that nothing was
    left behind; returns the counters of the done line."""
    t0 = time.monotonic()
    peer.proc.send_signal(signal.SIGTERM)
    rc = peer.wait(SHUTDOWN_BOUND + 10)
    took = time.monotonic() - t0
    out = peer.output()
    assert rc == 0, f'exit {rc}:\n{out}'
    assert took < SHUTDOWN_BOUND, f'shutdown took {took:.2f}s:\n{out}'
    done = [ln for ln in peer.lines if ln.startswith('done ')]
    assert done, out
    fields = dict(kv.split('=') for kv in done[-1].split()[1:])
    counts = {k: int(v) for k, v in fields.items()}
    assert counts['rc'] == 0, out
    assert counts['tasks'] == 1, f'threads left:\n{out}'
    assert counts['fds_left'] == 0, f'descriptors left:\n{out}'
    assert counts['children'] == 0, f'children left:\n{out}'
    if address and address.startswith('/'):
        assert not os.path.exists(address), f'socket file {address} left'
    if address and address.startswith('unixgram:/'):
        assert not os.path.exists(address[9:]), f'socket file {address} left'
    return counts


def errors(peer):
    return [ln for ln in peer.lines if ln.startswith('error ')]


def framed_client(addr, base, n=3):
    with pypeer.client(addr, KEY) as c:
        for i in range(n):
            c.send(base + i)
            if not c.poll(30):
                raise AssertionError(f'no answer to {base + i}')
            got = c.recv()
            assert got == base + i + 1, (base + i, got)
    return True


def raw_client(addr, base, n=3):
    s = t.raw_connect(addr, timeout=30)
    with s:
        f = s.makefile('rwb')
        for i in range(n):
            f.write(f'hello {base + i}\n'.encode())
            f.flush()
            got = f.readline()
            assert got == f'HELLO {base + i}\n'.encode(), got
        f.close()
    return True


def many(fn, addr, count):
    """count clients at once, each in its own thread; all must succeed."""
    jobs = [t.Background(fn, addr, 1000 * i) for i in range(count)]
    for j in jobs:
        assert j.result(60) is True


def clients_case(kind, family, form, count=100):
    if family == 'tcp6' and not t.has_ipv6_loopback():
        print('no IPv6 loopback: skipped')
        return
    peer, addr = start(kind, form, t.listen_spec(family))
    with peer:
        many(framed_client if form == 'framed' else raw_client, addr, count)
        counts = stop(peer, addr)
        assert counts['served'] == count, peer.output()
        assert counts['errors'] == 0, peer.output()


def held_open(addr, form, ready, release):
    """A client that has been answered once and then stays connected."""
    if form == 'framed':
        pyaddr, family = t.to_python(addr)
        with Client(pyaddr, family=family, authkey=KEY) as c:
            c.send(1)
            assert c.poll(10) and c.recv() == 2
            ready.release()
            release.wait(30)
    else:
        with t.raw_connect(addr) as s:
            s.sendall(b'x\n')
            assert s.recv(10) == b'X\n'
            ready.release()
            release.wait(30)
    return True


def shutdown_case(kind, form, drain=False):
    address = t.tmp_path()
    args = ('--drain', '1' if drain else '0')
    peer, addr = start(kind, form, address, *args)
    with peer:
        ready = threading.Semaphore(0)
        release = threading.Event()
        jobs = [t.Background(held_open, addr, form, ready, release) for _ in range(5)]
        for _ in jobs:
            assert ready.acquire(timeout=10)
        if drain:
            # Running handlers are left to finish; new peers are refused.
            peer.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 10
            while os.path.exists(address) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert not os.path.exists(address), 'listening socket file still there'
            assert peer.proc.poll() is None, 'exited before its handlers finished'
            release.set()
            for j in jobs:
                j.result(10)
            rc = peer.wait(10)
            assert rc == 0, peer.output()
            counts = dict(kv.split('=') for kv in peer.expect('done ').split()[1:])
            assert counts['tasks'] == '1' and counts['fds_left'] == '0', peer.output()
            assert counts['children'] == '0' and counts['served'] == '5', peer.output()
        else:
            counts = stop(peer, addr)
            release.set()
            for j in jobs:
                j.result(10)
            # Threads and loop finish the handlers whose streams were shut;
            # forked ones are ended by SIGTERM.
            assert counts['served'] == (0 if kind == 'fork' else 5), peer.output()


def cap_case(kind, form):
    peer, addr = start(kind, form, t.listen_spec('unix'), '--cap', '4', '--slow', '20')
    with peer:
        many(framed_client if form == 'framed' else raw_client, addr, 20)
        counts = stop(peer, addr)
        assert counts['served'] == 20, peer.output()
        assert 1 <= counts['max_active'] <= 4, peer.output()


def failing_case(kind, crash=False):
    peer, addr = start(kind, 'framed', t.listen_spec('tcp4'))
    with peer:
        pyaddr, family = t.to_python(addr)
        with Client(pyaddr, family=family, authkey=KEY) as c:
            c.send(-2 if crash else -1)
            # The handler failed: the connection ends without an answer.
            try:
                assert not c.poll(10) or c.recv() is None
            except EOFError:
                pass
        line = peer.expect('error ', timeout=10)
        if crash:
            assert 'killed by signal 6' in line, line
        else:
            assert 'failed' in line, line
        framed_client(addr, 7)  # and the server goes on
        counts = stop(peer, addr)
        assert counts['errors'] == 1, peer.output()


def raw_failing_case(kind):
    peer, addr = start(kind, 'raw', t.listen_spec('unix'))
    with peer:
        with t.raw_connect(addr) as s:
            s.sendall(b'fail\n')
            assert s.recv(10) == b''
        peer.expect('error ', timeout=10)
        raw_client(addr, 3)
        stop(peer, addr)


def wrong_key_case(kind):
    peer, addr = start(kind, 'framed', t.listen_spec('unix'))
    with peer:
        pyaddr, family = t.to_python(addr)
        try:
            Client(pyaddr, family=family, authkey=b'wrong').close()
            raise AssertionError('a wrong key was accepted')
        except Exception as e:  # AuthenticationError, or the peer hanging up
            assert 'digest' in str(e) or isinstance(e, (EOFError, OSError)), repr(e)
        line = peer.expect('error ', timeout=10)
        assert 'authentication' in line.lower() or 'MPCONN_ERR_AUTH' in line or 'digest' in line, line
        framed_client(addr, 1)
        stop(peer, addr)


def children_of(pid):
    """(pid, state) of each child of pid, zombies ('Z') included."""
    found = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/stat') as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(')') + 2:].split()
        if int(fields[1]) == pid:
            found.append((int(entry), fields[0]))
    return found


def no_zombie_case():
    """gh-90093: a child is reaped when it exits, not at the next request."""
    peer, addr = start('fork', 'framed', t.listen_spec('unix'))
    with peer:
        for i in range(3):
            framed_client(addr, i)
        # Each child exits once its client is gone, and is reaped then: soon
        # the server has no child at all, zombie or not, with no new request.
        deadline = time.monotonic() + 10
        while children_of(peer.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        left = children_of(peer.proc.pid)
        assert not left, f'children left while the server waits: {left}'
        assert peer.proc.poll() is None
        counts = stop(peer, addr)
        assert counts['served'] == 3, peer.output()


# ---------------------------------------------------------- datagrams

def dgram_socket(address):
    """A Python socket for an mpconn datagram address, and where to send."""
    if address.startswith('udp:['):
        host, port = address[5:].rsplit(']:', 1)
        return socket.socket(socket.AF_INET6, socket.SOCK_DGRAM), (host, int(port))
    if address.startswith('udp:'):
        host, port = address[4:].rsplit(':', 1)
        return socket.socket(socket.AF_INET, socket.SOCK_DGRAM), (host, int(port))
    name = address[9:]
    target = '\0' + name[1:] if name.startswith('@') else name
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind('\0' + f'mpconn-dgram-client-{os.getpid()}-{time.monotonic_ns()}')
    return s, target


def dgram_spec(family):
    return {'udp4': lambda: 'udp:127.0.0.1:0', 'udp6': lambda: 'udp:[::1]:0',
            'unixgram': lambda: 'unixgram:' + t.tmp_path(),
            'unixgram_abstract': lambda: f'unixgram:@mpconn-dgram-{os.getpid()}'}[family]()


def dgram_echo_case(kind, family):
    if family == 'udp6' and not t.has_ipv6_loopback():
        print('no IPv6 loopback: skipped')
        return
    peer, addr = start(kind, 'framed', dgram_spec(family))
    with peer:
        s, target = dgram_socket(addr)
        with s:
            s.settimeout(10)
            for i in range(50):
                msg = f'datagram {i}'.encode() * (i + 1)
                s.sendto(msg, target)
                got, _ = s.recvfrom(70000)
                assert got == msg, (i, got[:40])
            s.sendto(b'', target)
            assert s.recvfrom(10)[0] == b''
        counts = stop(peer, addr)
        assert counts['served'] == 51 and counts['errors'] == 0, peer.output()


def dgram_truncated_case(kind, family):
    peer, addr = start(kind, 'framed', dgram_spec(family), '--max-datagram', '100')
    with peer:
        s, target = dgram_socket(addr)
        with s:
            s.settimeout(10)
            s.sendto(b'x' * 100, target)
            assert s.recvfrom(1000)[0] == b'x' * 100
            s.sendto(b'y' * 101, target)
            line = peer.expect('error ', timeout=10)
            assert 'datagram of 101 bytes' in line and str(-10003) in line, line
            s.sendto(b'after', target)
            assert s.recvfrom(1000)[0] == b'after'  # the long one was never echoed cut
        counts = stop(peer, addr)
        assert counts['served'] == 2 and counts['errors'] == 1, peer.output()


def dgram_unbound_case(kind):
    peer, addr = start(kind, 'framed', dgram_spec('unixgram'))
    with peer:
        path = addr[9:]
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as u:
            u.sendto(b'who', path)
        # Unanswerable, yet known: the kernel's credentials of the sender.
        who = peer.expect('who ', timeout=10)
        assert who == f'who pid={os.getpid()} uid={os.getuid()} gid={os.getgid()}', who
        line = peer.expect('error ', timeout=10)
        assert 'cannot be answered' in line, line
        s, target = dgram_socket(addr)
        with s:
            s.settimeout(10)
            s.sendto(b'bound', target)
            assert s.recvfrom(100)[0] == b'bound'
        counts = stop(peer, addr)
        assert counts['served'] == 2, peer.output()


def dgram_cap_case(kind):
    """20 senders at once, a cap of 4: never more than 4 datagrams handled
    at once, every one answered (the rest wait in the socket's buffer)."""
    peer, addr = start(kind, 'framed', dgram_spec('udp4'), '--cap', '4', '--slow', '20')
    with peer:
        def one(i):
            s, target = dgram_socket(addr)
            with s:
                s.settimeout(30)
                s.sendto(b'n%d' % i, target)
                return s.recvfrom(100)[0] == b'n%d' % i
        jobs = [t.Background(one, i) for i in range(20)]
        for j in jobs:
            assert j.result(60) is True
        counts = stop(peer, addr)
        assert counts['served'] == 20, peer.output()
        assert 1 <= counts['max_active'] <= 4, peer.output()


# ------------------------------------------------------------- cases

def case_loop_unix_framed():
    clients_case('loop', 'unix', 'framed')


def case_loop_unix_raw():
    clients_case('loop', 'unix', 'raw')


def case_loop_abstract_framed():
    clients_case('loop', 'abstract', 'framed')


def case_loop_abstract_raw():
    clients_case('loop', 'abstract', 'raw')


def case_loop_tcp4_framed():
    clients_case('loop', 'tcp4', 'framed')


def case_loop_tcp4_raw():
    clients_case('loop', 'tcp4', 'raw')


def case_loop_tcp6_framed():
    clients_case('loop', 'tcp6', 'framed')


def case_loop_tcp6_raw():
    clients_case('loop', 'tcp6', 'raw')


def case_threads_unix_framed():
    clients_case('threads', 'unix', 'framed')


def case_threads_unix_raw():
    clients_case('threads', 'unix', 'raw')


def case_threads_abstract_framed():
    clients_case('threads', 'abstract', 'framed')


def case_threads_abstract_raw():
    clients_case('threads', 'abstract', 'raw')


def case_threads_tcp4_framed():
    clients_case('threads', 'tcp4', 'framed')


def case_threads_tcp4_raw():
    clients_case('threads', 'tcp4', 'raw')


def case_threads_tcp6_framed():
    clients_case('threads', 'tcp6', 'framed')


def case_threads_tcp6_raw():
    clients_case('threads', 'tcp6', 'raw')


def case_fork_unix_framed():
    clients_case('fork', 'unix', 'framed')


def case_fork_unix_raw():
    clients_case('fork', 'unix', 'raw')


def case_fork_abstract_framed():
    clients_case('fork', 'abstract', 'framed')


def case_fork_abstract_raw():
    clients_case('fork', 'abstract', 'raw')


def case_fork_tcp4_framed():
    clients_case('fork', 'tcp4', 'framed')


def case_fork_tcp4_raw():
    clients_case('fork', 'tcp4', 'raw')


def case_fork_tcp6_framed():
    clients_case('fork', 'tcp6', 'framed')


def case_fork_tcp6_raw():
    clients_case('fork', 'tcp6', 'raw')


def case_loop_shutdown_framed():
    shutdown_case('loop', 'framed')


def case_loop_shutdown_raw():
    shutdown_case('loop', 'raw')


def case_loop_shutdown_drain():
    shutdown_case('loop', 'framed', drain=True)


def case_loop_cap_framed():
    cap_case('loop', 'framed')


def case_loop_cap_raw():
    cap_case('loop', 'raw')


def case_loop_failing_handler():
    failing_case('loop')


def case_loop_failing_raw_handler():
    raw_failing_case('loop')


def case_loop_wrong_key():
    wrong_key_case('loop')


def case_threads_shutdown_framed():
    shutdown_case('threads', 'framed')


def case_threads_shutdown_raw():
    shutdown_case('threads', 'raw')


def case_threads_shutdown_drain():
    shutdown_case('threads', 'framed', drain=True)


def case_threads_cap_framed():
    cap_case('threads', 'framed')


def case_threads_cap_raw():
    cap_case('threads', 'raw')


def case_threads_failing_handler():
    failing_case('threads')


def case_threads_failing_raw_handler():
    raw_failing_case('threads')


def case_threads_wrong_key():
    wrong_key_case('threads')


def case_fork_shutdown_framed():
    shutdown_case('fork', 'framed')


def case_fork_shutdown_raw():
    shutdown_case('fork', 'raw')


def case_fork_shutdown_drain():
    shutdown_case('fork', 'framed', drain=True)


def case_fork_cap_framed():
    cap_case('fork', 'framed')


def case_fork_cap_raw():
    cap_case('fork', 'raw')


def case_fork_failing_handler():
    failing_case('fork')


def case_fork_failing_raw_handler():
    raw_failing_case('fork')


def case_fork_wrong_key():
    wrong_key_case('fork')


def case_fork_no_zombie_between_requests():
    no_zombie_case()


def case_fork_crashing_child():
    failing_case('fork', crash=True)


def case_dgram_loop_udp4_echo():
    dgram_echo_case('loop', 'udp4')


def case_dgram_loop_udp6_echo():
    dgram_echo_case('loop', 'udp6')


def case_dgram_loop_unixgram_echo():
    dgram_echo_case('loop', 'unixgram')


def case_dgram_loop_unixgram_abstract_echo():
    dgram_echo_case('loop', 'unixgram_abstract')


def case_dgram_loop_truncated():
    dgram_truncated_case('loop', 'udp4')


def case_dgram_loop_unixgram_truncated():
    dgram_truncated_case('loop', 'unixgram')


def case_dgram_loop_unbound_sender():
    dgram_unbound_case('loop')


def case_dgram_threads_udp4_echo():
    dgram_echo_case('threads', 'udp4')


def case_dgram_threads_udp6_echo():
    dgram_echo_case('threads', 'udp6')


def case_dgram_threads_unixgram_echo():
    dgram_echo_case('threads', 'unixgram')


def case_dgram_threads_unixgram_abstract_echo():
    dgram_echo_case('threads', 'unixgram_abstract')


def case_dgram_threads_cap():
    dgram_cap_case('threads')


def case_dgram_threads_truncated():
    dgram_truncated_case('threads', 'udp4')


def case_dgram_threads_unixgram_truncated():
    dgram_truncated_case('threads', 'unixgram')


def case_dgram_threads_unbound_sender():
    dgram_unbound_case('threads')


if __name__ == '__main__':
    t.main(globals())
