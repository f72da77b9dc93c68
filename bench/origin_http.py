"""The HTTP/1.1 reading the bench origins share (bigbody_origin.py, soak_origin.py).

Plain Python 3 stdlib, blocking sockets, one request at a time on a connection: enough for a
test origin, not a general HTTP parser (no chunked request bodies, no folded fields).
"""

MAX_HEAD = 65536


def read_head(conn, buf):
    """Reads one request head from conn, buf holding bytes already read.

    Returns (request_line, headers, rest): headers a dict of lower-cased names (the last of a
    repeated field wins), rest the bytes after the head. (None, None, b"") when the
    connection closes first or the head passes MAX_HEAD bytes.
    """
    while b"\r\n\r\n" not in buf:
        if len(buf) > MAX_HEAD:
            return None, None, b""
        chunk = conn.recv(65536)
        if not chunk:
            return None, None, b""
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    if len(head) > MAX_HEAD:
        return None, None, b""
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return lines[0], headers, rest


def read_body(conn, buf, length):
    """Reads a body of length bytes, buf holding bytes already read, without keeping it.

    Returns the bytes after the body (the start of a pipelined request), or None when the
    connection closes before the body's end.
    """
    if len(buf) >= length:
        return buf[length:]
    left = length - len(buf)
    while left > 0:
        chunk = conn.recv(min(left, 1 << 20))
        if not chunk:
            return None
        left -= len(chunk)
    return b""


def answer(conn, status, body, extra=b""):
    """Sends a response with a Content-Length: status like b"200 OK", extra as header lines
    each ending in CRLF."""
    conn.sendall(b"HTTP/1.1 %s\r\nContent-Length: %d\r\n%s\r\n%s" % (status, len(body), extra, body))
