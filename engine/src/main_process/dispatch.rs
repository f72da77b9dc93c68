//! Requests forwarded to every worker and answered once all of them did: the pending-request
//! table ([`Requests`]) and the aggregation rules, without any I/O.
//!
//! The main process gives each forwarded request its own id (client ids may collide between
//! clients), remembers which workers still owe a final answer, and folds their answers together:
//! a change is OK once every worker applied it, a drain sums the workers' live connection counts,
//! a status gathers one report per worker, metrics fold counters by name and histograms bucket by
//! bucket ([`MetricSums`]). A worker that dies (or
//! is replaced) is simply dropped from the set: its replacement gets the whole state by replay.
//!
//! A worker that is alive but hung (stopped, stuck) would otherwise hold every request forever,
//! so each one records when it was asked and which workers answered at all: a worker that owes
//! its *first* answer past the deadline is silent (see [`Pending::overdue`]). A query then goes
//! on without it and says so; a change, drain or barrier drops it from the set like a dead
//! worker. In both cases the core then replaces it (kill, restart with the full state
//! replayed): a hung worker's share of new connections would wait in an unserved accept queue. Only the first answer counts, so a drain reporting progress is not silent: its length
//! is bounded by its own drain deadline.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use weir_schema::proto::{self, response::Content, ResponseStatus};
use weir_schema::BackendKey;

use super::input::{AdminPage, ClientId, WorkerKey};
use super::metric_sums::MetricSums;

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
    /// A request on the admin HTTP endpoint (`query` is the admin thread's number for it).
    Admin { query: u64, page: AdminPage },
}

/// A backend being drained: live connections per worker, and when the wait ends.
#[derive(Debug, Clone)]
pub struct Drain {
    pub backend: BackendKey,
    pub deadline: Instant,
    counts: BTreeMap<WorkerKey, u64>,
    reported: u64,
    /// A worker reached its own drain deadline with connections still live.
    expired: bool,
}

impl Drain {
    pub fn new(backend: BackendKey, deadline: Instant) -> Drain {
        Drain {
            backend,
            deadline,
            counts: BTreeMap::new(),
            reported: 0,
            expired: false,
        }
    }

    /// Whether the drain ended at a deadline rather than at zero connections.
    pub fn expired(&self) -> bool {
        self.expired
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

    /// The failure a drain's client gets when its deadline passed (the backend stays removed).
    pub fn deadline_answer(&self, request_id: &str, version: u64) -> proto::Response {
        let message = format!(
            "drain deadline reached: backend {} still has {} live connection(s); it stays removed",
            self.backend,
            self.total()
        );
        proto::Response::failure(request_id, message, version).with_content(self.as_content())
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
    /// A status report; `version` is the main state version when the workers were asked.
    Status {
        version: u64,
        reports: Vec<proto::WorkerStatus>,
    },
    Metrics(MetricSums),
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

/// What to do about a worker that stayed silent past the deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Silence {
    /// A query: answered without the worker, which is flagged in the answer (the core
    /// replaces the worker afterwards all the same).
    Skipped,
    /// A change (or drain, or barrier): the worker must be replaced, then forgotten.
    Replace,
}

/// A forwarded request waiting for workers.
#[derive(Debug, Clone)]
pub struct Pending {
    pub origin: Origin,
    pub waiting: BTreeSet<WorkerKey>,
    pub aggregate: Aggregate,
    /// When the workers were asked: the deadline for a first answer runs from here.
    pub asked: Instant,
    /// Workers that answered at least once (a drain's PROCESSING counts).
    answered: BTreeSet<WorkerKey>,
    /// Slots left out of a query's answer because their worker stayed silent.
    pub silent: BTreeSet<u32>,
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
            asked: Instant::now(),
            answered: BTreeSet::new(),
            silent: BTreeSet::new(),
        }
    }

    /// The workers still owing their first answer `limit` after they were asked.
    pub fn overdue(&self, now: Instant, limit: Duration) -> Vec<WorkerKey> {
        if now.saturating_duration_since(self.asked) < limit {
            return Vec::new();
        }
        self.waiting.difference(&self.answered).copied().collect()
    }

