//! What each fuzz target checks, in one place: `fuzz/` (cargo-fuzz, nightly) calls these
//! functions with the fuzzer's inputs, and `tests/corpus.rs` (stable, part of the workspace's
//! tests) calls them with every committed corpus file, so CI checks the corpora without
//! nightly.
//!
//! Each function takes arbitrary bytes and panics when a property fails: a crash for the
//! fuzzer, a failed test for the replay. Beyond "does not panic", each checks what its parser
//! promises (see the function's doc).

use std::path::Path;

use prost::Message;
use weir_engine::worker::http::body::{BodyError, BodyFramer};
use weir_engine::worker::http::head_scan::HeadScan;
use weir_engine::worker::http::parser::{
    header_slots, parse_request, parse_response, Framing, HeadError,
};
use weir_engine::worker::http::path::routing_path;
use weir_schema::desired;
use weir_schema::framing::{encode_frame, FrameDecoder};
use weir_schema::{proto, Command, Request, State};

/// A target's check: panics when a property fails.
pub type Check = fn(&[u8]);

/// Every target, in name order: its name (the file in `fuzz/fuzz_targets/` and the corpus
/// directory) and its check.
pub const TARGETS: [(&str, Check); 8] = [
    ("chunked_body", chunked_body),
    ("command_frames", command_frames),
    ("desired_toml", desired_toml),
    ("desired_yaml", desired_yaml),
    ("request_head", request_head),
    ("response_head", response_head),
    ("response_head_split", response_head_split),
    ("routing_path", path_normalisation),
];

/// Up to four cut points in `body`, read from the first four bytes of `data` (each a fraction
/// of the body's length), and the body: the same corpus file is both a message and the reads
/// it arrives in.
fn cuts(data: &[u8]) -> (Vec<usize>, &[u8]) {
    let (head, body) = data.split_at(data.len().min(4));
    let mut cuts: Vec<usize> = head
        .iter()
        .map(|&b| usize::from(b) * body.len() / 256)
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    (cuts, body)
}

/// The pieces `body` arrives in: cut at `cuts`, or one byte at a time when there are none.
fn pieces<'a>(body: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    if cuts.is_empty() {
        return body.chunks(1).collect();
    }
    let mut out = Vec::new();
    let mut at = 0;
    for &cut in cuts.iter().chain([&body.len()]) {
        out.push(&body[at..cut]);
        at = cut;
    }
    out
}

/// What a request head parse decided, without the borrowed head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Head(usize),
    Refused(HeadError),
    Waiting,
}

fn decide_request(buf: &[u8]) -> Decision {
    let mut headers = header_slots();
    match parse_request(buf, &mut headers) {
        Ok(Some(head)) => Decision::Head(head.raw.len()),
        Ok(None) => Decision::Waiting,
        Err(e) => Decision::Refused(e),
    }
}

/// The request head parser, on the input cut into reads as [`cuts`] says.
///
/// - A head it takes is a prefix of the input that parses alone to the same head, its path
///   normalised to a fixed point, its framing consistent with its fields.
/// - Fed in pieces through [`HeadScan`], as a session does, it decides as on the whole input
///   (a head of the same length; a refusal, or still waiting, where the whole is refused;
///   still waiting where the whole is incomplete), and parses fewer than four times the
///   input's bytes in all (no quadratic work).
pub fn request_head(data: &[u8]) {
    let (cuts, body) = cuts(data);
    let whole = decide_request(body);
    let mut headers = header_slots();
    if let Ok(Some(head)) = parse_request(body, &mut headers) {
        assert!(body.starts_with(head.raw));
        assert!(head.raw.ends_with(b"\r\n\r\n"));
        assert_eq!(decide_request(head.raw), Decision::Head(head.raw.len()));
        let path = routing_path(head.path);
        assert_eq!(routing_path(&path), path);
        match head.framing {
            Framing::Length(n) => assert_eq!(head.content_length, Some(n)),
            Framing::Chunked => assert_eq!(head.content_length, None),
            Framing::Empty => assert!(matches!(head.content_length, None | Some(0))),
            Framing::UntilClose => panic!("a request is never read until close"),
        }
        assert!(head.minor <= 1);
    }

    let mut scan = HeadScan::default();
    let mut buffered = 0;
    let mut parsed_bytes = 0;
    let mut split = Decision::Waiting;
    for piece in pieces(body, &cuts) {
        buffered += piece.len();
        let pending = &body[..buffered];
        if !scan.should_parse(pending) {
            continue;
        }
        parsed_bytes += pending.len();
        split = decide_request(pending);
        match split {
            Decision::Waiting => scan.incomplete(pending.len()),
            _ => break,
        }
    }
    match whole {
        Decision::Head(len) => assert_eq!(split, Decision::Head(len)),
        Decision::Refused(_) => assert!(matches!(split, Decision::Refused(_) | Decision::Waiting)),
        Decision::Waiting => assert_eq!(split, Decision::Waiting),
    }
    assert!(
        parsed_bytes <= 4 * body.len() + 4,
        "{parsed_bytes} bytes parsed for {} received",
        body.len()
    );
}

