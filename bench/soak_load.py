"""Mixed, bounded traffic for bench/soak.sh, to 127.0.0.1 only.

    python3 soak_load.py PORT HOST SECONDS EVENTS_FILE

Runs for SECONDS, then prints one JSON summary. Kinds of traffic, each in its own threads:
keep-alive GETs, a new connection per GET, WebSocket echo sessions, 100 MB uploads, slowloris
sockets (a header byte every few seconds), and requests that ask an origin to misbehave
(/fault/...). Every failure is recorded with its time. A failure is *explained* when it met an
injected fault: a /fault/ request, or a request in flight around a moment EVENTS_FILE lists
(`<unix time> kill-worker` or `<unix time> kill-origin`, written by soak.sh). The rest are
*unexplained*: the figure that must be zero.
"""
import base64
import http.client
import json
import os
import socket
import struct
import sys
import threading
import time

PORT, HOST, SECONDS, EVENTS = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), sys.argv[4]
DEADLINE = time.time() + SECONDS
UPLOAD_BYTES = 100 * 1024 * 1024
SLOWLORIS_SOCKETS = 200
lock = threading.Lock()
stats = {}
failures = []  # (start, end, kind, detail)


def record(kind, ok, start, detail=""):
    with lock:
        s = stats.setdefault(kind, {"ok": 0, "failed": 0})
        s["ok" if ok else "failed"] += 1
        if not ok:
            failures.append((start, time.time(), kind, detail))


def connect():
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=15)
    return c


def keepalive():
    conn = connect()
    while time.time() < DEADLINE:
        start = time.time()
        try:
            conn.request("GET", "/ok", headers={"Host": HOST})
            r = conn.getresponse()
            body = r.read()
            record("keepalive", r.status == 200 and body == b"soak-ok", start, str(r.status))
        except Exception as e:  # noqa: BLE001 - every failure is counted, whatever it is
            record("keepalive", False, start, repr(e))
            conn.close()
            conn = connect()
    conn.close()


def newconn():
    while time.time() < DEADLINE:
        start = time.time()
        conn = connect()
        try:
            conn.request("GET", "/ok", headers={"Host": HOST, "Connection": "close"})
            r = conn.getresponse()
            body = r.read()
            record("new-connection", r.status == 200 and body == b"soak-ok", start, str(r.status))
        except Exception as e:  # noqa: BLE001
            record("new-connection", False, start, repr(e))
        finally:
            conn.close()


def ws_frame(payload):
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + masked


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def websocket():
    while time.time() < DEADLINE:
        start = time.time()
        try:
            with socket.create_connection(("127.0.0.1", PORT), timeout=15) as s:
                key = base64.b64encode(os.urandom(16))
                s.sendall(
                    b"GET /ws HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: "
                    + key + b"\r\n\r\n"
                )
                head = b""
                while b"\r\n\r\n" not in head:
                    head += recv_exact(s, 1)
                if not head.startswith(b"HTTP/1.1 101"):
                    raise ConnectionError(head.split(b"\r\n")[0].decode("latin-1"))
                for i in range(20):
                    msg = b"soak %d" % i
                    s.sendall(ws_frame(msg))
                    header = recv_exact(s, 2)
                    got = recv_exact(s, header[1] & 0x7F)
                    if got != msg:
                        raise ConnectionError("echo mismatch")
                s.sendall(bytes([0x88, 0x80]) + os.urandom(4))
            record("websocket", True, start)
        except Exception as e:  # noqa: BLE001
            record("websocket", False, start, repr(e))


def upload():
    block = b"\0" * (1 << 20)
    while time.time() < DEADLINE - 30:
        start = time.time()
        try:
            with socket.create_connection(("127.0.0.1", PORT), timeout=30) as s:
                s.sendall(
                    b"PUT /upload HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                    % (HOST.encode(), UPLOAD_BYTES)
                )
                for _ in range(UPLOAD_BYTES // len(block)):
                    s.sendall(block)
                answer = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    answer += chunk
            ok = answer.startswith(b"HTTP/1.1 200") and answer.endswith(str(UPLOAD_BYTES).encode())
            record("upload-100MB", ok, start, answer[:40].decode("latin-1"))
        except Exception as e:  # noqa: BLE001
            record("upload-100MB", False, start, repr(e))


def slowloris():
    """Holds SLOWLORIS_SOCKETS half-sent requests open; Weir's request timeout closes them,
    and they are opened again. Their closes are expected, so they are counted, not failed."""
    socks = []
    reopened = 0
    while time.time() < DEADLINE:
        while len(socks) < SLOWLORIS_SOCKETS and time.time() < DEADLINE:
            try:
                s = socket.create_connection(("127.0.0.1", PORT), timeout=5)
                s.sendall(b"GET /ok HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\n")
                socks.append(s)
            except OSError:
                time.sleep(0.1)
                break
        time.sleep(3)
        alive = []
        for s in socks:
            try:
                s.sendall(b"X-Slow: 1\r\n")
                alive.append(s)
            except OSError:
                s.close()
                reopened += 1
        socks = alive
    for s in socks:
        s.close()
    with lock:
        stats["slowloris"] = {"held": SLOWLORIS_SOCKETS, "closed_by_proxy": reopened}


def faults():
    paths = ["/fault/reset", "/fault/trickle", "/fault/garbage", "/fault/vanish"]
    i = 0
    while time.time() < DEADLINE:
        path = paths[i % len(paths)]
        i += 1
        start = time.time()
        conn = connect()
        try:
            conn.request("GET", path, headers={"Host": HOST})
            r = conn.getresponse()
            r.read()
            kind = "fault-answered-%d" % r.status
        except Exception:  # noqa: BLE001 - a fault may end in any error: that is its point
            kind = "fault-connection-error"
        finally:
            conn.close()
        with lock:
            stats.setdefault(kind, 0)
            stats[kind] += 1
        time.sleep(0.05)


def explained(start, end, events):
    return any(start - 0.5 <= t <= end + 0.5 for t, _ in events)


def main():
    threads = (
        [threading.Thread(target=keepalive) for _ in range(4)]
        + [threading.Thread(target=newconn) for _ in range(2)]
        + [threading.Thread(target=websocket), threading.Thread(target=upload)]
        + [threading.Thread(target=slowloris), threading.Thread(target=faults)]
    )
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    events = []
    if EVENTS != "/dev/null" and os.path.exists(EVENTS):
        with open(EVENTS) as f:
            for line in f:
                t, _, what = line.partition(" ")
                events.append((float(t), what.strip()))
    unexplained = [f for f in failures if not explained(f[0], f[1], events)]
    print(json.dumps({
        "stats": stats,
        "failures": len(failures),
        "unexplained": len(unexplained),
        "unexplained_samples": [
            {"at": round(f[0] - (DEADLINE - SECONDS), 2), "kind": f[2], "detail": f[3]}
            for f in unexplained[:20]
        ],
        "events": len(events),
    }))


if __name__ == "__main__":
    main()
