//! In-process harness for worker tests: a real worker on a thread, driven over a real
//! socketpair exactly as the main process drives it. The backends and the HTTP client the
//! tests point at it come from `weir_testkit`, shared with the end-to-end tests.
#![allow(dead_code)] // Each test file includes this module; not every file uses every helper.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use weir_engine::channel::{send_with_fd, WorkerConfig};
use weir_schema::framing::{encode_frame, read_frame, DEFAULT_MAX_FRAME};
use weir_schema::proto::{self, request::Kind, ResponseStatus};
use weir_testkit::Backend;

/// A worker running on a thread.
pub struct TestWorker {
    pub channel: UnixStream,
    pub thread: Option<JoinHandle<Result<(), weir_engine::worker::WorkerError>>>,
    next_id: u64,
    /// Unsolicited messages (events) seen while waiting for answers.
    pub events: Vec<proto::Response>,
}

impl TestWorker {
    pub fn start(config: WorkerConfig) -> TestWorker {
        let (ours, theirs) = UnixStream::pair().expect("socketpair");
        let thread = thread::spawn(move || weir_engine::worker::run(config, theirs));
        ours.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        TestWorker {
            channel: ours,
            thread: Some(thread),
            next_id: 0,
            events: Vec::new(),
        }
    }

    pub fn with_defaults() -> TestWorker {
        TestWorker::start(WorkerConfig::default())
    }

    fn request(&mut self, kind: Kind) -> proto::Request {
        self.next_id += 1;
        proto::Request {
            id: format!("t-{}", self.next_id),
            expected_version: None,
            kind: Some(kind),
        }
    }

    /// Sends a request and returns every answer up to the final one.
    pub fn call_all(&mut self, kind: Kind) -> Vec<proto::Response> {
        let request = self.request(kind);
        self.channel
            .write_all(&encode_frame(&request))
            .expect("send");
        self.answers_for(&request.id)
    }

    /// Reads up to and including the next answer to `id` (events seen meanwhile are kept).
    pub fn next_answer(&mut self, id: &str) -> proto::Response {
        loop {
            let answer: proto::Response = read_frame(&mut self.channel, DEFAULT_MAX_FRAME)
                .expect("read answer")
                .expect("worker closed the channel");
            if answer.id == id {
                return answer;
            }
            self.events.push(answer);
        }
    }

    pub fn answers_for(&mut self, id: &str) -> Vec<proto::Response> {
        let mut answers = Vec::new();
        loop {
            let answer: proto::Response = read_frame(&mut self.channel, DEFAULT_MAX_FRAME)
                .expect("read answer")
                .expect("worker closed the channel");
            if answer.id != id {
                self.events.push(answer);
                continue;
            }
            let last = answer.is_final();
            answers.push(answer);
            if last {
                return answers;
            }
        }
    }

    /// Sends a request and expects a final OK.
    pub fn call(&mut self, kind: Kind) -> proto::Response {
        let answers = self.call_all(kind);
        let last = answers.last().cloned().expect("an answer");
        assert_eq!(last.status(), ResponseStatus::Ok, "{last:?}");
        last
    }

    /// Sends a request without reading its answer; returns its id.
    pub fn send(&mut self, kind: Kind) -> String {
        let request = self.request(kind);
        self.channel
            .write_all(&encode_frame(&request))
            .expect("send");
        request.id
    }

    pub fn add_listener_with(
        &mut self,
        protocol: proto::ListenerProtocol,
        settings: proto::ListenerSettings,
    ) -> SocketAddr {
        let socket = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = socket.local_addr().expect("addr");
        let request = self.request(Kind::AddListener(proto::Listener {
            owner: String::new(),
            address: addr.to_string(),
            protocol: protocol as i32,
            name: String::new(),
            settings: Some(settings),
        }));
        send_with_fd(&self.channel, &encode_frame(&request), socket.as_raw_fd()).expect("send fd");
        drop(socket);
        let answers = self.answers_for(&request.id);
        assert_eq!(
            answers.last().map(|a| a.status()),
            Some(ResponseStatus::Ok),
            "{answers:?}"
        );
        addr
    }

