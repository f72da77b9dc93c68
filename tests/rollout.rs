//! Rollouts to three proxies on 127.0.0.1: `weir plan` and `weir apply` with several
//! `--socket`s. The proxies share the desired listener's port (their listening sockets use
//! SO_REUSEPORT, and `shared_listeners = true` lets each join the others' address), the way
//! one address is served by a fleet of machines.
#![allow(clippy::unwrap_used)]

mod util;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use util::control::{self, Gate};
use util::{weir, Desired, Proxy};
use weir_schema::Command;
use weir_testkit::{wait_until, Backend};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// One listener routing `app` to a cluster with the given backends.
fn desired(listener: SocketAddr, backends: &[(&str, SocketAddr)]) -> Desired {
    let desired = Desired::new();
    let mut yaml = format!(
        "listeners:\n  - name: web\n    address: {listener}\n    protocol: http\nclusters:\n  - id: app\n    backends:\n"
    );
    for (id, addr) in backends {
        yaml.push_str(&format!("      - id: {id}\n        address: {addr}\n"));
    }
    yaml.push_str("frontends:\n  - listener: web\n    hostname: app\n    cluster: app\n");
    desired.write("weir.yaml", &yaml);
    desired
}

/// Three proxies allowed to share listening addresses; the directory holds their settings.
fn three_proxies() -> (Vec<Proxy>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = control::write_config(
        dir.path(),
        "shared_listeners = true
",
    );
    let config = config.to_str().unwrap();
    let proxies = (0..3)
        .map(|_| Proxy::start(&["--workers", "1", "--config", config]))
        .collect();
    (proxies, dir)
}

/// `weir ARGS... --socket P1 --socket P2 --socket P3`.
fn weir_all(proxies: &[Proxy], args: &[&str]) -> std::process::Output {
    let mut all: Vec<&str> = args.to_vec();
    for p in proxies {
        all.extend(["--socket", p.socket_str()]);
    }
    weir(&all)
}

fn fingerprint(proxy: &Proxy) -> weir_schema::Fingerprint {
    control::client(proxy).query_state().unwrap().fingerprint()
}

fn json_lines(stdout: &[u8]) -> Vec<Value> {
    text(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_rollout_converges_all_three_and_plans_show_drift_apart() {
    let backend = Backend::start("blue");
    let listener = weir_testkit::free_addr();
    let dir = desired(listener, &[("blue", backend.addr)]);
    let path = dir.path().to_str().unwrap();
    let want = weir_schema::desired::load(dir.path()).unwrap().state;
    let (proxies, _config) = three_proxies();
    // The third proxy has drifted: it holds a cluster nobody asked for.
    let mut third = control::client(&proxies[2]);
    assert!(control::is_ok(&control::apply(
        &mut third,
        control::add_cluster("stray")
    )));

    let plan = weir_all(
        &proxies,
        &["plan", path, "--detailed-exitcode", "--no-color"],
    );
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan.stderr));
    let shown = text(&plan.stdout);
    let same = format!(
        "== 2 of 3 proxies: {}, {}",
        proxies[0].socket_str(),
        proxies[1].socket_str()
    );
    assert!(shown.contains(&same), "{shown}");
    assert!(
        shown.contains(&format!("== Drifted: {}", proxies[2].socket_str())),
        "{shown}"
    );
    assert!(shown.contains("cluster.stray"), "{shown}");

    let applied = weir_all(&proxies, &["apply", path, "--auto-approve", "--json"]);
    assert_eq!(applied.status.code(), Some(0), "{}", text(&applied.stderr));
    let lines = json_lines(&applied.stdout);
    let proxy_lines: Vec<&Value> = lines.iter().filter(|l| l["type"] == "proxy").collect();
    assert_eq!(proxy_lines.len(), 3, "{lines:?}");
    assert_eq!(proxy_lines[0]["canary"], true);
    for (line, proxy) in proxy_lines.iter().zip(&proxies) {
        assert_eq!(line["socket"], proxy.socket_str());
        assert_eq!(line["result"], "applied", "{line}");
    }
    for proxy in &proxies {
        assert_eq!(fingerprint(proxy), want.fingerprint());
    }
    let again = weir_all(
        &proxies,
        &["plan", path, "--detailed-exitcode", "--no-color"],
    );
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stdout));
    assert!(text(&again.stdout).contains("== All 3 proxies have the same plan"));
}

