//! Listening sockets: each listener is opened once per worker slot with SO_REUSEPORT, and the
//! main process keeps every fd for as long as the listener exists.
//!
//! SO_REUSEPORT gives each worker its own accept queue, balanced by the kernel; but it would
//! also let a second proxy (or any program of the same user asking for it) join an address
//! Weir listens on, and take a share of its connections. So an address is probed first with
//! a plain bind, without SO_REUSEPORT, which fails if anything at all is bound there
//! ([`probe_free`]); only then is the group opened. Weir's own sockets never need the probe
//! again: restarted workers and a new main process (upgrade) take over the same fds.
//!
//! Keeping the fds is what lets a crashed worker's replacement take over the very same socket,
//! accept queue included, and what lets a new main process inherit them on upgrade: a listening
//! socket is never closed while its listener is in the state.

use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use weir_schema::Listener;

/// How long an address this process closed is still taken for its own: its workers close
/// their copies of the sockets only as they apply the removal, and a plan that recreates a
/// listener (a protocol change) pipelines the new AddListener right behind.
const RECLAIM_WINDOW: Duration = Duration::from_secs(60);

/// Pending connections a listening socket queues while its worker is busy or restarting.
const BACKLOG: i32 = 1024;

/// Opens one non-blocking, listening, SO_REUSEPORT socket on `address`.
pub fn bind(address: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    if address.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Fails with `AddrInUse` if any socket, of this process or another, is bound to `address`.
/// The probe binds without SO_REUSEPORT (a socket bound that way conflicts with every other
/// one on the address, reuseport or not) and closes at once without listening. SO_REUSEADDR
/// only lets it past connections of an earlier listener lingering in TIME_WAIT.
pub fn probe_free(address: SocketAddr) -> io::Result<()> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    if address.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    match socket.bind(&address.into()) {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("{e}: another proxy or program holds this address"),
        )),
        other => other,
    }
}

/// Every listening socket, per address and worker slot.
#[derive(Debug, Default)]
pub struct Listeners {
    sockets: BTreeMap<SocketAddr, Vec<TcpListener>>,
    /// Addresses closed here lately, and when (see [`RECLAIM_WINDOW`]).
    released: BTreeMap<SocketAddr, Instant>,
    /// `shared_listeners`: no probe, another proxy's SO_REUSEPORT group may be joined.
    shared: bool,
}

impl Listeners {
    /// No sockets yet; `shared` lets addresses be shared with other processes (see
    /// `Config::shared_listeners`).
    pub fn new(shared: bool) -> Listeners {
        Listeners {
            shared,
            ..Listeners::default()
        }
    }

    /// Opens `address` once for each of `slots` workers, if nothing else is bound to it; on
    /// any failure nothing is kept.
    pub fn open(&mut self, address: SocketAddr, slots: usize) -> io::Result<()> {
        // A port Weir already listens on at another IP (127.0.0.1:80 beside 0.0.0.0:80) would
        // fail the probe against Weir's own group: there only SO_REUSEPORT's own rule holds.
        let now = Instant::now();
        self.released
            .retain(|_, closed| now.duration_since(*closed) < RECLAIM_WINDOW);
        let shares_port = self.sockets.keys().any(|a| a.port() == address.port());
        if !self.shared && !shares_port && !self.released.contains_key(&address) {
            probe_free(address)?;
        }
        let sockets = (0..slots)
            .map(|_| bind(address))
            .collect::<io::Result<Vec<_>>>()?;
        self.sockets.insert(address, sockets);
        Ok(())
    }

    /// Opens each of `listeners` for `slots` workers; if one fails, the ones opened here are
    /// closed again and the failing listener is returned with its error.
    pub fn open_each<'a>(
        &mut self,
        listeners: impl IntoIterator<Item = &'a Listener>,
        slots: usize,
    ) -> Result<(), (&'a Listener, io::Error)> {
        let mut opened = Vec::new();
        for listener in listeners {
            if let Err(e) = self.open(listener.address, slots) {
                for address in &opened {
                    self.close(address);
                }
                return Err((listener, e));
            }
            opened.push(listener.address);
        }
        Ok(())
    }

    /// Takes sockets inherited from a previous main process.
    pub fn adopt(&mut self, address: SocketAddr, fds: Vec<OwnedFd>) {
        self.sockets
            .insert(address, fds.into_iter().map(TcpListener::from).collect());
    }

    /// Closes every socket of `address`.
    pub fn close(&mut self, address: &SocketAddr) {
        if self.sockets.remove(address).is_some() {
            self.released.insert(*address, Instant::now());
        }
    }

    /// Closes every socket (stop: no new connection is queued anywhere).
    pub fn close_all(&mut self) {
        self.sockets.clear();
    }

    /// The socket of `address` for worker `slot`.
    pub fn fd(&self, address: &SocketAddr, slot: usize) -> Option<RawFd> {
        self.sockets
            .get(address)
            .and_then(|s| s.get(slot))
            .map(AsRawFd::as_raw_fd)
    }

    /// Every address with the raw fds of its sockets, in slot order (for an upgrade hand-over).
    pub fn all_fds(&self) -> Vec<(SocketAddr, Vec<RawFd>)> {
        self.sockets
            .iter()
            .map(|(a, s)| (*a, s.iter().map(AsRawFd::as_raw_fd).collect()))
            .collect()
    }

    /// How many slots `address` has sockets for.
    #[cfg(test)]
    pub fn slots(&self, address: &SocketAddr) -> usize {
        self.sockets.get(address).map_or(0, Vec::len)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn one_address_opens_once_per_slot() {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = probe.local_addr().unwrap();
        drop(probe);
        let mut listeners = Listeners::default();
        listeners.open(address, 3).unwrap();
        assert_eq!(listeners.slots(&address), 3);
        let fds: Vec<_> = (0..3).map(|i| listeners.fd(&address, i).unwrap()).collect();
        assert_eq!(fds.len(), 3);
        assert!(std::net::TcpStream::connect(address).is_ok());
        listeners.close(&address);
        assert!(listeners.fd(&address, 0).is_none());
    }

    #[test]
    fn a_port_another_reuseport_group_holds_fails_to_open() {
        // What another proxy's listener looks like: SO_REUSEPORT, listening.
        let other = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let address = other.local_addr().unwrap();
        let mut listeners = Listeners::default();
        let e = listeners.open(address, 2).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        assert!(e.to_string().contains("another proxy or program"), "{e}");
        assert!(listeners.fd(&address, 0).is_none());
        // Once it is gone the address opens, and a closed listener's address opens again.
        drop(other);
        listeners.open(address, 2).unwrap();
        listeners.close(&address);
        listeners.open(address, 2).unwrap();
    }

    #[test]
    fn a_port_held_without_reuseport_fails_to_open() {
        let holder = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut listeners = Listeners::default();
        assert!(listeners.open(holder.local_addr().unwrap(), 2).is_err());
    }
}
