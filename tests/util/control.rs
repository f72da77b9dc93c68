//! Helpers for the control-plane tests: a command client on a test proxy, small changes, and
//! waiting for processes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::Duration;

use weir_reconciler::client::Client;
use weir_schema::proto::{self, ResponseStatus};
use weir_schema::{
    Backend, BackendId, BackendKey, Change, Cluster, ClusterId, Command, Frontend, Listener,
    ListenerSettings, Protocol, Request,
};

use weir_testkit::{http_get, wait_until, Answer};

use super::Proxy;

/// A command client connected to `proxy`, with a read timeout so a hung proxy fails the test.
pub fn client(proxy: &Proxy) -> Client {
    client_at(&proxy.socket)
}

pub fn client_at(socket: &Path) -> Client {
    let client = Client::connect(socket).expect("connect to the command socket");
    client
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    client
}

/// Sends a change and returns its final answer (OK or FAILURE).
pub fn apply(client: &mut Client, change: Change) -> proto::Response {
    apply_at(client, change, None)
}

pub fn apply_at(client: &mut Client, change: Change, expected: Option<u64>) -> proto::Response {
    let mut request = Request::change(client.next_id(), change);
    request.expected_version = expected;
    client.call_with(&request, |_| {}).expect("final answer")
}

pub fn is_ok(answer: &proto::Response) -> bool {
    answer.status() == ResponseStatus::Ok
}

pub fn add_cluster(id: &str) -> Change {
    Change::AddCluster(Cluster::new(id))
}

pub fn add_backend(cluster: &str, id: &str, address: SocketAddr) -> Change {
    Change::AddBackend(Backend {
        owner: None,
        key: backend_key(cluster, id),
        address,
        weight: 100,
        backup: false,
    })
}

pub fn backend_key(cluster: &str, id: &str) -> BackendKey {
    BackendKey {
        cluster: ClusterId(cluster.into()),
        id: BackendId(id.into()),
    }
}

pub fn add_http_listener(address: SocketAddr) -> Change {
    Change::AddListener(Listener {
        owner: None,
        address,
        protocol: Protocol::Http,
        name: address.to_string(),
        settings: ListenerSettings::default(),
    })
}

pub fn add_frontend(listener: SocketAddr, host: &str, cluster: &str) -> Change {
    Change::AddFrontend(Frontend {
        owner: None,
        listener,
        hostname: Some(host.into()),
        path: "/".into(),
        cluster: ClusterId(cluster.into()),
        certificate: None,
        options: Default::default(),
    })
}

/// One http listener routing `host` to a cluster `app` with the given backends.
pub fn route(client: &mut Client, listener: SocketAddr, host: &str, backends: &[SocketAddr]) {
    for change in [add_http_listener(listener), add_cluster("app")] {
        assert!(is_ok(&apply(client, change)));
    }
    for (i, b) in backends.iter().enumerate() {
        assert!(is_ok(&apply(
            client,
            add_backend("app", &format!("b{i}"), *b)
        )));
    }
    assert!(is_ok(&apply(client, add_frontend(listener, host, "app"))));
}

pub fn status(client: &mut Client) -> proto::ProxyStatus {
    client.status().expect("status")
}

pub fn version(client: &mut Client) -> u64 {
    status(client).state_version
}

/// Sends any command and returns its final answer.
pub fn call(client: &mut Client, command: Command) -> proto::Response {
    let request = Request::new(client.next_id(), command);
    client.call_with(&request, |_| {}).expect("final answer")
}

/// The value of counter `name` in `proxy`'s metrics, summed over its workers; panics on a name
/// the proxy does not report, so a renamed counter fails rather than reads 0.
pub fn metric(proxy: &Proxy, name: &str) -> u64 {
    let mut client = client(proxy);
    let answer = call(&mut client, Command::QueryMetrics);
    let Some(proto::response::Content::Metrics(m)) = answer.content else {
        panic!("{answer:?}");
    };
    m.counters
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no counter {name}"))
        .value
}

/// Writes a weir.toml into `dir`.
pub fn write_config(dir: &Path, toml: &str) -> PathBuf {
    let path = dir.join("weir.toml");
    std::fs::write(&path, toml).expect("write config");
    path
}

