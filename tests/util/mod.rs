//! The one end-to-end harness: runs the real `weir` binary on desired-state directories, and
//! talks to it over its command socket (`control`). Ports come from the OS and readiness is
//! polled, never slept for; the tiny real backends, the raw HTTP client and the polling
//! helpers come from `weir_testkit`, shared with the engine's worker tests.
//!
//! Each test file includes it with `mod util;`; not every file uses every helper.
#![allow(dead_code)]

pub mod control;
pub mod metrics;

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use weir_testkit::wait_until;

/// The `weir` binary cargo built for this test run.
pub fn weir_bin() -> &'static str {
    env!("CARGO_BIN_EXE_weir")
}

/// Runs `weir ARGS...` to completion and returns its output.
pub fn weir(args: &[&str]) -> Output {
    Command::new(weir_bin())
        .args(args)
        .env_remove("WEIR_SOCKET")
        .output()
        .expect("run weir")
}

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_for_port(addr: SocketAddr) -> bool {
    wait_until(Duration::from_secs(20), || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
    })
}

/// A temporary directory only this user may enter (mode 0700), as a command socket's
/// directory must be: `tempfile` leaves the umask's mode (often 0755), which the proxy
/// refuses.
pub fn private_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
        .expect("chmod 0700");
    dir
}

/// A temporary directory holding desired-state files (private: tests put sockets in it).
pub struct Desired {
    pub dir: tempfile::TempDir,
}

impl Desired {
    pub fn new() -> Desired {
        Desired {
            dir: private_tempdir(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes (or overwrites) a file relative to the directory.
    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&path, content).expect("write desired file");
        path
    }
}

/// A running `weir proxy`, killed (with its workers) when dropped.
pub struct Proxy {
    pub child: Child,
    pub socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Proxy {
    /// Starts `weir proxy --socket S EXTRA...` and waits until its command socket answers.
    pub fn start(extra: &[&str]) -> Proxy {
        let dir = private_tempdir();
        let socket = dir.path().join("weir.sock");
        let mut command = Command::new(weir_bin());
        command
            .arg("proxy")
            .arg("--socket")
            .arg(&socket)
            .args(extra);
        Proxy::launch(command, socket, dir)
    }

    /// [`Proxy::start`] with the proxy's stderr (its own log lines, its workers') in `stderr`.
    pub fn start_with_stderr(extra: &[&str], stderr: std::fs::File) -> Proxy {
        let dir = private_tempdir();
        let socket = dir.path().join("weir.sock");
        let mut command = Command::new(weir_bin());
        command
            .arg("proxy")
            .arg("--socket")
            .arg(&socket)
            .args(extra)
            .stderr(stderr);
        Proxy::launch(command, socket, dir)
    }

    /// Starts `weir proxy EXTRA...` with no `--socket`, with `env` set, and waits until its
    /// command socket answers at `socket`, where the default path resolution must put it.
    /// `dir` (holding whatever the environment points at) lives as long as the proxy.
    pub fn start_at_default_path(
        extra: &[&str],
        env: &[(&str, &Path)],
        socket: PathBuf,
        dir: tempfile::TempDir,
    ) -> Proxy {
        let mut command = Command::new(weir_bin());
        command.arg("proxy").args(extra);
        for (name, value) in env {
            command.env(name, value);
        }
        Proxy::launch(command, socket, dir)
    }

    /// Starts `weir proxy --socket S EXTRA...` under the file-descriptor limits a shell sets
    /// before it execs the proxy: `ulimit -Sn soft`, then `ulimit -Hn hard` when given (else
    /// the hard limit stays this process's). The proxy's stderr goes to `stderr`.
    pub fn start_with_fd_limit(
        soft: u64,
        hard: Option<u64>,
        extra: &[&str],
        stderr: std::fs::File,
    ) -> Proxy {
        let dir = private_tempdir();
        let socket = dir.path().join("weir.sock");
        let mut limits = format!("ulimit -Sn {soft}");
        if let Some(hard) = hard {
            limits.push_str(&format!(" && ulimit -Hn {hard}"));
        }
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("{limits} && exec \"$0\" \"$@\""))
            .arg(weir_bin())
            .arg("proxy")
            .arg("--socket")
            .arg(&socket)
            .args(extra)
            .stderr(stderr);
        Proxy::launch(command, socket, dir)
    }

