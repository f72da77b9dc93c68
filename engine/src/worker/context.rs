//! What every session handler needs from its worker, split from the sessions themselves so a
//! handler can hold `&mut Session` and `&mut Context` at once.

use std::time::Instant;

use mio::Registry;

use super::buffer::BufferPool;
use super::http::date::HttpDate;
use super::metrics::Metrics;
use super::router::Router;
use super::upstream::Upstream;
use crate::channel::WorkerConfig;

/// The worker's shared parts, as session handlers see them.
#[derive(Debug)]
pub struct Context {
    /// The time of the current loop turn (one clock read per turn, not per operation).
    pub now: Instant,
    /// The `Date` field of the current second, brought up to date with `now`.
    pub date: HttpDate,
    pub registry: Registry,
    pub pool: BufferPool,
    pub upstream: Upstream,
    /// Routes to cluster slab keys.
    pub router: Router<usize>,
    pub metrics: Metrics,
    pub config: WorkerConfig,
    /// Soft stop: finish what is in flight, keep nothing alive.
    pub stopping: bool,
}
