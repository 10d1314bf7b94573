# The asyncio echo server of make bench's event-loop rows: what a Python
# user would write to serve the multiprocessing framing (and, with an
# authkey, its HMAC handshake) without one thread per connection.
# Usage: bench_loop_py.py --listen ADDR --fd N [--authkey KEY]
# ADDR is a Unix path or HOST:PORT; the address actually bound is written
# to fd N as one line, then the server runs until it is killed.
import asyncio
import hmac
import os
import sys

CHALLENGE = b"#CHALLENGE#"
WELCOME = b"#WELCOME#"
FAILURE = b"#FAILURE#"


def frame(payload):
    return len(payload).to_bytes(4, "big") + payload


class Echo(asyncio.Protocol):
    def __init__(self, key):
        self.key = key
        self.buf = bytearray()
        # Handshake steps as the listener side: the answer to our
        # challenge, then the peer's challenge, then its verdict.
        self.step = 0 if key else 3

    def connection_made(self, transport):
        self.tr = transport
        if self.key:
            self.nonce = b"{sha256}" + os.urandom(40)
            transport.write(frame(CHALLENGE + self.nonce))

    def pause_writing(self):
        self.tr.pause_reading()

    def resume_writing(self):
        self.tr.resume_reading()

    def fail(self):
        self.tr.write(frame(FAILURE))
        self.tr.close()

    def handshake(self, msg):
        if self.step == 0:
            want = b"{sha256}" + hmac.new(self.key, self.nonce, "sha256").digest()
            if not hmac.compare_digest(msg, want):
                return self.fail()
            self.tr.write(frame(WELCOME))
        elif self.step == 1:
            if not msg.startswith(CHALLENGE):
                return self.fail()
            message = msg[len(CHALLENGE):]
            if message.startswith(b"{"):
                name = message[1:message.index(b"}")].decode()
                answer = b"{" + name.encode() + b"}" + hmac.new(self.key, message, name).digest()
            else:
                answer = hmac.new(self.key, message, "md5").digest()
            self.tr.write(frame(answer))
        elif self.step == 2:
            if msg != WELCOME:
                return self.tr.close()
        self.step += 1

    def data_received(self, data):
        buf = self.buf
        if not buf and self.step == 3:
            # The common case: whole messages in one read, echoed as read.
            pos = self.whole(data)
            if pos == len(data):
                self.tr.write(data)
                return
            if pos:
                self.tr.write(data[:pos])
            buf += data[pos:]
            return
        buf += data
        while self.step < 3 and len(buf) >= 4:
            n = int.from_bytes(buf[:4], "big")
            if len(buf) < 4 + n:
                return
            msg = bytes(buf[4:4 + n])
            del buf[:4 + n]
            self.handshake(msg)
        pos = self.whole(buf)
        if pos:
            self.tr.write(bytes(buf[:pos]))
            del buf[:pos]

    @staticmethod
    def whole(b):
        """The length of the run of whole messages at the start of b."""
        pos, n = 0, len(b)
        while n - pos >= 4:
            size = int.from_bytes(b[pos:pos + 4], "big")
            if n - pos - 4 < size:
                break
            pos += 4 + size
        return pos


async def main(argv):
    opts = dict(zip(argv[::2], argv[1::2]))
    key = opts.get("--authkey", "").encode() or None
    addr = opts["--listen"]
    loop = asyncio.get_running_loop()
    factory = lambda: Echo(key)  # noqa: E731
    if addr.startswith("/"):
        server = await loop.create_unix_server(factory, addr, backlog=1024)
        bound = addr
    else:
        host, port = addr.rsplit(":", 1)
        server = await loop.create_server(factory, host, int(port), backlog=1024)
        h, p = server.sockets[0].getsockname()[:2]
        bound = "%s:%d" % (h, p)
    fd = int(opts["--fd"])
    os.write(fd, (bound + "\n").encode())
    os.close(fd)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1:]))
    except KeyboardInterrupt:
        pass
