//! `weir up [DIR]`: the one-command start. Starts the proxy as a child process, serves the
//! directory's `demo: true` backends with built-in demo origins, applies the directory, keeps
//! the proxy reconciled with it (`weir watch`), and on Ctrl-C or SIGTERM stops everything in
//! order: the watch, then the proxy (SoftStop, then HardStop after a grace period).
//!
//! The proxy runs in its own process group so that a Ctrl-C in the terminal reaches only
//! `weir up`, which then stops the proxy through its command socket: connections drain the
//! way they would in production rather than dying with a signal.

use std::io;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use weir_reconciler::client::Client;
use weir_reconciler::watch::Event;
use weir_schema::desired::Desired;
use weir_schema::Protocol;

use super::demo::DemoOrigins;
use super::watch::{stop_on_signals, watch_until_stopped, WatchOptions};
use super::{exit, SocketArg};

/// The directory `weir up` runs when none is given, relative to the current directory.
const DEFAULT_DIR: &str = "examples/quickstart";
/// How long the proxy may take to open its command socket.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a soft stop may take before it is made hard.
const SOFT_STOP_GRACE: Duration = Duration::from_secs(5);
const HARD_STOP_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Desired-state directory [default: examples/quickstart]
    pub dir: Option<PathBuf>,
    #[command(flatten)]
    pub socket: SocketArg,
    /// Worker processes [default: one per core]
    #[arg(long)]
    pub workers: Option<usize>,
    #[command(flatten)]
    pub options: WatchOptions,
}

pub fn run(args: UpArgs) -> anyhow::Result<u8> {
    let dir = match args.dir {
        Some(dir) => dir,
        None => {
            let dir = PathBuf::from(DEFAULT_DIR);
            if !dir.exists() {
                bail!(
                    "no directory given and ./{DEFAULT_DIR} does not exist here; \
                     run `weir up DIR` with your desired-state directory \
                     (or run `weir up` from a checkout of weir)"
                );
            }
            dir
        }
    };
    let desired = match weir_schema::desired::load(&dir) {
        Ok(desired) => desired,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!(
                "{}: fix the errors above, then run `weir up` again",
                dir.display()
            );
            return Ok(exit::ERROR);
        }
    };
    for warning in &desired.warnings {
        eprintln!("warning: {warning}");
    }
    let socket = args.socket.path();
    prepare_socket(&socket)?;

    // Signals first: a Ctrl-C while the proxy starts must still stop it cleanly.
    let (tx, rx) = mpsc::channel();
    let _signals = stop_on_signals(tx.clone())?;

    let (origins, skipped) = DemoOrigins::start(&desired.demo_origins);
    for s in &skipped {
        eprintln!(
            "warning: demo origin for backend {} not started on {}: {} (whatever listens there serves it)",
            s.origin.backend, s.origin.address, s.error
        );
    }

    let proxy = ProxyChild::spawn(&socket, args.workers)?;
    let proxy = Arc::new(Mutex::new(proxy));
    if let Err(e) = wait_for_socket(&socket, &proxy) {
        stop_proxy(&proxy, &socket);
        return Err(e);
    }
    let done = Arc::new(AtomicBool::new(false));
    let died = watch_child(&proxy, tx.clone(), &done);

    let banner = |printer: &super::watch::Printer| {
        if !printer.is_json() {
            print_banner(&dir, &socket, &desired, origins.len());
        }
    };
    let result = watch_until_stopped(&dir, &socket, &args.options, tx, rx, banner);
    done.store(true, Ordering::SeqCst);
    drop(origins);
    let unexpected = died.lock().map(|s| *s).unwrap_or(None);
    if let Some(status) = unexpected {
        bail!("the proxy exited unexpectedly ({status})");
    }
    stop_proxy(&proxy, &socket);
    result
}

/// Makes sure the socket's directory exists and no proxy is already live on it.
fn prepare_socket(socket: &Path) -> anyhow::Result<()> {
    if let Some(parent) = socket.parent().filter(|p| !p.exists()) {
        // Private, as the proxy requires of its socket's directory.
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    match UnixStream::connect(socket) {
        Ok(_) => bail!(
            "a proxy is already running on {}; stop it first, or pass --socket PATH for a second one",
            socket.display()
        ),
        // Left behind by a proxy that did not exit cleanly: nothing answers on it.
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            std::fs::remove_file(socket)
                .with_context(|| format!("cannot remove the stale socket {}", socket.display()))?;
        }
        Err(_) => {}
    }
    Ok(())
}

#[derive(Debug)]
struct ProxyChild {
    child: Child,
    exited: Option<ExitStatus>,
}

