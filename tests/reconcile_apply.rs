//! `weir plan` / `weir apply` against a real `weir proxy`: the golden cases end to end, a
//! blue/green switch under load with no failed request, and the exit codes of the three ways an
//! apply stops early (3 stale saved plan, 4 drain deadline, 5 rolled back).
#![allow(clippy::unwrap_used)]

mod util;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use util::control::{self, Gate};
use util::{weir_bin, Desired, Proxy};
use weir_testkit::{free_addr, http_get, wait_until, Answer, Backend};

/// One http listener routing `shop.test` to `cluster`'s backends.
fn app(listener: SocketAddr, cluster: &str, backends: &[(&str, SocketAddr)]) -> String {
    let mut yaml = format!(
        "listeners:\n  - name: web\n    address: {listener}\n    protocol: http\n\
         clusters:\n  - id: {cluster}\n    backends:\n"
    );
    for (id, address) in backends {
        yaml.push_str(&format!("      - id: {id}\n        address: {address}\n"));
    }
    yaml.push_str(&format!(
        "frontends:\n  - listener: web\n    hostname: shop.test\n    cluster: {cluster}\n"
    ));
    yaml
}

fn code(out: &std::process::Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn show(out: &std::process::Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn proxy() -> Proxy {
    Proxy::start(&["--workers", "1"])
}

fn apply_ok(proxy: &Proxy, dir: &Path) {
    let out = proxy.weir(&["apply", dir.to_str().unwrap(), "--auto-approve"]);
    assert_eq!(code(&out), 0, "{}", show(&out));
}

/// A proxy with `live` applied, routing `shop.test` on `listener` to a blue backend, and a
/// desired state `next` that switches it to a green one.
struct BlueGreen {
    proxy: Proxy,
    listener: SocketAddr,
    live: Desired,
    next: Desired,
}

impl BlueGreen {
    fn start(blue: SocketAddr, green: SocketAddr) -> BlueGreen {
        let listener = free_addr();
        let live = Desired::new();
        live.write("app.yaml", &app(listener, "blue", &[("blue-1", blue)]));
        let next = Desired::new();
        next.write("app.yaml", &app(listener, "green", &[("green-1", green)]));
        let proxy = proxy();
        apply_ok(&proxy, live.path());
        BlueGreen {
            proxy,
            listener,
            live,
            next,
        }
    }
}

// ---- golden cases ---------------------------------------------------------------------------

/// The listener ports the golden cases use, each swapped for one the OS gives us.
const GOLDEN_PORTS: [&str; 5] = [
    "127.0.0.1:8080",
    "127.0.0.1:8081",
    "127.0.0.1:8090",
    "127.0.0.1:8443",
    "127.0.0.1:5432",
];

fn copy_with_ports(from: &Path, to: &Path, ports: &[(String, String)]) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_with_ports(&entry.path(), &target, ports);
            continue;
        }
        let name = entry.file_name().into_string().unwrap();
        if name.ends_with(".yaml") || name.ends_with(".toml") {
            let mut text = std::fs::read_to_string(entry.path()).unwrap();
            for (old, new) in ports {
                text = text.replace(old, new);
            }
            std::fs::write(&target, text).unwrap();
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn golden_case(case: &str) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/plan")
        .join(case);
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<(String, String)> = GOLDEN_PORTS
        .iter()
        .map(|p| (p.to_string(), free_addr().to_string()))
        .collect();
    copy_with_ports(&source, dir.path(), &ports);
    let live = dir.path().join("live");
    let desired = dir.path().join("desired");
    let mut targets: Vec<String> = Vec::new();
    for t in std::fs::read_to_string(source.join("targets"))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        targets.push("--target".into());
        targets.push(t.trim().into());
    }
    let with_targets = |args: &[&str]| -> Vec<String> {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend(targets.iter().cloned());
        all
    };

    let proxy = proxy();
    apply_ok(&proxy, &live);

    let args = with_targets(&["plan", desired.to_str().unwrap(), "--json"]);
    let out = proxy.weir(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code(&out), 0, "{case}: {}", show(&out));
    let planned: Value = serde_json::from_slice(&out.stdout).unwrap();
    let golden: Value =
        serde_json::from_str(&std::fs::read_to_string(source.join("plan.json")).unwrap()).unwrap();
    // Ports from the OS reorder resources of one phase that sort by address; what each phase
    // does must match the golden plan (the order inside phases is the golden test's business).
    let steps = |plan: &Value| -> Vec<String> {
        let mut steps: Vec<String> = plan["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                format!(
                    "{} {} {} {}",
                    s["phase"], s["request"], s["part_of"], s["address"]
                )
            })
            .collect();
        steps.sort();
        steps
    };
    assert_eq!(
        steps(&planned),
        steps(&golden),
        "{case}: the live proxy plans other steps than the golden plan"
    );

    let args = with_targets(&["apply", desired.to_str().unwrap(), "--auto-approve"]);
    let out = proxy.weir(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code(&out), 0, "{case}: {}", show(&out));

    if targets.is_empty() {
        let out = proxy.weir(&["plan", desired.to_str().unwrap(), "--detailed-exitcode"]);
        assert_eq!(code(&out), 0, "{case}: not converged: {}", show(&out));
    }
}

