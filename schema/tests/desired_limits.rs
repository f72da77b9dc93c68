//! The loader's limits on hostile or mistaken input: file sizes, symlink loops, and the cost
//! of placing an error in a large file. Each is refused (or placed) with a message naming the
//! file, never by running out of memory, stack or time.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

use std::fs;
use std::os::unix::fs::symlink;

use weir_schema::desired::{self, MAX_DESIRED_FILE_BYTES, MAX_PEM_FILE_BYTES};

#[test]
fn a_certificate_file_over_the_cap_is_refused_at_the_field_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let big = vec![b'A'; usize::try_from(MAX_PEM_FILE_BYTES).unwrap() + 1];
    fs::write(dir.path().join("big.pem"), &big).unwrap();
    fs::write(
        dir.path().join("key.pem"),
        "not read: the certificate fails first",
    )
    .unwrap();
    fs::write(
        dir.path().join("weir.yaml"),
        "certificates:\n  - name: site\n    certificate: big.pem\n    key: key.pem\n",
    )
    .unwrap();
    let errors = desired::load(dir.path()).unwrap_err();
    let message = errors.to_string();
    let expected = format!(
        "{}:3:18: certificates[0].certificate: {} is larger than 1 MiB, the most a certificate \
         or key file may hold",
        dir.path().join("weir.yaml").display(),
        dir.path().join("big.pem").display()
    );
    assert!(message.starts_with(&expected), "{message}");
}

#[test]
fn a_desired_state_file_over_the_cap_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("listeners: []\n");
    while (text.len() as u64) <= MAX_DESIRED_FILE_BYTES {
        text.push_str("# a comment line that makes this file larger than any real one\n");
    }
    let file = dir.path().join("weir.yaml");
    fs::write(&file, &text).unwrap();
    for path in [dir.path(), file.as_path()] {
        let message = desired::load(path).unwrap_err().to_string();
        assert_eq!(
            message,
            format!(
                "{} is larger than 8 MiB, the most a desired-state file may hold",
                file.display()
            )
        );
    }
}

#[test]
fn a_symlink_loop_in_a_desired_directory_is_refused_naming_the_link() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("weir.yaml"), "listeners: []\n").unwrap();
    fs::create_dir(dir.path().join("teams")).unwrap();
    symlink("..", dir.path().join("teams/all")).unwrap();
    let message = desired::load(dir.path()).unwrap_err().to_string();
    assert_eq!(
        message,
        format!(
            "{} leads back to {}, which contains it: a symlink loop",
            dir.path().join("teams/all").display(),
            dir.path().display()
        )
    );
}

#[test]
fn an_error_in_a_large_toml_file_is_placed_in_linear_time() {
    // 20,000 clusters (about 700 KB) and an unknown cluster referred to on the last line:
    // placing it reads the position of every key and value. Scanning the text from its start
    // for each grew with the square of the size (debug build: 4.5 s of CPU at 5,000 clusters,
    // about a minute at this size); with a line index it is one pass (0.75 s here).
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for i in 0..20_000 {
        text.push_str(&format!("[[clusters]]\nid = \"c{i}\"\n"));
    }
    text.push_str(
        "[[listeners]]\nname = \"web\"\naddress = \"127.0.0.1:8080\"\nprotocol = \"http\"\n",
    );
    text.push_str("[[frontends]]\nlistener = \"web\"\nhostname = \"a.test\"\ncluster = \"nope\"\n");
    let lines = text.lines().count();
    fs::write(dir.path().join("big.toml"), &text).unwrap();
    let errors = desired::load(dir.path()).unwrap_err();
    assert_eq!(errors.0.len(), 1, "{errors}");
    let at = errors.0[0].location.as_ref().unwrap();
    assert_eq!((at.line, at.column), (lines, 11), "{errors}");
    assert_eq!(errors.0[0].field.as_deref(), Some("frontends[0].cluster"));
}
