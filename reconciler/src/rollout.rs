//! Rollout of one desired state to many proxies: canaries first, then waves, each proxy
//! checked before the next is touched.
//!
//! Every proxy is planned against first, so an unreachable proxy or one whose state cannot be
//! read stops the rollout before anything changes. Then, wave by wave, each proxy is planned
//! again (its state may have moved since), applied with the ordinary [`crate::apply`] (which
//! rolls that proxy back itself if a step fails), and verified: its plan must now be empty and
//! it must answer `Status` with every worker live and at the new state version. The first
//! failure stops the rollout; the proxies after it are left as they were.

use std::ops::Range;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use weir_schema::proto;
use weir_schema::State;

use crate::apply::{apply, Quiet};
use crate::client::Client;
use crate::plan::{plan, Plan};

/// How a rollout proceeds.
#[derive(Debug, Clone)]
pub struct Options {
    /// How many proxies (the first given) are applied alone, one at a time, before any other.
    pub canary: usize,
    /// How many proxies each later wave holds.
    pub wave_size: usize,
    /// The pause between two waves.
    pub pause: Duration,
    /// How long each backend removal may drain; `None` is each proxy's default.
    pub drain_timeout: Option<Duration>,
    /// How long a proxy's workers may take to all be live after an apply (one may be
    /// restarting).
    pub status_wait: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            canary: 1,
            wave_size: 1,
            pause: Duration::ZERO,
            drain_timeout: None,
            status_wait: Duration::from_secs(10),
        }
    }
}

/// The step of a proxy's rollout that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Connecting to its command socket, or reading its state.
    Connect,
    /// Applying its plan (the proxy rolled itself back).
    Apply,
    /// After the apply, its plan was not empty.
    Verify,
    /// After the apply, not every worker was live at the new version.
    Status,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Connect => "connect",
            Stage::Apply => "apply",
            Stage::Verify => "verify",
            Stage::Status => "status",
        }
    }
}

/// What happened to one proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Its plan was empty; it was checked and left alone.
    NoChanges { version: u64 },
    /// Its plan was applied and verified.
    Applied { steps: usize, version: u64 },
    /// It failed at `stage`.
    Failed { stage: Stage, message: String },
    /// The rollout stopped before its wave: it was not changed.
    NotReached,
}

impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::NoChanges { .. } => "no_changes",
            Outcome::Applied { .. } => "applied",
            Outcome::Failed { .. } => "failed",
            Outcome::NotReached => "not_reached",
        }
    }
}

/// One proxy's part in a rollout.
#[derive(Debug, Clone)]
pub struct ProxyReport {
    pub socket: PathBuf,
    /// 0-based; the canaries' waves come first.
    pub wave: usize,
    pub canary: bool,
    /// Changes its first plan held.
    pub planned_changes: usize,
    pub outcome: Outcome,
}

/// Progress, for a caller showing the rollout as it goes.
#[derive(Debug)]
pub enum Event<'a> {
    WaveStarted {
        wave: usize,
        canary: bool,
        sockets: &'a [PathBuf],
    },
    ProxyDone(&'a ProxyReport),
    Pausing(Duration),
}

/// The waves, as ranges of proxy indexes: `canary` waves of one proxy, then waves of
/// `wave_size` (at least one) proxies.
pub fn waves(proxies: usize, canary: usize, wave_size: usize) -> Vec<Range<usize>> {
    let canary = canary.min(proxies);
    let mut waves: Vec<Range<usize>> = (0..canary).map(|i| i..i + 1).collect();
    let size = wave_size.max(1);
    let mut start = canary;
    while start < proxies {
        let end = (start + size).min(proxies);
        waves.push(start..end);
        start = end;
    }
    waves
}

/// A proxy, connected, with the plan made against it before anything was applied.
#[derive(Debug)]
pub struct Planned {
    pub socket: PathBuf,
    pub client: Client,
    pub plan: Plan,
}

/// The plans of every proxy, made before anything is applied: `Err` names the first proxy
/// that could not be reached or read.
pub fn plan_all(sockets: &[PathBuf], desired: &State) -> Result<Vec<Planned>, (PathBuf, String)> {
    sockets
        .iter()
        .map(|socket| {
            let mut client =
                Client::connect(socket).map_err(|e| (socket.clone(), e.to_string()))?;
            let live = client
                .query_state()
                .map_err(|e| (socket.clone(), e.to_string()))?;
            let p = plan(&live, desired, &[]);
            Ok(Planned {
                socket: socket.clone(),
                client,
                plan: p,
            })
        })
        .collect()
}

