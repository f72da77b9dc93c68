//! `weir validate`, run as a user runs it: the real binary, its exit code and its output.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

mod util;

use std::path::Path;

use util::{weir, Desired};

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(path)
        .display()
        .to_string()
}

#[test]
fn every_example_validates() {
    for example in [
        "examples/quickstart",
        "examples/blue-green",
        "examples/cert-rotation",
    ] {
        let out = weir(&["validate", &repo(example)]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{example}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.starts_with("ok: 1 listener, "),
            "{example}: {stdout}"
        );
        assert!(!stdout.contains("warning"), "{example}: {stdout}");
    }
}

#[test]
fn quickstart_summary_counts_every_resource() {
    let out = weir(&["validate", &repo("examples/quickstart")]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ok: 1 listener, 1 cluster, 2 backends, 0 certificates, 2 frontends\n"
    );
}

#[test]
fn a_typo_exits_1_naming_file_line_and_column() {
    let d = Desired::new();
    let file = d.write(
        "weir.yaml",
        "listeners:\n  - name: web\n    address: 127.0.0.1:8080\n    protocl: http\n",
    );
    let out = weir(&["validate", &d.path().display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!(
        "{}:4:5: listeners[0].protocl: unknown field `protocl`, expected one of",
        file.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn every_error_is_printed_not_only_the_first() {
    let d = Desired::new();
    d.write(
        "a.yaml",
        "clusters:\n  - id: app\n    backends:\n      - id: one\n        address: nowhere\n",
    );
    d.write(
        "b.toml",
        "[[frontends]]\nlistener = \"web\"\nhostname = \"a.example.com\"\ncluster = \"app\"\n",
    );
    let out = weir(&["validate", &d.path().display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert!(
        lines[0].contains("a.yaml:5:18: clusters[0].backends[0].address:"),
        "{stderr}"
    );
    assert!(
        lines[1].contains("b.toml:2:12: frontends[0].listener: unknown listener \"web\""),
        "{stderr}"
    );
    assert!(lines[2].ends_with("2 problems found"), "{stderr}");
}

#[test]
fn a_saved_state_validates_like_a_directory() {
    let desired = weir_schema::desired::load(Path::new(&repo("examples/quickstart")))
        .expect("quickstart loads");
    let d = Desired::new();
    let path = d.path().join("backup.state");
    std::fs::write(&path, weir_schema::saved::encode(&desired.state)).expect("write state");
    let out = weir(&["validate", &path.display().to_string()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ok: 1 listener, 1 cluster, 2 backends, 0 certificates, 2 frontends\n"
    );

    // A corrupted backup is refused, never half-loaded.
    let mut bytes = std::fs::read(&path).expect("read state");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, bytes).expect("corrupt state");
    let out = weir(&["validate", &path.display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("checksum"));
}

#[test]
fn a_missing_path_exits_1() {
    let d = Desired::new();
    let out = weir(&["validate", &d.path().join("nope").display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}
