//! Wire compatibility: representative requests and responses, framed as they travel, compared
//! with encodings committed in `tests/golden/wire/` (one hex file per message).
//!
//! Two checks per message: encoding today gives the committed bytes (so a `.proto` edit that
//! changes the wire shows up as a diff to review), and the committed bytes still decode to the
//! same message and, for requests, to the same domain request (so an old tool's messages keep
//! meaning what they meant). The `.proto` evolution rules say these files only ever gain
//! entries, so `UPDATE_GOLDEN=1 cargo test --test wire_golden` writes only missing files; a
//! changed one must be deleted by hand first. Review that diff like code.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

#[path = "../schema/tests/common/mod.rs"]
mod common;

use std::fs;
use std::path::{Path, PathBuf};

use prost::Message;
use weir_schema::framing::{FrameDecoder, DEFAULT_MAX_FRAME};
use weir_schema::metric_names::{self, BackendCounter};
use weir_schema::proto::{self, response::Content};
use weir_schema::{BackendId, BackendKey, ClusterId, Request};

fn wire_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/wire")
}

fn responses() -> Vec<(&'static str, proto::Response)> {
    let state = {
        let mut s = weir_schema::State::new();
        for r in common::one_request_of_each_kind().iter().take(1) {
            // Only the tuned https listener: a small but non-trivial snapshot.
            s.apply(&Request {
                expected_version: None,
                ..r.clone()
            })
            .unwrap();
        }
        s.to_snapshot()
    };
    vec![
        ("response-ok", proto::Response::ok("change-0", 12)),
        (
            "response-failure",
            proto::Response::failure("change-5", "cluster old does not exist", 12),
        ),
        (
            "response-drain",
            proto::Response::processing("change-8", "draining: 3 connections", 13).with_content(
                Content::Drain(proto::DrainProgress {
                    cluster_id: "shop".into(),
                    backend_id: "blue".into(),
                    live_connections: 3,
                }),
            ),
        ),
        (
            "response-state",
            proto::Response::ok("command-0", 1).with_content(Content::State(state)),
        ),
        (
            "response-metrics",
            proto::Response::ok("command-1", 1).with_content(Content::Metrics(proto::Metrics {
                // Named as workers name them: a made-up name here once hid that the plan
                // read a counter no worker publishes.
                counters: vec![
                    proto::Counter {
                        name: metric_names::HTTP_REQUESTS.into(),
                        value: 1234,
                    },
                    proto::Counter {
                        name: BackendCounter::Active.name(&BackendKey {
                            cluster: ClusterId("shop".into()),
                            id: BackendId("blue".into()),
                        }),
                        value: 7,
                    },
                ],
                histograms: vec![proto::Histogram {
                    name: metric_names::Latency::Total.cluster_name(&ClusterId("shop".into())),
                    buckets: (0..=metric_names::LATENCY_BOUNDS_US.len() as u64).collect(),
                    sum_us: 987_654,
                    count: (0..=metric_names::LATENCY_BOUNDS_US.len() as u64).sum(),
                }],
            })),
        ),
        (
            "response-status",
            proto::Response::ok("command-2", 1).with_content(Content::StatusReport(
                proto::ProxyStatus {
                    pid: 4242,
                    uptime_ms: 60_000,
                    state_version: 1,
                    state_fingerprint: "ab".repeat(32),
                    workers: vec![proto::WorkerStatus {
                        id: 0,
                        pid: 4243,
                        uptime_ms: 59_000,
                        connections: 12,
                        state_version: 1,
                        restarts: 1,
                        unresponsive: false,
                        // Not set: the committed encoding predates them.
                        buffers_in_use: 0,
                        buffers_max: 0,
                    }],
                    version: "0.1.0".into(),
                },
            )),
        ),
        (
            "response-event",
            proto::Response::ok("command-9", 1).with_content(Content::Event(proto::Event {
                sequence: 42,
                kind: proto::EventKind::BackendDown as i32,
                cluster_id: "shop".into(),
                backend_id: "blue".into(),
                worker_id: 0,
                message: "connection refused".into(),
                state_version: 1,
            })),
        ),
    ]
}

/// `UPDATE_GOLDEN=1`: write the files of new messages.
fn updating() -> bool {
    std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1")
}

/// Compares one message's framed encoding with its committed file (writing the file first if
/// it is new and [`updating`]); returns the committed bytes. A committed file is never
/// rewritten: the wire only gains messages, so a changed encoding fails until a reviewer
/// deletes the file on purpose.
fn check(name: &str, framed: &[u8], failures: &mut Vec<String>) -> Vec<u8> {
    let path = wire_dir().join(format!("{name}.hex"));
    let actual = hex::encode(framed);
    if updating() && !path.exists() {
        fs::write(&path, format!("{actual}\n")).unwrap();
        return framed.to_vec();
    }
    let committed = fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} is missing: run with UPDATE_GOLDEN=1", path.display()));
    if committed.trim() != actual {
        failures.push(format!("{name}: encoding differs from {}", path.display()));
    }
    hex::decode(committed.trim()).expect("committed file is hex")
}

/// Decodes one framed message from committed bytes, checking nothing is left over.
fn decode<M: Message + Default>(bytes: &[u8]) -> M {
    let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME);
    decoder.extend(bytes);
    let m = decoder.next::<M>().unwrap().expect("a whole frame");
    assert_eq!(decoder.pending(), 0);
    m
}

#[test]
fn requests_match_their_committed_encodings() {
    let mut failures = Vec::new();
    for request in common::one_request_of_each_kind() {
        let message = proto::Request::from(&request);
        let committed = check(
            &format!("request-{}", request.id),
            &message.encode_length_delimited_to_vec(),
            &mut failures,
        );
        let decoded: proto::Request = decode(&committed);
        assert_eq!(decoded, message, "request {}", request.id);
        assert_eq!(Request::try_from(&decoded).unwrap(), request);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn responses_match_their_committed_encodings() {
    let mut failures = Vec::new();
    for (name, response) in responses() {
        let committed = check(
            name,
            &response.encode_length_delimited_to_vec(),
            &mut failures,
        );
        let decoded: proto::Response = decode(&committed);
        assert_eq!(decoded, response, "{name}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_committed_file_is_still_checked() {
    if updating() {
        return; // the other tests may be writing new files right now
    }
    // A golden file whose message was dropped from the lists above would silently stop
    // guarding the wire: the lists may only grow.
    let mut known: Vec<String> = common::one_request_of_each_kind()
        .iter()
        .map(|r| format!("request-{}.hex", r.id))
        .chain(responses().iter().map(|(n, _)| format!("{n}.hex")))
        .collect();
    known.sort();
    let mut files: Vec<String> = fs::read_dir(wire_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, known);
}

#[test]
fn an_unknown_request_kind_from_a_newer_tool_is_refused_not_guessed() {
    // Field 99 is not a kind this build knows: prost skips it, leaving no kind.
    let mut bytes = proto::Request {
        id: "future".into(),
        ..Default::default()
    }
    .encode_to_vec();
    bytes.extend_from_slice(&[0x9a, 0x06, 0x00]); // field 99, length-delimited, empty
    let decoded = proto::Request::decode(bytes.as_slice()).unwrap();
    assert_eq!(decoded.id, "future");
    assert!(Request::try_from(&decoded).is_err());
}
