//! Property tests of the sans-io HTTP cores, standing in for a fuzzer in CI: whatever bytes a
//! peer sends, parsing a head or framing a body never panics (a panic would kill every
//! connection of the worker), well-formed messages survive parsing and rewriting intact (the
//! rewrite checked against a model of its own: hop-by-hop fields, those a `Connection` field
//! names, the forwarding fields and their underscore twins, in any letter case), and how a
//! body's bytes are split into reads never changes where it ends or whether it is refused.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use proptest::prelude::*;

use super::body::{canonical_in_reads, BodyError, BodyFramer};
use super::parser::{header_slots, parse_request, parse_response, Framing};
use super::writer::{write_request_head, write_response_head, Added, ClientConnection, ClientInfo};
use crate::worker::buffer::BufferPool;
use crate::worker::front::Underscores;
use crate::worker::request_id::RequestId;

fn client() -> ClientInfo<'static> {
    client_keeping(Underscores::Keep)
}

/// The request id every rewrite here gives, in `X-Request-Id`.
const ID: RequestId = RequestId(0x0123_4567_89ab_cdef);

fn client_keeping(underscores: Underscores) -> ClientInfo<'static> {
    ClientInfo {
        peer: "192.0.2.7:5555".parse().unwrap(),
        proto: "http",
        port: 80,
        underscores,
        request_id: Some(("X-Request-Id", ID)),
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

/// Field names a request rewrite must treat apart: hop-by-hop ones, the forwarding fields we
/// append to or set, the underscore twins of ours, two names a `Connection` field may list,
/// and an end-to-end field that only looks hop-by-hop.
const SPECIAL_NAMES: &[&str] = &[
    "Connection",
    "Keep-Alive",
    "Proxy-Connection",
    "TE",
    "Upgrade",
    "HTTP2-Settings",
    "Trailer",
    "X-Forwarded-For",
    "X-Forwarded-Proto",
    "X-Forwarded-Port",
    "Forwarded",
    "Via",
    "X_Forwarded_For",
    "X_Forwarded_Proto",
    "x-forwarded_port",
    "Content_Length",
    "transfer_encoding",
    "X_Real_IP",
    "X_Custom_Field",
    "X-Request-Id",
    "x_request_id",
    "X-REQUEST-ID",
    "X-Named-A",
    "X-Named-B",
];

/// What a `Connection` field may list: the usual options and field names.
const CONNECTION_TOKENS: &[&str] = &[
    "close",
    "keep-alive",
    "Upgrade",
    "x-named-a",
    "X-NAMED-B",
    "Via",
    "x-forwarded-for",
];

/// Names the rewrite writes itself, left out when comparing the passed-on fields.
const OURS: &[&str] = &[
    "host",
    "content-length",
    "connection",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-port",
    "forwarded",
    "via",
    "x-request-id",
];

/// One request field: a plain `X-` name or a special one in any letter case, with a value
/// that suits it.
fn field() -> impl Strategy<Value = (String, String)> {
    let name = prop_oneof![
        2 => "X-[A-Za-z0-9-]{1,12}",
        3 => prop::sample::select(SPECIAL_NAMES).prop_map(str::to_owned),
    ];
    (
        name,
        any::<u64>(),
        "[ -~]{0,30}",
        proptest::collection::vec(prop::sample::select(CONNECTION_TOKENS), 1..4),
        0usize..3,
    )
        .prop_map(|(name, case, text, tokens, offer)| {
            let name: String = name
                .chars()
                .enumerate()
                .map(|(i, c)| {
                    if case >> (i % 64) & 1 == 1 {
                        c.to_ascii_uppercase()
                    } else {
                        c.to_ascii_lowercase()
                    }
                })
                .collect();
            let value = if name.eq_ignore_ascii_case("connection") {
                tokens.join(", ")
            } else if name.eq_ignore_ascii_case("upgrade") {
                ["websocket", "h2c", "websocket, h2c"][offer].to_owned()
            } else {
                text.trim().to_owned()
            };
            (name, value)
        })
}

/// What the rewrite of a request with `fields` must send, worked out from RFC 9110 7.6 and
/// the forwarding rules independently of the parser's code.
struct Rewritten {
    passed: Vec<(String, String)>,
    xff: String,
    via: String,
    forwarded: String,
    connection: Option<&'static str>,
}

fn rewritten(fields: &[(String, String)], http10: bool, underscores: Underscores) -> Rewritten {
    let named = |n: &str| fields.iter().any(|(f, _)| f.eq_ignore_ascii_case(n));
    let tokens: Vec<String> = fields
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, v)| v.split(',').map(|t| t.trim().to_ascii_lowercase()))
        .collect();
    let offers: Vec<String> = fields
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("upgrade"))
        .flat_map(|(_, v)| v.split(',').map(|t| t.trim().to_ascii_lowercase()))
        .collect();
    let upgrading = !http10
        && named("upgrade")
        && tokens.iter().any(|t| t == "upgrade")
        && !offers.iter().any(|o| o == "h2c");
    let hop_by_hop = |n: &str| {
        let n = n.to_ascii_lowercase();
        let always = [
            "connection",
            "keep-alive",
            "proxy-connection",
            "te",
            "http2-settings",
        ];
        always.contains(&n.as_str())
            || (n == "upgrade" && !upgrading)
            || (n != "upgrade" && tokens.contains(&n))
    };
    // The fields we set, and the twins of ours spelt with `_`, which CGI-style servers would
    // read as ours.
    // With underscores kept, the look-alikes of framing, routing and forwarding fields
    // still go; by default every underscored name does.
    let replaced = |n: &str| {
        let n = n.to_ascii_lowercase();
        let ours = ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-port"];
        let look_alikes = [
            "content-length",
            "transfer-encoding",
            "keep-alive",
            "proxy-connection",
            "x-forwarded-for",
            "x-forwarded-host",
            "x-forwarded-port",
            "x-forwarded-proto",
            "x-real-ip",
        ];
        ours[1..].contains(&n.as_str())
            || n.replace('_', "-") == "x-request-id"
            || (n.contains('_')
                && (underscores == Underscores::Drop
                    || look_alikes.contains(&n.replace('_', "-").as_str())))
    };
    let mut passed = Vec::new();
    let mut lists: [(&str, String); 3] = [
        ("x-forwarded-for", String::new()),
        ("via", String::new()),
        ("forwarded", String::new()),
    ];
    for (name, value) in fields {
        if hop_by_hop(name) {
            continue;
        }
        if let Some((_, list)) = lists.iter_mut().find(|(l, _)| name.eq_ignore_ascii_case(l)) {
            list.push_str(value);
            list.push_str(", ");
            continue;
        }
        if replaced(name) {
            continue;
        }
        passed.push((name.clone(), value.clone()));
    }
    let [(_, xff), (_, via), (_, forwarded)] = lists;
    Rewritten {
        passed,
        xff: format!("{xff}192.0.2.7"),
        via: format!("{via}{} weir", if http10 { "1.0" } else { "1.1" }),
        forwarded: format!("{forwarded}for=192.0.2.7;host=\"a.test\";proto=http"),
        connection: if upgrading {
            Some("upgrade")
        } else if http10 {
            Some("keep-alive")
        } else {
            None
        },
    }
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
            let _ = write_response_head(&mut out, &res, ClientConnection::Close, Added::date(b"Date: x\r\n"));
            pool.put(out);
        }
    }

    #[test]
    fn valid_requests_round_trip_through_the_rewrite(
        method in prop_oneof![Just("GET"), Just("POST"), Just("PUT"), Just("DELETE"), Just("get")],
        path in "/[a-zA-Z0-9/._~%-]{0,40}(\\?[a-z0-9=&]{0,20})?",
        fields in proptest::collection::vec(field(), 0..20),
        length in proptest::option::of(0u64..1_000_000),
        http10 in any::<bool>(),
        keep_underscores in any::<bool>(),
    ) {
        let underscores = if keep_underscores { Underscores::Keep } else { Underscores::Drop };
        let mut raw = format!(
            "{method} {path} HTTP/1.{}\r\nHost: a.test\r\n",
            if http10 { 0 } else { 1 }
        );
        for (name, value) in &fields {
            raw.push_str(&format!("{name}: {value}\r\n"));
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
        write_request_head(&mut out, &head, client_keeping(underscores)).unwrap();
        let mut again = header_slots();
        let forwarded = parse_request(out.pending(), &mut again).unwrap().unwrap();
        prop_assert_eq!(forwarded.method, method);
        prop_assert_eq!(forwarded.target, path.as_str());
        prop_assert_eq!(forwarded.framing, framing);
        prop_assert_eq!(forwarded.host, Some(&b"a.test"[..]));

        let expected = rewritten(&fields, http10, underscores);
        let sent: Vec<(String, String)> = forwarded
            .headers
            .iter()
            .map(|h| (h.name.to_owned(), String::from_utf8_lossy(h.value).into_owned()))
            .collect();
        // The client's end-to-end fields, in order and unchanged.
        let passed: Vec<&(String, String)> = sent
            .iter()
            .filter(|(n, _)| !OURS.iter().any(|o| n.eq_ignore_ascii_case(o)))
            .collect();
        prop_assert_eq!(passed, expected.passed.iter().collect::<Vec<_>>(), "sent {:?}", sent);
        // One of each field we set, with the client's list before our element.
        let only = |name: &str| -> Vec<&str> {
            sent.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
        };
        prop_assert_eq!(only("x-forwarded-for"), vec![expected.xff.as_str()]);
        prop_assert_eq!(only("via"), vec![expected.via.as_str()]);
        prop_assert_eq!(only("forwarded"), vec![expected.forwarded.as_str()]);
        prop_assert_eq!(only("x-forwarded-proto"), vec!["http"]);
        prop_assert_eq!(only("x-forwarded-port"), vec!["80"]);
        prop_assert_eq!(only("x-request-id"), vec!["0123456789abcdef"]);
        prop_assert_eq!(only("connection"), expected.connection.into_iter().collect::<Vec<_>>());
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

    #[test]
    fn chunked_bodies_go_on_canonical_whatever_their_spelling_and_split(
        chunks in proptest::collection::vec(
            (proptest::collection::vec(any::<u8>(), 1..300), 0usize..4, any::<bool>()),
            0..12,
        ),
        extension in proptest::option::of(";[a-z]{1,8}(=[a-z0-9]{1,8})?"),
        last_zeros in 1usize..4,
        trailers in proptest::collection::vec(r"X-[A-Za-z]{1,8}: [!-~]{1,10}", 0..3),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let (mut body, mut canonical) = (Vec::new(), Vec::new());
        for (chunk, zeros, upper) in &chunks {
            let size = format!("{}{:x}", "0".repeat(*zeros), chunk.len());
            let size = if *upper { size.to_ascii_uppercase() } else { size };
            body.extend_from_slice(size.as_bytes());
            canonical.extend_from_slice(format!("{:x}", chunk.len()).as_bytes());
            if let Some(ext) = &extension {
                body.extend_from_slice(ext.as_bytes());
            }
            for out in [&mut body, &mut canonical] {
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(chunk);
                out.extend_from_slice(b"\r\n");
            }
        }
        body.extend_from_slice("0".repeat(last_zeros).as_bytes());
        body.extend_from_slice(b"\r\n");
        canonical.extend_from_slice(b"0\r\n");
        for out in [&mut body, &mut canonical] {
            for t in &trailers {
                out.extend_from_slice(t.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"\r\n");
        }
        let next = b"GET / HTTP/1.1\r\n";
        body.extend_from_slice(next);
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(body.len() + 1)).collect();
        points.sort_unstable();
        let (sent, left) = canonical_in_reads(&body, &points).unwrap();
        prop_assert_eq!(sent.escape_ascii().to_string(), canonical.escape_ascii().to_string());
        prop_assert_eq!(left, next.to_vec());
        // The canonical form is its own canonical form.
        let again = [&canonical[..], next].concat();
        prop_assert_eq!(canonical_in_reads(&again, &[]).unwrap(), (canonical.clone(), next.to_vec()));
    }

    #[test]
    fn how_bytes_are_split_never_changes_what_goes_on(
        bytes in prop_oneof![chunked_like(), proptest::collection::vec(any::<u8>(), 0..256)],
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
        points.sort_unstable();
        let once = canonical_in_reads(&bytes, &[]);
        let split = canonical_in_reads(&bytes, &points);
        match (&once, &split) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(a), Err(b)) => prop_assert_eq!(a, b),
            // Not done in one read: the split may end before the error.
            _ => prop_assert!(false, "{:?} vs {:?}", once, split),
        }
        // Whatever went on reads, through the checking framer, as the same body.
        if let Ok((sent, _)) = &once {
            let mut check = BodyFramer::new(Framing::Chunked);
            prop_assert_eq!(check.advance(sent), Ok(sent.len()));
        }
    }
}