/// Waits for a child to exit.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let mut status = None;
    wait_until(timeout, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    status
}

/// Whether a process is alive (signal 0), zombies excepted.
pub fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !stat.is_empty() && !stat.contains(") Z ")
}

/// A backend that holds every request until released: answers `200 held` once
/// [`Gate::release`] is called. `arrived` counts requests that reached it.
pub struct Gate {
    pub addr: SocketAddr,
    pub arrived: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    open: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
}

impl Gate {
    pub fn start() -> Gate {
        use std::io::{BufRead, BufReader, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind gate");
        let addr = listener.local_addr().expect("addr");
        let arrived = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let open = std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let (a, o) = (arrived.clone(), open.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (a, o) = (a.clone(), o.clone());
                std::thread::spawn(move || {
                    let mut writer = stream.try_clone().expect("clone");
                    let mut reader = BufReader::new(stream);
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    a.fetch_add(1, Ordering::SeqCst);
                    let (lock, cv) = &*o;
                    let mut released = lock.lock().expect("gate lock");
                    while !*released {
                        released = cv.wait(released).expect("gate wait");
                    }
                    drop(released);
                    let _ = writer.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nheld",
                    );
                });
            }
        });
        Gate {
            addr,
            arrived,
            open,
        }
    }

    pub fn release(&self) {
        let (lock, cv) = &*self.open;
        *lock.lock().expect("gate lock") = true;
        cv.notify_all();
    }

    pub fn arrived(&self) -> usize {
        self.arrived.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Sends `GET /` for `host` to the listener at `addr` on its own thread, and returns once
    /// that request is the one the gate holds (the first to arrive). Join the handle after
    /// [`Gate::release`] for its answer.
    pub fn hold(
        &self,
        addr: SocketAddr,
        host: &'static str,
    ) -> std::thread::JoinHandle<std::io::Result<Answer>> {
        let request = std::thread::spawn(move || http_get(addr, host, "/"));
        assert!(wait_until(Duration::from_secs(10), || self.arrived() == 1));
        request
    }
}

/// A listener with two routes: `site.test` to a backend that answers `blue` (cluster `app`),
/// and `held.test` to a [`Gate`] (cluster `held`, backend `gate`), which holds its requests
/// until released. For tests of what a proxy does while requests are in flight.
pub struct HeldRoutes {
    pub listener: SocketAddr,
    pub gate: Gate,
    pub blue: weir_testkit::Backend,
}

impl HeldRoutes {
    /// Adds both routes through `client` on a new listener, and returns once `site.test`
    /// answers through it.
    pub fn add(client: &mut Client) -> HeldRoutes {
        let gate = Gate::start();
        let blue = weir_testkit::Backend::start("blue");
        let listener = weir_testkit::free_addr();
        route(client, listener, "site.test", &[blue.addr]);
        for change in [
            add_cluster("held"),
            add_backend("held", "gate", gate.addr),
            add_frontend(listener, "held.test", "held"),
        ] {
            let answer = apply(client, change);
            assert!(is_ok(&answer), "{answer:?}");
        }
        assert!(
            wait_until(Duration::from_secs(20), || {
                http_get(listener, "site.test", "/").is_ok_and(|a| a.status == 200)
            }),
            "site.test never answered on {listener}"
        );
        HeldRoutes {
            listener,
            gate,
            blue,
        }
    }

    /// The gate's backend, as metrics and drains name it.
    pub fn gate_key(&self) -> BackendKey {
        backend_key("held", "gate")
    }
}

/// Runs GETs on fresh connections until `stop` is set (bounded by `max` requests); returns
/// (successes, failures).
pub fn request_loop(
    addr: SocketAddr,
    host: &'static str,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    max: usize,
) -> std::thread::JoinHandle<(usize, usize)> {
    std::thread::spawn(move || {
        let (mut ok, mut failed) = (0, 0);
        for _ in 0..max {
            if stop.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            match http_get(addr, host, "/") {
                Ok(a) if a.status == 200 => ok += 1,
                _ => failed += 1,
            }
        }
        (ok, failed)
    })
}
