//! Property tests of the sans-io HTTP cores, standing in for a fuzzer in CI: whatever bytes a
//! peer sends, parsing a head or framing a body never panics (a panic would kill every
//! connection of the worker), well-formed messages survive parsing and rewriting intact, and
//! how a body's bytes are split into reads never changes where it ends or whether it is
//! refused.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use proptest::prelude::*;

use super::body::{BodyError, BodyFramer};
use super::parser::{header_slots, parse_request, parse_response, Framing};
use super::writer::{write_request_head, write_response_head, ClientConnection, ClientInfo};
use crate::worker::buffer::BufferPool;

fn client() -> ClientInfo {
    ClientInfo {
        peer: "192.0.2.7:5555".parse().unwrap(),
        proto: "http",
        port: 80,
    }
}

/// Bytes that look enough like HTTP to get past the first checks often: fragments of heads
/// mixed with arbitrary bytes.
fn head_like() -> impl Strategy<Value = Vec<u8>> {
    let fragment = prop_oneof![
        Just(b"GET ".to_vec()),
        Just(b"POST ".to_vec()),
        Just(b"/".to_vec()),
        Just(b"http://a.test".to_vec()),
        Just(b" HTTP/1.1\r\n".to_vec()),
        Just(b" HTTP/1.0\r\n".to_vec()),
        Just(b"HTTP/1.1 200 OK\r\n".to_vec()),
        Just(b"Host: a\r\n".to_vec()),
        Just(b"Content-Length: ".to_vec()),
        Just(b"Transfer-Encoding: ".to_vec()),
        Just(b"chunked".to_vec()),
        Just(b"Connection: ".to_vec()),
        Just(b", ".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..8),
    ];
    proptest::collection::vec(fragment, 0..24).prop_map(|parts| parts.concat())
}

/// Bytes that look enough like a chunked body to reach every state of the framer often:
/// chunks (padded sizes, extensions with quoted strings and whitespace), the last chunk,
/// trailer lines (forbidden names and obs-fold among them), the end, a pipelined request;
/// and in about half of them a stray separator, CR, LF or arbitrary byte somewhere.
fn chunked_like() -> impl Strategy<Value = Vec<u8>> {
    const CHUNKS: &[&[u8]] = &[
        b"3\r\nabc\r\n",
        b"0003\r\nabc\r\n",
        b"a;x\r\n0123456789\r\n",
        b"1 ; e = v ;f\r\nz\r\n",
        b"2;q=\"a;\\\"b\"\r\nab\r\n",
        b"1;bad=\r\nz\r\n",
    ];
    const TRAILERS: &[&[u8]] = &[
        b"X-A: 1\r\n",
        b"x-b:\t\r\n",
        b"Hosts: x\r\n",
        b"Host: a.test\r\n",
        b"content-length: 5\r\n",
        b" folded\r\n",
        b"GET / HTTP/1.1\r\n",
    ];
    let stray = prop_oneof![
        Just(vec![b';']),
        Just(vec![b'=']),
        Just(vec![b' ']),
        Just(vec![b'"']),
        Just(vec![b'\\']),
        Just(vec![b':']),
        Just(vec![b'\r']),
        Just(vec![b'\n']),
        proptest::collection::vec(any::<u8>(), 1..3),
    ];
    (
        proptest::collection::vec(prop::sample::select(CHUNKS), 0..4),
        proptest::collection::vec(prop::sample::select(TRAILERS), 0..3),
        proptest::option::of((any::<prop::sample::Index>(), stray)),
    )
        .prop_map(|(chunks, trailers, stray)| {
            let mut body = chunks.concat();
            body.extend_from_slice(b"0\r\n");
            body.extend_from_slice(&trailers.concat());
            body.extend_from_slice(b"\r\nGET / HTTP/1.1\r\n");
            if let Some((at, bytes)) = stray {
                let at = at.index(body.len() + 1);
                body.splice(at..at, bytes);
            }
            body
        })
}

