//! Applying a plan to a running proxy, one step at a time, and undoing it when a step fails.
//!
//! Every request carries the state version it expects: the version the plan started from plus
//! the number of steps accepted since. A concurrent writer therefore makes the next step fail
//! instead of being silently overwritten. Steps of the same phase that do not drain are
//! pipelined (up to [`WINDOW`] requests in flight); the proxy handles a connection's requests
//! in order, and because each one expects the version the previous one produces, nothing after
//! a failed step can succeed, so "what was applied" is always known.
//!
//! On a `FAILURE` (or a lost connection) the applied steps are undone in reverse order with
//! inverse changes computed from the live state the plan was checked against: an add is
//! removed, an update is set back to its old value, a removed resource is added again. Undo
//! requests carry no expected version: they restore what this run changed and leave a
//! concurrent writer's change alone.
//!
//! A drain that reaches its deadline is different: the backend is already out of rotation and
//! its remaining connections were cut, so undoing would only put it back. The run stops there
//! without rolling back ([`ApplyError::DrainDeadline`], exit 4); every step before it was
//! applied, and running `weir apply` again finishes the rest.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use weir_schema::proto::{self, response::Content, ResponseStatus};
use weir_schema::{
    Backend, BackendKey, Certificate, Change, Cluster, ClusterId, Command, Fingerprint, Listener,
    Request, State,
};

use crate::client::{Client, ClientError};
use crate::plan::{Plan, Step};

/// Requests in flight at most while pipelining a phase.
pub const WINDOW: usize = 256;

/// What happens during an apply, for progress displays and `--json` streams. Step numbers are
/// 1-based, as plans print them.
#[derive(Debug)]
pub enum ApplyEvent<'a> {
    /// The live state matched the plan; `steps` requests follow.
    Started { steps: usize, version: u64 },
    Sent {
        number: usize,
        step: &'a Step,
        request_id: &'a str,
    },
    /// Any answer to a step's request, `PROCESSING` ones included.
    Answer {
        number: usize,
        step: &'a Step,
        request_id: &'a str,
        answer: &'a proto::Response,
    },
    /// A step's final answer arrived.
    StepDone {
        number: usize,
        step: &'a Step,
        request_id: &'a str,
        ok: bool,
    },
    /// A step failed; `undo` applied steps are undone next.
    RollbackStarted {
        failed_step: usize,
        message: &'a str,
        undo: usize,
    },
    /// An undo request for step `number` was answered (finally).
    Undone {
        number: usize,
        step: &'a Step,
        change: &'a Change,
        request_id: &'a str,
        answer: &'a proto::Response,
    },
}

