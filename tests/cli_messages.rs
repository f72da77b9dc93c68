//! What the CLI says when it is pointed at the wrong thing, and `weir state load` restoring a
//! backup: each against the real `weir` binary and a real proxy.
#![allow(clippy::unwrap_used)]

mod util;

use std::net::{SocketAddr, TcpStream};
use std::process::Output;
use std::time::Duration;

use util::control;
use util::{weir, Desired, Proxy};
use weir_testkit::{free_addr, wait_until};

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn show(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// One http listener routing `shop.test` to one backend.
fn app(listener: SocketAddr, backend: SocketAddr) -> String {
    format!(
        "listeners:\n  - name: web\n    address: {listener}\n    protocol: http\n\
         clusters:\n  - id: shop\n    backends:\n      - id: blue-1\n        address: {backend}\n\
         frontends:\n  - listener: web\n    hostname: shop.test\n    cluster: shop\n"
    )
}

fn accepts(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

#[test]
fn a_socket_path_naming_a_regular_file_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("weir.sock");
    std::fs::write(&file, "not a socket").unwrap();
    let out = weir(&["status", "--socket", file.to_str().unwrap()]);
    assert_eq!(code(&out), 1, "{}", show(&out));
    let err = stderr(&out);
    assert!(err.contains("not a socket"), "{}", show(&out));
    assert!(err.contains("regular file"), "{}", show(&out));
    assert!(!err.contains("refused"), "{}", show(&out));
    // A path where nothing is keeps the usual hint.
    let missing = dir.path().join("absent.sock");
    let out = weir(&["status", "--socket", missing.to_str().unwrap()]);
    assert_eq!(code(&out), 1, "{}", show(&out));
    assert!(
        stderr(&out).contains("is `weir proxy` running?"),
        "{}",
        show(&out)
    );
}

#[test]
fn a_target_naming_no_resource_is_refused_by_plan_and_apply() {
    let proxy = Proxy::start(&["--workers", "1"]);
    let desired = Desired::new();
    desired.write("app.yaml", &app(free_addr(), free_addr()));
    let dir = desired.path().to_str().unwrap();
    let before = control::version(&mut control::client(&proxy));

    let runs: [&[&str]; 2] = [
        &["apply", dir, "--auto-approve", "--target", "cluster.shpo"],
        &["plan", dir, "--target", "cluster.shpo"],
    ];
    for args in runs {
        let out = proxy.weir(args);
        assert_eq!(code(&out), 1, "{args:?}: {}", show(&out));
        assert!(
            stderr(&out).contains("cluster.shpo"),
            "{args:?}: {}",
            show(&out)
        );
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("No changes"),
            "{args:?}: {}",
            show(&out)
        );
    }
    assert_eq!(control::version(&mut control::client(&proxy)), before);

    // A target that does name a resource applies it (and what it needs).
    let out = proxy.weir(&["apply", dir, "--auto-approve", "--target", "cluster.shop"]);
    assert_eq!(code(&out), 0, "{}", show(&out));
    let state = control::client(&proxy).query_state().unwrap();
    assert!(state.clusters.keys().any(|c| c.0 == "shop"));
    assert!(state.listeners.is_empty());
}

#[test]
fn state_load_restores_the_backup_and_removes_what_it_lacks() {
    let proxy = Proxy::start(&["--workers", "1"]);
    let listener = free_addr();
    let desired = Desired::new();
    desired.write("app.yaml", &app(listener, free_addr()));
    let out = proxy.weir(&["apply", desired.path().to_str().unwrap(), "--auto-approve"]);
    assert_eq!(code(&out), 0, "{}", show(&out));
    assert!(wait_until(Duration::from_secs(10), || accepts(listener)));

    let backups = tempfile::tempdir().unwrap();
    let backup = backups.path().join("backup.state");
    let out = proxy.weir(&["state", "save", backup.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", show(&out));
    let mut client = control::client(&proxy);
    let saved = client.query_state().unwrap().fingerprint();

    // A listener added after the backup, by hand.
    let extra = free_addr();
    assert!(control::is_ok(&control::apply(
        &mut client,
        control::add_http_listener(extra)
    )));
    assert!(wait_until(Duration::from_secs(10), || accepts(extra)));
    assert_ne!(client.query_state().unwrap().fingerprint(), saved);

    let out = proxy.weir(&["state", "load", backup.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 to remove"),
        "{}",
        show(&out)
    );
    let state = client.query_state().unwrap();
    assert_eq!(state.fingerprint(), saved);
    assert!(!state.listeners.contains_key(&extra));
    assert!(wait_until(Duration::from_secs(10), || !accepts(extra)));
    assert!(accepts(listener));

    // Desired-state files are not a backup: `state load` says to use apply.
    let out = proxy.weir(&[
        "state",
        "load",
        desired.path().join("app.yaml").to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 1, "{}", show(&out));
    assert!(stderr(&out).contains("weir apply"), "{}", show(&out));
}