/// What a chunk framer makes of `bytes` offered in reads ending at `cuts` (sorted): bytes
/// taken, whether the body ended, payload bytes; or the error.
fn frame_in_reads(bytes: &[u8], cuts: &[usize]) -> Result<(usize, bool, u64), BodyError> {
    let mut framer = BodyFramer::new(Framing::Chunked);
    let mut from = 0;
    for &to in cuts.iter().chain([&bytes.len()]) {
        let n = framer.advance(&bytes[from..to])?;
        // Bytes after the end stay in the buffer for the next message: never offered again.
        if n < to - from {
            return Ok((from + n, framer.is_done(), framer.data_bytes()));
        }
        from = to;
    }
    Ok((from, framer.is_done(), framer.data_bytes()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_never_panic_the_head_parsers(
        bytes in prop_oneof![head_like(), proptest::collection::vec(any::<u8>(), 0..512)],
        is_head in any::<bool>(),
    ) {
        let mut pool = BufferPool::new(16 * 1024, 2);
        let mut headers = header_slots();
        if let Ok(Some(req)) = parse_request(&bytes, &mut headers) {
            prop_assert!(req.raw.len() <= bytes.len());
            let mut out = pool.get().unwrap();
            let _ = write_request_head(&mut out, &req, client());
            pool.put(out);
        }
        let mut headers = header_slots();
        if let Ok(Some(res)) = parse_response(&bytes, &mut headers, is_head) {
            prop_assert!(res.raw.len() <= bytes.len());
            let mut out = pool.get().unwrap();
            let _ = write_response_head(&mut out, &res, ClientConnection::Close, b"Date: x\r\n");
            pool.put(out);
        }
    }

    #[test]
    fn valid_requests_round_trip_through_the_rewrite(
        method in prop_oneof![Just("GET"), Just("POST"), Just("PUT"), Just("DELETE"), Just("get")],
        path in "/[a-zA-Z0-9/._~%-]{0,40}(\\?[a-z0-9=&]{0,20})?",
        fields in proptest::collection::vec(("X-[A-Za-z0-9-]{1,12}", "[ -~]{0,30}"), 0..20),
        length in proptest::option::of(0u64..1_000_000),
        http10 in any::<bool>(),
    ) {
        let mut raw = format!(
            "{method} {path} HTTP/1.{}\r\nHost: a.test\r\n",
            if http10 { 0 } else { 1 }
        );
        for (name, value) in &fields {
            raw.push_str(&format!("{name}: {}\r\n", value.trim()));
        }
        if let Some(n) = length {
            raw.push_str(&format!("Content-Length: {n}\r\n"));
        }
        raw.push_str("\r\n");
        let mut headers = header_slots();
        let head = parse_request(raw.as_bytes(), &mut headers).unwrap().unwrap();
        prop_assert_eq!(head.raw.len(), raw.len());
        prop_assert_eq!(head.method, method);
        prop_assert_eq!(head.path, path.as_str());
        let framing = match length {
            None | Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
        };
        prop_assert_eq!(head.framing, framing);

        let mut pool = BufferPool::new(16 * 1024, 1);
        let mut out = pool.get().unwrap();
        write_request_head(&mut out, &head, client()).unwrap();
        let mut again = header_slots();
        let forwarded = parse_request(out.pending(), &mut again).unwrap().unwrap();
        prop_assert_eq!(forwarded.method, method);
        prop_assert_eq!(forwarded.target, path.as_str());
        prop_assert_eq!(forwarded.framing, framing);
        prop_assert_eq!(forwarded.host, Some(&b"a.test"[..]));
        for (name, value) in &fields {
            prop_assert!(forwarded
                .headers
                .iter()
                .any(|h| h.name == name && h.value == value.trim().as_bytes()));
        }
    }

    #[test]
    fn any_bytes_in_any_split_never_panic_the_chunk_decoder(
        bytes in proptest::collection::vec(any::<u8>(), 0..1024),
        split in any::<prop::sample::Index>(),
    ) {
        let mut framer = BodyFramer::new(Framing::Chunked);
        let at = split.index(bytes.len() + 1);
        if let Ok(n) = framer.advance(&bytes[..at]) {
            prop_assert!(n <= at);
            if n == at {
                if let Ok(m) = framer.advance(&bytes[at..]) {
                    prop_assert!(m <= bytes.len() - at);
                }
            }
        }
    }

    #[test]
    fn how_bytes_are_split_never_changes_what_the_chunk_decoder_decides(
        bytes in prop_oneof![chunked_like(), proptest::collection::vec(any::<u8>(), 0..256)],
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
        points.sort_unstable();
        prop_assert_eq!(frame_in_reads(&bytes, &points), frame_in_reads(&bytes, &[]));
    }

    #[test]
    fn valid_chunked_bodies_end_exactly_where_they_end(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..300), 0..20),
        extension in proptest::option::of(prop_oneof![
            ";[a-z]{1,8}(=[a-z0-9]{1,8})?",
            // BWS around `;` and `=`, quoted strings with quoted-pairs.
            r#"([ \t]{0,2};[ \t]{0,2}[a-z!#~]{1,8}([ \t]{0,2}=[ \t]{0,2}"([ !#-\[\]-~]|\\[ -~]){0,10}")?){1,3}"#,
        ]),
        trailers in proptest::collection::vec(r"X-[A-Za-z]{1,8}:[ \t]{0,2}([!-~][ -~]{0,10}[!-~])?[ \t]{0,2}", 0..3),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let mut body = Vec::new();
        for chunk in &chunks {
            body.extend_from_slice(format!("{:x}", chunk.len()).as_bytes());
            if let Some(ext) = &extension {
                body.extend_from_slice(ext.as_bytes());
            }
            body.extend_from_slice(b"\r\n");
            body.extend_from_slice(chunk);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"0\r\n");
        for t in &trailers {
            body.extend_from_slice(t.as_bytes());
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"\r\n");
        let end = body.len();
        // A pipelined request follows: it must not be taken as part of the body.
        body.extend_from_slice(b"GET / HTTP/1.1\r\n");

        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(body.len() + 1)).collect();
        points.push(body.len());
        points.sort_unstable();
        let mut framer = BodyFramer::new(Framing::Chunked);
        let mut consumed = 0;
        let mut from = 0;
        for to in points {
            // The framer takes every byte it is offered until the body ends.
            consumed = from + framer.advance(&body[from..to]).unwrap();
            from = to;
            if framer.is_done() {
                break;
            }
        }
        prop_assert!(framer.is_done());
        prop_assert_eq!(consumed, end);
        let payload: usize = chunks.iter().map(Vec::len).sum();
        prop_assert_eq!(framer.data_bytes(), payload as u64);
    }
}
