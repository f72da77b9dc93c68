//! Requests forwarded to every worker and answered once all of them did: the aggregation
//! rules, without any I/O.
//!
//! The main process gives each forwarded request its own id (client ids may collide between
//! clients), remembers which workers still owe a final answer, and folds their answers together:
//! a change is OK once every worker applied it, a drain sums the workers' live connection counts,
//! a status gathers one report per worker, metrics sum counters by name. A worker that dies (or
//! is replaced) is simply dropped from the set: its replacement gets the whole state by replay.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use weir_schema::proto::{self, response::Content, ResponseStatus};
use weir_schema::BackendKey;

/// A connected command client.
pub type ClientId = u64;

/// One worker process: its slot and which start of that slot it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkerKey {
    pub slot: u32,
    pub generation: u64,
}

/// Who asked: a client's request, or the main process itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Client {
        client: ClientId,
        request_id: String,
    },
    /// The start-up barrier: every first worker has applied the replay.
    Startup,
    /// `UpgradeWorker`: the new worker is ready, so its predecessor may stop.
    WorkerUpgrade {
        client: ClientId,
        request_id: String,
        old: WorkerKey,
    },
}

/// A backend being drained: live connections per worker, and when the wait ends.
#[derive(Debug, Clone)]
pub struct Drain {
    pub backend: BackendKey,
    pub deadline: Instant,
    counts: BTreeMap<WorkerKey, u64>,
    reported: u64,
}

impl Drain {
    pub fn new(backend: BackendKey, deadline: Instant) -> Drain {
        Drain {
            backend,
            deadline,
            counts: BTreeMap::new(),
            reported: 0,
        }
    }

    /// Live connections to the backend over every worker.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    fn set(&mut self, worker: WorkerKey, live: u64) {
        self.counts.insert(worker, live);
    }

    /// The new total if it changed since it was last reported.
    fn progress(&mut self) -> Option<u64> {
        let total = self.total();
        (total != self.reported).then(|| {
            self.reported = total;
            total
        })
    }

    pub fn as_content(&self) -> Content {
        Content::Drain(proto::DrainProgress {
            cluster_id: self.backend.cluster.0.clone(),
            backend_id: self.backend.id.0.clone(),
            live_connections: self.total(),
        })
    }
}

/// What is being aggregated.
#[derive(Debug, Clone)]
pub enum Aggregate {
    /// A change: OK at `version` once every worker applied it.
    Change {
        version: u64,
    },
    /// `RemoveBackend` (already out of the state at `version`).
    Drain {
        version: u64,
        drain: Drain,
    },
    Status(Vec<proto::WorkerStatus>),
    Metrics(BTreeMap<String, u64>),
    /// Nothing to fold: done once every worker answered.
    Barrier,
}

/// What the core should do after a worker's answer.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// Nothing to tell anyone yet.
    Wait,
    /// Send this intermediate answer to the client.
    Progress(proto::Response),
    /// The worker refused what the main process accepted: it diverged and must be replaced.
    Diverged(String),
}

/// A forwarded request waiting for workers.
#[derive(Debug, Clone)]
pub struct Pending {
    pub origin: Origin,
    pub waiting: BTreeSet<WorkerKey>,
    pub aggregate: Aggregate,
}

impl Pending {
    pub fn new(
        origin: Origin,
        waiting: impl IntoIterator<Item = WorkerKey>,
        aggregate: Aggregate,
    ) -> Pending {
        Pending {
            origin,
            waiting: waiting.into_iter().collect(),
            aggregate,
        }
    }

    /// Folds in one answer of `worker`.
    pub fn on_answer(&mut self, worker: WorkerKey, answer: &proto::Response) -> Outcome {
        if !self.waiting.contains(&worker) {
            return Outcome::Wait;
        }
        let status = answer.status();
        if status == ResponseStatus::Failure {
            self.waiting.remove(&worker);
            return match self.aggregate {
                Aggregate::Change { .. } | Aggregate::Drain { .. } | Aggregate::Barrier => {
                    Outcome::Diverged(answer.message.clone())
                }
                // A worker that cannot report is not a diverged worker; report without it.
                Aggregate::Status(_) | Aggregate::Metrics(_) => Outcome::Wait,
            };
        }
        let last = status != ResponseStatus::Processing;
        if last {
            self.waiting.remove(&worker);
        }
        let request_id = self.request_id().to_owned();
        match &mut self.aggregate {
            Aggregate::Drain { version, drain } => {
                let live = match (&answer.content, last) {
                    (_, true) => 0,
                    (Some(Content::Drain(d)), false) => d.live_connections,
                    (_, false) => return Outcome::Wait,
                };
                drain.set(worker, live);
                if self.waiting.is_empty() {
                    return Outcome::Wait;
                }
                match drain.progress() {
                    Some(total) => Outcome::Progress(
                        proto::Response::processing(
                            &request_id,
                            format!(
                                "draining backend {}: {total} live connection(s)",
                                drain.backend
                            ),
                            *version,
                        )
                        .with_content(drain.as_content()),
                    ),
                    None => Outcome::Wait,
                }
            }
            Aggregate::Status(reports) => {
                if let Some(Content::StatusReport(report)) = &answer.content {
                    reports.extend(report.workers.iter().cloned().map(|mut w| {
                        w.id = worker.slot;
                        w
                    }));
                }
                Outcome::Wait
            }
            Aggregate::Metrics(sums) => {
                if let Some(Content::Metrics(metrics)) = &answer.content {
                    for c in &metrics.counters {
                        let sum = sums.entry(c.name.clone()).or_default();
                        *sum = sum.saturating_add(c.value);
                    }
                }
                Outcome::Wait
            }
            Aggregate::Change { .. } | Aggregate::Barrier => Outcome::Wait,
        }
    }

