//! The core's side of the admin HTTP endpoint: a page's metrics asked of every live worker, as
//! for `weir metrics`, and handed back with a snapshot of the state. Read-only: nothing here
//! touches the state or a worker's settings.

use super::*;
use crate::main_process::admin::{Reply, Snapshot};
use crate::main_process::input::AdminPage;

impl Core {
    pub(super) fn on_admin(&mut self, query: u64, page: AdminPage) {
        let keys: Vec<WorkerKey> = self.fleet.live().collect();
        let mid = self.requests.new_id();
        self.send_to(
            &keys,
            &mid,
            proto::request::Kind::QueryMetrics(proto::QueryMetrics {}),
        );
        self.track(
            mid,
            Pending::new(
                Origin::Admin { query, page },
                keys,
                Aggregate::Metrics(Default::default()),
            ),
        );
    }

    pub(super) fn answer_admin(&mut self, query: u64, aggregate: Aggregate) {
        let Some(admin) = &self.admin else {
            return;
        };
        let metrics = match aggregate {
            Aggregate::Metrics(sums) => match metrics_content(sums) {
                Content::Metrics(metrics) => metrics,
                _ => proto::Metrics::default(),
            },
            _ => proto::Metrics::default(),
        };
        let workers = self.fleet.live().count();
        let snapshot = Snapshot::of(&self.state, workers, self.last_change.clone());
        admin.reply(Reply {
            query,
            metrics,
            snapshot,
        });
    }
}