    fn launch(mut command: Command, socket: PathBuf, dir: tempfile::TempDir) -> Proxy {
        let child = command
            .env_remove("WEIR_SOCKET")
            .stdin(Stdio::null())
            .spawn()
            .expect("start weir proxy");
        let mut proxy = Proxy {
            child,
            socket,
            _dir: dir,
        };
        let ready = wait_until(Duration::from_secs(20), || {
            std::os::unix::net::UnixStream::connect(&proxy.socket).is_ok()
        });
        if !ready {
            let status = proxy.child.try_wait().ok().flatten();
            panic!("weir proxy did not open its command socket (exit: {status:?})");
        }
        proxy
    }

    pub fn socket_str(&self) -> &str {
        self.socket.to_str().expect("utf-8 path")
    }

    /// Runs `weir ARGS... --socket <this proxy>`.
    pub fn weir(&self, args: &[&str]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        all.push("--socket");
        all.push(self.socket_str());
        weir(&all)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // SIGKILL the main process; workers notice their channel closing and exit.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `weir proxy --socket SOCKET ARGS...`, a proxy that must refuse to start, and returns
/// what it wrote to stderr once it has exited with a failing status. A proxy still running
/// after 20 s has started, and that fails the test (it is killed first), as does a success.
///
/// Stderr goes to a file rather than a pipe: a pipe left unread could fill and hold the proxy
/// up, and the proxy's workers, if it started any, would keep a pipe open after it is killed.
pub fn proxy_fails_to_start(socket: &Path, args: &[&str]) -> String {
    use std::io::{Read, Seek};
    let mut log = tempfile::tempfile().expect("stderr file");
    let mut child = Command::new(weir_bin())
        .arg("proxy")
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env_remove("WEIR_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log.try_clone().expect("stderr file"))
        .spawn()
        .expect("start weir proxy");
    let status = control::wait_exit(&mut child, Duration::from_secs(20));
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let mut stderr = String::new();
    log.rewind().expect("rewind stderr file");
    log.read_to_string(&mut stderr).expect("read stderr file");
    match status {
        None => panic!("weir proxy {args:?} started (still running after 20 s):\n{stderr}"),
        Some(s) if s.success() => panic!("weir proxy {args:?} exited 0:\n{stderr}"),
        Some(_) => stderr,
    }
}

/// Starts a proxy with one worker on a new desired directory holding `yaml`, `{port}` in it
/// replaced by a port from the OS; `daemon_toml`, if any, is its `--config`. Returns the
/// directory (keep it while the proxy runs), the proxy, and its listener's address.
///
/// It does not wait for the routes: the listener accepts a moment before they are in (and
/// answers `404` meanwhile), so each caller polls for an answer that shows the ones it needs.
pub fn proxy_on_yaml(yaml: &str, daemon_toml: Option<&str>) -> (Desired, Proxy, SocketAddr) {
    let addr = weir_testkit::free_addr();
    let desired = Desired::new();
    // In a subdirectory, so the daemon settings beside it are not read as desired state.
    desired.write(
        "routes/weir.yaml",
        &yaml.replace("{port}", &addr.port().to_string()),
    );
    let routes = desired.path().join("routes");
    let mut args = vec![
        "--desired",
        routes.to_str().expect("utf-8 path"),
        "--workers",
        "1",
    ];
    let config = daemon_toml.map(|toml| desired.write("weir.toml", toml));
    if let Some(config) = &config {
        args.extend(["--config", config.to_str().expect("utf-8 path")]);
    }
    let proxy = Proxy::start(&args);
    (desired, proxy, addr)
}

/// Whether golden tests rewrite their expectations: `UPDATE_GOLDEN=1`. Unset, empty or `0`
/// compares; any other value stops the test rather than guess what was meant.
pub fn update_golden() -> bool {
    match std::env::var("UPDATE_GOLDEN").as_deref() {
        Err(std::env::VarError::NotPresent) | Ok("" | "0") => false,
        Ok("1") => true,
        other => panic!("UPDATE_GOLDEN must be 1 (rewrite) or 0 (compare), not {other:?}"),
    }
}

/// Runs `curl ARGS...` and returns its output (curl is on every machine CI runs on).
pub fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("run curl")
}
