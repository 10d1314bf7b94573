#!/usr/bin/env python3
"""A Python multiprocessing manager (SyncManager) for manager_client.c to use.

Usage: MANAGER_AUTHKEY=... python3 manager_server.py ADDRESS
ADDRESS is a Unix socket path or HOST:PORT (port 0 picks one). Prints
"listening on ADDRESS" once it serves, in mpconn's address syntax.
"""
import os
import sys
from multiprocessing.managers import SyncManager


def main():
    text = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:0"
    if "/" in text:
        address = text
    else:
        host, _, port = text.rpartition(":")
        address = (host, int(port))
    manager = SyncManager(address=address, authkey=os.environb[b"MANAGER_AUTHKEY"])
    server = manager.get_server()
    where = server.address
    if isinstance(where, tuple):
        where = "%s:%d" % where
    print("listening on", where, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
