#!/usr/bin/env python3
"""Opens many keep-alive connections to a proxy and holds them idle.

Used by bench/idle.sh to measure what an idle keep-alive connection costs a proxy.
Each connection sends one HTTP/1.1 request and reads the whole answer, so the proxy
has finished with it and holds it only as an idle keep-alive connection. When all are
open the script prints "READY <n>" on stdout and keeps them until stdin closes (or a
time limit passes), so the caller decides when to measure and when to let go.

With CAFILE, each connection first completes a TLS handshake for HOST (SNI, checked against
CAFILE), and its request and answer go over TLS: the proxy then holds an idle TLS session.

Usage: idle_conns.py PORT HOST COUNT [HOLD_SECONDS [CAFILE]]
"""

import select
import socket
import ssl
import sys
import time


def read_answer(sock: socket.socket) -> None:
    """Reads one HTTP/1.1 answer with a Content-Length body; raises on anything else."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed before the answer head")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    if not lines[0].startswith(b"HTTP/1.1 200"):
        raise ConnectionError(f"unexpected status line {lines[0]!r}")
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
        if name.strip().lower() == b"connection" and b"close" in value.lower():
            raise ConnectionError("the proxy closes the connection: not keep-alive")
    if length is None:
        raise ConnectionError("answer without Content-Length")
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed in the middle of the body")
        body += chunk


def main() -> int:
    port, host, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    hold = float(sys.argv[4]) if len(sys.argv) > 4 else 600.0
    tls = ssl.create_default_context(cafile=sys.argv[5]) if len(sys.argv) > 5 else None
    request = f"GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: weir-bench-idle\r\n\r\n".encode()
    socks = []
    for i in range(count):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            if tls is not None:
                s = tls.wrap_socket(s, server_hostname=host)
            s.sendall(request)
            read_answer(s)
        except (OSError, ConnectionError, ValueError, ssl.SSLError) as e:
            print(f"connection {i}: {e}", file=sys.stderr)
            return 1
        socks.append(s)
    print(f"READY {len(socks)}", flush=True)
    # Hold until the caller closes our stdin, bounded so nothing is left behind.
    deadline = time.monotonic() + hold
    while time.monotonic() < deadline:
        ready, _, _ = select.select([sys.stdin], [], [], 1.0)
        if ready and not sys.stdin.readline():
            break
    # Check the proxy kept every connection open while we measured.
    closed = 0
    for s in socks:
        s.setblocking(False)
        try:
            if s.recv(1) == b"":
                closed += 1
        except (BlockingIOError, ssl.SSLWantReadError):
            pass
        except OSError:
            closed += 1
    print(f"CLOSED {closed}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
