//! Who may use the command socket, and for how long: the socket's directory must be the
//! user's own (owned by them, mode 0700, not a symbolic link) or the proxy refuses to start;
//! a client refuses a socket served by another user; a silent client is closed after
//! `timeouts.command_idle_ms`; clients past `max_command_clients` are told so.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod util;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use util::control::*;
use util::Proxy;
use weir_reconciler::client::{Client, ClientError};
use weir_schema::proto::response::Content;
use weir_schema::{Command as WeirCommand, Request};
use weir_testkit::wait_until;

const NOBODY: u32 = 65534;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Runs `weir proxy` on `socket` to its refusal and returns its stderr.
fn refused_start(socket: &Path) -> String {
    let mut proxy = Command::new(util::weir_bin())
        .args(["proxy", "--workers", "1", "--socket"])
        .arg(socket)
        .env_remove("WEIR_SOCKET")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_exit(&mut proxy, Duration::from_secs(20));
    if status.is_none() {
        let _ = proxy.kill();
        let _ = proxy.wait();
    }
    let mut stderr = String::new();
    proxy
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = status.unwrap_or_else(|| panic!("the proxy started: {stderr}"));
    assert!(!status.success(), "the proxy started: {stderr}");
    assert!(!socket.exists(), "the socket was created: {stderr}");
    stderr
}

#[test]
fn a_socket_directory_that_is_not_the_users_own_is_refused_naming_it() {
    let root = tempfile::tempdir().unwrap();

    // A symbolic link to a private directory.
    let real = root.path().join("real");
    std::fs::create_dir(&real).unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o700)).unwrap();
    let link = root.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let stderr = refused_start(&link.join("weir.sock"));
    assert!(
        stderr.contains(&format!(
            "refusing the command socket's directory {}: it is a symbolic link",
            link.display()
        )),
        "{stderr}"
    );

    // Open to others (0755).
    let open = root.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    let stderr = refused_start(&open.join("weir.sock"));
    assert!(
        stderr.contains(&format!("{}: its mode is 0755", open.display())),
        "{stderr}"
    );

    // Another user's (needs root to make one).
    if is_root() {
        let foreign = root.path().join("foreign");
        std::fs::create_dir(&foreign).unwrap();
        std::fs::set_permissions(&foreign, std::fs::Permissions::from_mode(0o700)).unwrap();
        nix::unistd::chown(&foreign, Some(nix::unistd::Uid::from_raw(NOBODY)), None).unwrap();
        let stderr = refused_start(&foreign.join("weir.sock"));
        assert!(
            stderr.contains(&format!(
                "{}: it belongs to uid {NOBODY}",
                foreign.display()
            )),
            "{stderr}"
        );
    } else {
        eprintln!("not root: the foreign-owner case is skipped");
    }

    // A directory the proxy makes itself is private, and accepted.
    let made = root.path().join("made").join("here");
    let proxy = Proxy::start_at_default_path(
        &[
            "--workers",
            "1",
            "--socket",
            made.join("weir.sock").to_str().unwrap(),
        ],
        &[],
        made.join("weir.sock"),
        tempfile::tempdir().unwrap(),
    );
    let mode = std::fs::metadata(&made).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    drop(proxy);
}

#[test]
fn a_client_refuses_a_socket_served_by_another_user() {
    if !is_root() {
        eprintln!("skipped: serving a socket as another user needs root");
        return;
    }
    // A proxy running as nobody, in a directory of nobody's.
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let dir = root.path().join("nobody");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    nix::unistd::chown(&dir, Some(nix::unistd::Uid::from_raw(NOBODY)), None).unwrap();
    let socket = dir.join("weir.sock");
    let mut command = Command::new(util::weir_bin());
    command
        .args(["proxy", "--workers", "1", "--socket"])
        .arg(&socket)
        .env_remove("WEIR_SOCKET")
        .stdin(Stdio::null())
        .stderr(Stdio::null());
    std::os::unix::process::CommandExt::uid(&mut command, NOBODY);
    std::os::unix::process::CommandExt::gid(&mut command, NOBODY);
    let mut foreign = command.spawn().unwrap();
    let up = wait_until(Duration::from_secs(20), || socket.exists());
    if !up {
        let _ = foreign.kill();
        let _ = foreign.wait();
        panic!("the proxy as nobody did not start");
    }
    let out = util::weir(&["status", "--socket", socket.to_str().unwrap()]);
    let _ = foreign.kill();
    let _ = foreign.wait();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "refusing the command socket {}: it is served by a process of uid {NOBODY}, not by \
             this user (uid 0) or root",
            socket.display()
        )),
        "{stderr}"
    );
}

#[test]
fn a_silent_client_is_closed_after_command_idle_ms_but_a_subscriber_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "workers = 1\n[timeouts]\ncommand_idle_ms = 300\n",
    );
    let proxy = Proxy::start(&["--config", config.to_str().unwrap()]);

    // A subscriber, quiet for longer than the idle timeout, still gets its events.
    let mut subscriber = client(&proxy);
    let request = Request::new(
        subscriber.next_id(),
        WeirCommand::SubscribeEvents {
            from_sequence: None,
        },
    );
    assert!(is_ok(&subscriber.call_with(&request, |_| {}).unwrap()));

    // Connected and silent: closed after the timeout, not at once.
    let started = Instant::now();
    let mut silent = UnixStream::connect(&proxy.socket).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut byte = [0u8; 1];
    assert_eq!(silent.read(&mut byte).unwrap(), 0);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(250), "{waited:?}");

    // A client left idle sees it was closed, and a fresh connection works.
    let mut idle = client(&proxy);
    status(&mut idle);
    assert!(wait_until(Duration::from_secs(10), || idle.peer_closed()));
    // The subscriber, quiet all this time, is still connected.
    assert!(!subscriber.peer_closed());
    let mut fresh = client(&proxy);
    assert!(is_ok(&apply(&mut fresh, add_cluster("shop"))));
    loop {
        let event = subscriber.recv().unwrap();
        if let Some(Content::Event(e)) = event.content {
            assert!(e.message.contains("shop"), "{e:?}");
            break;
        }
    }
}

#[test]
fn clients_past_max_command_clients_are_told_why() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "workers = 1\nmax_command_clients = 2\n");
    let proxy = Proxy::start(&["--config", config.to_str().unwrap()]);
    // Seated once the proxy has noticed that its readiness probe's connection closed.
    let seated = || {
        let mut seated = None;
        assert!(wait_until(Duration::from_secs(10), || {
            let mut c = client(&proxy);
            let ok = c.status().is_ok();
            if ok {
                seated = Some(c);
            }
            ok
        }));
        seated.unwrap()
    };
    let first = seated();
    let mut second = seated();
    let mut third = Client::connect(&proxy.socket).unwrap();
    match third.status() {
        Err(ClientError::Refused(why)) => {
            assert!(why.contains("too many command clients: 2"), "{why}");
        }
        other => panic!("a third client was not refused: {other:?}"),
    }
    // The CLI says the same.
    let out = proxy.weir(&["status"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the proxy refused the connection: too many command clients"),
        "{stderr}"
    );
    // A seat freed is a seat taken.
    drop(first);
    assert!(wait_until(Duration::from_secs(10), || {
        Client::connect(&proxy.socket).is_ok_and(|mut c| c.status().is_ok())
    }));
    status(&mut second);
}
