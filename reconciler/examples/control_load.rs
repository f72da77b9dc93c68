//! A load generator for the command socket, used by `bench/apply.sh` and `bench/churn.sh`.
//!
//! It speaks the socket protocol directly (weir-schema's framing), the way any third-party
//! tool could, so the figures are the proxy's and not the reconciler's:
//!
//! ```text
//! control_load pipeline SOCKET CLUSTERS LISTEN BACKEND [WINDOW]
//!     one AddListener, then CLUSTERS × (AddCluster, AddBackend, AddFrontend), at most WINDOW
//!     requests in flight (default 256; 1 measures unloaded per-change latency).
//! control_load churn SOCKET CLUSTER BACKEND RATE SECONDS
//!     RATE changes per second for SECONDS: AddBackend churn-N, then RemoveBackend churn-N
//!     (which drains), alternating, on a cluster that already exists.
//! ```
//!
//! Each run prints one line `LOAD key=value ...`: changes sent, changes that ended `OK`,
//! failures, wall time, and per-change latency (request written → final answer) p50/p99/max.
//! Exits 1 if any change failed or an answer did not arrive in time.

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use weir_schema::framing::{encode_frame, read_frame, DEFAULT_MAX_FRAME};
use weir_schema::model::{BackendId, BackendKey, ClusterId, ListenerSettings, Protocol};
use weir_schema::proto::{self, ResponseStatus};
use weir_schema::{Backend, Change, Cluster, Frontend, Listener, Request};

/// How long the run waits for the last answers once everything is sent.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

type Error = Box<dyn std::error::Error>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("pipeline") if args.len() >= 5 => pipeline(&args[1..]),
        Some("churn") if args.len() == 6 => churn(&args[1..]),
        _ => Err(
            "usage: control_load pipeline SOCKET CLUSTERS LISTEN BACKEND [WINDOW] | \
                  control_load churn SOCKET CLUSTER BACKEND RATE SECONDS"
                .into(),
        ),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("control_load: {e}");
            ExitCode::FAILURE
        }
    }
}

fn backend(cluster: &str, id: &str, address: SocketAddr) -> Backend {
    Backend {
        owner: None,
        key: BackendKey {
            cluster: ClusterId(cluster.to_owned()),
            id: BackendId(id.to_owned()),
        },
        address,
        weight: 100,
        backup: false,
    }
}

fn encode(id: usize, change: Change) -> Vec<u8> {
    encode_frame(&proto::Request::from(&Request::change(
        id.to_string(),
        change,
    )))
}

/// What the reader thread hands back: per-change latencies and the failure messages.
struct Tally {
    latencies: Vec<Duration>,
    failures: Vec<String>,
    missing: usize,
}

/// Reads answers until `expected` requests got a final one (or the socket closes / times
/// out). Send times arrive on `sent` as (id, instant); each final answer is acknowledged on
/// `done` so the writer can keep its window full.
fn read_answers(
    stream: UnixStream,
    expected: usize,
    sent: &mpsc::Receiver<(usize, Instant)>,
    done: &mpsc::Sender<()>,
) -> Tally {
    let mut reader = BufReader::with_capacity(256 * 1024, stream);
    let mut started: HashMap<usize, Instant> = HashMap::new();
    let mut tally = Tally {
        latencies: Vec::with_capacity(expected),
        failures: Vec::new(),
        missing: 0,
    };
    let mut finals = 0;
    while finals < expected {
        let answer: proto::Response = match read_frame(&mut reader, DEFAULT_MAX_FRAME) {
            Ok(Some(a)) => a,
            Ok(None) | Err(_) => break,
        };
        let now = Instant::now();
        if answer.status() == ResponseStatus::Processing {
            continue;
        }
        let Ok(id) = answer.id.parse::<usize>() else {
            continue; // an event, not an answer of ours
        };
        while let Ok((n, at)) = sent.try_recv() {
            started.insert(n, at);
        }
        if let Some(at) = started.remove(&id) {
            tally.latencies.push(now - at);
        }
        if answer.status() != ResponseStatus::Ok {
            tally.failures.push(format!("{id}: {}", answer.message));
        }
        finals += 1;
        let _ = done.send(());
    }
    tally.missing = expected - finals;
    tally
}

fn connect(path: &str) -> Result<UnixStream, Error> {
    let stream = UnixStream::connect(path).map_err(|e| format!("cannot connect to {path}: {e}"))?;
    stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    Ok(stream)
}

