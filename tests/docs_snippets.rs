//! The outputs the documentation shows come from real runs of this build, as the golden plans
//! do: a doc that says what the program prints cannot drift from what it prints.
//!
//! In `README.md`, `docs/*.md` and `examples/*/README.md`, a line
//!
//! ```text
//! <!-- output: COMMAND -->
//! ```
//!
//! right before a fenced block marks the block as COMMAND's output. COMMAND is run by bash from
//! the repository root with this build's `weir` first on `PATH`, `$TMP` a fresh empty
//! directory, `NO_COLOR` set, and `WEIR_SOCKET` naming a socket that does not exist (so no
//! command here can reach a proxy someone runs); the block holds its stdout, then its stderr.
//! With `<!-- output with a proxy: COMMAND -->`, `WEIR_SOCKET` is instead the socket of a
//! fresh `weir proxy` (one worker, empty state) started for that command alone.
//! Durations (`1.2 ms`, `12 ms`) compare as any number: they depend on the machine.
//!
//! `UPDATE_DOCS=1 cargo test --test docs_snippets` rewrites the blocks; review the diff before
//! committing it.
#![allow(clippy::unwrap_used)]

mod util;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const MARKER_START: &str = "<!-- output: ";
const MARKER_WITH_PROXY: &str = "<!-- output with a proxy: ";
const MARKER_END: &str = " -->";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every markdown file that may hold marked outputs.
fn documents() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md")];
    for dir in ["docs", "examples"] {
        let mut entries: Vec<PathBuf> = fs::read_dir(root().join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            } else if path.join("README.md").is_file() {
                files.push(path.join("README.md"));
            }
        }
    }
    files
}

/// One marked output: the command, and the block's lines (`start..end`, fences excluded).
struct Snippet {
    command: String,
    with_proxy: bool,
    /// The fence's indentation (a block inside a list item), which every line of it carries.
    indent: String,
    start: usize,
    end: usize,
}

fn snippets(doc: &Path, lines: &[&str]) -> Vec<Snippet> {
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let line = line.trim();
        let (rest, with_proxy) = match (
            line.strip_prefix(MARKER_START),
            line.strip_prefix(MARKER_WITH_PROXY),
        ) {
            (Some(rest), _) => (rest, false),
            (None, Some(rest)) => (rest, true),
            (None, None) => continue,
        };
        let Some(command) = rest.strip_suffix(MARKER_END) else {
            continue;
        };
        let fence = lines.get(i + 1).copied().unwrap_or_default();
        let indent = &fence[..fence.len() - fence.trim_start().len()];
        assert!(
            fence.trim_start().starts_with("```"),
            "{}:{}: an output marker must be followed by a fenced block",
            doc.display(),
            i + 1
        );
        let end = (i + 2..lines.len())
            .find(|&j| lines[j].trim() == "```")
            .unwrap_or_else(|| panic!("{}:{}: the block never ends", doc.display(), i + 2));
        found.push(Snippet {
            command: command.to_owned(),
            with_proxy,
            indent: indent.to_owned(),
            start: i + 2,
            end,
        });
    }
    found
}

/// Runs a documented command as the module docs say.
fn run(snippet: &Snippet) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let proxy = snippet
        .with_proxy
        .then(|| util::Proxy::start(&["--workers", "1"]));
    let socket = match &proxy {
        Some(proxy) => proxy.socket.clone(),
        None => tmp.path().join("no-proxy.sock"),
    };
    let bin = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_weir"), bin.path().join("weir")).unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(&snippet.command)
        .current_dir(root())
        .env("PATH", path)
        .env("TMP", tmp.path())
        .env("NO_COLOR", "1")
        .env("WEIR_SOCKET", socket)
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    text
}

/// `1.2 ms` and `12 ms` become `N ms`.
fn without_durations(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let starts_number = digits > 0 && rest.starts_with(|c: char| c.is_ascii_digit());
        let after_word_break = !out.ends_with(|c: char| c.is_ascii_alphanumeric());
        if starts_number && after_word_break && rest[digits..].starts_with(" ms") {
            out.push('N');
            rest = &rest[digits..];
            continue;
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    out
}

#[test]
fn durations_compare_as_any_number() {
    assert_eq!(
        without_durations("applied in 1.2 ms, then 30 ms; v2 ms"),
        "applied in N ms, then N ms; v2 ms"
    );
}

#[test]
fn documented_outputs_are_what_the_commands_print() {
    let update = std::env::var("UPDATE_DOCS").as_deref() == Ok("1");
    let mut count = 0;
    let mut failures = Vec::new();
    for doc in documents() {
        let text = fs::read_to_string(&doc).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let found = snippets(&doc, &lines);
        if found.is_empty() {
            continue;
        }
        let mut rewritten: Vec<String> = Vec::new();
        let mut copied = 0;
        for snippet in &found {
            count += 1;
            let actual = run(snippet);
            let shown: String = lines[snippet.start..snippet.end]
                .iter()
                .map(|l| format!("{}\n", l.strip_prefix(&snippet.indent).unwrap_or(l)))
                .collect();
            if update {
                rewritten.extend(lines[copied..snippet.start].iter().map(|l| l.to_string()));
                rewritten.extend(actual.lines().map(|l| {
                    if l.is_empty() {
                        String::new()
                    } else {
                        format!("{}{l}", snippet.indent)
                    }
                }));
                copied = snippet.end;
            } else if without_durations(&shown) != without_durations(&actual) {
                failures.push(format!(
                    "{}:{}: `{}`\n--- the doc shows\n{shown}--- the command prints\n{actual}",
                    doc.display(),
                    snippet.start,
                    snippet.command
                ));
            }
        }
        if update {
            rewritten.extend(lines[copied..].iter().map(|l| l.to_string()));
            let mut new = rewritten.join("\n");
            if text.ends_with('\n') {
                new.push('\n');
            }
            fs::write(&doc, new).unwrap();
        }
    }
    assert!(count >= 6, "expected the marked outputs, found {count}");
    assert!(
        failures.is_empty(),
        "{} documented output(s) differ from the real run (UPDATE_DOCS=1 rewrites them):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The examples the README calls desired-state repositories load as such (many-apps is a
/// generator, checked through its own marked outputs).
#[test]
fn every_example_directory_validates() {
    let mut checked = 0;
    for entry in fs::read_dir(root().join("examples")).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.is_dir() || dir.ends_with("many-apps") {
            continue;
        }
        let out = Command::new(env!("CARGO_BIN_EXE_weir"))
            .arg("validate")
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "weir validate {}:\n{}{}",
            dir.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        checked += 1;
    }
    assert!(checked >= 4, "expected the examples, found {checked}");
}