    /// `worker` stayed silent past the deadline. A query stops waiting for it at once and
    /// reports it; anything else leaves it in the set for the core to forget.
    pub fn on_silent(&mut self, worker: WorkerKey) -> Silence {
        if !matches!(
            self.aggregate,
            Aggregate::Status { .. } | Aggregate::Metrics(_)
        ) {
            return Silence::Replace;
        }
        if self.waiting.remove(&worker) {
            self.silent.insert(worker.slot);
            if let Aggregate::Status { reports, .. } = &mut self.aggregate {
                reports.push(proto::WorkerStatus {
                    id: worker.slot,
                    unresponsive: true,
                    ..proto::WorkerStatus::default()
                });
            }
        }
        Silence::Skipped
    }

    /// The message of a query's answer when workers were left out of it.
    pub fn silence_note(&self, limit: Duration) -> Option<String> {
        if self.silent.is_empty() {
            return None;
        }
        let slots: Vec<String> = self.silent.iter().map(u32::to_string).collect();
        Some(format!(
            "worker(s) {} did not answer within {} ms: left out of this answer",
            slots.join(", "),
            limit.as_millis()
        ))
    }

    /// Folds in one answer of `worker`.
    pub fn on_answer(&mut self, worker: WorkerKey, answer: &proto::Response) -> Outcome {
        if !self.waiting.contains(&worker) {
            return Outcome::Wait;
        }
        let answered_before = !self.answered.insert(worker);
        let status = answer.status();
        if status == ResponseStatus::Failure {
            self.waiting.remove(&worker);
            return match &mut self.aggregate {
                // After its PROCESSING, a worker's FAILURE to a drain is its own drain deadline
                // (it runs the same timeout, and may see it before the main process's tick
                // does): that worker's drain is over, its connections go on. Not a divergence:
                // replacing the worker would cut the very requests the deadline leaves running.
                Aggregate::Drain { drain, .. } if answered_before => {
                    drain.expired = true;
                    Outcome::Wait
                }
                Aggregate::Change { .. } | Aggregate::Drain { .. } | Aggregate::Barrier => {
                    Outcome::Diverged(answer.message.clone())
                }
                // A worker that cannot report is not a diverged worker; report without it.
                Aggregate::Status { .. } | Aggregate::Metrics(_) => Outcome::Wait,
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
            Aggregate::Status { version, reports } => {
                if let Some(Content::StatusReport(report)) = &answer.content {
                    // The worker's own counter counts its replay, not the main's changes; but
                    // it answers in order, so it has applied all the main process had
                    // forwarded when it asked: report that version instead.
                    reports.extend(report.workers.iter().cloned().map(|mut w| {
                        w.id = worker.slot;
                        w.state_version = *version;
                        w
                    }));
                }
                Outcome::Wait
            }
            Aggregate::Metrics(sums) => {
                if let Some(Content::Metrics(metrics)) = &answer.content {
                    sums.add(metrics);
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
            Origin::Startup | Origin::Admin { .. } => "",
        }
    }
}

impl Pending {
    /// The failure a drain's client gets when its deadline passed (the backend stays removed).
    pub fn drain_deadline_answer(&self) -> Option<(ClientId, proto::Response)> {
        let (Origin::Client { client, request_id }, Aggregate::Drain { version, drain }) =
            (&self.origin, &self.aggregate)
        else {
            return None;
        };
        Some((*client, drain.deadline_answer(request_id, *version)))
    }
}

/// A metrics answer's content: the folded counters and histograms, by name.
pub fn metrics_content(sums: MetricSums) -> Content {
    Content::Metrics(sums.into_proto())
}

/// Every forwarded request still waiting for workers, by the id the main process gave it.
///
/// The table only folds answers in and hands back the requests that are complete; answering
/// the clients is the core's part.
#[derive(Debug, Default)]
pub struct Requests {
    pending: HashMap<String, Pending>,
    next_id: u64,
}

/// What one worker's answer did to its request.
#[derive(Debug)]
pub struct Answered {
    pub outcome: Outcome,
    /// The client that asked, for a progress answer.
    pub client: Option<ClientId>,
    /// The request, if that was the last answer it waited for.
    pub done: Option<Pending>,
}

/// Workers found silent past the deadline by [`Requests::silent`].
#[derive(Debug, Default)]
pub struct Silent {
    /// Silent on a query, which was answered without them.
    pub skipped: BTreeSet<WorkerKey>,
    /// Silent on a change, a drain or a barrier.
    pub replace: BTreeSet<WorkerKey>,
    /// Requests that no longer wait for anyone.
    pub done: Vec<Pending>,
}

impl Requests {
    /// A fresh id for a request forwarded to workers (client ids may collide between clients).
    pub fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!("m{}", self.next_id)
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Waits for `pending` under `id`, or returns it at once if it waits for nobody.
    pub fn track(&mut self, id: String, pending: Pending) -> Option<Pending> {
        if pending.is_done() {
            return Some(pending);
        }
        self.pending.insert(id, pending);
        None
    }

    /// Folds in `worker`'s answer to request `id`; `None` for an unknown id.
    pub fn answer(
        &mut self,
        id: &str,
        worker: WorkerKey,
        answer: &proto::Response,
    ) -> Option<Answered> {
        let pending = self.pending.get_mut(id)?;
        let outcome = pending.on_answer(worker, answer);
        let client = match pending.origin {
            Origin::Client { client, .. } => Some(client),
            Origin::Startup | Origin::WorkerUpgrade { .. } | Origin::Admin { .. } => None,
        };
        let done = if pending.is_done() {
            self.pending.remove(id)
        } else {
            None
        };
        Some(Answered {
            outcome,
            client,
            done,
        })
    }

    /// Stops waiting for `worker` anywhere; returns the requests that now wait for nobody.
    pub fn forget(&mut self, worker: WorkerKey) -> Vec<Pending> {
        for pending in self.pending.values_mut() {
            pending.forget(worker);
        }
        self.take_done()
    }

    /// Takes the drains whose deadline has passed.
    pub fn expired_drains(&mut self, now: Instant) -> Vec<Pending> {
        self.take(
            |p| matches!(&p.aggregate, Aggregate::Drain { drain, .. } if drain.deadline <= now),
        )
    }

    /// Finds the `quiet` workers that owe a first answer past `limit`: queries go on without
    /// them, anything else reports them to be replaced.
    pub fn silent(&mut self, now: Instant, limit: Duration, quiet: &BTreeSet<WorkerKey>) -> Silent {
        let mut silent = Silent::default();
        for pending in self.pending.values_mut() {
            for key in pending.overdue(now, limit) {
                if !quiet.contains(&key) {
                    continue;
                }
                match pending.on_silent(key) {
                    Silence::Skipped => silent.skipped.insert(key),
                    Silence::Replace => silent.replace.insert(key),
                };
            }
        }
        silent.done = self.take_done();
        silent
    }

    fn take_done(&mut self) -> Vec<Pending> {
        self.take(Pending::is_done)
    }

    fn take(&mut self, which: impl Fn(&Pending) -> bool) -> Vec<Pending> {
        let ids: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| which(p))
            .map(|(id, _)| id.clone())
            .collect();
        ids.iter()
            .filter_map(|id| self.pending.remove(id))
            .collect()
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
    fn a_worker_meeting_its_drain_deadline_has_not_diverged() {
        let backend = || BackendKey {
            cluster: ClusterId("c".into()),
            id: BackendId("b".into()),
        };
        let drain = Drain::new(backend(), Instant::now() + Duration::from_secs(5));
        let mut p = Pending::new(origin(), [A, B], Aggregate::Drain { version: 2, drain });
        p.on_answer(A, &drain_answer(1));
        p.on_answer(B, &drain_answer(0));
        let deadline = proto::Response::failure("m1", "drain timeout", 2);
        assert_eq!(p.on_answer(A, &deadline), Outcome::Wait);
        assert_eq!(p.on_answer(B, &proto::Response::ok("m1", 2)), Outcome::Wait);
        assert!(p.is_done());
        let Aggregate::Drain { drain, .. } = &p.aggregate else {
            panic!("drain")
        };
        assert!(drain.expired());
        assert_eq!(drain.total(), 1, "the expired worker's live count is kept");
        // A FAILURE as a worker's first answer is still a refusal of the change.
        let drain = Drain::new(backend(), Instant::now() + Duration::from_secs(5));
        let mut p = Pending::new(origin(), [A], Aggregate::Drain { version: 2, drain });
        let refused = proto::Response::failure("m1", "no such backend", 2);
        assert_eq!(
            p.on_answer(A, &refused),
            Outcome::Diverged("no such backend".into())
        );
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
        let mut p = Pending::new(origin(), [A, B], Aggregate::Metrics(MetricSums::default()));
        let answer = proto::Response::ok("m", 0).with_content(Content::Metrics(proto::Metrics {
            counters: vec![proto::Counter {
                name: "http.requests".into(),
                value: 5,
            }],
            ..Default::default()
        }));
        p.on_answer(A, &answer);
        p.on_answer(B, &answer);
        let Aggregate::Metrics(sums) = &p.aggregate else {
            panic!()
        };
        assert_eq!(sums.counter("http.requests"), Some(10));
    }
    fn status_answer(worker_version: u64) -> proto::Response {
        proto::Response::ok("m", worker_version).with_content(Content::StatusReport(
            proto::ProxyStatus {
                workers: vec![proto::WorkerStatus {
                    id: 9,
                    pid: 100,
                    state_version: worker_version,
                    ..Default::default()
                }],
                ..Default::default()
            },
        ))
    }

    const LIMIT: Duration = Duration::from_millis(500);

    /// A pending request asked long enough ago for its deadline to have passed.
    fn asked_long_ago(mut p: Pending) -> Pending {
        p.asked = Instant::now() - Duration::from_secs(1);
        p
    }

    #[test]
    fn a_status_goes_on_without_a_silent_worker_and_flags_it() {
        let status = Aggregate::Status {
            version: 7,
            reports: Vec::new(),
        };
        let mut p = Pending::new(origin(), [A, B], status);
        p.on_answer(A, &status_answer(2));
        // Not overdue before the deadline.
        assert!(p.overdue(Instant::now(), LIMIT).is_empty());
        let mut p = asked_long_ago(p);
        assert_eq!(p.overdue(Instant::now(), LIMIT), [B]);
        assert_eq!(p.on_silent(B), Silence::Skipped);
        assert!(p.is_done());
        // A late answer from the silent worker changes nothing.
        p.on_answer(B, &status_answer(2));
        let Aggregate::Status { reports, .. } = &p.aggregate else {
            panic!()
        };
        assert_eq!(reports.len(), 2);
        let a = reports.iter().find(|w| w.id == 0).unwrap();
        assert!(!a.unresponsive);
        assert_eq!(a.pid, 100);
        // The main's version when asked, not the worker's own counter.
        assert_eq!(a.state_version, 7);
        let b = reports.iter().find(|w| w.id == 1).unwrap();
        assert!(b.unresponsive);
        assert_eq!(b.state_version, 0);
        let note = p.silence_note(LIMIT).unwrap();
        assert!(
            note.contains("worker(s) 1 ") && note.contains("500 ms"),
            "{note}"
        );
    }

    #[test]
    fn metrics_are_summed_over_the_workers_that_answered() {
        let mut p = asked_long_ago(Pending::new(
            origin(),
            [A, B],
            Aggregate::Metrics(MetricSums::default()),
        ));
        let answer = proto::Response::ok("m", 0).with_content(Content::Metrics(proto::Metrics {
            counters: vec![proto::Counter {
                name: "http.requests".into(),
                value: 5,
            }],
            ..Default::default()
        }));
        p.on_answer(B, &answer);
        for silent in p.overdue(Instant::now(), LIMIT) {
            assert_eq!(p.on_silent(silent), Silence::Skipped);
        }
        assert!(p.is_done());
        assert_eq!(p.silent, BTreeSet::from([0]));
        let Aggregate::Metrics(sums) = &p.aggregate else {
            panic!()
        };
        assert_eq!(sums.counter("http.requests"), Some(5));
        assert!(Pending::new(origin(), [A], Aggregate::Barrier)
            .silence_note(LIMIT)
            .is_none());
    }

    #[test]
    fn a_silent_worker_on_a_change_is_to_be_replaced() {
        let mut p = asked_long_ago(Pending::new(
            origin(),
            [A, B],
            Aggregate::Change { version: 3 },
        ));
        p.on_answer(A, &proto::Response::ok("m1", 0));
        assert_eq!(p.overdue(Instant::now(), LIMIT), [B]);
        assert_eq!(p.on_silent(B), Silence::Replace);
        // Still owed until the core has replaced (and forgotten) the worker.
        assert!(!p.is_done());
        p.forget(B);
        assert!(p.is_done());
    }

    #[test]
    fn a_draining_worker_that_answered_is_not_silent() {
        let backend = BackendKey {
            cluster: ClusterId("c".into()),
            id: BackendId("b".into()),
        };
        let drain = Drain::new(backend, Instant::now() + Duration::from_secs(60));
        let mut p = asked_long_ago(Pending::new(
            origin(),
            [A, B],
            Aggregate::Drain { version: 2, drain },
        ));
        p.on_answer(A, &drain_answer(4));
        // A is still draining (owes its final answer) but answered: only B is silent.
        assert_eq!(p.overdue(Instant::now(), LIMIT), [B]);
        assert_eq!(p.on_silent(B), Silence::Replace);
    }

    #[test]
    fn the_table_hands_back_requests_once_nobody_owes_an_answer() {
        let mut table = Requests::default();
        let (m1, m2) = (table.new_id(), table.new_id());
        assert_ne!(m1, m2);
        // Waiting for nobody: done at once, never stored.
        let none: [WorkerKey; 0] = [];
        assert!(table
            .track(m1.clone(), Pending::new(origin(), none, Aggregate::Barrier))
            .is_some());
        assert!(table.is_empty());
        let change = Aggregate::Change { version: 1 };
        assert!(table
            .track(m1.clone(), Pending::new(origin(), [A, B], change.clone()))
            .is_none());
        assert!(table
            .track(m2.clone(), Pending::new(origin(), [B], change))
            .is_none());
        let answered = table.answer(&m1, A, &proto::Response::ok(&m1, 0)).unwrap();
        assert_eq!(answered.client, Some(1));
        assert!(answered.done.is_none());
        assert!(table
            .answer("unknown", A, &proto::Response::ok("", 0))
            .is_none());
        // B dies: both requests now wait for nobody and come back, once.
        let done = table.forget(B);
        assert_eq!(done.len(), 2);
        assert!(table.is_empty());
        assert!(table.answer(&m1, A, &proto::Response::ok(&m1, 0)).is_none());
    }

    #[test]
    fn the_table_takes_drains_past_their_deadline() {
        let backend = BackendKey {
            cluster: ClusterId("c".into()),
            id: BackendId("b".into()),
        };
        let now = Instant::now();
        let mut table = Requests::default();
        for (id, deadline) in [("m1", now), ("m2", now + Duration::from_secs(60))] {
            let drain = Drain::new(backend.clone(), deadline);
            let pending = Pending::new(origin(), [A], Aggregate::Drain { version: 2, drain });
            assert!(table.track(id.into(), pending).is_none());
        }
        let expired = table.expired_drains(now);
        assert_eq!(expired.len(), 1);
        let (client, answer) = expired[0].drain_deadline_answer().unwrap();
        assert_eq!((client, answer.id.as_str()), (1, "r1"));
        assert_eq!(answer.status(), ResponseStatus::Failure);
        assert!(!table.is_empty());
    }
}
