"""A misbehaving origin for bench/soak.sh, on 127.0.0.1 only.

    python3 soak_origin.py PORT

One thread per connection, keep-alive honoured. What it answers depends on the path, so the
load generator knows which failures it asked for:

  GET  /ok              200, a short body
  PUT  /upload          reads a Content-Length body to the end, answers its size
  GET  /ws              a WebSocket (RFC 6455) that echoes every frame it gets
  GET  /fault/reset     half a response, then a TCP reset
  GET  /fault/trickle   a 200 whose 40-byte body comes one byte every 50 ms
  GET  /fault/garbage   bytes that are not HTTP, then a close
  GET  /fault/vanish    a close without an answer
"""
import base64
import hashlib
import socket
import struct
import sys
import threading
import time

from origin_http import answer, read_body, read_head

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def recv_exact(conn, buf, n):
    while len(buf) < n:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        buf += chunk
    return buf


def websocket(conn, headers, buf):
    key = headers.get("sec-websocket-key", "").encode()
    accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
    conn.sendall(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )
    while True:
        buf = recv_exact(conn, buf, 2)
        if buf is None:
            return
        opcode, length = buf[0] & 0x0F, buf[1] & 0x7F
        at = 2
        if length == 126:
            buf = recv_exact(conn, buf, 4)
            if buf is None:
                return
            (length,) = struct.unpack("!H", buf[2:4])
            at = 4
        elif length == 127:
            buf = recv_exact(conn, buf, 10)
            if buf is None:
                return
            (length,) = struct.unpack("!Q", buf[2:10])
            at = 10
        buf = recv_exact(conn, buf, at + 4 + length)
        if buf is None:
            return
        mask = buf[at:at + 4]
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(buf[at + 4:at + 4 + length]))
        buf = buf[at + 4 + length:]
        if opcode == 8:
            conn.sendall(b"\x88\x00")
            return
        header = bytes([0x80 | opcode])
        if length < 126:
            header += bytes([length])
        else:
            header += b"\x7e" + struct.pack("!H", length)
        conn.sendall(header + payload)


def serve(conn):
    buf = b""
    with conn:
        while True:
            request_line, headers, buf = read_head(conn, buf)
            if request_line is None:
                return
            parts = request_line.split(" ")
            path = parts[1] if len(parts) > 1 else "/"
            if path == "/ws":
                websocket(conn, headers, buf)
                return
            if "content-length" in headers:
                length = int(headers["content-length"])
                buf = read_body(conn, buf, length)
                if buf is None:
                    return
                answer(conn, b"200 OK", str(length).encode())
            elif path == "/fault/reset":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial")
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            elif path == "/fault/trickle":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n")
                for _ in range(40):
                    conn.sendall(b"x")
                    time.sleep(0.05)
            elif path == "/fault/garbage":
                conn.sendall(b"\x00\x01 this is not HTTP \xff\r\n\r\n")
                return
            elif path == "/fault/vanish":
                return
            else:
                answer(conn, b"200 OK", b"soak-ok")


def main():
    port = int(sys.argv[1])
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(1024)
    while True:
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
