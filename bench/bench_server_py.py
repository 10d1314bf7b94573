# The CPython servers of make bench's server rows: socketserver's
# ThreadingTCPServer or ForkingTCPServer with the handler a Python user
# would write for multiprocessing peers: a Connection over the accepted
# socket, recv_bytes and send_bytes back until the client closes.
# Usage: bench_server_py.py --kind threading|forking --fd N
# The address bound ("127.0.0.1:PORT") is written to fd N as one line; the
# server then runs until it is killed.
import os
import socket
import socketserver
import sys
from multiprocessing.connection import Connection


class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = Connection(os.dup(self.request.fileno()))
        try:
            while True:
                conn.send_bytes(conn.recv_bytes())
        except (EOFError, OSError):
            pass
        finally:
            conn.close()


def main():
    args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
    base = {"threading": socketserver.ThreadingTCPServer,
            "forking": socketserver.ForkingTCPServer}[args["--kind"]]

    class Server(base):
        allow_reuse_address = True
        daemon_threads = True
        block_on_close = False
        # As mpconn's defaults for these rows: a backlog of 128 (not 5),
        # and room for the 100 clients (ForkingMixIn waits at 40 children).
        request_queue_size = 128
        max_children = 256

    srv = Server(("127.0.0.1", 0), Echo)
    fd = int(args["--fd"])
    os.write(fd, ("%s:%d\n" % srv.server_address).encode())
    os.close(fd)
    srv.serve_forever()


if __name__ == "__main__":
    main()
