//! Connecting a session to a backend, with bounded retries on other backends: the one
//! connect-and-retry sequence HTTP exchanges and byte pipes share.
//!
//! A [`Dial`] holds the session's [`Link`] and the backends its request tried. A connect in
//! progress either completes ([`Dial::poll`]), or fails or times out ([`Dial::retry`]): the
//! backend is marked failed (passive health), the link given back, and the next backend tried
//! until the attempt budget (`max_connect_attempts`) or the cluster's backends run out. A
//! request that failed on a stale pooled connection is replayed on a fresh one
//! ([`Dial::replay_fresh`]). Once a failure leaves no backend, the dial holds nothing:
//! [`Dial::release`] is then a no-op, so a link is never given back twice.

use std::time::Duration;

use super::context::Context;
use super::front::FrontIo;
use super::upstream::{Attempt, Link, NoBackend};

/// Whether a connect may take an idle pooled connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    Pooled,
    /// A new connection only: TCP pipes, and a replay after a pooled connection went stale.
    FreshOnly,
}

/// Where the dial's link stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialState {
    /// A non-blocking connect is under way; its deadline is the connect timeout.
    Connecting,
    Connected,
    /// Every try failed: no link is held any more.
    Gone,
}

/// What a step of connecting came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialed {
    /// The connect is still under way.
    Pending,
    /// Connected (just now, or at once through a pooled connection).
    Connected,
    /// The last try failed and another began (connecting, or on a pooled connection: see
    /// [`Dial::state`]); the session is to be driven again.
    Retrying,
    /// No backend is left to try; the dial is [`DialState::Gone`].
    Failed(NoBackend),
}

/// A session's connection to a backend of one cluster, and its tries so far.
#[derive(Debug)]
pub struct Dial {
    attempt: Attempt,
    link: Link,
    reuse: Reuse,
    state: DialState,
    connect_timeout: Duration,
}

impl Dial {
    /// Starts connecting to a backend of `cluster` (or takes a pooled connection). The
    /// caller sets the session's deadline: it may still be routing.
    pub fn start(
        cluster: usize,
        reuse: Reuse,
        io: &FrontIo,
        cx: &mut Context,
    ) -> Result<Dial, NoBackend> {
        let mut attempt = cx.upstream.attempt(cluster);
        let link = connect(&mut attempt, reuse, io, cx)?;
        let (connect_timeout, _) = cx.upstream.cluster_timeouts(cluster);
        Ok(Dial {
            attempt,
            link,
            reuse,
            state: if link.reused {
                DialState::Connected
            } else {
                DialState::Connecting
            },
            connect_timeout: connect_timeout.unwrap_or(cx.config.connect_timeout),
        })
    }

    pub fn link(&self) -> Link {
        self.link
    }

    /// The cluster's slab key, and the backend's while the link is held (for an access line).
    pub fn keys(&self) -> (usize, Option<usize>) {
        let backend = (self.state != DialState::Gone).then_some(self.link.backend);
        (self.attempt.cluster, backend)
    }

    pub fn state(&self) -> DialState {
        self.state
    }

    pub fn is_connected(&self) -> bool {
        self.state == DialState::Connected
    }

    /// How long a fresh connect may take.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// Checks a connect under way; a failed one is retried at once.
    pub fn poll(&mut self, io: &mut FrontIo, cx: &mut Context) -> Dialed {
        match self.state {
            DialState::Connected => return Dialed::Connected,
            DialState::Gone => return Dialed::Failed(NoBackend::ConnectFailed),
            DialState::Connecting => {}
        }
        match cx.upstream.check_connect(self.link) {
            None => Dialed::Pending,
            Some(Ok(())) => {
                self.state = DialState::Connected;
                cx.upstream.record_success(self.link.backend);
                Dialed::Connected
            }
            Some(Err(_)) => self.retry(io, cx),
        }
    }

    /// The connect under way failed (refused, or timed out): the backend is marked failed and
    /// the next one tried. A new connect arms the session's deadline at the connect timeout.
    pub fn retry(&mut self, io: &mut FrontIo, cx: &mut Context) -> Dialed {
        if self.state == DialState::Gone {
            return Dialed::Failed(NoBackend::ConnectFailed);
        }
        cx.upstream.record_failure(self.link.backend, cx.now);
        self.attempt.failures += 1;
        cx.upstream.release(self.link, false, cx.now, &cx.registry);
        match self.reconnect(io, cx) {
            Ok(()) => {
                cx.metrics.retries += 1;
                Dialed::Retrying
            }
            Err(no) => Dialed::Failed(no),
        }
    }

    /// Gives up the connection (a pooled one the backend had closed) and sends the request
    /// again on a fresh connection, to the same backend if it is still the best choice.
    pub fn replay_fresh(&mut self, io: &mut FrontIo, cx: &mut Context) -> Dialed {
        if self.state == DialState::Gone {
            return Dialed::Failed(NoBackend::ConnectFailed);
        }
        cx.upstream.release(self.link, false, cx.now, &cx.registry);
        cx.metrics.retries += 1;
        self.attempt.forget(self.link.backend);
        self.reuse = Reuse::FreshOnly;
        match self.reconnect(io, cx) {
            Ok(()) => Dialed::Retrying,
            Err(no) => Dialed::Failed(no),
        }
    }

    /// The next try, the old link being released already.
    fn reconnect(&mut self, io: &mut FrontIo, cx: &mut Context) -> Result<(), NoBackend> {
        match connect(&mut self.attempt, self.reuse, io, cx) {
            Ok(link) => {
                self.link = link;
                if link.reused {
                    self.state = DialState::Connected;
                } else {
                    self.state = DialState::Connecting;
                    io.deadline.at = cx.now + self.connect_timeout;
                }
                Ok(())
            }
            Err(no) => {
                self.state = DialState::Gone;
                Err(no)
            }
        }
    }

    /// Ends the session's hold on its link: pooled when `reusable`, else closed.
    pub fn release(&mut self, reusable: bool, cx: &mut Context) {
        if self.state != DialState::Gone {
            self.state = DialState::Gone;
            cx.upstream
                .release(self.link, reusable, cx.now, &cx.registry);
        }
    }
}

fn connect(
    attempt: &mut Attempt,
    reuse: Reuse,
    io: &FrontIo,
    cx: &mut Context,
) -> Result<Link, NoBackend> {
    cx.upstream.connect(
        attempt,
        io.key,
        reuse == Reuse::FreshOnly,
        cx.config.max_connect_attempts,
        cx.now,
        &cx.registry,
    )
}