/// The response head parser: the first byte says whether the request was a HEAD. A head it
/// takes is a prefix that parses alone to the same head, a status in 100..=599, and a framing
/// that agrees with its status and fields (RFC 9112 6.3).
pub fn response_head(data: &[u8]) {
    let Some((&flags, body)) = data.split_first() else {
        return;
    };
    let is_head = flags & 1 == 1;
    let mut headers = header_slots();
    let Ok(Some(head)) = parse_response(body, &mut headers, is_head) else {
        return;
    };
    assert!(body.starts_with(head.raw));
    assert!(head.raw.ends_with(b"\r\n\r\n"));
    assert!((100..=599).contains(&head.code));
    let mut again = header_slots();
    let alone = parse_response(head.raw, &mut again, is_head)
        .ok()
        .flatten()
        .map(|h| (h.code, h.framing, h.raw.len(), h.keep_alive));
    assert_eq!(
        alone,
        Some((head.code, head.framing, head.raw.len(), head.keep_alive))
    );
    let bodiless = is_head || head.code < 200 || head.code == 204 || head.code == 304;
    if bodiless {
        assert_eq!(head.framing, Framing::Empty);
    }
    if head.framing == Framing::UntilClose {
        assert!(!head.keep_alive);
    }
}

/// The response heads an exchange takes from a backend's bytes arriving in `pieces`, parsing
/// when [`HeadScan`] says so, as `exchange/response.rs` does: interim heads (1xx but `101`)
/// are taken and the bytes after them scanned afresh; a final head or a `101` ends it. Returns
/// the heads taken (status, length), how the last parse ended, and the bytes parsed in all.
fn read_response_heads(pieces: &[&[u8]], is_head: bool) -> (Vec<(u16, usize)>, Decision, usize) {
    let mut scan = HeadScan::default();
    let mut buf: Vec<u8> = Vec::new();
    let (mut taken, mut parsed_bytes) = (Vec::new(), 0);
    for piece in pieces {
        buf.extend_from_slice(piece);
        while !buf.is_empty() && scan.should_parse(&buf) {
            parsed_bytes += buf.len();
            let mut headers = header_slots();
            match parse_response(&buf, &mut headers, is_head) {
                Ok(Some(head)) => {
                    let (code, len) = (head.code, head.raw.len());
                    taken.push((code, len));
                    if code >= 200 || code == 101 {
                        return (taken, Decision::Head(len), parsed_bytes);
                    }
                    buf.drain(..len);
                    scan.reset();
                }
                Ok(None) => {
                    scan.incomplete(buf.len());
                    break;
                }
                Err(e) => return (taken, Decision::Refused(e), parsed_bytes),
            }
        }
    }
    (taken, Decision::Waiting, parsed_bytes)
}

/// Response heads fed through [`HeadScan`]: the first byte says whether the request was a
/// HEAD, the next four where the reads are cut ([`cuts`]). In those reads, and one byte at a
/// time, the exchange takes the same heads (interim ones, then the final one) as from the
/// whole input at once; where the whole is refused, the pieces are refused or still waiting
/// (the full buffer, or the backend's close, then makes it a 502 all the same); where the
/// whole is incomplete, so are the pieces. The parses look at fewer than four times the
/// input's bytes beyond what the one-shot parses do (no quadratic work).
pub fn response_head_split(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let is_head = flags & 1 == 1;
    let (cuts, body) = cuts(rest);
    let (whole_heads, whole, whole_parsed) = read_response_heads(&[body], is_head);
    let split = pieces(body, &cuts);
    let bytes: Vec<&[u8]> = body.chunks(1).collect();
    for (how, fed) in [("cut", &split), ("byte by byte", &bytes)] {
        let (heads, last, parsed_bytes) = read_response_heads(fed, is_head);
        assert_eq!(heads, whole_heads, "{how} at {cuts:?}");
        match whole {
            Decision::Head(_) | Decision::Waiting => assert_eq!(last, whole, "{how} at {cuts:?}"),
            Decision::Refused(_) => assert!(
                matches!(last, Decision::Refused(_) | Decision::Waiting),
                "{how} at {cuts:?}: {last:?}"
            ),
        }
        assert!(
            parsed_bytes <= whole_parsed + 4 * body.len() + 4,
            "{how}: {parsed_bytes} bytes parsed for {} received",
            body.len()
        );
    }
}

