//! The command socket and the main process's control behaviour, through the real binary:
//! socket permissions, concurrent clients, refusals that change nothing, status, events,
//! worker crash recovery and replacement, saved state across restarts, stop.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod util;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use util::control::*;
use util::Proxy;
use weir_schema::proto::{self, response::Content, ResponseStatus};
use weir_schema::{Command, Request};
use weir_testkit::{free_addr, wait_until};

#[test]
fn socket_is_private_to_its_user() {
    let proxy = Proxy::start(&["--workers", "1"]);
    let mode = std::fs::metadata(&proxy.socket)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    // A second proxy on the same socket is refused while the first one is live.
    let out = util::weir(&["proxy", "--workers", "1", "--socket", proxy.socket_str()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already serving"));
}

#[test]
fn concurrent_clients_all_get_their_changes_applied() {
    let proxy = Proxy::start(&["--workers", "2"]);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let socket = proxy.socket.clone();
            std::thread::spawn(move || {
                let mut c = client_at(&socket);
                for i in 0..25 {
                    let answer = apply(&mut c, add_cluster(&format!("c{t}-{i}")));
                    assert!(is_ok(&answer), "{answer:?}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut c = client(&proxy);
    assert_eq!(version(&mut c), 200);
    assert_eq!(c.query_state().unwrap().clusters.len(), 200);
}

#[test]
fn an_invalid_request_fails_and_changes_nothing() {
    let proxy = Proxy::start(&["--workers", "1"]);
    let mut c = client(&proxy);
    assert!(is_ok(&apply(&mut c, add_cluster("shop"))));
    let before = status(&mut c);
    // A backend in a cluster that does not exist.
    let answer = apply(
        &mut c,
        add_backend("nope", "b1", "127.0.0.1:9".parse().unwrap()),
    );
    assert_eq!(answer.status(), ResponseStatus::Failure);
    assert!(answer.message.contains("nope"), "{}", answer.message);
    // A duplicate.
    assert_eq!(
        apply(&mut c, add_cluster("shop")).status(),
        ResponseStatus::Failure
    );
    // A stale expected version.
    let answer = apply_at(&mut c, add_cluster("other"), Some(before.state_version - 1));
    assert_eq!(answer.status(), ResponseStatus::Failure);
    assert!(answer.message.contains("version"), "{}", answer.message);
    // A listener whose port is taken by someone else.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let answer = apply(&mut c, add_http_listener(holder.local_addr().unwrap()));
    assert_eq!(answer.status(), ResponseStatus::Failure);
    assert!(
        answer.message.contains("cannot listen"),
        "{}",
        answer.message
    );
    let after = status(&mut c);
    assert_eq!(after.state_version, before.state_version);
    assert_eq!(after.state_fingerprint, before.state_fingerprint);
    // The expected version that matches is accepted.
    assert!(is_ok(&apply_at(
        &mut c,
        add_cluster("other"),
        Some(before.state_version)
    )));
}

#[test]
fn a_garbled_frame_closes_only_that_client() {
    use std::io::Write;
    let proxy = Proxy::start(&["--workers", "1"]);
    let mut good = client(&proxy);
    let mut bad = std::os::unix::net::UnixStream::connect(&proxy.socket).unwrap();
    bad.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    bad.write_all(&[0xff; 11]).unwrap();
    weir_testkit::closed_by_peer(&mut bad).expect("the bad client is closed");
    assert!(is_ok(&apply(&mut good, add_cluster("still-fine"))));
}

/// `weir status` with only the given environment (and no `--socket`).
fn status_with_env(env: &[(&str, &std::path::Path)]) -> std::process::Output {
    let mut command = std::process::Command::new(util::weir_bin());
    command.arg("status").env_remove("WEIR_SOCKET");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

/// With neither `--socket` nor `$WEIR_SOCKET`, the proxy and the commands meet at
/// `$XDG_RUNTIME_DIR/weir/weir.sock`, else at `$TMPDIR/weir-$USER/weir.sock`; `$WEIR_SOCKET`
/// names the socket for the commands.
#[test]
fn the_default_socket_path_is_where_proxy_and_commands_meet() {
    use std::path::Path;
    let runtime = tempfile::tempdir().unwrap();
    let xdg = runtime.path().to_owned();
    let expected = xdg.join("weir").join("weir.sock");
    let proxy = Proxy::start_at_default_path(
        &["--workers", "1"],
        &[("XDG_RUNTIME_DIR", &xdg)],
        expected.clone(),
        runtime,
    );
    let out = status_with_env(&[("XDG_RUNTIME_DIR", &xdg)]);
    assert!(out.status.success(), "{out:?}");
    let pid = proxy.pid().to_string();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&pid),
        "{out:?}"
    );
    // Elsewhere, the default path has no proxy; $WEIR_SOCKET finds this one.
    let elsewhere = tempfile::tempdir().unwrap();
    assert!(!status_with_env(&[("XDG_RUNTIME_DIR", elsewhere.path())])
        .status
        .success());
    let out = status_with_env(&[
        ("XDG_RUNTIME_DIR", elsewhere.path()),
        ("WEIR_SOCKET", &expected),
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&pid),
        "{out:?}"
    );

    // Without a runtime directory: the temporary directory, per user.
    let tmp = tempfile::tempdir().unwrap();
    let tmp_path = tmp.path().to_owned();
    let env: [(&str, &Path); 3] = [
        ("XDG_RUNTIME_DIR", Path::new("")),
        ("TMPDIR", &tmp_path),
        ("USER", Path::new("weir-test-user")),
    ];
    let fallback = Proxy::start_at_default_path(
        &["--workers", "1"],
        &env,
        tmp_path.join("weir-weir-test-user").join("weir.sock"),
        tmp,
    );
    let out = status_with_env(&env);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&fallback.pid().to_string()),
        "{out:?}"
    );
}

#[test]
fn status_lists_every_worker() {
    let proxy = Proxy::start(&["--workers", "3"]);
    let mut c = client(&proxy);
    let s = status(&mut c);
    assert_eq!(s.pid, proxy.pid());
    assert_eq!(s.workers.len(), 3);
    assert!(s.workers.iter().all(|w| w.pid != 0 && w.pid != s.pid));
    let out = proxy.weir(&["status"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("worker"));
    let out = proxy.weir(&["metrics"]);
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn a_killed_worker_is_replaced_with_the_state_intact() {
    let proxy = Proxy::start(&["--workers", "2"]);
    let mut c = client(&proxy);
    assert!(is_ok(&apply(&mut c, add_cluster("shop"))));
    let mut events = client(&proxy);
    assert!(is_ok(&call(
        &mut events,
        Command::SubscribeEvents {
            from_sequence: None
        }
    )));
    let before = status(&mut c);
    let victim = before.workers[0].pid;
    let out = std::process::Command::new("kill")
        .args(["-9", &victim.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let replaced = wait_until(Duration::from_secs(10), || {
        let s = status(&mut c);
        s.workers[0].pid != 0 && s.workers[0].pid != victim && s.workers[0].restarts == 1
    });
    assert!(replaced, "worker 0 was not restarted");
    let after = status(&mut c);
    assert_eq!(after.state_fingerprint, before.state_fingerprint);
    assert_eq!(after.workers[1].pid, before.workers[1].pid);
    // Crash, then restart, as events.
    let mut kinds = Vec::new();
    while kinds.len() < 2 {
        let r = events.recv().unwrap();
        if let Some(Content::Event(e)) = r.content {
            if e.kind() != proto::EventKind::StateChanged {
                kinds.push(e.kind());
            }
        }
    }
    assert_eq!(
        kinds,
        [
            proto::EventKind::WorkerCrashed,
            proto::EventKind::WorkerRestarted
        ]
    );
    // Changes still reach every worker.
    assert!(is_ok(&apply(&mut c, add_cluster("after"))));
}

#[test]
fn events_resume_from_a_sequence() {
    let proxy = Proxy::start(&["--workers", "1"]);
    let mut c = client(&proxy);
    for id in ["a", "b", "c"] {
        assert!(is_ok(&apply(&mut c, add_cluster(id))));
    }
    let mut sub = client(&proxy);
    assert!(is_ok(&call(
        &mut sub,
        Command::SubscribeEvents {
            from_sequence: Some(1)
        }
    )));
    let mut seen = Vec::new();
    while seen.len() < 2 {
        if let Some(Content::Event(e)) = sub.recv().unwrap().content {
            seen.push((e.sequence, e.message));
        }
    }
    assert_eq!(seen[0].0, 2);
    assert_eq!(seen[1].0, 3);
    assert!(seen[1].1.contains("cluster c"), "{seen:?}");
}

#[test]
fn a_worker_can_be_upgraded_alone() {
    let proxy = Proxy::start(&["--workers", "2"]);
    let mut c = client(&proxy);
    let before = status(&mut c);
    assert!(is_ok(&call(&mut c, Command::UpgradeWorker(1))));
    let after = status(&mut c);
    assert_ne!(after.workers[1].pid, before.workers[1].pid);
    assert_eq!(after.workers[0].pid, before.workers[0].pid);
    let old = before.workers[1].pid;
    assert!(wait_until(Duration::from_secs(10), || !alive(old)));
    assert_eq!(
        call(&mut c, Command::UpgradeWorker(9)).status(),
        ResponseStatus::Failure
    );
}

#[test]
fn state_survives_a_main_process_restart() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let config = write_config(
        dir.path(),
        &format!(
            "workers = 1\n[state]\npath = {:?}\nauto_save = true\n",
            state.to_str().unwrap()
        ),
    );
    let config = config.to_str().unwrap().to_owned();
    let fingerprint = {
        let proxy = Proxy::start(&["--config", &config]);
        let mut c = client(&proxy);
        assert!(is_ok(&apply(&mut c, add_cluster("shop"))));
        assert!(is_ok(&apply(
            &mut c,
            add_backend("shop", "b1", "127.0.0.1:9".parse().unwrap())
        )));
        status(&mut c).state_fingerprint
        // Dropped: SIGKILL, no chance to save at exit.
    };
    let proxy = Proxy::start(&["--config", &config]);
    let mut c = client(&proxy);
    let s = status(&mut c);
    assert_eq!(s.state_fingerprint, fingerprint);
    assert_eq!(s.state_version, 2);
}

#[test]
fn state_save_and_load_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("saved");
    let first = Proxy::start(&["--workers", "1"]);
    let mut c = client(&first);
    assert!(is_ok(&apply(&mut c, add_cluster("shop"))));
    let out = first.weir(&["state", "save", file.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let second = Proxy::start(&["--workers", "1"]);
    let out = second.weir(&["state", "load", file.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let mut c2 = client(&second);
    assert!(c2.query_state().unwrap().clusters.len() == 1);
    // Loading it again is a no-op, not an error.
    assert!(second
        .weir(&["state", "load", file.to_str().unwrap()])
        .status
        .success());
    // A corrupt file is refused whole.
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&file, &bytes).unwrap();
    let before = version(&mut c2);
    let out = second.weir(&["state", "load", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("checksum"),
        "{out:?}"
    );
    assert_eq!(version(&mut c2), before);
    let out = second.weir(&["state", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["clusters"][0]["id"], "shop");
}

#[test]
fn soft_stop_exits_and_removes_the_socket() {
    let mut proxy = Proxy::start(&["--workers", "2"]);
    let mut c = client(&proxy);
    let answer = c
        .call_with(&Request::new("stop", Command::SoftStop), |_| {})
        .unwrap();
    assert_eq!(answer.status(), ResponseStatus::Ok);
    let exited = wait_exit(&mut proxy.child, Duration::from_secs(10)).expect("exit");
    assert!(exited.success());
    assert!(!proxy.socket.exists());
}

#[test]
fn sigterm_stops_the_proxy() {
    let mut proxy = Proxy::start(&["--workers", "1"]);
    let mut c = client(&proxy);
    let workers: Vec<u32> = status(&mut c).workers.iter().map(|w| w.pid).collect();
    std::process::Command::new("kill")
        .args(["-TERM", &proxy.pid().to_string()])
        .status()
        .unwrap();
    assert!(wait_exit(&mut proxy.child, Duration::from_secs(10)).is_some());
    assert!(workers.iter().all(|p| !alive(*p)));
}

#[test]
fn bad_config_fails_at_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "workers = 2\nbufer_size = 3\n");
    let out = util::weir(&["proxy", "--config", config.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bufer_size"), "{stderr}");
}

#[test]
fn upgrade_hands_the_socket_and_state_to_a_new_main_process() {
    let mut proxy = Proxy::start(&["--workers", "2"]);
    let mut c = client(&proxy);
    assert!(is_ok(&apply(&mut c, add_cluster("shop"))));
    let before = status(&mut c);
    let out = proxy.weir(&["upgrade"]);
    assert!(out.status.success(), "{out:?}");
    // The old main process drains its workers and exits, leaving the socket in place.
    assert!(wait_exit(&mut proxy.child, Duration::from_secs(20)).is_some());
    assert!(proxy.socket.exists());
    let mut c = client(&proxy);
    let after = status(&mut c);
    assert_ne!(after.pid, before.pid);
    assert_eq!(after.state_fingerprint, before.state_fingerprint);
    assert_eq!(after.state_version, before.state_version);
    assert_eq!(after.workers.len(), 2);
    assert!(is_ok(&apply(&mut c, add_cluster("after-upgrade"))));
    // The new main process is not the harness's child: stop it by hand.
    assert!(is_ok(&call(&mut c, Command::HardStop)));
    assert!(wait_until(Duration::from_secs(10), || !alive(after.pid)));
}

/// `apps` clusters, each with a backend and a frontend, sent as 3 x `apps` changes pipelined on
/// one connection (no waiting for each answer) to a proxy with two workers; every answer is
/// OK, in order, and the state holds them all. Returns how long it took.
fn pipelined_apply(apps: usize) -> Duration {
    let proxy = Proxy::start(&["--workers", "2"]);
    let mut c = client(&proxy);
    let listener = free_addr();
    assert!(is_ok(&apply(&mut c, add_http_listener(listener))));
    let mut requests = Vec::new();
    for i in 0..apps {
        let id = format!("app{i}");
        requests.push(add_cluster(&id));
        requests.push(add_backend(&id, "b", "127.0.0.1:9".parse().unwrap()));
        requests.push(add_frontend(listener, &format!("{id}.test"), &id));
    }
    let changes = requests.len();
    let started = std::time::Instant::now();
    for (n, change) in requests.into_iter().enumerate() {
        c.send(&Request::change(format!("r{n}"), change)).unwrap();
    }
    for n in 0..changes {
        let answer = c.recv().unwrap();
        assert_eq!(answer.status(), ResponseStatus::Ok, "{answer:?}");
        assert_eq!(answer.id, format!("r{n}"), "answers come in order");
    }
    let elapsed = started.elapsed();
    assert_eq!(version(&mut c), changes as u64 + 1);
    let s = status(&mut c);
    assert_eq!(s.workers.len(), 2);
    assert!(
        s.workers
            .iter()
            .all(|w| w.state_version == changes as u64 + 1 && w.restarts == 0),
        "{:?}",
        s.workers
    );
    let state = c.query_state().unwrap();
    assert_eq!(
        (
            state.clusters.len(),
            state.backends.len(),
            state.frontends.len()
        ),
        (apps, apps, apps)
    );
    elapsed
}

/// A large pipelined apply against the real main process, small enough for every CI run.
#[test]
fn apply_3000_changes_pipelined() {
    pipelined_apply(1_000);
}

/// 30,000 changes (10,000 clusters, each with a backend and a frontend), pipelined on one
/// connection. Timing is meaningful in release builds only: `cargo test --release --test
/// control_socket -- --ignored --nocapture apply_30000`.
#[test]
#[ignore]
fn apply_30000_changes() {
    let elapsed = pipelined_apply(10_000);
    println!("RESULT changes=30000 apply_ms={}", elapsed.as_millis());
}
