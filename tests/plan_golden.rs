//! Golden plans: each `tests/golden/plan/<case>/` holds `live/` (desired-format files or a
//! saved state describing the live state), `desired/`, an optional `targets` file (one address
//! per line), and the expected outputs: `plan.txt` (no colour) and `plan.json`, or `error.txt`
//! when the desired state must be refused.
//!
//! Ownership cases add `applied/<n>-<owner>/` directories, applied in name order with
//! `--owner <owner>` on top of `live/` (which may then be left out), and an `owner` file
//! (`NAME`, or `NAME adopt`): the plan of `desired/` is then made with that scope. `UPDATE_GOLDEN=1 cargo test --test plan_golden`
//! rewrites the expectations, so every change to them shows in review.
#![allow(clippy::unwrap_used)]

mod util;

use std::path::{Path, PathBuf};

use weir_reconciler::owner::{scoped_desired, Scope};
use weir_reconciler::render::{self, TextOptions};
use weir_reconciler::{plan, Address};
use weir_schema::{Owner, State};

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

/// The scope an `owner` file names, if any.
fn scope_of(dir: &Path) -> Option<Scope> {
    let text = std::fs::read_to_string(dir.join("owner")).ok()?;
    let mut words = text.split_whitespace();
    let owner = Owner(words.next()?.to_owned());
    Some(Scope {
        owner,
        adopt: words.next() == Some("adopt"),
    })
}

/// `desired` as a plan with `scope` sees it: loaded against `live`, then scoped.
fn scoped(desired: &Path, live: &State, scope: &Scope) -> Result<State, String> {
    let files = weir_schema::desired::load_with_live(desired, live)
        .map_err(|e| e.to_string())?
        .state;
    scoped_desired(live, &files, scope).map_err(|e| e.to_string())
}

/// Applies a plan's steps to `live`, as a proxy would.
fn apply_plan(live: &mut State, to: &State, case: &str) {
    for step in plan(live, to, &[]).steps() {
        live.apply_change(&step.change, None)
            .unwrap_or_else(|e| panic!("{case}: {} is invalid: {e}", step.change));
    }
}

/// The live state: `live/` (empty when absent), then each `applied/<n>-<owner>/` in order.
fn live_of(dir: &Path, case: &str) -> State {
    let mut live = if dir.join("live").exists() {
        weir_schema::desired::load(&dir.join("live"))
            .unwrap_or_else(|e| panic!("{case}: live state does not load: {e}"))
            .state
    } else {
        State::new()
    };
    let Ok(entries) = std::fs::read_dir(dir.join("applied")) else {
        return live;
    };
    let mut applied: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    applied.sort();
    for path in applied {
        let name = path.file_name().unwrap().to_str().unwrap();
        let owner = name.split_once('-').map_or(name, |(_, o)| o);
        let scope = Scope {
            owner: Owner(owner.to_owned()),
            adopt: false,
        };
        let to = scoped(&path, &live, &scope).unwrap_or_else(|e| panic!("{case}: {name}: {e}"));
        apply_plan(&mut live, &to, case);
        assert_eq!(live.fingerprint(), to.fingerprint(), "{case}: {name}");
    }
    live
}

fn check(case: &str) {
    let dir = case_dir(case);
    let live = live_of(&dir, case);
    if let Some(scope) = scope_of(&dir) {
        return check_scoped(case, &dir, &live, &scope);
    }
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

/// A plan with an ownership scope: the same outputs, and on top, no other owner's resource
/// is changed or removed by it.
fn check_scoped(case: &str, dir: &Path, live: &State, scope: &Scope) {
    let desired = match scoped(&dir.join("desired"), live, scope) {
        Ok(desired) => desired,
        Err(error) => {
            let prefix = format!("{}/", dir.display());
            expect(&dir.join("error.txt"), &(error.replace(&prefix, "") + "\n"));
            return;
        }
    };
    let p = plan(live, &desired, &[]);
    expect(
        &dir.join("plan.txt"),
        &render::text(&p, &TextOptions::default()),
    );
    let json = serde_json::to_string_pretty(&render::json(&p)).unwrap() + "\n";
    expect(&dir.join("plan.json"), &json);
    let mut state = live.clone();
    apply_plan(&mut state, &desired, case);
    assert_eq!(state.fingerprint(), desired.fingerprint(), "{case}");
    let others = |s: &State| {
        let mut s = s.clone();
        s.listeners
            .retain(|_, l| l.owner.as_ref() != Some(&scope.owner));
        s.clusters
            .retain(|_, c| c.owner.as_ref() != Some(&scope.owner));
        s.backends
            .retain(|_, b| b.owner.as_ref() != Some(&scope.owner));
        s.certificates
            .retain(|_, c| c.owner.as_ref() != Some(&scope.owner));
        s.frontends
            .retain(|f, _| f.owner.as_ref() != Some(&scope.owner));
        s.fingerprint()
    };
    if !scope.adopt {
        assert_eq!(
            others(&state),
            others(live),
            "{case}: another owner's resource changed"
        );
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
    owners_shared_listener => "owners-shared-listener",
    owners_team_changes_own => "owners-team-changes-own",
    owners_held_by_other => "owners-held-by-other",
    owners_remove_used => "owners-remove-used",
    owners_adopt => "owners-adopt",
}
