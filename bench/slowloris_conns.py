#!/usr/bin/env python3
"""Holds many slowloris connections open against a proxy.

Used by bench/slowloris.sh. Each connection sends the start of a request head and then one
more header line every INTERVAL seconds, never the end of the head, the way a slowloris
attack holds a server's connections. A connection the proxy closes (its request-head timeout)
is opened again at once, so COUNT stay open. Prints "READY <n>" once all are open, then keeps
them until stdin closes or HOLD_SECONDS pass, and prints "REOPENED <n>" (connections the
proxy closed and the script opened again) at the end.

Usage: slowloris_conns.py PORT HOST COUNT [INTERVAL] [HOLD_SECONDS]
Traffic goes to 127.0.0.1 only.
"""

import select
import socket
import sys
import time


def opened(port: int, host: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\n".encode())
    s.setblocking(False)
    return s


def main() -> int:
    port, host, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    interval = float(sys.argv[4]) if len(sys.argv) > 4 else 5.0
    hold = float(sys.argv[5]) if len(sys.argv) > 5 else 600.0
    socks = [opened(port, host) for _ in range(count)]
    print(f"READY {len(socks)}", flush=True)
    reopened = 0
    deadline = time.monotonic() + hold
    # One header line per connection per interval, spread over the interval.
    per_tick = max(1, count // max(1, int(interval * 10)))
    turn = 0
    while time.monotonic() < deadline:
        ready, _, _ = select.select([sys.stdin], [], [], 0.1)
        if ready and not sys.stdin.readline():
            break
        for _ in range(per_tick):
            i = turn % count
            turn += 1
            s = socks[i]
            alive = True
            try:
                if s.recv(4096) == b"":
                    alive = False
            except BlockingIOError:
                pass
            except OSError:
                alive = False
            if alive:
                try:
                    s.send(b"X-Slow: 1\r\n")
                except OSError:
                    alive = False
            if not alive:
                s.close()
                socks[i] = opened(port, host)
                reopened += 1
    for s in socks:
        s.close()
    print(f"REOPENED {reopened}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
