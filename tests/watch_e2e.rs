//! End-to-end tests of `weir watch`: the real binary against a real `weir proxy`, with real
//! files, real backends and real HTTP traffic on 127.0.0.1.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod util;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use util::{weir_bin, Desired, Proxy};
use weir_schema::framing::{encode_frame, read_frame, DEFAULT_MAX_FRAME};
use weir_schema::proto;
use weir_testkit::{free_port, http_get, wait_until, Backend};

/// A running `weir watch`, its output collected line by line; killed when dropped.
struct Watch {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

fn collect(pipe: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { return };
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

impl Watch {
    /// Starts `weir watch DIR --socket S EXTRA...` and waits until it watches.
    fn start(dir: &Path, proxy: &Proxy, extra: &[&str]) -> Watch {
        Watch::start_on(dir, &proxy.socket, extra)
    }

    /// [`Watch::start`] on the command socket at `socket`.
    fn start_on(dir: &Path, socket: &Path, extra: &[&str]) -> Watch {
        let mut child = Command::new(weir_bin())
            .arg("watch")
            .arg(dir)
            .arg("--socket")
            .arg(socket)
            .args(extra)
            .env_remove("WEIR_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start weir watch");
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        let watch = Watch {
            child,
            stdout,
            stderr,
        };
        assert!(
            wait_until(Duration::from_secs(20), || watch
                .stderr()
                .iter()
                .any(|l| l.starts_with("watching "))),
            "weir watch did not start: {:?} {:?}",
            watch.stdout(),
            watch.stderr()
        );
        watch
    }

    fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// How many plans were applied so far.
    fn applied(&self) -> usize {
        self.stdout()
            .iter()
            .filter(|l| l.starts_with("applied in "))
            .count()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A relay in front of a proxy's command socket that counts the `Status` requests passing
/// through it: the watch asks for the proxy's status at every drift check, so the count shows
/// that checks ran without guessing how long they take.
struct StatusCounter {
    socket: PathBuf,
    statuses: Arc<AtomicUsize>,
    _dir: tempfile::TempDir,
}

impl StatusCounter {
    fn start(proxy_socket: &Path) -> StatusCounter {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("relay.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let statuses = Arc::new(AtomicUsize::new(0));
        let (count, target) = (statuses.clone(), proxy_socket.to_owned());
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { return };
                let mut proxy = UnixStream::connect(&target).unwrap();
                let (mut back_from, mut back_to) =
                    (proxy.try_clone().unwrap(), client.try_clone().unwrap());
                thread::spawn(move || std::io::copy(&mut back_from, &mut back_to));
                let count = count.clone();
                thread::spawn(move || {
                    while let Ok(Some(request)) =
                        read_frame::<proto::Request, _>(&mut client, DEFAULT_MAX_FRAME)
                    {
                        if matches!(request.kind, Some(proto::request::Kind::Status(_))) {
                            count.fetch_add(1, Ordering::SeqCst);
                        }
                        if proxy.write_all(&encode_frame(&request)).is_err() {
                            return;
                        }
                    }
                    let _ = proxy.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        StatusCounter {
            socket,
            statuses,
            _dir: dir,
        }
    }

    fn statuses(&self) -> usize {
        self.statuses.load(Ordering::SeqCst)
    }
}

fn listener_yaml(port: u16) -> String {
    format!("listeners:\n  - name: web\n    address: 127.0.0.1:{port}\n    protocol: http\n")
}

/// One app: a cluster with one backend and a route for `host`.
fn app_yaml(name: &str, host: &str, backend: SocketAddr) -> String {
    format!(
        "clusters:\n  - id: {name}\n    backends:\n      - id: {name}-1\n        address: {backend}\n\
         frontends:\n  - listener: web\n    hostname: {host}\n    path: /\n    cluster: {name}\n"
    )
}

fn body(addr: SocketAddr, host: &str) -> Option<String> {
    http_get(addr, host, "/")
        .ok()
        .filter(|a| a.status == 200)
        .map(|a| a.text())
}

fn answers(addr: SocketAddr, host: &str, expected: &str) -> bool {
    wait_until(Duration::from_secs(10), || {
        body(addr, host).as_deref() == Some(expected)
    })
}

/// A proxy with no state, a desired directory with a listener and the app `a`, and a watch.
struct Setup {
    desired: Desired,
    listener: SocketAddr,
    a: Backend,
    proxy: Proxy,
}

fn setup() -> Setup {
    let port = free_port();
    let desired = Desired::new();
    let a = Backend::start("a");
    desired.write("listeners.yaml", &listener_yaml(port));
    desired.write("a.yaml", &app_yaml("a", "a.test", a.addr));
    let proxy = Proxy::start(&["--workers", "1"]);
    Setup {
        listener: SocketAddr::from(([127, 0, 0, 1], port)),
        desired,
        a,
        proxy,
    }
}

#[test]
fn an_edit_is_applied() {
    let s = setup();
    let watch = Watch::start(s.desired.path(), &s.proxy, &[]);
    assert!(answers(s.listener, "a.test", "a"), "initial apply");
    // Its report may still be on the way from the watch's stdout.
    assert!(wait_until(Duration::from_secs(5), || watch.applied() == 1));

    let b = Backend::start("b");
    s.desired.write("b.yaml", &app_yaml("b", "b.test", b.addr));
    assert!(
        answers(s.listener, "b.test", "b"),
        "new route never answered: {:?} {:?}",
        watch.stdout(),
        watch.stderr()
    );
    assert!(wait_until(Duration::from_secs(5), || watch.applied() == 2));
    let stdout = watch.stdout().join("\n");
    assert!(stdout.contains("Plan: 3 to add"), "{stdout}");
    assert!(s.a.request_count() >= 1);
}

#[test]
fn a_multi_file_change_arrives_as_one_plan() {
    let s = setup();
    let watch = Watch::start(s.desired.path(), &s.proxy, &["--debounce", "300ms"]);
    assert!(answers(s.listener, "a.test", "a"));
    let backends: Vec<Backend> = (0..6).map(|i| Backend::start(&format!("n{i}"))).collect();
    // What a `git checkout` does: many files at once, with an editor's noise around them.
    for (i, b) in backends.iter().enumerate() {
        s.desired.write(
            &format!("apps/n{i}.yaml"),
            &app_yaml(&format!("n{i}"), &format!("n{i}.test"), b.addr),
        );
    }
    s.desired.write(".a.yaml.swp", "not yaml at all: [");
    s.desired.write("a.yaml~", "not yaml at all: [");
    for i in 0..6 {
        assert!(answers(s.listener, &format!("n{i}.test"), &format!("n{i}")));
    }
    // No second plan may follow. A later edit is the marker: the watch handles changes in
    // order, so a straggler from the batch would be applied before the marker's plan.
    let marker = Backend::start("marker");
    s.desired.write(
        "marker.yaml",
        &app_yaml("marker", "marker.test", marker.addr),
    );
    assert!(answers(s.listener, "marker.test", "marker"));
    assert!(wait_until(Duration::from_secs(5), || watch.applied() >= 3));
    let plans: Vec<String> = watch
        .stdout()
        .into_iter()
        .filter(|l| l.starts_with("Plan: "))
        .collect();
    assert_eq!(watch.applied(), 3, "{:?}", watch.stdout());
    assert!(plans[1].starts_with("Plan: 18 to add"), "{plans:?}");
    assert!(plans[2].starts_with("Plan: 3 to add"), "{plans:?}");
}

#[test]
fn a_broken_file_is_reported_and_nothing_applied_until_fixed() {
    let s = setup();
    let watch = Watch::start(s.desired.path(), &s.proxy, &[]);
    assert!(answers(s.listener, "a.test", "a"));

    let b = Backend::start("b");
    // A valid new app next to a file with a typo'd field: neither may be applied.
    s.desired.write("b.yaml", &app_yaml("b", "b.test", b.addr));
    let broken = s.desired.write(
        "c.yaml",
        "clusters:\n  - id: c\n    load_balancnig: random\n",
    );
    let location = format!("{}:3:", broken.display());
    assert!(
        wait_until(Duration::from_secs(10), || watch
            .stderr()
            .iter()
            .any(|l| l.starts_with(&location))),
        "no {location}LINE:COL error on stderr: {:?}",
        watch.stderr()
    );
    assert_eq!(watch.applied(), 1, "nothing applied while broken");
    assert_eq!(
        body(s.listener, "a.test").as_deref(),
        Some("a"),
        "last good state live"
    );
    assert_eq!(
        http_get(s.listener, "b.test", "/").unwrap().status,
        404,
        "b must wait for the fix"
    );

    s.desired.write(
        "c.yaml",
        "clusters:\n  - id: c\n    load_balancing: random\n",
    );
    assert!(answers(s.listener, "b.test", "b"), "{:?}", watch.stderr());
    assert!(watch.stderr().iter().any(|l| l.contains("valid again")));
}

/// Adds a route the desired files do not have, through the command socket.
fn hand_made_route(proxy: &Proxy, listener: SocketAddr) {
    use weir_reconciler::client::Client;
    use weir_schema::{Change, ClusterId, Command, Frontend};
    let mut client = Client::connect(&proxy.socket).unwrap();
    client
        .call(Command::Change(Change::AddFrontend(Frontend {
            owner: None,
            listener,
            hostname: Some("rogue.test".into()),
            path: "/".into(),
            cluster: ClusterId("a".into()),
            certificate: None,
            options: Default::default(),
        })))
        .unwrap();
}

#[test]
fn a_hand_made_change_is_detected_and_corrected() {
    let s = setup();
    let watch = Watch::start(s.desired.path(), &s.proxy, &["--drift-interval", "1s"]);
    assert!(answers(s.listener, "a.test", "a"));
    hand_made_route(&s.proxy, s.listener);
    assert_eq!(body(s.listener, "rogue.test").as_deref(), Some("a"));
    assert!(
        wait_until(Duration::from_secs(10), || http_get(
            s.listener,
            "rogue.test",
            "/"
        )
        .is_ok_and(|a| a.status == 404)),
        "drift not corrected: {:?}",
        watch.stdout()
    );
    // The report is read from the watch's stdout by another thread, which may not have got
    // to it when the route is already gone: wait for it too.
    assert!(
        wait_until(Duration::from_secs(10), || watch
            .stdout()
            .join("\n")
            .contains("drift: the live state differs")),
        "{:?}",
        watch.stdout()
    );
    let stdout = watch.stdout().join("\n");
    assert!(
        stdout.contains("rogue.test"),
        "the plan names the route: {stdout}"
    );
    assert_eq!(body(s.listener, "a.test").as_deref(), Some("a"));
}

#[test]
fn a_hand_made_change_is_only_reported_in_report_mode() {
    let s = setup();
    let relay = StatusCounter::start(&s.proxy.socket);
    let watch = Watch::start_on(
        s.desired.path(),
        &relay.socket,
        &["--drift-interval", "1s", "--on-drift", "report"],
    );
    assert!(answers(s.listener, "a.test", "a"));
    hand_made_route(&s.proxy, s.listener);
    assert!(
        wait_until(Duration::from_secs(10), || watch
            .stdout()
            .iter()
            .any(|l| l.contains("drift left as is"))),
        "{:?}",
        watch.stdout()
    );
    // Reported once, and left alone over the following ticks: two more drift checks (each
    // asks the proxy for its status) find the same drift.
    let checks = relay.statuses();
    assert!(wait_until(Duration::from_secs(10), || relay.statuses() >= checks + 2));
    assert_eq!(body(s.listener, "rogue.test").as_deref(), Some("a"));
    let reports = watch
        .stdout()
        .iter()
        .filter(|l| l.starts_with("drift:"))
        .count();
    assert_eq!(reports, 1);
    assert_eq!(watch.applied(), 1);
}

#[test]
fn a_blue_green_edit_under_load_fails_zero_requests() {
    let port = free_port();
    let listener = SocketAddr::from(([127, 0, 0, 1], port));
    let desired = Desired::new();
    let blue = Backend::start("blue");
    let green = Backend::start("green");
    let clusters = format!(
        "clusters:\n  - id: blue\n    backends:\n      - id: blue-1\n        address: {}\n\
         \x20 - id: green\n    backends:\n      - id: green-1\n        address: {}\n",
        blue.addr, green.addr
    );
    let route = |cluster: &str| {
        format!("frontends:\n  - listener: web\n    hostname: shop.test\n    path: /\n    cluster: {cluster}\n")
    };
    desired.write("listeners.yaml", &listener_yaml(port));
    desired.write("clusters.yaml", &clusters);
    desired.write("routes.yaml", &route("blue"));
    let proxy = Proxy::start(&["--workers", "2"]);
    let watch = Watch::start(desired.path(), &proxy, &[]);
    assert!(answers(listener, "shop.test", "blue"));

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed, greens) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(Mutex::new(Vec::new())),
        Arc::new(AtomicUsize::new(0)),
    );
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, failed, greens) =
                (stop.clone(), ok.clone(), failed.clone(), greens.clone());
            thread::spawn(move || {
                let started = Instant::now();
                // Bounded in count and time whatever happens.
                for _ in 0..20_000 {
                    if stop.load(Ordering::SeqCst) || started.elapsed() > Duration::from_secs(30) {
                        break;
                    }
                    match http_get(listener, "shop.test", "/") {
                        Ok(a) if a.status == 200 => {
                            ok.fetch_add(1, Ordering::SeqCst);
                            if a.text() == "green" {
                                greens.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        Ok(a) => failed.lock().unwrap().push(format!("status {}", a.status)),
                        Err(e) => failed.lock().unwrap().push(e.to_string()),
                    }
                }
            })
        })
        .collect();
    assert!(wait_until(Duration::from_secs(10), || ok
        .load(Ordering::SeqCst)
        > 50));
    desired.write("routes.yaml", &route("green"));
    let switched = wait_until(Duration::from_secs(15), || {
        greens.load(Ordering::SeqCst) > 200
    });
    stop.store(true, Ordering::SeqCst);
    for t in load {
        t.join().unwrap();
    }
    assert!(switched, "never switched to green: {:?}", watch.stdout());
    let failed = failed.lock().unwrap();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        ok.load(Ordering::SeqCst) + failed.len(),
        &failed[..failed.len().min(5)]
    );
}

#[test]
fn a_symlink_swap_of_the_whole_directory_is_followed() {
    let port = free_port();
    let listener = SocketAddr::from(([127, 0, 0, 1], port));
    let root = tempfile::tempdir().unwrap();
    let a = Backend::start("a");
    let b = Backend::start("b");
    for (version, apps) in [("v1", vec![("a", &a)]), ("v2", vec![("a", &a), ("b", &b)])] {
        let dir = root.path().join(version);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("listeners.yaml"), listener_yaml(port)).unwrap();
        for (name, backend) in apps {
            std::fs::write(
                dir.join(format!("{name}.yaml")),
                app_yaml(name, &format!("{name}.test"), backend.addr),
            )
            .unwrap();
        }
    }
    // What git-sync does: `current` is a symlink, replaced atomically by a rename.
    let current = root.path().join("current");
    std::os::unix::fs::symlink("v1", &current).unwrap();
    let proxy = Proxy::start(&["--workers", "1"]);
    let watch = Watch::start(&current, &proxy, &[]);
    assert!(answers(listener, "a.test", "a"));
    assert_eq!(http_get(listener, "b.test", "/").unwrap().status, 404);

    let tmp = root.path().join(".current.new");
    std::os::unix::fs::symlink("v2", &tmp).unwrap();
    std::fs::rename(&tmp, &current).unwrap();
    assert!(
        answers(listener, "b.test", "b"),
        "swap not seen: {:?} {:?}",
        watch.stdout(),
        watch.stderr()
    );
}

#[test]
fn a_watch_idle_past_command_idle_ms_still_applies_the_next_change() {
    let port = free_port();
    let listener = SocketAddr::from(([127, 0, 0, 1], port));
    let desired = Desired::new();
    let a = Backend::start("a");
    desired.write("listeners.yaml", &listener_yaml(port));
    desired.write("a.yaml", &app_yaml("a", "a.test", a.addr));
    let logs = tempfile::tempdir().unwrap();
    let config = util::control::write_config(
        logs.path(),
        "workers = 1\n[timeouts]\ncommand_idle_ms = 300\n",
    );
    let log = logs.path().join("proxy.stderr");
    let proxy = Proxy::start_with_stderr(
        &["--config", config.to_str().unwrap()],
        std::fs::File::create(&log).unwrap(),
    );
    // No drift checks: nothing but a file change makes the watch talk to the proxy, and a
    // change whose apply failed would not be retried behind the test's back.
    let watch = Watch::start(desired.path(), &proxy, &["--drift-interval", "0"]);
    assert!(answers(listener, "a.test", "a"), "initial apply");
    assert!(wait_until(Duration::from_secs(5), || watch.applied() == 1));

    // The watch is the proxy's only command client: once the proxy says it closed an idle
    // one, the connection the watch holds is gone.
    let idle_closed = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches("idle for 300 ms; closing it")
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(10), || idle_closed() >= 1),
        "the proxy never closed the idle watch: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    let b = Backend::start("b");
    desired.write("b.yaml", &app_yaml("b", "b.test", b.addr));
    assert!(
        answers(listener, "b.test", "b"),
        "the change after the idle close never reached the proxy: {:?} {:?}",
        watch.stdout(),
        watch.stderr()
    );
    assert!(wait_until(Duration::from_secs(5), || watch.applied() == 2));
    // Reconnected before it asked, not after a failure.
    assert!(
        !watch
            .stderr()
            .iter()
            .any(|l| l.contains("unreachable") || l.contains("apply failed")),
        "{:?}",
        watch.stderr()
    );
}
