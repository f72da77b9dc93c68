//! Where things live by default on this machine, and who may use the command socket.

use std::path::PathBuf;

/// Environment variable that names the command socket for every CLI command.
pub const SOCKET_ENV: &str = "WEIR_SOCKET";

/// The command socket used when neither `--socket` nor `$WEIR_SOCKET` is given: a per-user
/// runtime path, `$XDG_RUNTIME_DIR/weir/weir.sock`, else `/tmp/weir-$USER/weir.sock`.
pub fn default_socket_path() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("weir").join("weir.sock");
    }
    let user = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "default".to_owned());
    std::env::temp_dir()
        .join(format!("weir-{user}"))
        .join("weir.sock")
}

/// Whether a peer with `peer_uid` may talk to one running as `own_uid` over the command
/// socket: the same user, or root. The proxy checks its clients with it and clients check
/// the proxy, each through the socket's peer credentials (SO_PEERCRED).
pub fn peer_allowed(peer_uid: u32, own_uid: u32) -> bool {
    peer_uid == own_uid || peer_uid == 0
}
