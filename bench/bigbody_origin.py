"""A tiny origin for bench/bigbody.sh, on 127.0.0.1 only.

GET /big answers SIZE bytes with a Content-Length, streamed in 1 MiB writes; any request with
a body (PUT/POST) is read to the end and answered with the byte count. One thread per
connection, keep-alive honoured.
"""
import socket
import sys
import threading

from origin_http import answer, read_body, read_head

SIZE = int(sys.argv[2])
BLOCK = b"\0" * (1 << 20)


def serve(conn):
    buf = b""
    with conn:
        while True:
            request_line, headers, buf = read_head(conn, buf)
            if request_line is None:
                return
            method = request_line.split(" ")[0]
            if "content-length" in headers:
                length = int(headers["content-length"])
                buf = read_body(conn, buf, length)
                if buf is None:
                    return
                answer(conn, b"200 OK", str(length).encode())
            elif method == "GET":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % SIZE)
                left = SIZE
                while left > 0:
                    n = min(left, len(BLOCK))
                    conn.sendall(BLOCK[:n])
                    left -= n
            else:
                answer(conn, b"411 Length Required", b"")


def main():
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", int(sys.argv[1])))
    srv.listen(64)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
