//! The listening sockets a worker accepts on, and accepting.
//!
//! A listener starts accepting (is registered in the poll) only once it has a route and the
//! batch of channel requests that brought the route is applied. A worker replaying the state
//! after a (re)start, or a plan that adds a listener before its frontends, thus leaves early
//! connections in the kernel's accept queue, shared with the other workers, instead of
//! answering them 404 from a half-loaded state.
//!
//! An accept that fails for want of fds (or memory) pauses its listener for [`ACCEPT_PAUSE`]:
//! it leaves the poll, and the connections queued meanwhile wait in the kernel (other
//! workers, with their own queues, go on). Retrying at once would fail the same way, and with
//! a level of readiness that never drops, spin; giving up until the next arrival would strand
//! the queue. Re-registering a paused listener raises its readiness again if anything is
//! queued, so the queue is served as soon as the pause ends.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use slab::Slab;
use weir_schema::Protocol as ListenerProtocol;

use super::context::Context;
use super::front::ListenerInfo;
use super::http::answers::{Answer, Status};
use super::per_ip::{IpSlot, PerIp};
use super::router::Router;
use super::shortage::is_local_shortage;
use super::token::token_listener;

/// How long a listener stops accepting after an accept failed for want of fds (nginx waits
/// 500 ms; the event loop's tick resumes it, so the pause lasts up to one tick more).
pub const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// A listening socket the worker accepts on.
#[derive(Debug)]
struct ListenerRt {
    socket: TcpListener,
    address: SocketAddr,
    info: Rc<ListenerInfo>,
    accepting: bool,
    /// Out of the poll after an accept failed for want of fds, until this instant.
    paused_until: Option<Instant>,
    /// Connections per client address, for `max_connections_per_ip`. Kept across setting
    /// updates; connections accepted while the listener had no limit are not in it.
    per_ip: PerIp,
}

/// A connection to serve, fresh from a listener's accept queue.
#[derive(Debug)]
pub struct Accepted {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub info: Rc<ListenerInfo>,
    pub ip_slot: Option<Box<IpSlot>>,
}

/// Every listener of the worker, by slab key (its token) and by address.
#[derive(Debug, Default)]
pub struct Listeners {
    slab: Slab<ListenerRt>,
    by_addr: HashMap<SocketAddr, usize>,
}

impl Listeners {
    pub fn new() -> Listeners {
        Listeners::default()
    }

    /// Keeps a listening socket; it accepts once it has a route (see the module docs).
    pub fn add(&mut self, socket: TcpListener, address: SocketAddr, info: Rc<ListenerInfo>) {
        let key = self.slab.insert(ListenerRt {
            socket,
            address,
            info,
            accepting: false,
            paused_until: None,
            per_ip: PerIp::new(),
        });
        self.by_addr.insert(address, key);
    }

    /// Swaps in new settings; returns the old ones, which open sessions may still hold.
    pub fn update(
        &mut self,
        address: SocketAddr,
        info: Rc<ListenerInfo>,
    ) -> Option<Rc<ListenerInfo>> {
        let &key = self.by_addr.get(&address)?;
        let l = self.slab.get_mut(key)?;
        Some(std::mem::replace(&mut l.info, info))
    }

    pub fn remove(&mut self, address: SocketAddr, registry: &Registry) {
        if let Some(key) = self.by_addr.remove(&address) {
            self.remove_key(key, registry);
        }
    }

    /// Closes every listener (a soft stop).
    pub fn remove_all(&mut self, registry: &Registry) {
        let keys: Vec<usize> = self.slab.iter().map(|(k, _)| k).collect();
        for key in keys {
            self.remove_key(key, registry);
        }
    }

    fn remove_key(&mut self, key: usize, registry: &Registry) {
        if self.slab.contains(key) {
            let mut l = self.slab.remove(key);
            self.by_addr.remove(&l.address);
            if l.accepting {
                let _ = registry.deregister(&mut l.socket);
            }
        }
    }

    /// Registers the listeners that now have a route, after a batch of requests is applied.
    pub fn start_accepting(&mut self, registry: &Registry, router: &Router<usize>) {
        for (key, l) in self.slab.iter_mut() {
            if l.accepting || l.paused_until.is_some() || !router.has_routes(l.address) {
                continue;
            }
            // On failure it stays unregistered and the next batch of requests tries again.
            if registry
                .register(
                    &mut l.socket,
                    Token(token_listener(key)),
                    Interest::READABLE,
                )
                .is_ok()
            {
                l.accepting = true;
            }
        }
    }

    /// Puts the listeners whose pause is over back into the poll (see the module docs).
    pub fn resume_paused(&mut self, now: Instant, registry: &Registry, router: &Router<usize>) {
        let mut resumed = false;
        for (_, l) in self.slab.iter_mut() {
            if l.paused_until.is_some_and(|t| t <= now) {
                l.paused_until = None;
                resumed = true;
            }
        }
        if resumed {
            self.start_accepting(registry, router);
        }
    }

    /// Takes listener `key` out of the poll for [`ACCEPT_PAUSE`].
    fn pause(&mut self, key: usize, cx: &mut Context) {
        if let Some(l) = self.slab.get_mut(key) {
            if l.accepting {
                let _ = cx.registry.deregister(&mut l.socket);
                l.accepting = false;
            }
            l.paused_until = Some(cx.now + ACCEPT_PAUSE);
        }
    }

    /// The next connection of listener `key` to serve, or `None` once its queue is empty.
    /// Connections over the cap (`live` sessions already) or while stopping are refused here:
    /// a plain HTTP client gets a best-effort 503.
    pub fn accept(&mut self, key: usize, cx: &mut Context, live: usize) -> Option<Accepted> {
        loop {
            let listener = self.slab.get(key)?;
            let (stream, peer) = match listener.socket.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // A connection reset before it was accepted: the next one may be fine.
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                // Out of fds (or anything else that would fail again at once): pause.
                Err(e) => {
                    if is_local_shortage(&e) {
                        cx.metrics.accept_shortages += 1;
                    }
                    self.pause(key, cx);
                    return None;
                }
            };
            let info = listener.info.clone();
            cx.metrics.connections_accepted += 1;
            if live >= cx.config.max_connections || cx.stopping {
                cx.metrics.connections_refused += 1;
                refuse(&stream, &info, cx);
                continue;
            }
            let ip_slot = match info.max_connections_per_ip {
                None => None,
                Some(max) => match listener.per_ip.take(peer.ip(), max) {
                    Some(slot) => Some(Box::new(slot)),
                    None => {
                        cx.metrics.connections_refused_per_ip += 1;
                        refuse(&stream, &info, cx);
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            return Some(Accepted {
                stream,
                peer,
                info,
                ip_slot,
            });
        }
    }
}

/// Refuses a connection just accepted: a plain HTTP client gets a best-effort 503, others
/// (and everyone while stopping) only the close.
fn refuse(stream: &TcpStream, info: &ListenerInfo, cx: &mut Context) {
    // Not on https: a plaintext answer is not something a TLS client can read.
    if info.protocol == ListenerProtocol::Http && !cx.stopping {
        // Best effort, non-blocking: a fresh socket has room for 200 bytes.
        let answer = Answer {
            status: Status::Unavailable,
            custom_body: info.answer_503.as_deref(),
            close: true,
            head_only: false,
        }
        .render(&cx.date);
        let _ = io::Write::write(&mut &*stream, &answer);
        cx.metrics.count_status(503);
        cx.metrics
            .count_server_error(weir_schema::metric_names::ServerError::Unavailable);
    }
}
