//! Errors that say this process is out of something (file descriptors, kernel buffers, local
//! ports), not that a peer is at fault. A connect that fails this way says nothing about the
//! backend, so it never counts against its health: the request gets a 503 and the backend
//! stays in rotation. An accept that fails this way is retried after a pause rather than at
//! once, since nothing frees a descriptor between two tries of the same loop turn.

use std::io;

/// Whether `e` is a shortage of this process or machine rather than a peer's doing.
pub fn is_local_shortage(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::EMFILE        // this process's fd limit
                | libc::ENFILE  // the system's fd limit
                | libc::ENOBUFS // socket buffers
                | libc::ENOMEM
                | libc::ENOSPC  // epoll's max_user_watches
                | libc::EADDRNOTAVAIL // no local port left for a connect
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortages_are_told_from_peer_failures() {
        for errno in [
            libc::EMFILE,
            libc::ENFILE,
            libc::ENOBUFS,
            libc::EADDRNOTAVAIL,
        ] {
            assert!(is_local_shortage(&io::Error::from_raw_os_error(errno)));
        }
        for errno in [libc::ECONNREFUSED, libc::ETIMEDOUT, libc::EHOSTUNREACH] {
            assert!(!is_local_shortage(&io::Error::from_raw_os_error(errno)));
        }
        assert!(!is_local_shortage(&io::ErrorKind::WouldBlock.into()));
    }
}
