"""The reference receiver: a plain Python ``recv_into`` loop counting datagrams and bytes.

``python benchmarks/recv.py PORT [HOST]``; on SIGTERM prints one JSON line
(datagrams, bytes) and exits. Imports nothing beyond the standard library, so it starts
in a few tens of milliseconds.
"""

from __future__ import annotations

import json
import signal
import socket
import sys

SO_RCVBUFFORCE = 33  # Linux; lets root go past net.core.rmem_max


class _Stop(Exception):
    pass


def _stop(_signum, _frame):
    raise _Stop


def main(argv: list[str]) -> int:
    port = int(argv[0])
    host = argv[1] if len(argv) > 1 else "127.0.0.1"
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    try:  # 64 MiB like every receiver of the benchmark (the kernel doubles it)
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 * 1024 * 1024)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024 * 1024)
    sock.bind((host, port))
    buf = bytearray(65536)
    recv_into = sock.recv_into
    datagrams = 0
    total = 0
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        while True:
            total += recv_into(buf)
            datagrams += 1
    except _Stop:
        pass
    rcvbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    print(json.dumps({"datagrams": datagrams, "bytes": total, "rcvbuf": rcvbuf}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
