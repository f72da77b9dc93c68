//! Golden plans: each `tests/golden/plan/<case>/` holds `live/` (desired-format files or a
//! saved state describing the live state), `desired/`, an optional `targets` file (one address
//! per line), and the expected outputs: `plan.txt` (no colour) and `plan.json`, or `error.txt`
//! when the desired state must be refused. `UPDATE_GOLDEN=1 cargo test --test plan_golden`
//! rewrites the expectations, so every change to them shows in review.
#![allow(clippy::unwrap_used)]

mod util;

use std::path::{Path, PathBuf};

use weir_reconciler::render::{self, TextOptions};
use weir_reconciler::{plan, Address};

fn case_dir(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/plan")
        .join(case)
}

/// Compares `actual` with the file, or rewrites the file under UPDATE_GOLDEN.
fn expect(path: &Path, actual: &str) {
    if util::update_golden() {
        std::fs::write(path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_else(|_| {
        panic!(
            "{} is missing: run UPDATE_GOLDEN=1 cargo test --test plan_golden",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "{} differs (UPDATE_GOLDEN=1 rewrites it)\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

fn check(case: &str) {
    let dir = case_dir(case);
    let live = weir_schema::desired::load(&dir.join("live"))
        .unwrap_or_else(|e| panic!("{case}: live state does not load: {e}"))
        .state;
    let targets: Vec<Address> = std::fs::read_to_string(dir.join("targets"))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| Address::parse(l).unwrap())
        .collect();
    let desired = match weir_schema::desired::load(&dir.join("desired")) {
        Ok(d) => d.state,
        Err(errors) => {
            let prefix = format!("{}/", dir.display());
            let text = format!("{errors}\n").replace(&prefix, "");
            expect(&dir.join("error.txt"), &text);
            assert!(
                !dir.join("plan.txt").exists(),
                "{case}: the desired state is refused, yet plan.txt exists"
            );
            return;
        }
    };
    let p = plan(&live, &desired, &targets);
    let text = render::text(&p, &TextOptions::default());
    expect(&dir.join("plan.txt"), &text);
    let json = serde_json::to_string_pretty(&render::json(&p)).unwrap() + "\n";
    expect(&dir.join("plan.json"), &json);

    // The plan replays: every step valid, and a full plan ends at the desired state.
    let mut state = live.clone();
    for step in p.steps() {
        state
            .apply_change(&step.change, None)
            .unwrap_or_else(|e| panic!("{case}: {} is invalid: {e}", step.change));
    }
    if targets.is_empty() {
        assert_eq!(state.fingerprint(), desired.fingerprint(), "{case}");
    }
}

macro_rules! golden {
    ($($name:ident => $case:literal,)*) => {
        $(#[test] fn $name() { check($case) })*

        /// Every case directory has a test above.
        #[test]
        fn every_case_is_listed() {
            let listed = [$($case),*];
            for entry in std::fs::read_dir(case_dir("")).unwrap() {
                let name = entry.unwrap().file_name().into_string().unwrap();
                assert!(listed.contains(&name.as_str()), "golden case {name} has no test");
            }
        }
    };
}

golden! {
    no_change => "no-change",
    new_app => "new-app",
    removed_app => "removed-app",
    blue_green => "blue-green",
    cert_rotation => "cert-rotation",
    backend_weight => "backend-weight",
    backend_address => "backend-address",
    listener_added => "listener-added",
    listener_protocol => "listener-protocol",
    mixed => "mixed",
    targeted => "targeted",
    invalid_reference => "invalid-reference",
}