/// Receives [`ApplyEvent`]s.
pub trait ApplyObserver {
    fn event(&mut self, event: &ApplyEvent<'_>);
}

/// An observer that ignores everything.
#[derive(Debug, Default)]
pub struct Quiet;

impl ApplyObserver for Quiet {
    fn event(&mut self, _: &ApplyEvent<'_>) {}
}

/// A finished apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    /// Steps applied.
    pub applied: usize,
    /// The state version after the last step.
    pub version: u64,
    pub elapsed: Duration,
}

/// Why an apply stopped. See the CLI's exit codes: `Stale` is 3, `DrainDeadline` 4,
/// `RolledBack` 5, the others 1.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("the plan was made from state {} but the proxy's state is now {}: it moved since; make a new plan", short(.planned), short(.actual))]
    Stale {
        planned: Fingerprint,
        actual: Fingerprint,
    },
    #[error("step {step} ({address}): {}; {applied} step(s) were applied, {remaining} were not (run apply again to finish)", drain_reason(.message))]
    DrainDeadline {
        step: usize,
        address: String,
        message: String,
        applied: usize,
        remaining: usize,
    },
    #[error("step {failed_step} ({address}) failed: {message}. Rolled back: {} applied step(s) undone", undone.len())]
    RolledBack {
        failed_step: usize,
        address: String,
        message: String,
        /// What was undone, most recent first (`add backend shop/blue-1`, ...).
        undone: Vec<String>,
    },
    #[error("step {failed_step} ({address}) failed: {message}. Undoing it failed too: {rollback_error}; {} change(s) were not undone: {}", not_undone.len(), not_undone.join("; "))]
    RollbackFailed {
        failed_step: usize,
        address: String,
        message: String,
        rollback_error: String,
        undone: Vec<String>,
        not_undone: Vec<String>,
    },
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// Why a drain stopped, said once: the proxy's own answer already names the deadline (Weir's
/// says `drain deadline reached: backend ... still has N live connection(s); it stays
/// removed`); another proxy's answer is put in those words.
fn drain_reason(message: &str) -> String {
    if message.contains("drain deadline reached") {
        message.to_owned()
    } else if message.is_empty() {
        "drain deadline reached; the backend stays removed".to_owned()
    } else {
        format!("drain deadline reached: {message}; the backend stays removed")
    }
}

fn short(fp: &Fingerprint) -> String {
    fp.to_hex()[..12].to_owned()
}

/// Applies `plan` through `client`. The live state must still have the fingerprint the plan
/// was made from; see the module docs for ordering, pipelining and rollback.
// The error is large (it lists what was undone) but returned at most once per run.
#[allow(clippy::result_large_err)]
pub fn apply(
    client: &mut Client,
    plan: &Plan,
    observer: &mut dyn ApplyObserver,
) -> Result<ApplyReport, ApplyError> {
    let started = Instant::now();
    // With keys: undoing a certificate's removal or replacement re-adds it whole.
    let live = client.query_state_with_keys()?;
    let actual = live.fingerprint();
    if actual != plan.from_fingerprint() {
        return Err(ApplyError::Stale {
            planned: plan.from_fingerprint(),
            actual,
        });
    }
    let undo = inverses(plan.steps(), &live, plan.drain_timeout()).ok_or(ApplyError::Stale {
        planned: plan.from_fingerprint(),
        actual,
    })?;
    observer.event(&ApplyEvent::Started {
        steps: plan.steps().len(),
        version: live.version,
    });

    let mut run = Run {
        client,
        plan,
        observer,
        expected: live.version,
        applied: Vec::new(),
    };
    for batch in batches(plan.steps()) {
        let stop = match run.batch(batch) {
            Ok(()) => continue,
            Err(stop) => stop,
        };
        let (index, message) = match stop {
            Stop::Failed { index, message } => (index, message),
            Stop::DrainDeadline { index, message } => {
                return Err(ApplyError::DrainDeadline {
                    step: index + 1,
                    address: plan.steps()[index].address.to_string(),
                    message,
                    applied: run.applied.len(),
                    remaining: plan.steps().len() - index - 1,
                });
            }
            Stop::Lost {
                index,
                error,
                in_flight,
                first_expected,
            } => {
                run.recover(&in_flight, first_expected)?;
                (index, format!("lost the command socket: {error}"))
            }
        };
        return Err(run.rollback(index, message, &undo));
    }
    Ok(ApplyReport {
        applied: run.applied.len(),
        version: run.expected,
        elapsed: started.elapsed(),
    })
}

/// Runs of steps that may be pipelined: same phase, no drain. A drain is a batch of its own.
fn batches(steps: &[Step]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 0..steps.len() {
        let ends_here = steps[i].is_drain()
            || steps
                .get(i + 1)
                .is_none_or(|next| next.phase != steps[i].phase || next.is_drain());
        if ends_here {
            out.push(start..i + 1);
            start = i + 1;
        }
    }
    out
}

/// Why a batch stopped.
enum Stop {
    Failed {
        index: usize,
        message: String,
    },
    DrainDeadline {
        index: usize,
        message: String,
    },
    Lost {
        index: usize,
        error: Box<ClientError>,
        /// Step indices whose final answer had not arrived, in the order they were sent.
        in_flight: Vec<usize>,
        /// The version the first of them expected.
        first_expected: u64,
    },
}

struct Flight {
    index: usize,
    id: String,
    expected: u64,
    accepted: bool,
}

struct Run<'c, 'p, 'o> {
    client: &'c mut Client,
    plan: &'p Plan,
    observer: &'o mut dyn ApplyObserver,
    /// The version the next request expects.
    expected: u64,
    /// Indices of applied steps, in the order the proxy applied them.
    applied: Vec<usize>,
}

