//! Why a proxy does not start, as its operator reads it: one message that names what failed
//! and where it was written, and a failing exit status.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod util;

use std::net::TcpListener;

#[test]
fn a_port_in_use_at_start_names_the_listener_and_its_file_once() {
    // A plain socket, without SO_REUSEPORT: the proxy's sockets cannot share its port.
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = holder.local_addr().unwrap();
    let desired = util::Desired::new();
    let file = desired.write(
        "routes/site.yaml",
        &format!(
            "clusters:\n  - id: shop\nlisteners:\n  - name: web\n    address: {address}\n    protocol: http\n"
        ),
    );
    let socket = desired.path().join("weir.sock");
    let routes = desired.path().join("routes");
    let stderr = util::proxy_fails_to_start(
        &socket,
        &["--workers", "1", "--desired", routes.to_str().unwrap()],
    );
    assert!(!socket.exists(), "the command socket was opened:\n{stderr}");
    let expected = format!(
        "listener \"web\" cannot listen on {address} (defined at {}:4:5): ",
        file.display()
    );
    assert!(
        stderr.contains(&expected),
        "expected {expected:?} in:\n{stderr}"
    );
    // Said once: not again by a chain of causes under the message.
    assert_eq!(
        stderr.matches("Address already in use").count(),
        1,
        "{stderr}"
    );
    drop(holder);
}

#[test]
fn an_unreadable_file_at_start_says_why_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let out = util::weir(&["proxy", "--config", missing.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(missing.to_str().unwrap()), "{stderr}");
    assert_eq!(
        stderr.matches("No such file or directory").count(),
        1,
        "{stderr}"
    );
}