#[test]
fn golden_cases_plan_and_apply_against_a_real_proxy() {
    for case in [
        "no-change",
        "new-app",
        "removed-app",
        "blue-green",
        "cert-rotation",
        "backend-weight",
        "backend-address",
        "listener-added",
        "listener-protocol",
        "mixed",
        "targeted",
    ] {
        golden_case(case);
    }
}

// ---- traffic --------------------------------------------------------------------------------

#[test]
fn blue_green_switch_under_load_fails_no_request() {
    let blue = Backend::start("blue");
    let green = Backend::start("green");
    let BlueGreen {
        proxy,
        listener,
        live: _live,
        next,
    } = BlueGreen::start(blue.addr, green.addr);
    assert!(wait_until(Duration::from_secs(10), || {
        http_get(listener, "shop.test", "/").is_ok_and(|a| a.text() == "blue")
    }));

    let stop = Arc::new(AtomicBool::new(false));
    let load = control::request_loop(listener, "shop.test", stop.clone(), 50_000);
    assert!(wait_until(Duration::from_secs(10), || blue.request_count() > 20));
    apply_ok(&proxy, next.path());
    let before = green.request_count();
    assert!(wait_until(Duration::from_secs(10), || green
        .request_count()
        > before + 20));
    stop.store(true, Ordering::SeqCst);
    let (ok, failed) = load.join().unwrap();
    assert!(ok > 40, "only {ok} requests went through");
    assert_eq!(failed, 0, "{failed} of {} requests failed", ok + failed);
    assert_eq!(
        http_get(listener, "shop.test", "/").unwrap().text(),
        "green"
    );
}

// ---- early stops ----------------------------------------------------------------------------

/// A proxy routing `shop.test` to a blue backend that holds one request open (so removing it
/// drains), and a desired state that switches to green.
struct HeldDrain {
    gate: Gate,
    _green: Backend,
    listener: SocketAddr,
    _live: Desired,
    next: Desired,
    proxy: Proxy,
    held: Option<std::thread::JoinHandle<std::io::Result<Answer>>>,
}

impl HeldDrain {
    fn start() -> HeldDrain {
        let gate = Gate::start();
        let green = Backend::start("green");
        let BlueGreen {
            proxy,
            listener,
            live,
            next,
        } = BlueGreen::start(gate.addr, green.addr);
        let held = gate.hold(listener, "shop.test");
        HeldDrain {
            gate,
            _green: green,
            listener,
            _live: live,
            next,
            proxy,
            held: Some(held),
        }
    }

    fn socket(&self) -> PathBuf {
        self.proxy.socket.clone()
    }
}

impl Drop for HeldDrain {
    fn drop(&mut self) {
        self.gate.release();
        if let Some(held) = self.held.take() {
            let _ = held.join();
        }
    }
}