fn pipeline(args: &[String]) -> Result<bool, Error> {
    let socket = &args[0];
    let clusters: usize = args[1].parse()?;
    let listen: SocketAddr = args[2].parse()?;
    let origin: SocketAddr = args[3].parse()?;
    let window: usize = args.get(4).map_or(Ok(256), |w| w.parse())?;
    let window = window.max(1);

    // Everything is encoded up front: the run measures the proxy, not the encoder.
    let mut frames = Vec::with_capacity(1 + 3 * clusters);
    frames.push(encode(
        0,
        Change::AddListener(Listener {
            owner: None,
            address: listen,
            protocol: Protocol::Http,
            name: "web".into(),
            settings: ListenerSettings::default(),
        }),
    ));
    for i in 0..clusters {
        let name = format!("app-{i}");
        let n = frames.len();
        frames.push(encode(n, Change::AddCluster(Cluster::new(&name))));
        frames.push(encode(
            n + 1,
            Change::AddBackend(backend(&name, "b1", origin)),
        ));
        frames.push(encode(
            n + 2,
            Change::AddFrontend(Frontend {
                owner: None,
                listener: listen,
                hostname: Some(format!("{name}.example.com")),
                path: "/".into(),
                cluster: ClusterId(name),
                certificate: None,
                options: Default::default(),
            }),
        ));
    }
    let total = frames.len();

    let stream = connect(socket)?;
    let (sent_tx, sent_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    let read_half = stream.try_clone()?;
    let reader = thread::spawn(move || read_answers(read_half, total, &sent_rx, &done_tx));

    let started = Instant::now();
    let mut writer = stream;
    let mut buf = Vec::with_capacity(64 * 1024);
    let (mut next, mut answered) = (0, 0);
    while next < total {
        // Fill the window, write it with one syscall, then wait for room.
        let first = next;
        while next < total && next - answered < window {
            buf.extend_from_slice(&frames[next]);
            next += 1;
        }
        // Send times are registered before the write, so no answer can beat them.
        let at = Instant::now();
        for n in first..next {
            let _ = sent_tx.send((n, at));
        }
        writer.write_all(&buf)?;
        buf.clear();
        if next < total {
            if done_rx.recv_timeout(ANSWER_TIMEOUT).is_err() {
                break;
            }
            answered += 1;
            while done_rx.try_recv().is_ok() {
                answered += 1;
            }
        }
    }
    drop(sent_tx);
    let tally = reader.join().map_err(|_| "the reader thread panicked")?;
    let elapsed = started.elapsed();
    report(&format!("window={window}"), total, elapsed, &tally);
    Ok(tally.failures.is_empty() && tally.missing == 0)
}

fn churn(args: &[String]) -> Result<bool, Error> {
    let socket = &args[0];
    let cluster = args[1].clone();
    let address: SocketAddr = args[2].parse()?;
    let rate: u32 = args[3].parse()?;
    let seconds: u32 = args[4].parse()?;
    if rate == 0 || rate > 10_000 || seconds > 3600 {
        return Err("RATE must be 1..=10000 and SECONDS at most 3600".into());
    }
    let total = (rate * seconds) as usize;
    let stream = connect(socket)?;
    let (sent_tx, sent_rx) = mpsc::channel();
    let (done_tx, _done_rx) = mpsc::channel();
    let read_half = stream.try_clone()?;
    let reader = thread::spawn(move || read_answers(read_half, total, &sent_rx, &done_tx));

    let period = Duration::from_secs(1) / rate;
    let started = Instant::now();
    let mut writer = stream;
    for n in 0..total {
        // A fixed schedule (not "sleep after each send"), so the rate does not drift.
        let due = started + period * u32::try_from(n)?;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        let id = format!("churn-{}", n / 2);
        let change = if n % 2 == 0 {
            Change::AddBackend(backend(&cluster, &id, address))
        } else {
            Change::RemoveBackend {
                key: backend(&cluster, &id, address).key,
                drain_timeout: Some(Duration::from_secs(10)),
            }
        };
        let frame = encode(n, change);
        let _ = sent_tx.send((n, Instant::now()));
        writer.write_all(&frame)?;
    }
    drop(sent_tx);
    let tally = reader.join().map_err(|_| "the reader thread panicked")?;
    let elapsed = started.elapsed();
    report(&format!("rate={rate}"), total, elapsed, &tally);
    Ok(tally.failures.is_empty() && tally.missing == 0)
}

fn micros(d: Duration) -> u128 {
    d.as_micros()
}

fn report(mode: &str, total: usize, elapsed: Duration, tally: &Tally) {
    let mut lat = tally.latencies.clone();
    lat.sort_unstable();
    let pct = |p: f64| -> u128 {
        if lat.is_empty() {
            return 0;
        }
        // Nearest-rank percentile.
        let rank = ((p * lat.len() as f64).ceil() as usize).clamp(1, lat.len());
        micros(lat[rank - 1])
    };
    for f in tally.failures.iter().take(5) {
        eprintln!("control_load: failed: {f}");
    }
    println!(
        "LOAD {mode} changes={total} ok={} failed={} missing={} total_ms={:.1} p50_us={} p99_us={} max_us={}",
        tally.latencies.len() - tally.failures.len().min(tally.latencies.len()),
        tally.failures.len(),
        tally.missing,
        elapsed.as_secs_f64() * 1000.0,
        pct(0.50),
        pct(0.99),
        lat.last().map_or(0, |d| micros(*d)),
    );
}
