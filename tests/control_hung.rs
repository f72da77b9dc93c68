//! Workers that are alive but hung (here: SIGSTOPped) must not freeze the command socket:
//! queries answer within `timeouts.worker_answer_ms` and flag the worker, a change answers OK,
//! and either way the hung worker is replaced; a long drain is not mistaken for a hang.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod util;

use std::path::Path;
use std::time::{Duration, Instant};

use util::control::*;
use util::Proxy;
use weir_schema::proto::{response::Content, ResponseStatus};
use weir_schema::{Change, Command, Request};
use weir_testkit::{free_addr, wait_until};

/// The deadline the tests configure: small, so a hang is detected quickly.
const ANSWER_MS: u64 = 500;

/// An answer that waited on the deadline still comes well before this.
const PROMPT: Duration = Duration::from_secs(3);

fn start(dir: &Path, workers: usize) -> Proxy {
    let config = write_config(
        dir,
        &format!("workers = {workers}\n[timeouts]\nworker_answer_ms = {ANSWER_MS}\n"),
    );
    Proxy::start(&["--config", config.to_str().unwrap()])
}

fn signal(name: &str, pid: u32) {
    let status = std::process::Command::new("kill")
        .args([name, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {name} {pid}");
}

/// Makes sure a stopped process does not outlive the test, whatever fails.
struct Stopped(u32);

impl Drop for Stopped {
    fn drop(&mut self) {
        if alive(self.0) {
            let _ = std::process::Command::new("kill")
                .args(["-CONT", &self.0.to_string()])
                .status();
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &self.0.to_string()])
                .status();
        }
    }
}

#[test]
fn a_hung_worker_is_flagged_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = start(dir.path(), 2);
    let mut c = client(&proxy);
    assert!(is_ok(&apply(&mut c, add_cluster("shop"))));
    let before = status(&mut c);
    // Each worker reports the main's version (not its own replay counter).
    for w in &before.workers {
        assert!(!w.unresponsive, "{w:?}");
        assert_eq!(w.state_version, before.state_version, "{w:?}");
    }
    let healthy = before.workers[0].pid;

    // Waits until worker 1 is a new process that holds the whole state, and returns its pid.
    let replaced = |c: &mut _, hung: u32, restarts: u32| -> u32 {
        assert!(
            wait_until(Duration::from_secs(10), || !alive(hung)),
            "the hung worker {hung} was not killed"
        );
        let mut pid = 0;
        let ok = wait_until(Duration::from_secs(10), || {
            let s = status(c);
            let w = &s.workers[1];
            pid = w.pid;
            w.pid != 0 && w.pid != hung && !w.unresponsive && w.state_version == s.state_version
        });
        let s = status(c);
        assert!(ok, "worker 1 was not replaced: {s:?}");
        assert_eq!(s.workers[0].pid, healthy, "the healthy worker was touched");
        assert_eq!(s.workers[1].restarts, restarts);
        pid
    };

    // 1. `weir status --json` answers within the deadline, flags the stopped worker, and the
    //    worker is then replaced although no change came.
    let victim = before.workers[1].pid;
    let _cleanup = Stopped(victim);
    signal("-STOP", victim);
    let asked = Instant::now();
    let out = proxy.weir(&["status", "--json"]);
    assert!(
        asked.elapsed() < PROMPT,
        "status took {:?}",
        asked.elapsed()
    );
    assert!(out.status.success(), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let workers = json["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2, "{json}");
    assert_eq!(workers[0]["unresponsive"], false, "{json}");
    assert_eq!(workers[1]["unresponsive"], true, "{json}");
    assert_eq!(workers[1]["pid"], victim, "{json}");
    let victim = replaced(&mut c, victim, 1);

    // 2. The text form says so plainly.
    let _cleanup2 = Stopped(victim);
    signal("-STOP", victim);
    let out = proxy.weir(&["status"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("UNRESPONSIVE"), "{text}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("did not answer"));
    let victim = replaced(&mut c, victim, 2);

    // 3. Metrics answer too, from the worker that did, and say who is missing.
    let _cleanup3 = Stopped(victim);
    signal("-STOP", victim);
    let asked = Instant::now();
    let answer = call(&mut c, Command::QueryMetrics);
    assert!(asked.elapsed() < PROMPT);
    assert_eq!(answer.status(), ResponseStatus::Ok, "{answer:?}");
    assert!(
        answer.message.contains("worker(s) 1 "),
        "{}",
        answer.message
    );
    let victim = replaced(&mut c, victim, 3);

    // 4. A change answers OK once the healthy worker applied it; the hung one is replaced.
    let _cleanup4 = Stopped(victim);
    signal("-STOP", victim);
    let version = status(&mut c).state_version;
    let asked = Instant::now();
    let answer = apply(&mut c, add_cluster("after"));
    assert!(
        asked.elapsed() < PROMPT,
        "change took {:?}",
        asked.elapsed()
    );
    assert!(is_ok(&answer), "{answer:?}");
    replaced(&mut c, victim, 4);
    assert_eq!(status(&mut c).state_version, version + 1);
    // The replacement got the whole state: later changes reach both workers again.
    assert!(is_ok(&apply(&mut c, add_cluster("later"))));
    let s = status(&mut c);
    assert!(s
        .workers
        .iter()
        .all(|w| !w.unresponsive && w.state_version == s.state_version));
}

#[test]
fn a_drain_longer_than_the_answer_deadline_is_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = start(dir.path(), 1);
    let gate = Gate::start();
    let addr = free_addr();
    let mut c = client(&proxy);
    route(&mut c, addr, "app.test", &[gate.addr]);
    let worker = status(&mut c).workers[0].pid;
    let request = gate.hold(addr, "app.test");
    let remove = Request::change(
        "rm",
        Change::RemoveBackend {
            key: backend_key("app", "b0"),
            drain_timeout: Some(Duration::from_secs(20)),
        },
    );
    // Hold the drain open for several answer deadlines: the worker reports its progress at
    // once, then says nothing until the request finishes. The wait is what is being tested.
    let hold = Duration::from_millis(4 * ANSWER_MS);
    let gate = std::sync::Arc::new(gate);
    let releaser = {
        let gate = gate.clone();
        std::thread::spawn(move || {
            std::thread::sleep(hold);
            gate.release();
        })
    };
    let started = Instant::now();
    let mut progress = 0;
    let answer = c
        .call_with(&remove, |r| {
            if matches!(r.content, Some(Content::Drain(_))) {
                progress += 1;
            }
        })
        .unwrap();
    releaser.join().unwrap();
    assert_eq!(answer.status(), ResponseStatus::Ok, "{answer:?}");
    assert!(progress >= 1, "no drain progress before the OK");
    // It waited for the request, well past the answer deadline.
    assert!(started.elapsed() >= Duration::from_millis(2 * ANSWER_MS));
    assert_eq!(request.join().unwrap().unwrap().status, 200);
    // The draining worker was left alone.
    let s = status(&mut c);
    assert_eq!(s.workers[0].pid, worker);
    assert_eq!(s.workers[0].restarts, 0);
}
