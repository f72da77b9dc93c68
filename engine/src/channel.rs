//! The channel between the main process and one worker: a unix stream socketpair carrying
//! framed protobuf messages both ways, and listening sockets passed with SCM_RIGHTS.
//!
//! The rules both sides keep:
//! - main → worker: framed [`proto::Request`]s. Every `AddListener` frame is sent by
//!   [`send_with_fd`] with the listener's socket attached to the frame's first byte, so the
//!   worker, which reads with [`recv_with_fds`], finds the fds in the same order as the
//!   `AddListener` requests and takes the oldest one for each.
//! - worker → main: framed [`proto::Response`]s. Each request is answered with its id: `OK`,
//!   `FAILURE`, or `PROCESSING` (drains) followed later by a final answer. Messages the worker
//!   sends on its own (events such as a backend going down) have an empty id and carry
//!   `content.event`.
//! - the worker is started as `weir worker --id N --channel-fd FD --config JSON`, where JSON is
//!   a [`WorkerConfig`]; the main process then replays the whole state on the channel.
//!
//! [`proto::Request`]: weir_schema::proto::Request
//! [`proto::Response`]: weir_schema::proto::Response
#![allow(unsafe_code)]

use std::collections::VecDeque;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use serde::{Deserialize, Serialize};

use crate::access_log_config::AccessLogConfig;

/// Settings a worker runs with, handed over on its command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// The worker's index (0-based), stable across restarts of that slot.
    pub id: u32,
    /// Size of one traffic buffer, in bytes.
    pub buffer_size: usize,
    /// Cap on buffers in the pool; with the connection cap, it bounds memory.
    pub max_buffers: usize,
    /// Cap on live client connections in this worker; over it HTTP gets a fast 503 and TCP a
    /// close.
    pub max_connections: usize,
    /// Defaults used where a listener or cluster sets no value.
    #[serde(with = "millis")]
    pub front_timeout: Duration,
    #[serde(with = "millis")]
    pub tunnel_timeout: Duration,
    #[serde(with = "millis")]
    pub request_timeout: Duration,
    #[serde(with = "millis")]
    pub connect_timeout: Duration,
    #[serde(with = "millis")]
    pub response_timeout: Duration,
    /// How long an idle pooled backend connection is kept before the worker closes it
    /// (nginx's upstream `keepalive_timeout`, HAProxy's `pool-purge-delay`). Shorter than
    /// most backends' own keep-alive timeout, so the proxy rather than the backend closes it.
    #[serde(with = "millis")]
    pub backend_idle_timeout: Duration,
    /// How many backends a request may try to connect to before it gets a 503.
    pub max_connect_attempts: u32,
    /// Most idle keep-alive connections this worker keeps to one backend (0: none, every
    /// request opens its own).
    pub max_idle_per_backend: usize,
    /// Where the worker writes its access lines (`None`: no access log).
    pub access_log: Option<AccessLogConfig>,
    /// Where to send statsd datagrams (`None`: no statsd).
    pub statsd: Option<std::net::SocketAddr>,
    /// The statsd name prefix.
    pub statsd_prefix: String,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            id: 0,
            buffer_size: 16 * 1024,
            max_buffers: 16 * 1024,
            max_connections: 10_000,
            front_timeout: Duration::from_secs(60),
            // HAProxy's recommended `timeout tunnel`: long enough for a quiet WebSocket.
            tunnel_timeout: Duration::from_secs(3600),
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            response_timeout: Duration::from_secs(30),
            backend_idle_timeout: Duration::from_secs(30),
            max_connect_attempts: 3,
            max_idle_per_backend: 512,
            access_log: None,
            statsd: None,
            statsd_prefix: "weir".to_owned(),
        }
    }
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// Most fds one `recvmsg` accepts; the main process sends one per message.
const MAX_FDS_PER_READ: usize = 8;

/// Sends `bytes` on a unix stream with `fd` attached (SCM_RIGHTS). Blocking sockets only: a
/// partial send of the first bytes would detach the fd from the frame, so the rest of the
/// bytes are written after the fd has gone with the first part.
pub fn send_with_fd(socket: &impl AsRawFd, bytes: &[u8], fd: RawFd) -> io::Result<()> {
    let fds = [fd];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(bytes)];
    let sent = loop {
        match sendmsg::<()>(socket.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None) {
            Ok(n) => break n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(io::Error::from(e)),
        }
    };
    let mut rest = &bytes[sent..];
    while !rest.is_empty() {
        let iov = [IoSlice::new(rest)];
        match sendmsg::<()>(socket.as_raw_fd(), &iov, &[], MsgFlags::empty(), None) {
            Ok(n) => rest = &rest[n..],
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(io::Error::from(e)),
        }
    }
    Ok(())
}

/// Reads what is available from a unix stream into `buf`, queueing any fds that came with it.
/// Returns the number of bytes read (0 at end of stream).
pub fn recv_with_fds(
    socket: &impl AsRawFd,
    buf: &mut [u8],
    fds: &mut VecDeque<OwnedFd>,
) -> io::Result<usize> {
    let mut cmsg_space = nix::cmsg_space!([RawFd; MAX_FDS_PER_READ]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = loop {
        match recvmsg::<()>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg_space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => break msg,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(io::Error::from(e)),
        }
    };
    let bytes = msg.bytes;
    for cmsg in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(received) = cmsg {
            for raw in received {
                // SAFETY: the kernel just installed `raw` in this process for this message;
                // nothing else knows it, so this OwnedFd is its only owner.
                fds.push_back(unsafe { OwnedFd::from_raw_fd(raw) });
            }
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn fds_arrive_in_order_with_their_frames() {
        let (a, b) = UnixStream::pair().expect("socketpair");
        let l1 = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let l2 = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        send_with_fd(&a, b"first", l1.as_raw_fd()).expect("send");
        send_with_fd(&a, b"second", l2.as_raw_fd()).expect("send");
        let mut fds = VecDeque::new();
        let mut buf = [0u8; 64];
        let mut got = Vec::new();
        while got.len() < 11 {
            let n = recv_with_fds(&b, &mut buf, &mut fds).expect("recv");
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"firstsecond");
        assert_eq!(fds.len(), 2);
        let first = std::net::TcpListener::from(fds.pop_front().expect("fd"));
        assert_eq!(
            first.local_addr().expect("addr"),
            l1.local_addr().expect("addr")
        );
    }

    #[test]
    fn config_round_trips_as_json() {
        let config = WorkerConfig {
            id: 3,
            statsd: Some(([127, 0, 0, 1], 8125).into()),
            ..WorkerConfig::default()
        };
        let json = serde_json::to_string(&config).expect("encode");
        let back: WorkerConfig = serde_json::from_str(&json).expect("decode");
        assert_eq!(config, back);
    }
}