/// What the body framer made of a whole input: bytes taken, whether the body ended, payload
/// bytes; or its refusal.
fn frame_body(pieces: &[&[u8]]) -> Result<(usize, bool, u64), BodyError> {
    let mut framer = BodyFramer::new(Framing::Chunked);
    let mut taken = 0;
    for piece in pieces {
        let n = framer.advance(piece)?;
        assert!(n <= piece.len());
        taken += n;
        // Bytes after the body's end belong to the next message: never offered again.
        if n < piece.len() {
            assert!(framer.is_done());
            break;
        }
    }
    Ok((taken, framer.is_done(), framer.data_bytes()))
}

/// The chunked body decoder: the same bytes in one read, in the reads [`cuts`] says and one
/// byte at a time give the same body: bytes taken, end found, payload length, or refusal.
/// The payload is never longer than the bytes taken.
pub fn chunked_body(data: &[u8]) {
    let (cuts, body) = cuts(data);
    let once = frame_body(&[body]);
    if let Ok((taken, _, payload)) = once {
        assert!(payload <= taken as u64);
    }
    let split = pieces(body, &cuts);
    assert_eq!(frame_body(&split), once, "cut at {cuts:?}");
    let bytes: Vec<&[u8]> = body.chunks(1).collect();
    assert_eq!(frame_body(&bytes), once, "byte by byte");
}

/// The path normaliser: normalising twice is normalising once, and never lengthens a path.
pub fn path_normalisation(data: &[u8]) {
    let Ok(target) = std::str::from_utf8(data) else {
        return;
    };
    let once = routing_path(target);
    assert!(once.len() <= target.len());
    assert!(!once.contains('?'));
    assert_eq!(routing_path(&once), once, "{target:?}");
    if target.starts_with('/') {
        assert!(once.starts_with('/'), "{target:?} → {once:?}");
    }
}

/// Command frames and their conversion to domain requests: every request a frame decodes to
/// converts to the wire and back to the same request, and its frame decodes to the same
/// message; changes applied in order to an empty State leave a State that its own
/// `to_changes` rebuilds with the same fingerprint.
pub fn command_frames(data: &[u8]) {
    // Small, so the fuzzer cannot ask for a huge allocation; the real limit is a config value.
    let mut decoder = FrameDecoder::new(1 << 16);
    decoder.extend(data);
    let mut state = State::new();
    while let Ok(Some(message)) = decoder.next::<proto::Request>() {
        let Ok(request) = Request::try_from(&message) else {
            continue;
        };
        let wire = proto::Request::from(&request);
        let back = Request::try_from(&wire).expect("a request's own encoding converts back");
        assert_eq!(back, request);
        let mut again = FrameDecoder::new(1 << 20);
        again.extend(&encode_frame(&wire));
        let decoded: proto::Request = again.next().ok().flatten().expect("a whole frame");
        assert_eq!(decoded.encode_to_vec(), wire.encode_to_vec());
        if let Command::Change(_) = request.command {
            let before = state.fingerprint();
            if state.apply(&request).is_err() {
                assert_eq!(
                    state.fingerprint(),
                    before,
                    "a refused change changed nothing"
                );
            }
        }
    }
    assert_rebuilds(&state);
}

/// A state rebuilt from empty with its own changes has its fingerprint.
fn assert_rebuilds(state: &State) {
    let mut rebuilt = State::new();
    for change in state.to_changes() {
        rebuilt
            .apply_change(&change, None)
            .expect("a state's own changes apply to an empty state");
    }
    assert_eq!(rebuilt.fingerprint(), state.fingerprint());
}

/// The desired-state loader on one YAML file.
pub fn desired_yaml(data: &[u8]) {
    desired_file("fuzz.yaml", data);
}

/// The desired-state loader on one TOML file.
pub fn desired_toml(data: &[u8]) {
    desired_file("fuzz.toml", data);
}

/// Loads `data` as the text of a file named `name` (in a directory that does not exist, so a
/// relative certificate path reads nothing). Every error is placed in that file, at a line it
/// has; a state loaded is one its own changes rebuild.
fn desired_file(name: &str, data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let dir = Path::new("/nonexistent-weir-fuzz");
    let file = dir.join(name);
    match desired::load_text(&file, text, 0) {
        Ok(loaded) => assert_rebuilds(&loaded.state),
        Err(errors) => {
            assert!(!errors.0.is_empty());
            // YAML breaks lines at CR, LF and CRLF alike (a bare CR is a line of its own).
            let lines = text.matches('\n').count() + text.matches('\r').count()
                - text.matches("\r\n").count()
                + 1;
            for e in &errors.0 {
                assert!(!e.message.is_empty());
                if let Some(at) = &e.location {
                    assert_eq!(at.file, file);
                    assert!(
                        (1..=lines + 1).contains(&at.line) && at.column >= 1,
                        "{e} (the file has {lines} lines)"
                    );
                }
            }
        }
    }
}
