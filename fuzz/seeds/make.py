#!/usr/bin/env python3
"""Writes the seed corpora into fuzz/corpus/<target>/ (run from the repository root).

Seeds are real messages (what curl, browsers, nginx and HAProxy send), the smuggling and
framing cases the unit tests refuse, the committed wire goldens and every desired-state file
in examples/ and tests/golden/. Re-running rewrites the seed-* files and leaves the
regression-* files (crashes the fuzzer found) alone.
"""
import glob
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")

# Four bytes that cut the input into reads (see fuzz-checks' `cuts`): a few ways.
CUTS = [b"\x00\x00\x00\x00", b"\x40\x80\xc0\xff", b"\x01\x02\x03\x04", b"\x7f\x7f\x7f\x7f"]

REQUESTS = [
    b"GET / HTTP/1.1\r\nHost: a.test\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n",
    b"GET /index.html?q=1&r=%2e%2E HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\nAccept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\nConnection: keep-alive\r\nCookie: a=b; c=d\r\nUpgrade-Insecure-Requests: 1\r\n\r\n",
    b"POST /api/items HTTP/1.1\r\nHost: api.test\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"a\": \"b\"}\r\n",
    b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"GET http://a.test/x?y HTTP/1.1\r\nHost: other\r\n\r\n",
    b"GET https://b.test:8443 HTTP/1.1\r\nHost: b.test\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: c\r\n\r\n",
    b"GET /chat HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
    b"HEAD / HTTP/1.0\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /second HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n",
    # Refused: smuggling and framing.
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12, 12\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
    b"GET / HTTP/1.1\nHost: a\n\n",
    b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",
    b"GET /admin#/public HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    b"GET / HTTP/1.2\r\nHost: a\r\n\r\n",
    b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX-Bad: \x01\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(101)) + b"\r\n",
    b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\nHost: a\r\n\r\n",
]

RESPONSES = [
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sun, 06 Dec 2026 22:00:00 GMT\r\nContent-Type: text/html\r\nContent-Length: 615\r\nLast-Modified: Tue, 01 Dec 2026 10:00:00 GMT\r\nConnection: keep-alive\r\nETag: \"abc-267\"\r\nAccept-Ranges: bytes\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close",
    b"HTTP/1.0 201 Made It\r\nContent-Length: 10\r\nConnection: keep-alive\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
    b"HTTP/1.1 302 Found\r\nLocation: /login\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nConnection: close\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"HTTP/1.1 000 Weird\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 600 Custom\r\n\r\n",
    b"HTTP/2.0 200 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\nX: a\r\n\r\n",
    b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
    b"garbage\r\n\r\n",
]

# Only for response_head_split: heads whose reads matter (several interim heads in a row,
# empty lines before the status line, a head of many fields, a flaw after an interim head).
SPLIT_RESPONSES = [
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-Field-%d: %s\r\n" % (i, b"v" * 200) for i in range(60)) + b"\r\n",
    b"HTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 200 OK\r\nX: a\nY: b\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x02hi",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r",
]

CHUNKED = [
    b"5\r\nhello\r\n0\r\n\r\n",
    b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET / HTTP/1.1\r\n",
    b"000005\r\nhello\r\n0\r\n\r\n",
    b"A\r\n0123456789\r\n0\r\n\r\n",
    b"5;name=value\r\nhello\r\n0\r\n\r\n",
    b"5 ; a=\"quoted \\\" string\" ;b\r\nhello\r\n0\r\n\r\n",
    b"5\r\nhello\r\n0\r\nExpires: never\r\nX-Checksum: abc\r\n\r\n",
    b"0\r\n\r\n",
    b"5\r\nhello\r\n0\r\nContent-Length: 5\r\n\r\n",
    b"5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"-5\r\nhello\r\n0\r\n\r\n",
    b"0x5\r\nhello\r\n0\r\n\r\n",
    b"5\nhello\n0\n\n",
    b"5\r\nhelloXX0\r\n\r\n",
    b"fffffffffffffffffff\r\n",
    b"5;" + b"a" * 5000 + b"\r\nhello\r\n0\r\n\r\n",
    b"1\r\na\r\n1\r\nb\r\n1\r\nc\r\n0\r\n\r\n",
    b"5\r\nhello\r\n0\r\nX: a\r\n b\r\n\r\n",
    b"0" * 70 + b"5\r\nhello\r\n0\r\n\r\n",
]

PATHS = [
    "/", "/index.html", "/api/v1/items?sort=asc", "/a/b/../c", "/a/./b", "/a//b///c",
    "/api/%2e%2e/secret", "/api/%2E%2E/secret", "/%7Euser/", "/%c3%a9t%C3%A9", "/%%34",
    "/%4%31", "/a/b/..", "/a/b/.", "/../x", "/.well-known/acme-challenge/x", "a/../../b",
    "./x", "../x", "/a/%2F/b", "/%00", "/a?b/../c", "/a/..;/b", "//evil.test/x",
    "/%252e%252e/", "/a/b/c/../../../../d", "/" + "a/" * 200,
]

def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

def clear(target):
    d = os.path.join(CORPUS, target)
    if os.path.isdir(d):
        for f in glob.glob(os.path.join(d, "seed-*")):
            os.remove(f)

def main():
    for t in ["request_head", "response_head", "response_head_split", "chunked_body", "routing_path",
              "command_frames", "desired_yaml", "desired_toml"]:
        clear(t)
    for i, r in enumerate(REQUESTS):
        write("request_head", "seed-%02d" % i, CUTS[i % len(CUTS)] + r)
    for i, r in enumerate(RESPONSES):
        write("response_head", "seed-%02d" % i, bytes([i % 2]) + r)
    for i, r in enumerate(RESPONSES + SPLIT_RESPONSES):
        write("response_head_split", "seed-%02d" % i, bytes([i % 2]) + CUTS[i % len(CUTS)] + r)
    for i, r in enumerate(CHUNKED):
        write("chunked_body", "seed-%02d" % i, CUTS[i % len(CUTS)] + r)
    for i, p in enumerate(PATHS):
        write("routing_path", "seed-%02d" % i, p.encode())
    wire = sorted(glob.glob(os.path.join(ROOT, "tests/golden/wire/request-*.hex")))
    frames = []
    for path in wire:
        data = bytes.fromhex(open(path).read().strip())
        frames.append(data)
        write("command_frames", "seed-" + os.path.basename(path)[:-4], data)
    # Every change of the goldens in one stream, so changes apply to a state in order.
    write("command_frames", "seed-all-in-order", b"".join(frames))
    for ext, target in [("yaml", "desired_yaml"), ("yml", "desired_yaml"), ("toml", "desired_toml")]:
        for path in sorted(glob.glob(os.path.join(ROOT, "examples/**/*." + ext), recursive=True)
                           + glob.glob(os.path.join(ROOT, "tests/golden/**/*." + ext), recursive=True)):
            rel = os.path.relpath(path, ROOT).replace("/", "_")
            data = open(path, "rb").read()
            if len(data) <= 64 * 1024:
                write(target, "seed-" + rel, data)

if __name__ == "__main__":
    sys.exit(main())
