//! weir-engine: the proxy.
//!
//! The main process ([`main_process`]) owns the listening sockets, the command socket and the
//! authoritative State; workers ([`worker`]) each run one single-threaded mio event loop that
//! serves traffic with a full copy of the routing state. They talk over [`channel`].

pub mod channel;
pub mod main_process;
pub mod worker;