impl Run<'_, '_, '_> {
    fn batch(&mut self, range: std::ops::Range<usize>) -> Result<(), Stop> {
        let steps = self.plan.steps();
        let mut next = range.start;
        let mut in_flight: VecDeque<Flight> = VecDeque::new();
        let mut failure: Option<Stop> = None;
        loop {
            // Refill only once half the window has drained, so requests go out in batches
            // (one write each) rather than one write per answer received.
            let refill = in_flight.len() <= WINDOW / 2;
            while refill && failure.is_none() && next < range.end && in_flight.len() < WINDOW {
                let step = &steps[next];
                let id = self.client.next_id();
                let request = Request {
                    id: id.clone(),
                    expected_version: Some(self.expected),
                    command: Command::Change(step.change.clone()),
                    private_keys: Default::default(),
                };
                in_flight.push_back(Flight {
                    index: next,
                    id,
                    expected: self.expected,
                    accepted: false,
                });
                // Queued: the window goes out in one write when the next answer is awaited.
                if let Err(error) = self.client.queue(&request) {
                    return Err(lost(next, error, &in_flight));
                }
                if let Some(f) = in_flight.back() {
                    self.observer.event(&ApplyEvent::Sent {
                        number: next + 1,
                        step,
                        request_id: &f.id,
                    });
                }
                self.expected += 1;
                next += 1;
            }
            if in_flight.is_empty() {
                break;
            }
            let answer = match self.client.recv() {
                Ok(answer) => answer,
                Err(error) => {
                    let index = in_flight.front().map_or(range.start, |f| f.index);
                    return Err(lost(index, error, &in_flight));
                }
            };
            // Answers come in order; anything else (an event) is not ours.
            let Some(pos) = in_flight.iter().position(|f| f.id == answer.id) else {
                continue;
            };
            let flight = &mut in_flight[pos];
            let step = &steps[flight.index];
            self.observer.event(&ApplyEvent::Answer {
                number: flight.index + 1,
                step,
                request_id: &flight.id,
                answer: &answer,
            });
            let status = answer.status();
            if status == ResponseStatus::Processing {
                flight.accepted = true;
                continue;
            }
            let Some(flight) = in_flight.remove(pos) else {
                continue;
            };
            let ok = status == ResponseStatus::Ok;
            self.observer.event(&ApplyEvent::StepDone {
                number: flight.index + 1,
                step,
                request_id: &flight.id,
                ok,
            });
            if ok {
                self.applied.push(flight.index);
            } else if step.is_drain()
                && (flight.accepted || matches!(answer.content, Some(Content::Drain(_))))
            {
                // Accepted (it reported drain progress), then given up on: the backend is
                // out of rotation and its drain timed out. A refused removal carries no
                // progress.
                self.applied.push(flight.index);
                return Err(Stop::DrainDeadline {
                    index: flight.index,
                    message: answer.message,
                });
            } else if failure.is_none() {
                self.expected = flight.expected;
                failure = Some(Stop::Failed {
                    index: flight.index,
                    message: answer.message,
                });
            }
        }
        match failure {
            Some(stop) => Err(stop),
            None => Ok(()),
        }
    }

    /// After a lost connection: reconnects and counts which in-flight steps the proxy applied
    /// (each expected the version the previous one produced, so they form a prefix).
    fn recover(&mut self, in_flight: &[usize], first_expected: u64) -> Result<(), ClientError> {
        self.client.reconnect()?;
        let state = self.client.query_state()?;
        let done = usize::try_from(state.version.saturating_sub(first_expected))
            .unwrap_or(usize::MAX)
            .min(in_flight.len());
        self.applied.extend_from_slice(&in_flight[..done]);
        Ok(())
    }

    fn rollback(&mut self, index: usize, message: String, undo: &[Change]) -> ApplyError {
        let steps = self.plan.steps();
        let address = steps[index].address.to_string();
        self.observer.event(&ApplyEvent::RollbackStarted {
            failed_step: index + 1,
            message: &message,
            undo: self.applied.len(),
        });
        let mut undone = Vec::new();
        let applied = std::mem::take(&mut self.applied);
        for (n, &i) in applied.iter().enumerate().rev() {
            let change = &undo[i];
            match self.undo_one(i, change) {
                Ok(()) => undone.push(change.describe()),
                Err(rollback_error) => {
                    return ApplyError::RollbackFailed {
                        failed_step: index + 1,
                        address,
                        message,
                        rollback_error,
                        undone,
                        not_undone: applied[..=n]
                            .iter()
                            .rev()
                            .map(|j| undo[*j].describe())
                            .collect(),
                    };
                }
            }
        }
        ApplyError::RolledBack {
            failed_step: index + 1,
            address,
            message,
            undone,
        }
    }

    /// Sends one undo request and waits for its final answer, reconnecting once if the
    /// connection is gone.
    fn undo_one(&mut self, index: usize, change: &Change) -> Result<(), String> {
        let step = &self.plan.steps()[index];
        let mut retried = false;
        loop {
            let request = Request::change(self.client.next_id(), change.clone());
            match self.client.call_with(&request, |_| {}) {
                Ok(answer) => {
                    self.observer.event(&ApplyEvent::Undone {
                        number: index + 1,
                        step,
                        change,
                        request_id: &request.id,
                        answer: &answer,
                    });
                    return if answer.status() == ResponseStatus::Ok {
                        Ok(())
                    } else {
                        Err(format!("{}: {}", change.describe(), answer.message))
                    };
                }
                Err(e) if !retried => {
                    retried = true;
                    if let Err(again) = self.client.reconnect() {
                        return Err(format!("{e}; {again}"));
                    }
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

fn lost(index: usize, error: ClientError, in_flight: &VecDeque<Flight>) -> Stop {
    Stop::Lost {
        index,
        error: Box::new(error),
        in_flight: in_flight.iter().map(|f| f.index).collect(),
        first_expected: in_flight.front().map_or(0, |f| f.expected),
    }
}

/// The values resources have just before each step: the live state, overlaid with what
/// earlier steps of the plan set.
struct Before<'a> {
    live: &'a State,
    listeners: BTreeMap<SocketAddr, Listener>,
    clusters: BTreeMap<ClusterId, Cluster>,
    backends: BTreeMap<BackendKey, Backend>,
    certificates: BTreeMap<Fingerprint, Certificate>,
}

/// The change undoing each step, or `None` if a step does not fit the live state (the plan
/// was made from another state).
pub fn inverses(
    steps: &[Step],
    live: &State,
    drain_timeout: Option<Duration>,
) -> Option<Vec<Change>> {
    let mut before = Before {
        live,
        listeners: BTreeMap::new(),
        clusters: BTreeMap::new(),
        backends: BTreeMap::new(),
        certificates: BTreeMap::new(),
    };
    steps
        .iter()
        .map(|s| before.inverse(&s.change, drain_timeout))
        .collect()
}

impl Before<'_> {
    fn inverse(&mut self, change: &Change, drain_timeout: Option<Duration>) -> Option<Change> {
        Some(match change {
            Change::AddListener(l) => {
                self.listeners.insert(l.address, l.clone());
                Change::RemoveListener(l.address)
            }
            Change::UpdateListener(l) => {
                let old = lookup(&self.listeners, &self.live.listeners, &l.address)?;
                self.listeners.insert(l.address, l.clone());
                Change::UpdateListener(old)
            }
            Change::RemoveListener(a) => {
                Change::AddListener(lookup(&self.listeners, &self.live.listeners, a)?)
            }
            Change::AddCluster(c) => {
                self.clusters.insert(c.id.clone(), c.clone());
                Change::RemoveCluster(c.id.clone())
            }
            Change::UpdateCluster(c) => {
                let old = lookup(&self.clusters, &self.live.clusters, &c.id)?;
                self.clusters.insert(c.id.clone(), c.clone());
                Change::UpdateCluster(old)
            }
            Change::RemoveCluster(id) => {
                Change::AddCluster(lookup(&self.clusters, &self.live.clusters, id)?)
            }
            Change::AddBackend(b) => {
                self.backends.insert(b.key.clone(), b.clone());
                Change::RemoveBackend {
                    key: b.key.clone(),
                    drain_timeout,
                }
            }
            Change::UpdateBackend(b) => {
                let old = lookup(&self.backends, &self.live.backends, &b.key)?;
                self.backends.insert(b.key.clone(), b.clone());
                Change::UpdateBackend(old)
            }
            Change::RemoveBackend { key, .. } => {
                Change::AddBackend(lookup(&self.backends, &self.live.backends, key)?)
            }
            Change::AddCertificate(c) => {
                self.certificates.insert(c.fingerprint, (**c).clone());
                Change::RemoveCertificate(c.fingerprint)
            }
            Change::RemoveCertificate(fp) => Change::AddCertificate(Box::new(lookup(
                &self.certificates,
                &self.live.certificates,
                fp,
            )?)),
            Change::ReplaceCertificate { old, new } => Change::ReplaceCertificate {
                old: new.fingerprint,
                new: Box::new(lookup(&self.certificates, &self.live.certificates, old)?),
            },
            Change::AddFrontend(f) => Change::RemoveFrontend(f.clone()),
            // The owner it had live (a plan updates a frontend at most once).
            Change::UpdateFrontend(f) => {
                Change::UpdateFrontend(self.live.frontends.get_key_value(f)?.0.clone())
            }
            Change::RemoveFrontend(f) => Change::AddFrontend(f.clone()),
        })
    }
}

fn lookup<K: Ord, V: Clone>(overlay: &BTreeMap<K, V>, live: &BTreeMap<K, V>, key: &K) -> Option<V> {
    overlay.get(key).or_else(|| live.get(key)).cloned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::address::{Address, Kind};
    use crate::diff::Action;
    use crate::plan::{Op, Phase};

    fn step(phase: Phase, change: Change) -> Step {
        Step {
            phase,
            op: Op::Add,
            address: Address::new(Kind::Cluster, "x"),
            change,
            part_of: Action::Add,
            note: None,
        }
    }

    #[test]
    fn a_drain_deadline_is_named_once() {
        let error = |message: &str| ApplyError::DrainDeadline {
            step: 3,
            address: "backend.shop/blue-1".into(),
            message: message.into(),
            applied: 2,
            remaining: 1,
        };
        // The engine's answer at a drain deadline (main_process::core), word for word.
        let text = error(
            "drain deadline reached: backend shop/blue-1 still has 2 live connection(s); \
             it stays removed",
        )
        .to_string();
        assert_eq!(text.matches("drain deadline reached").count(), 1, "{text}");
        assert_eq!(text.matches("stays removed").count(), 1, "{text}");
        assert!(text.starts_with("step 3 (backend.shop/blue-1): "), "{text}");
        assert!(
            text.contains("2 step(s) were applied, 1 were not"),
            "{text}"
        );
        // Any other proxy's wording still says what happened.
        let text = error("2 connections left").to_string();
        assert_eq!(text.matches("drain deadline reached").count(), 1, "{text}");
        assert!(text.contains("2 connections left"), "{text}");
    }

    #[test]
    fn an_owner_update_is_undone_to_the_live_owner() {
        let listener: SocketAddr = "127.0.0.1:18001".parse().unwrap();
        let route = weir_schema::Frontend {
            listener,
            hostname: Some("shop.test".into()),
            path: "/".into(),
            cluster: ClusterId("shop".into()),
            certificate: None,
            options: Default::default(),
            owner: None,
        };
        let mut live = State::new();
        for change in [
            Change::AddListener(Listener {
                address: listener,
                protocol: weir_schema::Protocol::Http,
                name: "web".into(),
                settings: Default::default(),
                owner: None,
            }),
            Change::AddCluster(Cluster::new("shop")),
            Change::AddFrontend(route.clone()),
        ] {
            live.apply_change(&change, None).unwrap();
        }
        let owned = weir_schema::Frontend {
            owner: Some(weir_schema::Owner("platform".into())),
            ..route.clone()
        };
        let steps = [step(Phase::FrontendsAdd, Change::UpdateFrontend(owned))];
        let undo = inverses(&steps, &live, None).unwrap();
        let [Change::UpdateFrontend(back)] = undo.as_slice() else {
            panic!("{undo:?}");
        };
        assert_eq!(back, &route);
        assert_eq!(back.owner, None, "the live owner, not the plan's");
        // A frontend the live state lacks: the plan was made from another state.
        let elsewhere = weir_schema::Frontend {
            hostname: Some("other.test".into()),
            ..route
        };
        let steps = [step(Phase::FrontendsAdd, Change::UpdateFrontend(elsewhere))];
        assert_eq!(inverses(&steps, &live, None), None);
    }

    #[test]
    fn batches_split_on_phase_and_drain() {
        let key = BackendKey {
            cluster: ClusterId("c".into()),
            id: weir_schema::BackendId("b".into()),
        };
        let drain = || Change::RemoveBackend {
            key: key.clone(),
            drain_timeout: None,
        };
        let steps = vec![
            step(Phase::ClustersAdd, Change::AddCluster(Cluster::new("a"))),
            step(Phase::ClustersAdd, Change::AddCluster(Cluster::new("b"))),
            step(Phase::BackendsRemove, drain()),
            step(Phase::BackendsRemove, drain()),
            step(
                Phase::ClustersRemove,
                Change::RemoveCluster(ClusterId("a".into())),
            ),
        ];
        assert_eq!(batches(&steps), vec![0..2, 2..3, 3..4, 4..5]);
    }
}
