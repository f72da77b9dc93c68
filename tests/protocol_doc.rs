//! docs/protocol.md must stay true to schema/proto/command.proto: every `message` and `enum`
//! the `.proto` declares is named in the document (Sōzu's protocol doc drifted from its
//! `.proto`; this test is why ours cannot).
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

use std::path::Path;

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel))
        .unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// The names declared by `message X` and `enum X` (nested ones included), comments skipped.
fn declared_names(proto: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in proto.lines() {
        let code = line.split("//").next().unwrap_or_default();
        let mut words = code.split_whitespace();
        while let Some(word) = words.next() {
            if word == "message" || word == "enum" {
                if let Some(name) = words.next() {
                    names.push(name.trim_end_matches('{').to_owned());
                }
            }
        }
    }
    names
}

/// Whether `name` appears in `doc` as a whole word.
fn mentions(doc: &str, name: &str) -> bool {
    doc.match_indices(name).any(|(at, _)| {
        let before = doc[..at].chars().next_back();
        let after = doc[at + name.len()..].chars().next();
        let boundary = |c: Option<char>| !c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        boundary(before) && boundary(after)
    })
}

#[test]
fn the_parser_finds_what_the_proto_declares() {
    let names = declared_names(
        "// message Commented {}\nmessage A { string x = 1; }\nenum B {\n  C = 0;\n}\nmessage D {}\n",
    );
    assert_eq!(names, ["A", "B", "D"]);
    assert!(mentions("uses `A` here", "A"));
    assert!(!mentions("uses ABC here", "A"));
}

#[test]
fn protocol_doc_names_every_message_and_enum() {
    let proto = read("schema/proto/command.proto");
    let doc = read("docs/protocol.md");
    let names = declared_names(&proto);
    assert!(
        names.len() > 30,
        "parsed only {} names from the .proto",
        names.len()
    );
    let missing: Vec<&String> = names.iter().filter(|n| !mentions(&doc, n)).collect();
    assert!(
        missing.is_empty(),
        "docs/protocol.md does not mention: {missing:?}"
    );
}

#[test]
fn protocol_doc_names_every_request_kind_and_status() {
    // The oneof members and enum values are the protocol's vocabulary too.
    let proto = read("schema/proto/command.proto");
    let doc = read("docs/protocol.md");
    let request = proto
        .split("message Request {")
        .nth(1)
        .and_then(|rest| rest.split("\n}").next())
        .expect("the .proto has a Request message");
    let kinds: Vec<&str> = request
        .lines()
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            (words.len() >= 4 && words[2] == "=" && words[0] != "string" && words[0] != "optional")
                .then(|| words[1])
        })
        .collect();
    assert_eq!(kinds.len(), 26, "{kinds:?}");
    for value in kinds
        .iter()
        .copied()
        .chain([
            "OK",
            "PROCESSING",
            "FAILURE",
            "BACKEND_DOWN",
            "BACKEND_UP",
            "BACKEND_DRAINED",
        ])
        .chain(["WORKER_CRASHED", "WORKER_RESTARTED", "STATE_CHANGED"])
    {
        assert!(
            mentions(&doc, value),
            "docs/protocol.md does not mention {value}"
        );
    }
}
