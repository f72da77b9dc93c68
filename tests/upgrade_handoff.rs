//! The state an upgrade hands to the new main process: written where only its user can read
//! it, and not left behind when the upgrade fails.
//!
//! The proxy runs from its own copy of the binary; the copy is then replaced by a stand-in for
//! the new version that records what it was handed and exits before serving, which is how a
//! real upgrade fails.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod util;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use util::control::*;
use weir_testkit::wait_until;

/// Kills the proxy (and so its workers) when the test ends, passed or not.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The stand-in for a new version: takes `proxy --handover JSON` like the real one, records the
/// mode of the state file and of its directory, and exits before serving.
const FAILING_SUCCESSOR: &str = r#"#!/bin/sh
file=$(printf '%s' "$3" | sed -n 's/.*"state_file":"\([^"]*\)".*/\1/p')
stat -c '%a' "$file" "$(dirname "$file")" > "$0.handed"
exit 3
"#;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_failed_upgrade_leaves_no_state_file_and_the_file_was_private() {
    let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    // The command socket's directory must be private.
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    // The proxy's temporary directory is one anyone may enter, as /tmp is.
    let tmp = root.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = root.path().join("weir");
    if std::fs::hard_link(util::weir_bin(), &bin).is_err() {
        std::fs::copy(util::weir_bin(), &bin).unwrap();
    }
    let socket = root.path().join("weir.sock");
    let proxy = Command::new(&bin)
        .arg("proxy")
        .arg("--workers")
        .arg("1")
        .arg("--socket")
        .arg(&socket)
        .env("TMPDIR", &tmp)
        .env_remove("WEIR_SOCKET")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let _proxy = Killed(proxy);
    assert!(wait_until(Duration::from_secs(20), || {
        std::os::unix::net::UnixStream::connect(&socket).is_ok()
    }));
    let mut c = client_at(&socket);
    assert!(is_ok(&apply(&mut c, add_cluster("shop"))));

    // The new version is installed over the running binary's path.
    let staged = root.path().join("weir.new");
    std::fs::write(&staged, FAILING_SUCCESSOR).unwrap();
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&staged, &bin).unwrap();

    let out = util::weir(&["upgrade", "--socket", socket.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(said.contains("upgrade failed"), "{out:?}");
    let handed = std::fs::read_to_string(root.path().join("weir.handed")).unwrap();
    assert_eq!(
        handed, "600\n700\n",
        "modes of the state file and its directory"
    );
    // Removed before the failure was answered.
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert_eq!(mode(&tmp), 0o755);

    // The old main process goes on serving the same state.
    let mut c = client_at(&socket);
    assert_eq!(c.query_state().unwrap().clusters.len(), 1);
}