impl ProxyChild {
    fn spawn(socket: &Path, workers: Option<usize>) -> anyhow::Result<ProxyChild> {
        let exe = std::env::current_exe().context("cannot find the weir binary")?;
        let mut command = Command::new(exe);
        command
            .arg("proxy")
            .arg("--exit-with-parent")
            .arg("--socket")
            .arg(socket);
        if let Some(n) = workers {
            command.arg("--workers").arg(n.to_string());
        }
        command
            .stdin(Stdio::null())
            .env_remove("WEIR_SOCKET")
            // Own process group: see the module documentation.
            .process_group(0);
        let child = command.spawn().context("cannot start `weir proxy`")?;
        Ok(ProxyChild {
            child,
            exited: None,
        })
    }

    /// Whether the child has exited (reaping it if so).
    fn poll(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }
}

/// Polls until the proxy's command socket accepts connections.
fn wait_for_socket(socket: &Path, proxy: &Mutex<ProxyChild>) -> anyhow::Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if UnixStream::connect(socket).is_ok() {
            return Ok(());
        }
        if let Some(status) = lock(proxy).poll() {
            bail!("`weir proxy` exited before opening its command socket ({status})");
        }
        if Instant::now() >= deadline {
            bail!(
                "`weir proxy` did not open {} within {START_TIMEOUT:?}",
                socket.display()
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn lock(proxy: &Mutex<ProxyChild>) -> std::sync::MutexGuard<'_, ProxyChild> {
    // A poisoned lock only means a panic elsewhere; the child handle is still usable.
    proxy.lock().unwrap_or_else(|e| e.into_inner())
}

/// Stops the watch if the proxy dies on its own; the returned cell holds its exit status.
/// The monitor ends once `done` is set.
fn watch_child(
    proxy: &Arc<Mutex<ProxyChild>>,
    tx: mpsc::Sender<Event>,
    done: &Arc<AtomicBool>,
) -> Arc<Mutex<Option<ExitStatus>>> {
    let died = Arc::new(Mutex::new(None));
    let (proxy, cell, done) = (proxy.clone(), died.clone(), done.clone());
    let spawned = thread::Builder::new()
        .name("weir-up-child".into())
        .spawn(move || loop {
            if let Some(status) = lock(&proxy).poll() {
                if let Ok(mut c) = cell.lock() {
                    *c = Some(status);
                }
                let _ = tx.send(Event::Stop);
                return;
            }
            if done.load(Ordering::SeqCst) {
                return;
            }
            thread::sleep(Duration::from_millis(200));
        });
    if spawned.is_err() {
        eprintln!("warning: cannot monitor the proxy process; a crash will not stop `weir up`");
    }
    died
}

/// SoftStop, then HardStop after a grace period, then SIGKILL; always reaps the child.
fn stop_proxy(proxy: &Mutex<ProxyChild>, socket: &Path) {
    let mut proxy = lock(proxy);
    for (command, grace) in [
        (weir_schema::Command::SoftStop, SOFT_STOP_GRACE),
        (weir_schema::Command::HardStop, HARD_STOP_GRACE),
    ] {
        if proxy.poll().is_some() {
            return;
        }
        if let Ok(mut client) = Client::connect(socket) {
            let _ = client.set_read_timeout(Some(grace));
            // The proxy may close the socket as it stops instead of answering: fine either way.
            let _ = client.call(command);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if proxy.poll().is_some() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
    eprintln!("the proxy did not stop; killing it");
    let _ = proxy.child.kill();
    let _ = proxy.child.wait();
}

/// What to curl, and that editing the files switches traffic.
fn print_banner(dir: &Path, socket: &Path, desired: &Desired, origins: usize) {
    let state = &desired.state;
    eprintln!();
    eprintln!("weir is up: proxy on {}", socket.display());
    if origins > 0 {
        eprintln!("{origins} demo origin(s) serving the backends marked `demo: true`");
    }
    let mut shown = 0;
    for frontend in state.frontends_in_order().into_iter().rev() {
        if shown == 5 {
            eprintln!("  ... and {} more routes", state.frontends.len() - shown);
            break;
        }
        let Some(listener) = state.listeners.get(&frontend.listener) else {
            continue;
        };
        let addr = listener.address;
        let path = &frontend.path;
        let line = match (listener.protocol, frontend.hostname.as_deref()) {
            (Protocol::Tcp, _) | (_, None) => format!("nc {} {}", addr.ip(), addr.port()),
            (protocol, Some(host)) => {
                let host = host.replace("*.", "demo.");
                let (scheme, insecure) = match protocol {
                    Protocol::Https => ("https", "-k --resolve "),
                    _ => ("http", ""),
                };
                if insecure.is_empty() {
                    format!("curl -H 'Host: {host}' http://{addr}{path}")
                } else {
                    format!(
                        "curl {insecure}{host}:{}:{} {scheme}://{host}:{}{path}",
                        addr.port(),
                        addr.ip(),
                        addr.port()
                    )
                }
            }
        };
        if shown == 0 {
            eprintln!("try:");
        }
        eprintln!("  {line}");
        shown += 1;
    }
    eprintln!(
        "edit the files in {} and save: the change is planned and applied within a moment.",
        dir.display()
    );
    eprintln!("Ctrl-C stops the proxy.");
    eprintln!();
}