#[test]
fn a_concurrent_writer_during_apply_rolls_everything_back_with_exit_5() {
    let t = HeldDrain::start();
    let mut client = control::client(&t.proxy);
    let before = client.query_state().unwrap();

    let mut apply = Command::new(weir_bin())
        .args([
            "apply",
            t.next.path().to_str().unwrap(),
            "--auto-approve",
            "--json",
        ])
        .arg("--socket")
        .arg(t.socket())
        .env_remove("WEIR_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The blue backend leaves the state once its removal is accepted; its drain then waits
    // for the held request. A concurrent writer changes the state meanwhile.
    assert!(wait_until(Duration::from_secs(10), || {
        client
            .query_state()
            .is_ok_and(|s| !s.backends.keys().any(|k| k.cluster.0 == "blue"))
    }));
    let intruder = control::apply(&mut client, control::add_cluster("intruder"));
    assert!(control::is_ok(&intruder), "{intruder:?}");
    t.gate.release();

    let status = control::wait_exit(&mut apply, Duration::from_secs(30)).expect("apply exits");
    let out = apply.wait_with_output().unwrap();
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(status.code(), Some(5), "{}", show(&out));
    let result = lines.last().unwrap();
    assert_eq!(result["result"], "rolled_back", "{result}");
    assert!(lines.iter().any(|l| l["type"] == "undo"));
    let failed: Vec<&Value> = lines
        .iter()
        .filter(|l| l["type"] == "step" && l["ok"] == false)
        .collect();
    assert_eq!(failed.len(), 1, "{lines:?}");
    assert_eq!(failed[0]["address"], "cluster.blue");

    // Everything the apply did is undone; the intruder's change stays.
    let after = client.query_state().unwrap();
    assert!(after.clusters.keys().any(|c| c.0 == "intruder"));
    let removed = control::apply(
        &mut client,
        weir_schema::Change::RemoveCluster(weir_schema::ClusterId("intruder".into())),
    );
    assert!(control::is_ok(&removed));
    assert_eq!(
        client.query_state().unwrap().fingerprint(),
        before.fingerprint()
    );
    assert_eq!(http_get(t.listener, "shop.test", "/").unwrap().status, 200);
}

#[test]
fn a_stale_saved_plan_is_refused_with_exit_3() {
    let blue = Backend::start("blue");
    let green = Backend::start("green");
    let BlueGreen {
        proxy,
        live: _live,
        next,
        ..
    } = BlueGreen::start(blue.addr, green.addr);

    let plan_dir = tempfile::tempdir().unwrap();
    let plan_file = plan_dir.path().join("plan.json");
    let plan_file = plan_file.to_str().unwrap();
    let out = proxy.weir(&["plan", next.path().to_str().unwrap(), "--out", plan_file]);
    assert_eq!(code(&out), 0, "{}", show(&out));

    let mut client = control::client(&proxy);
    assert!(control::is_ok(&control::apply(
        &mut client,
        control::add_cluster("intruder")
    )));
    let moved = client.query_state().unwrap();

    let out = proxy.weir(&["apply", plan_file]);
    assert_eq!(code(&out), 3, "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("moved"));
    assert_eq!(
        client.query_state().unwrap().fingerprint(),
        moved.fingerprint()
    );

    // Without the intruder, the same saved plan applies.
    let out = proxy.weir(&["plan", next.path().to_str().unwrap(), "--out", plan_file]);
    assert_eq!(code(&out), 0, "{}", show(&out));
    let out = proxy.weir(&["apply", plan_file]);
    assert_eq!(code(&out), 0, "{}", show(&out));
}

/// `weir plan --from-state`, as a CI review job runs it: no proxy (the socket it would use
/// does not exist), the live side from a saved state or from desired-state files, and the same
/// plan the running proxy gives.
#[test]
fn plan_from_state_needs_no_proxy_and_gives_the_live_plan() {
    let blue = Backend::start("blue");
    let green = Backend::start("green");
    let BlueGreen {
        proxy, live, next, ..
    } = BlueGreen::start(blue.addr, green.addr);
    let (live, next) = (live.path().to_str().unwrap(), next.path().to_str().unwrap());
    let online = proxy.weir(&["plan", next, "--detailed-exitcode", "--json"]);
    assert_eq!(code(&online), 2, "{}", show(&online));
    let online_json: Value = serde_json::from_slice(&online.stdout).unwrap();
    assert!(online_json["changes"]
        .as_array()
        .is_some_and(|c| !c.is_empty()));
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("saved-state");
    let saved = saved.to_str().unwrap();
    let out = proxy.weir(&["state", "save", saved]);
    assert!(out.status.success(), "{}", show(&out));
    drop(proxy);

    let nowhere = dir.path().join("no-proxy.sock");
    let offline = |args: &[&str]| {
        let mut all = vec!["plan"];
        all.extend_from_slice(args);
        all.extend([
            "--detailed-exitcode",
            "--json",
            "--socket",
            nowhere.to_str().unwrap(),
        ]);
        util::weir(&all)
    };
    let from_saved = offline(&[next, "--from-state", saved]);
    assert_eq!(code(&from_saved), 2, "{}", show(&from_saved));
    // The same plan, but for what only a running proxy can tell: the live connection counts
    // shown next to drains.
    let json = |out: &std::process::Output| -> Value {
        let mut plan: Value = serde_json::from_slice(&out.stdout).unwrap();
        for step in plan["steps"].as_array_mut().into_iter().flatten() {
            step.as_object_mut().unwrap().remove("live_connections");
        }
        plan
    };
    assert_eq!(json(&from_saved), json(&online));
    // Desired-state files stand for the live state too: same changes.
    let from_files = offline(&[next, "--from-state", live]);
    assert_eq!(code(&from_files), 2, "{}", show(&from_files));
    assert_eq!(json(&from_files)["changes"], json(&online)["changes"]);
    // Planning the live files against the saved live state changes nothing.
    let same = offline(&[live, "--from-state", saved]);
    assert_eq!(code(&same), 0, "{}", show(&same));
    // Without --from-state the missing proxy is an error, not an empty live state.
    let out = offline(&[next]);
    assert_eq!(code(&out), 1, "{}", show(&out));
}

#[test]
fn a_drain_outliving_its_deadline_stops_with_exit_4() {
    let t = HeldDrain::start();
    let out = t.proxy.weir(&[
        "apply",
        t.next.path().to_str().unwrap(),
        "--auto-approve",
        "--drain-timeout",
        "300ms",
    ]);
    assert_eq!(code(&out), 4, "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("drain deadline"));

    // The backend stays removed; the steps after it were not applied.
    let mut client = control::client(&t.proxy);
    let state = client.query_state().unwrap();
    assert!(!state.backends.keys().any(|k| k.cluster.0 == "blue"));
    assert!(state.clusters.keys().any(|c| c.0 == "blue"));
    assert!(state.frontends.keys().all(|f| f.cluster.0 == "green"));

    // Running apply again finishes the rest.
    t.gate.release();
    apply_ok(&t.proxy, t.next.path());
    let out = t.proxy.weir(&[
        "plan",
        t.next.path().to_str().unwrap(),
        "--detailed-exitcode",
    ]);
    assert_eq!(code(&out), 0, "{}", show(&out));
}

#[test]
fn apply_without_a_terminal_needs_auto_approve() {
    let listener = free_addr();
    let blue = Backend::start("blue");
    let live = Desired::new();
    live.write("app.yaml", &app(listener, "blue", &[("blue-1", blue.addr)]));
    let proxy = proxy();
    let out = proxy.weir(&["apply", live.path().to_str().unwrap()]);
    assert_eq!(code(&out), 1, "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--auto-approve"));
    let out = proxy.weir(&["plan", live.path().to_str().unwrap(), "--detailed-exitcode"]);
    assert_eq!(code(&out), 2, "{}", show(&out));
}