#[test]
fn a_proxy_that_refuses_a_step_stops_the_rollout_after_the_canary() {
    let backend = Backend::start("blue");
    let listener = weir_testkit::free_addr();
    let dir = desired(listener, &[("blue", backend.addr)]);
    let want = weir_schema::desired::load(dir.path()).unwrap().state;
    let (proxies, _config) = three_proxies();

    // The second proxy is stopping (a request it serves is held at a backend), so it refuses
    // every change; its command socket still answers queries.
    let gate = Gate::start();
    let own = weir_testkit::free_addr();
    let mut second = control::client(&proxies[1]);
    control::route(&mut second, own, "held", &[gate.addr]);
    assert!(util::wait_for_port(own));
    let held = gate.hold(own, "held");
    // The answer to SoftStop comes once the proxy has stopped: send it and do not wait.
    let mut stopper = control::client(&proxies[1]);
    let id = stopper.next_id();
    stopper
        .send(&weir_schema::Request::new(id, Command::SoftStop))
        .unwrap();
    assert!(wait_until(Duration::from_secs(10), || {
        let mut probe = control::client(&proxies[1]);
        let answer = control::apply(&mut probe, control::add_cluster("probe"));
        !control::is_ok(&answer) && answer.message.contains("stopping")
    }));
    let second_before = control::client(&proxies[1]).query_state().unwrap();
    let third_before = control::client(&proxies[2]).query_state().unwrap();

    let applied = weir_all(
        &proxies,
        &[
            "apply",
            dir.path().to_str().unwrap(),
            "--auto-approve",
            "--json",
        ],
    );
    assert_eq!(applied.status.code(), Some(5), "{}", text(&applied.stderr));
    let lines = json_lines(&applied.stdout);
    let result = lines.last().unwrap();
    assert_eq!(result["type"], "result");
    let message = result["message"].as_str().unwrap();
    assert!(message.contains(proxies[1].socket_str()), "{message}");
    assert!(message.contains("step apply"), "{message}");
    let reports = result["proxies"].as_array().unwrap();
    assert_eq!(reports[0]["result"], "applied");
    assert_eq!(reports[1]["result"], "failed");
    assert_eq!(reports[1]["step"], "apply");
    assert_eq!(reports[2]["result"], "not_reached");

    // The canary has the new state; the failed proxy rolled back to where it was; the third
    // was never touched.
    assert_eq!(fingerprint(&proxies[0]), want.fingerprint());
    let second_after = control::client(&proxies[1]).query_state().unwrap();
    assert_eq!(second_after.fingerprint(), second_before.fingerprint());
    let third_after = control::client(&proxies[2]).query_state().unwrap();
    assert_eq!(third_after.version, third_before.version);
    assert_eq!(third_after.fingerprint(), third_before.fingerprint());

    gate.release();
    let _ = held.join();
}

#[test]
fn rollouts_under_request_loops_fail_no_request() {
    let blue = Backend::start("blue");
    let green = Backend::start("green");
    let listener = weir_testkit::free_addr();
    let v1 = desired(listener, &[("blue", blue.addr)]);
    let v2 = desired(listener, &[("green", green.addr), ("blue-2", blue.addr)]);
    let v3 = desired(listener, &[("green", green.addr)]);
    let (proxies, _config) = three_proxies();
    let first = weir_all(
        &proxies,
        &[
            "apply",
            v1.path().to_str().unwrap(),
            "--auto-approve",
            "--wave-size",
            "2",
        ],
    );
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    assert!(wait_until(Duration::from_secs(20), || {
        weir_testkit::http_get(listener, "app", "/").is_ok_and(|a| a.status == 200)
    }));

    // Every proxy serves the listener's port; the kernel spreads the loops' connections over
    // all of them, whatever wave each is in.
    let stop = Arc::new(AtomicBool::new(false));
    let loops: Vec<_> = (0..2)
        .map(|_| control::request_loop(listener, "app", stop.clone(), 100_000))
        .collect();
    for next in [&v2, &v3, &v1] {
        let before = blue.request_count() + green.request_count();
        let rolled = weir_all(
            &proxies,
            &[
                "apply",
                next.path().to_str().unwrap(),
                "--auto-approve",
                "--canary",
                "1",
                "--wave-size",
                "2",
                "--pause",
                "100ms",
            ],
        );
        assert_eq!(
            rolled.status.code(),
            Some(0),
            "{}{}",
            text(&rolled.stdout),
            text(&rolled.stderr)
        );
        // Traffic flowed while it rolled out.
        assert!(wait_until(Duration::from_secs(10), || {
            blue.request_count() + green.request_count() > before + 10
        }));
    }
    stop.store(true, Ordering::SeqCst);
    let (mut ok, mut failed) = (0, 0);
    for l in loops {
        let (o, f) = l.join().unwrap();
        ok += o;
        failed += f;
    }
    assert!(ok > 0);
    assert_eq!(
        failed, 0,
        "{failed} request(s) failed during the rollouts ({ok} ok)"
    );
}
