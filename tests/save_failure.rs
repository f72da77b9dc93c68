//! `state.auto_save` when the disk says no: a change that cannot be saved is refused with a
//! FAILURE and the live state stays as it was, so no OK is ever undone by a restart.
//!
//! The save is made to fail by putting a regular file where the state's directory was: a
//! write under it fails with "Not a directory" whoever runs the test, root included (file
//! permissions do not stop root, and a full disk cannot be made without privileges).

#![allow(clippy::unwrap_used)] // tests may unwrap

mod util;

use std::fs;

use util::control::*;
use util::Proxy;
use weir_schema::Command;

#[test]
fn a_change_that_cannot_be_saved_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    fs::create_dir(&state_dir).unwrap();
    let state = state_dir.join("weir.state");
    let config = write_config(
        dir.path(),
        &format!(
            "workers = 1\n[state]\npath = {:?}\nauto_save = true\n",
            state.to_str().unwrap()
        ),
    );
    let proxy = Proxy::start(&["--config", config.to_str().unwrap()]);
    let mut c = client(&proxy);
    assert!(is_ok(&apply(&mut c, add_cluster("shop"))));
    let before = status(&mut c);

    // The directory goes away and a file takes its place.
    fs::rename(&state_dir, dir.path().join("moved")).unwrap();
    fs::write(&state_dir, b"not a directory").unwrap();
    let answer = apply(&mut c, add_cluster("blog"));
    assert!(!is_ok(&answer), "{answer:?}");
    assert!(
        answer.message.contains("cannot write saved state") && answer.message.contains("nothing"),
        "{}",
        answer.message
    );
    // Nothing changed: not the version, not the fingerprint, not the state's clusters.
    let after = status(&mut c);
    assert_eq!(after.state_version, before.state_version);
    assert_eq!(after.state_fingerprint, before.state_fingerprint);
    let live = c.query_state().unwrap();
    assert!(
        live.clusters.keys().all(|id| id.0 != "blog"),
        "{:?}",
        live.clusters.keys()
    );
    // A listener refused this way leaves no socket behind: the address is free again.
    let address = weir_testkit::free_addr();
    let answer = apply(&mut c, add_http_listener(address));
    assert!(!is_ok(&answer), "{answer:?}");
    assert!(std::net::TcpListener::bind(address).is_ok());

    // Once the directory is back, the same change goes through and is on disk.
    fs::remove_file(&state_dir).unwrap();
    fs::rename(dir.path().join("moved"), &state_dir).unwrap();
    assert!(is_ok(&apply(&mut c, add_cluster("blog"))));
    let saved = weir_schema::saved::decode(&fs::read(&state).unwrap()).unwrap();
    assert_eq!(saved.version, before.state_version + 1);
    assert!(saved.clusters.keys().any(|id| id.0 == "blog"));
    // SaveState (explicit) reports the same kind of failure as a FAILURE too.
    let blocked = dir.path().join("blocker");
    fs::write(&blocked, b"file").unwrap();
    let answer = call(&mut c, Command::SaveState(blocked.join("state")));
    assert!(!is_ok(&answer), "{answer:?}");
}

#[test]
fn a_proxy_that_cannot_save_its_starting_state_does_not_start() {
    let dir = util::private_tempdir();
    let blocker = dir.path().join("blocker");
    fs::write(&blocker, b"file").unwrap();
    let desired = util::Desired::new();
    desired.write(
        "routes.yaml",
        "clusters:\n  - id: shop\n    backends:\n      - id: b1\n        address: 127.0.0.1:9\n",
    );
    let config = write_config(
        dir.path(),
        &format!(
            "workers = 1\n[state]\npath = {:?}\nauto_save = true\n",
            blocker.join("weir.state").to_str().unwrap()
        ),
    );
    let socket = dir.path().join("weir.sock");
    let out = util::weir(&[
        "proxy",
        "--socket",
        socket.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--desired",
        desired.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot write saved state"), "{stderr}");
}
