//! `weir watch`: keep a proxy reconciled with a desired-state directory as it changes, and
//! with itself as someone changes it by hand.
//!
//! The parts, each small and testable alone:
//! - [`debounce`] (sans-io) folds a burst of file events into one reload, after a quiet
//!   period and at most a ceiling after the first event, and knows which files are editor noise;
//! - [`fs`] is the only module that touches `notify`; it turns OS notifications into [`Event`]s;
//! - [`core::WatchLoop`] is the loop's brain: it takes one [`Event`] at a time with the current
//!   time, loads desired state through a [`DesiredSource`], talks to the proxy through a
//!   [`Proxy`], and returns what happened as [`Report`]s for the caller to print;
//! - [`socket`] implements [`Proxy`] over the command socket with the reconciler's plan/apply;
//! - [`run`] is the thin driver: it waits on a channel of events until the next timer.
//!
//! Invariants: nothing is applied while the desired files do not load (the last good state stays
//! live); a failed apply has been rolled back by the apply executor and is retried on the next
//! change or drift tick; an empty plan produces no log line.

pub mod core;
pub mod debounce;
pub mod fs;
pub mod socket;

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use weir_schema::desired::LoadErrors;
use weir_schema::{Fingerprint, State};

pub use self::core::WatchLoop;

/// Everything the watch loop reacts to. Closed: the loop's `match` names each one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Paths the file watcher saw change (possibly editor noise, filtered by the loop).
    FilesChanged(Vec<PathBuf>),
    /// The watcher lost events or the directory was replaced: re-read everything.
    Rescan(String),
    /// The debouncer's quiet period (or ceiling) has passed: reload now.
    DebounceElapsed,
    /// Time to compare the live state with the last applied one.
    Tick,
    /// Stop the loop (Ctrl-C, SIGTERM, the caller is done).
    Stop,
}

/// What to do when the live state drifted from the last applied one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnDrift {
    /// Print what differs and re-apply the desired state.
    #[default]
    Correct,
    /// Only print what differs.
    Report,
}

/// Tuning of the loop.
#[derive(Debug, Clone)]
pub struct Config {
    /// The watched directory (or file): paths below it are checked against the noise rules.
    pub root: PathBuf,
    /// Silence that ends a burst of file events.
    pub debounce: Duration,
    /// Longest a burst may delay a reload, from its first event.
    pub max_delay: Duration,
    /// How often to check for drift; `None` never checks.
    pub drift_interval: Option<Duration>,
    pub on_drift: OnDrift,
    /// With an owner (`weir watch --owner`), the files are that owner's: the loop plans to the
    /// scoped desired state ([`crate::owner`]) computed against each live state it reads.
    pub scope: Option<crate::owner::Scope>,
}

/// Why a reconcile ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The first reconcile when the loop starts.
    Initial,
    /// A batch of file events.
    Files { events: usize, rescan: bool },
    /// The live state drifted and is being corrected.
    Drift,
    /// A previous apply failed, or the proxy was unreachable: trying again.
    Retry,
}

/// A plan as the loop sees it: whether it does anything, and how to show it.
#[derive(Debug, Clone)]
pub struct Planned<P> {
    pub plan: P,
    pub is_empty: bool,
    /// One line, e.g. `Plan: 1 to add, 0 to change, 1 to remove.`
    pub summary: String,
    /// The full rendering, one resource per line (no colour).
    pub text: String,
}

/// An apply that did not go through; the executor has already undone what it applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyFailure {
    pub message: String,
    /// Whether the proxy is back in the state it had before the apply (the steps applied
    /// before the failure were undone, or none was applied).
    pub rolled_back: bool,
}

/// The proxy as the loop needs it. Implemented over the command socket by
/// [`socket::SocketProxy`] and by an in-memory fake in tests.
pub trait Proxy {
    type Plan;
    /// The live state's fingerprint (cheap: no full state transfer).
    fn fingerprint(&mut self) -> Result<Fingerprint, String>;
    /// The whole live state.
    fn state(&mut self) -> Result<State, String>;
    /// Plans the changes that take `live` to `desired` (pure: no I/O).
    fn plan(&self, live: &State, desired: &State) -> Planned<Self::Plan>;
    /// Applies a plan step by step, rolling back on failure.
    fn apply(&mut self, plan: &Self::Plan) -> Result<(), ApplyFailure>;
}

/// Where desired state comes from: the directory on disk, or a fake in tests.
pub trait DesiredSource {
    fn load(&mut self) -> Result<State, LoadErrors>;
    /// Loads with the live state at hand, for an ownership scope: the files may name another
    /// owner's listener, cluster or certificate without defining it.
    fn load_against(&mut self, live: &State) -> Result<State, LoadErrors> {
        let _ = live;
        self.load()
    }
}

/// Loads desired state from a path with [`weir_schema::desired::load`].
#[derive(Debug, Clone)]
pub struct DirSource(pub PathBuf);

impl DesiredSource for DirSource {
    fn load(&mut self) -> Result<State, LoadErrors> {
        weir_schema::desired::load(&self.0).map(|d| d.state)
    }

    fn load_against(&mut self, live: &State) -> Result<State, LoadErrors> {
        weir_schema::desired::load_with_live(&self.0, live).map(|d| d.state)
    }
}

/// What happened, for the caller to print (text or JSON).
#[derive(Debug, Clone)]
pub enum Report {
    /// A non-empty plan was applied.
    Applied {
        trigger: Trigger,
        summary: String,
        text: String,
        duration: Duration,
    },
    /// The desired state matched the live one (not worth a log line in text mode).
    Unchanged { trigger: Trigger },
    /// The desired files do not load; nothing was applied.
    Invalid { errors: LoadErrors },
    /// The desired files load again after being invalid.
    Valid,
    /// An apply failed (and was rolled back); it is retried on the next change or tick.
    ApplyFailed {
        trigger: Trigger,
        summary: String,
        failure: ApplyFailure,
    },
    /// The live state differs from the last applied one.
    Drift { text: String, correcting: bool },
    /// The proxy could not be reached; retried on the next change or tick.
    Unreachable { error: String },
    /// The watcher lost track; everything is being re-read.
    Rescan { reason: String },
}

/// Drives `watch` until [`Event::Stop`] arrives or every sender is gone, calling `log` with
/// each report. Timers (debounce, drift) are served by waiting on `events` with a timeout.
pub fn run<S: DesiredSource, P: Proxy>(
    watch: &mut WatchLoop<S, P>,
    events: &Receiver<Event>,
    log: &mut dyn FnMut(&Report),
) {
    loop {
        let now = Instant::now();
        let event = match watch.next_timer() {
            Some((at, timer)) => match events.recv_timeout(at.saturating_duration_since(now)) {
                Ok(event) => event,
                Err(RecvTimeoutError::Timeout) => timer,
                Err(RecvTimeoutError::Disconnected) => return,
            },
            None => match events.recv() {
                Ok(event) => event,
                Err(_) => return,
            },
        };
        if event == Event::Stop {
            return;
        }
        for report in watch.handle(event, Instant::now()) {
            log(&report);
        }
    }
}
