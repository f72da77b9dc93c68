//! weir-engine: the proxy.
//!
//! The main process ([`main_process`]) owns the listening sockets, the command socket and the
//! authoritative State; workers ([`worker`]) each run one single-threaded mio event loop that
//! serves traffic with a full copy of the routing state. They talk over [`channel`].
//! [`log_limit`] rate-limits both kinds of process's per-connection error lines;
//! [`access_log_config`] is the `[access_log]` setting both read.

pub mod access_log_config;
pub mod channel;
pub mod log_limit;
pub mod main_process;
pub mod worker;
