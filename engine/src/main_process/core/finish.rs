//! Finishing a forwarded request once no worker owes it an answer: the client's final answer
//! (OK, a drain's deadline FAILURE, the summed status or metrics), the save that makes an
//! accepted change durable, and the events it emits.

use super::*;

impl Core {
    pub(super) fn finish_all(&mut self, done: Vec<Pending>) {
        for pending in done {
            self.finish(pending);
        }
    }

    pub(super) fn finish(&mut self, pending: Pending) {
        let note = pending.silence_note(self.config.worker_answer_timeout());
        match pending.origin {
            Origin::Startup => {
                log::info("every worker has applied the state");
                self.life.report_ready();
            }
            Origin::WorkerUpgrade {
                client,
                request_id,
                old,
            } => {
                self.fleet
                    .retire(old, Instant::now() + self.config.stop_timeout());
                self.forget(old);
                self.answer(
                    client,
                    ok_with(
                        &request_id,
                        format!("worker {} replaced", old.slot),
                        self.state.version,
                    ),
                );
            }
            Origin::Admin { query, .. } => self.answer_admin(query, pending.aggregate),
            Origin::Client { client, request_id } => {
                let mut answer = match pending.aggregate {
                    Aggregate::Change { version } => {
                        self.save_state();
                        proto::Response::ok(&request_id, version)
                    }
                    // A worker met the drain deadline first: the client gets the deadline's
                    // FAILURE, as it would from the main process's own tick.
                    Aggregate::Drain { version, drain } if drain.expired() => {
                        self.save_state();
                        drain.deadline_answer(&request_id, version)
                    }
                    Aggregate::Drain { version, drain } => {
                        self.save_state();
                        let mut e = event(proto::EventKind::BackendDrained);
                        e.cluster_id = drain.backend.cluster.0.clone();
                        e.backend_id = drain.backend.id.0.clone();
                        e.state_version = version;
                        e.message = format!("backend {} drained", drain.backend);
                        self.emit(e);
                        proto::Response::ok(&request_id, version).with_content(drain.as_content())
                    }
                    Aggregate::Status { reports, .. } => {
                        proto::Response::ok(&request_id, self.state.version)
                            .with_content(Content::StatusReport(self.status_report(reports)))
                    }
                    Aggregate::Metrics(sums) => {
                        proto::Response::ok(&request_id, self.state.version)
                            .with_content(metrics_content(sums))
                    }
                    Aggregate::Barrier => proto::Response::ok(&request_id, self.state.version),
                };
                if let Some(note) = note {
                    answer.message = note;
                }
                self.answer(client, answer);
            }
        }
    }

    /// Brings the saved state up to date if it is behind. Changes were saved before they
    /// went live ([`AutoSave::save_ahead`]), so this normally writes nothing; a failure here
    /// can only be logged.
    pub(super) fn save_state(&mut self) {
        if let Err(e) = self.saved.save(&self.state) {
            log::error(&e.to_string());
        }
    }

    fn status_report(&self, reports: Vec<proto::WorkerStatus>) -> proto::ProxyStatus {
        proto::ProxyStatus {
            pid: std::process::id(),
            uptime_ms: u64::try_from(self.life.started().elapsed().as_millis()).unwrap_or(u64::MAX),
            state_version: self.state.version,
            state_fingerprint: self.state.fingerprint().to_hex(),
            workers: self.fleet.status(reports),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }
}
