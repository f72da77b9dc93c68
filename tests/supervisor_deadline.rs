//! The supervisor's bounds on worker processes: a worker replaced by `UpgradeWorker` that
//! still holds a connection is killed once `timeouts.stop_ms` has passed (it would otherwise
//! live as long as its longest connection), and it is reaped: no zombie is left under the
//! main process.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod util;

use std::time::Duration;

use util::control::*;
use util::Proxy;
use weir_schema::Command;
use weir_testkit::{http_get, wait_until};

/// The children of `parent` that are zombies (exited, not reaped).
fn zombies_of(parent: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) S ppid ...": the command may hold spaces or parentheses; the rest follows
        // the last ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.first() == Some(&"Z") && fields.get(1) == Some(&parent.to_string().as_str()) {
            found.push(pid);
        }
    }
    found
}

#[test]
fn a_replaced_worker_holding_a_connection_is_killed_at_the_stop_deadline_and_reaped() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "workers = 1\n[timeouts]\nstop_ms = 1000\n");
    let proxy = Proxy::start(&["--config", config.to_str().unwrap()]);
    let mut c = client(&proxy);
    let routes = HeldRoutes::add(&mut c);
    let (listener, gate) = (routes.listener, &routes.gate);

    // A request the backend never answers keeps the worker busy.
    let held = gate.hold(listener, "held.test");
    let old = status(&mut c).workers[0].pid;
    assert!(is_ok(&call(&mut c, Command::UpgradeWorker(0))));
    let new = status(&mut c).workers[0].pid;
    assert_ne!(new, old);
    assert!(http_get(listener, "site.test", "/").is_ok_and(|a| a.status == 200));

    // Past stop_ms the old worker is killed, though its request is still held, and reaped.
    assert!(
        wait_until(Duration::from_secs(10), || !std::path::Path::new(&format!(
            "/proc/{old}"
        ))
        .exists()),
        "the replaced worker {old} is still there: {:?}",
        std::fs::read_to_string(format!("/proc/{old}/stat"))
    );
    assert_eq!(gate.arrived(), 1);
    assert!(zombies_of(proxy.pid()).is_empty());
    // Its client lost the connection rather than waiting for ever.
    let answer = held.join().unwrap();
    assert!(answer.is_err(), "{answer:?}");
    gate.release();
    assert!(alive(new));
}
