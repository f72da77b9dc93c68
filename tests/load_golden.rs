//! Golden tests of the desired-state loader: each directory under `tests/golden/load/` is a
//! case holding input files and `expected.txt`, what loading them prints (the `weir validate`
//! lines, errors with file:line:col, and the state's fingerprint on success).
//!
//! Paths in the output have the case directory replaced by `$CASE`, so expectations do not
//! depend on where the repository lives. A case may hold:
//! - `paths.txt`: paths (relative to the case) to load one after the other instead of the
//!   case directory itself, each printed under `== path`;
//! - `now.txt`: the Unix time to load at (default: a fixed date in 2026), for expiry warnings.
//!
//! `UPDATE_GOLDEN=1 cargo test --test load_golden` rewrites every `expected.txt`; review the
//! diff before committing it.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

mod util;

use std::fs;
use std::path::{Path, PathBuf};

use weir_schema::desired;

/// 2026-05-28T00:00:00Z: a fixed "now", so expiry warnings do not change with the calendar.
const DEFAULT_NOW: i64 = 1_779_926_400;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/load")
}

/// What loading `path` prints, the way `weir validate` prints it, plus the fingerprint.
fn render(path: &Path, now: i64) -> String {
    let mut out = String::new();
    match desired::load_at(path, now) {
        Ok(d) => {
            out.push_str(&format!("ok: {}\n", d.summary()));
            for w in &d.warnings {
                out.push_str(&format!("warning: {w}\n"));
            }
            for origin in &d.demo_origins {
                out.push_str(&format!("demo: {} {}\n", origin.backend, origin.address));
            }
            out.push_str(&format!("fingerprint: {}\n", d.state.fingerprint()));
        }
        Err(errors) => {
            for e in &errors.0 {
                out.push_str(&format!("{e}\n"));
            }
        }
    }
    out
}

fn run_case(case: &Path) -> String {
    let now = fs::read_to_string(case.join("now.txt"))
        .ok()
        .map(|s| s.trim().parse::<i64>().expect("now.txt holds a Unix time"))
        .unwrap_or(DEFAULT_NOW);
    let out = match fs::read_to_string(case.join("paths.txt")) {
        Ok(list) => list
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|rel| format!("== {rel}\n{}", render(&case.join(rel.trim()), now)))
            .collect::<String>(),
        Err(_) => render(case, now),
    };
    out.replace(&case.display().to_string(), "$CASE")
}

#[test]
fn load_golden_cases() {
    let update = util::update_golden();
    let mut cases: Vec<PathBuf> = fs::read_dir(golden_dir())
        .expect("tests/golden/load exists")
        .map(|e| e.expect("read golden dir").path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 10,
        "expected the golden cases, found {}",
        cases.len()
    );

    let mut failures = Vec::new();
    for case in &cases {
        let actual = run_case(case);
        let expected_path = case.join("expected.txt");
        if update {
            fs::write(&expected_path, &actual).expect("write expected.txt");
            continue;
        }
        let expected = fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != actual {
            failures.push(format!(
                "case {}:\n--- expected\n{expected}--- actual\n{actual}",
                case.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden case(s) differ (rerun with UPDATE_GOLDEN=1 to accept):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The same routes written in YAML and in TOML make the same state.
#[test]
fn yaml_and_toml_give_the_same_fingerprint() {
    let case = golden_dir().join("yaml-toml-equivalence");
    let yaml = desired::load_at(&case.join("yaml"), DEFAULT_NOW).expect("yaml loads");
    let toml = desired::load_at(&case.join("toml"), DEFAULT_NOW).expect("toml loads");
    assert_eq!(yaml.state.counts(), toml.state.counts());
    assert!(yaml.state.counts().frontends > 0);
    assert_eq!(yaml.state.fingerprint(), toml.state.fingerprint());
    // Frontends are added in the same order too (it decides which equal route wins).
    assert_eq!(
        yaml.state.frontends_in_order(),
        toml.state.frontends_in_order()
    );
}
