//! What every session handler needs from its worker, split from the sessions themselves so a
//! handler can hold `&mut Session` and `&mut Context` at once.

use std::time::Instant;

use mio::Registry;

use super::access_log::AccessLog;
use super::buffer::{Buf, BufferPool};
use super::front::FrontIo;
use super::http::date::HttpDate;
use super::metrics::Metrics;
use super::request_id::RequestIds;
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
    pub access_log: AccessLog,
    /// Ids for the requests and sessions this worker serves (the log's, the backend's field).
    pub request_ids: RequestIds,
    pub config: WorkerConfig,
    /// Soft stop: finish what is in flight, keep nothing alive.
    pub stopping: bool,
    /// Sessions that stopped for want of a buffer, to drive again once one is free.
    pub buffer_waiters: BufferWaiters,
}

/// Sessions (key, serial) the pool refused a buffer. With edge-triggered readiness the bytes
/// such a session left unread bring no new event, so the worker drives it again once a
/// buffer comes back, rather than leaving it to its timeout.
#[derive(Debug, Default)]
pub struct BufferWaiters(Vec<(usize, u64)>);

impl BufferWaiters {
    /// A buffer from `pool` for `io`'s session, or `None` with the session listed to be
    /// driven again once one is free.
    pub fn get(&mut self, pool: &mut BufferPool, io: &mut FrontIo) -> Option<Buf> {
        let buf = pool.get();
        if buf.is_none() {
            self.wait(io);
        }
        buf
    }

    fn wait(&mut self, io: &mut FrontIo) {
        if !io.waiting_for_buffer {
            io.waiting_for_buffer = true;
            self.0.push((io.key, io.serial));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every waiter so far; the caller clears each one's `waiting_for_buffer` as it drives it.
    pub fn take(&mut self) -> Vec<(usize, u64)> {
        std::mem::take(&mut self.0)
    }
}

/// What driving a session decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Waiting for readiness or a timer.
    Wait,
    /// Done: tear it down.
    Close,
}