/// Rolls `desired` out to every proxy of `planned` (from [`plan_all`]), in waves.
pub fn rollout(
    planned: Vec<Planned>,
    desired: &State,
    options: &Options,
    observer: &mut dyn FnMut(&Event<'_>),
) -> Vec<ProxyReport> {
    let waves = waves(planned.len(), options.canary, options.wave_size);
    let sockets: Vec<PathBuf> = planned.iter().map(|p| p.socket.clone()).collect();
    let mut reports: Vec<ProxyReport> = planned
        .iter()
        .map(|p| ProxyReport {
            socket: p.socket.clone(),
            wave: 0,
            canary: false,
            planned_changes: p.plan.changes().len(),
            outcome: Outcome::NotReached,
        })
        .collect();
    for (w, range) in waves.iter().enumerate() {
        for report in &mut reports[range.clone()] {
            report.wave = w;
            report.canary = w < options.canary;
        }
    }
    let mut clients: Vec<Client> = planned.into_iter().map(|p| p.client).collect();
    for (w, range) in waves.iter().enumerate() {
        if w > 0 && !options.pause.is_zero() {
            observer(&Event::Pausing(options.pause));
            std::thread::sleep(options.pause);
        }
        observer(&Event::WaveStarted {
            wave: w,
            canary: w < options.canary,
            sockets: &sockets[range.clone()],
        });
        for i in range.clone() {
            let outcome = roll_one(&mut clients[i], desired, options);
            let failed = matches!(outcome, Outcome::Failed { .. });
            reports[i].outcome = outcome;
            observer(&Event::ProxyDone(&reports[i]));
            if failed {
                return reports;
            }
        }
    }
    reports
}

/// Plans, applies and verifies one proxy.
fn roll_one(client: &mut Client, desired: &State, options: &Options) -> Outcome {
    let failed = |stage: Stage, message: String| Outcome::Failed { stage, message };
    let live = match client.query_state() {
        Ok(live) => live,
        Err(e) => return failed(Stage::Connect, e.to_string()),
    };
    let mut p = plan(&live, desired, &[]);
    p.set_drain_timeout(options.drain_timeout);
    let steps = p.steps().len();
    if !p.is_empty() {
        if let Err(e) = apply(client, &p, &mut Quiet) {
            return failed(Stage::Apply, e.to_string());
        }
    }
    let live = match client.query_state() {
        Ok(live) => live,
        Err(e) => return failed(Stage::Verify, e.to_string()),
    };
    let left = plan(&live, desired, &[]);
    if !left.is_empty() {
        return failed(
            Stage::Verify,
            format!(
                "{} change(s) still planned after the apply (another client changed the proxy?)",
                left.changes().len()
            ),
        );
    }
    if let Err(message) = wait_for_workers(client, live.version, options.status_wait) {
        return failed(Stage::Status, message);
    }
    if steps == 0 {
        Outcome::NoChanges {
            version: live.version,
        }
    } else {
        Outcome::Applied {
            steps,
            version: live.version,
        }
    }
}

/// Waits (bounded) until `Status` shows every worker live at `version` or later.
fn wait_for_workers(client: &mut Client, version: u64, wait: Duration) -> Result<(), String> {
    let deadline = Instant::now() + wait;
    loop {
        let problem = match client.status() {
            Ok(status) => workers_problem(&status, version),
            Err(e) => Some(e.to_string()),
        };
        let Some(problem) = problem else {
            return Ok(());
        };
        if Instant::now() >= deadline {
            return Err(problem);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Why a status does not show every worker live at `version`, if it does not.
pub fn workers_problem(status: &proto::ProxyStatus, version: u64) -> Option<String> {
    if status.workers.is_empty() {
        return Some("the proxy has no worker".to_owned());
    }
    for w in &status.workers {
        if w.unresponsive {
            return Some(format!("worker {} is unresponsive", w.id));
        }
        if w.pid == 0 {
            return Some(format!("worker {} is not running (restarting?)", w.id));
        }
        if w.state_version < version {
            return Some(format!(
                "worker {} is at state version {}, not {version}",
                w.id, w.state_version
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canaries_go_alone_then_waves_of_the_given_size() {
        assert_eq!(waves(5, 1, 2), vec![0..1, 1..3, 3..5]);
        assert_eq!(waves(5, 2, 10), vec![0..1, 1..2, 2..5]);
        assert_eq!(waves(3, 0, 1), vec![0..1, 1..2, 2..3]);
        assert_eq!(waves(2, 5, 1), vec![0..1, 1..2]);
        assert_eq!(waves(3, 0, 0), vec![0..1, 1..2, 2..3]);
        assert!(waves(0, 1, 1).is_empty());
    }

    #[test]
    fn a_worker_missing_unresponsive_or_behind_is_a_problem() {
        let worker = |pid, version, unresponsive| proto::WorkerStatus {
            id: 0,
            pid,
            state_version: version,
            unresponsive,
            ..Default::default()
        };
        let status = |workers| proto::ProxyStatus {
            workers,
            ..Default::default()
        };
        assert_eq!(
            workers_problem(&status(vec![worker(10, 7, false)]), 7),
            None
        );
        assert!(workers_problem(&status(vec![]), 7).is_some());
        assert!(workers_problem(&status(vec![worker(0, 7, false)]), 7).is_some());
        assert!(workers_problem(&status(vec![worker(10, 7, true)]), 7).is_some());
        assert!(workers_problem(&status(vec![worker(10, 6, false)]), 7).is_some());
    }
}
