"""A tiny origin for bench/bigbody.sh, on 127.0.0.1 only.

GET /big answers SIZE bytes with a Content-Length, streamed in 1 MiB writes; any request with
a body (PUT/POST) is read to the end and answered with the byte count. One thread per
connection, keep-alive honoured.
"""
import socket
import sys
import threading

SIZE = int(sys.argv[2])
BLOCK = b"\0" * (1 << 20)


def read_head(conn, buf):
    while b"\r\n\r\n" not in buf:
        chunk = conn.recv(65536)
        if not chunk:
            return None, b""
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head.decode("latin-1"), rest


def serve(conn):
    buf = b""
    with conn:
        while True:
            head, buf = read_head(conn, buf)
            if head is None:
                return
            lines = head.split("\r\n")
            method = lines[0].split(" ")[0]
            headers = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            if "content-length" in headers:
                left = int(headers["content-length"]) - len(buf)
                got = len(buf)
                buf = b""
                while left > 0:
                    chunk = conn.recv(min(left, 1 << 20))
                    if not chunk:
                        return
                    left -= len(chunk)
                    got += len(chunk)
                body = str(got).encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            elif method == "GET":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % SIZE)
                left = SIZE
                while left > 0:
                    n = min(left, len(BLOCK))
                    conn.sendall(BLOCK[:n])
                    left -= n
            else:
                conn.sendall(b"HTTP/1.1 411 Length Required\r\nContent-Length: 0\r\n\r\n")


def main():
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", int(sys.argv[1])))
    srv.listen(64)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


main()