    /// `worker` is gone (crashed, replaced, retired): stop waiting for it.
    pub fn forget(&mut self, worker: WorkerKey) {
        if self.waiting.remove(&worker) {
            if let Aggregate::Drain { drain, .. } = &mut self.aggregate {
                // Its connections died with it.
                drain.set(worker, 0);
            }
        }
    }

    pub fn is_done(&self) -> bool {
        self.waiting.is_empty()
    }

    /// The id the client's answers carry ("" for the main process's own requests).
    pub fn request_id(&self) -> &str {
        match &self.origin {
            Origin::Client { request_id, .. } | Origin::WorkerUpgrade { request_id, .. } => {
                request_id
            }
            Origin::Startup => "",
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;
    use weir_schema::{BackendId, ClusterId};

    const A: WorkerKey = WorkerKey {
        slot: 0,
        generation: 1,
    };
    const B: WorkerKey = WorkerKey {
        slot: 1,
        generation: 1,
    };

    fn origin() -> Origin {
        Origin::Client {
            client: 1,
            request_id: "r1".into(),
        }
    }

    fn drain_answer(live: u64) -> proto::Response {
        proto::Response::processing("m1", "", 0).with_content(Content::Drain(
            proto::DrainProgress {
                live_connections: live,
                ..Default::default()
            },
        ))
    }

    #[test]
    fn a_change_is_done_when_every_worker_answered() {
        let mut p = Pending::new(origin(), [A, B], Aggregate::Change { version: 3 });
        assert_eq!(p.on_answer(A, &proto::Response::ok("m1", 0)), Outcome::Wait);
        assert!(!p.is_done());
        p.on_answer(B, &proto::Response::ok("m1", 0));
        assert!(p.is_done());
    }

    #[test]
    fn a_worker_refusing_a_change_diverged() {
        let mut p = Pending::new(origin(), [A], Aggregate::Change { version: 3 });
        let outcome = p.on_answer(A, &proto::Response::failure("m1", "boom", 0));
        assert_eq!(outcome, Outcome::Diverged("boom".into()));
        assert!(p.is_done());
    }

    #[test]
    fn drain_counts_are_summed_and_reported_when_they_change() {
        let backend = BackendKey {
            cluster: ClusterId("c".into()),
            id: BackendId("b".into()),
        };
        let drain = Drain::new(backend, Instant::now() + Duration::from_secs(5));
        let mut p = Pending::new(origin(), [A, B], Aggregate::Drain { version: 2, drain });
        let Outcome::Progress(r) = p.on_answer(A, &drain_answer(2)) else {
            panic!("expected progress")
        };
        assert_eq!(r.id, "r1");
        assert_eq!(r.status(), ResponseStatus::Processing);
        let Outcome::Progress(r) = p.on_answer(B, &drain_answer(1)) else {
            panic!("expected progress")
        };
        let Some(Content::Drain(d)) = r.content else {
            panic!("drain content")
        };
        assert_eq!(d.live_connections, 3);
        // Same total: nothing new to say.
        assert_eq!(p.on_answer(B, &drain_answer(1)), Outcome::Wait);
        p.on_answer(A, &proto::Response::ok("m1", 0));
        p.forget(B);
        assert!(p.is_done());
        let Aggregate::Drain { drain, .. } = &p.aggregate else {
            panic!()
        };
        assert_eq!(drain.total(), 0);
    }

    #[test]
    fn metrics_are_summed_by_name() {
        let mut p = Pending::new(origin(), [A, B], Aggregate::Metrics(BTreeMap::new()));
        let answer = proto::Response::ok("m", 0).with_content(Content::Metrics(proto::Metrics {
            counters: vec![proto::Counter {
                name: "http.requests".into(),
                value: 5,
            }],
        }));
        p.on_answer(A, &answer);
        p.on_answer(B, &answer);
        let Aggregate::Metrics(sums) = &p.aggregate else {
            panic!()
        };
        assert_eq!(sums["http.requests"], 10);
    }
}
