//! A worker: one thread, one mio event loop, every session of its share of the traffic.
//!
//! [`run`] is the entry point `weir worker` calls (and tests call in-process): it takes the
//! worker's settings and its end of the channel to the main process, then serves until told
//! to stop or until the channel closes. The worker holds a full copy of the routing state and
//! changes it only through requests on that channel; nothing in it assumes it is the only
//! worker (listening sockets come from the main process, one per worker per listener).
//!
//! Layout: a thin mio shell ([`event_loop`], [`control`], [`probe`]) around sans-io cores
//! ([`router`], [`balancer`], [`health`], [`http::parser`], [`http::body`], [`timer`]), with
//! the per-connection protocols in [`http::session`] and [`pipe`], backend connections and
//! pools in [`upstream`], and traffic memory in [`buffer`].

pub mod access_log;
pub mod back_stream;
pub mod balancer;
pub mod buffer;
pub mod context;
pub mod control;
pub mod dial;
pub mod error;
pub mod event_loop;
pub mod front;
pub mod handshake;
pub mod health;
pub mod http;
pub mod idle;
pub mod listeners;
#[cfg(test)]
mod memory;
pub mod metrics;
pub mod per_ip;
pub mod pipe;
pub mod probe;
pub mod report;
pub mod request_id;
#[cfg(test)]
mod rig;
pub mod router;
pub mod sessions;
pub mod shortage;
pub mod statsd;
pub mod timer;
pub mod tls;
pub mod token;
pub mod upstream;

use std::io;
use std::os::unix::net::UnixStream;
use std::time::{Instant, SystemTime};

use mio::Poll;
use rand::rngs::SmallRng;
use rand::SeedableRng;

use crate::channel::WorkerConfig;
use context::Context;
use control::Control;
pub use error::WorkerError;
use event_loop::Worker;

/// Runs a worker until a `HardStop`, the end of a `SoftStop`, or the channel closing.
pub fn run(config: WorkerConfig, channel: UnixStream) -> Result<(), WorkerError> {
    let poll = Poll::new().map_err(WorkerError::Poll)?;
    let registry = poll.registry().try_clone().map_err(WorkerError::Poll)?;
    let mut control = Control::new(channel, config.id).map_err(WorkerError::Channel)?;
    control.register(&registry).map_err(WorkerError::Channel)?;
    let (now, wall) = (Instant::now(), SystemTime::now());
    let access_log = access_log::AccessLog::new(config.access_log.as_ref(), config.id, now, wall)
        .map_err(WorkerError::AccessLog)?;
    let statsd = match config.statsd {
        Some(target) => Some(
            statsd::Statsd::new(target, &config.statsd_prefix, config.id, Instant::now())
                .map_err(WorkerError::Statsd)?,
        ),
        None => None,
    };
    let cx = Context {
        now,
        date: http::date::HttpDate::new(wall),
        registry,
        pool: buffer::BufferPool::new(config.buffer_size, config.max_buffers),
        upstream: upstream::Upstream::new(
            SmallRng::from_os_rng(),
            config.backend_idle_timeout,
            config.max_idle_per_backend,
        ),
        router: router::Router::new(),
        metrics: metrics::Metrics::default(),
        access_log,
        request_ids: request_id::RequestIds::new(),
        config,
        stopping: false,
        buffer_waiters: context::BufferWaiters::default(),
    };
    match Worker::new(poll, cx, control, statsd).run() {
        // The main process went away while we wrote to it: same as the channel closing.
        Err(WorkerError::Channel(e))
            if matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ) =>
        {
            Ok(())
        }
        other => other,
    }
}