    pub fn add_http_listener(&mut self) -> SocketAddr {
        self.add_listener_with(
            proto::ListenerProtocol::Http,
            proto::ListenerSettings::default(),
        )
    }

    pub fn add_cluster(&mut self, cluster: proto::Cluster) {
        self.call(Kind::AddCluster(cluster));
    }

    pub fn cluster(id: &str) -> proto::Cluster {
        proto::Cluster {
            id: id.to_owned(),
            ..Default::default()
        }
    }

    pub fn add_backend(&mut self, cluster: &str, id: &str, addr: SocketAddr) {
        self.add_backend_with(cluster, id, addr, None, false);
    }

    pub fn add_backend_with(
        &mut self,
        cluster: &str,
        id: &str,
        addr: SocketAddr,
        weight: Option<u32>,
        backup: bool,
    ) {
        self.call(Kind::AddBackend(proto::Backend {
            owner: String::new(),
            cluster_id: cluster.to_owned(),
            id: id.to_owned(),
            address: addr.to_string(),
            weight,
            backup,
        }));
    }

    pub fn frontend(
        listener: SocketAddr,
        host: &str,
        path: &str,
        cluster: &str,
    ) -> proto::Frontend {
        proto::Frontend {
            listener: listener.to_string(),
            hostname: host.to_owned(),
            path: path.to_owned(),
            cluster_id: cluster.to_owned(),
            certificate: String::new(),
            ..Default::default()
        }
    }

    pub fn add_frontend(&mut self, listener: SocketAddr, host: &str, path: &str, cluster: &str) {
        self.call(Kind::AddFrontend(TestWorker::frontend(
            listener, host, path, cluster,
        )));
    }

    /// A listener, a cluster `c` with these backends, and a route for `host` `/`.
    pub fn simple(&mut self, host: &str, backends: &[&Backend]) -> SocketAddr {
        self.simple_with(proto::ListenerSettings::default(), host, backends)
    }

    /// [`TestWorker::simple`] with these listener settings.
    pub fn simple_with(
        &mut self,
        settings: proto::ListenerSettings,
        host: &str,
        backends: &[&Backend],
    ) -> SocketAddr {
        let listener = self.add_listener_with(proto::ListenerProtocol::Http, settings);
        self.add_cluster(TestWorker::cluster("c"));
        for b in backends {
            self.add_backend("c", &b.name, b.addr);
        }
        self.add_frontend(listener, host, "/", "c");
        listener
    }

    pub fn metrics(&mut self) -> Vec<proto::Counter> {
        match self
            .call(Kind::QueryMetrics(proto::QueryMetrics {}))
            .content
        {
            Some(proto::response::Content::Metrics(m)) => m.counters,
            other => panic!("no metrics: {other:?}"),
        }
    }

    /// The value of counter `name`; panics if the worker does not report it, so a renamed or
    /// dropped metric fails the test instead of reading as 0.
    pub fn counter(&mut self, name: &str) -> u64 {
        let counters = self.metrics();
        match counters.iter().find(|c| c.name == name) {
            Some(c) => c.value,
            None => {
                let names: Vec<&str> = counters.iter().map(|c| c.name.as_str()).collect();
                panic!("no counter {name:?}; the worker reports {names:?}")
            }
        }
    }

    /// Hard-stops the worker and waits for its thread.
    pub fn stop(mut self) {
        self.call(Kind::HardStop(proto::HardStop {}));
        if let Some(t) = self.thread.take() {
            t.join().expect("worker thread").expect("worker result");
        }
    }
}

impl Drop for TestWorker {
    fn drop(&mut self) {
        let _ = self.channel.shutdown(std::net::Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
