//! The one place the main process handles raw file descriptors across `fork`/`exec`.
//!
//! Every fd the main process opens is close-on-exec, so a worker never inherits another
//! worker's channel (which would keep that channel open after the main process died). The fds a
//! child must inherit are named explicitly: [`spawn_with_fds`] clears close-on-exec on exactly
//! those, in the forked child only, and the child takes them back with [`adopt`].
#![allow(unsafe_code)]

use std::collections::HashSet;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::Mutex;

/// Fds this process already took ownership of, so the same number is never owned twice.
static ADOPTED: Mutex<Option<HashSet<RawFd>>> = Mutex::new(None);

/// Starts `command` with `inherit` left open across `exec` (at the same numbers) and with an
/// signal mask of SIGUSR1 alone (the main process blocks the signals it waits for; children
/// must not inherit that, and a worker unblocks SIGUSR1 once it handles it).
pub fn spawn_with_fds(command: &mut Command, inherit: &[RawFd]) -> io::Result<Child> {
    let inherit = inherit.to_vec();
    // SAFETY: the closure runs in the forked child between fork and exec. It only calls fcntl,
    // sigemptyset, sigaddset and pthread_sigmask, which are async-signal-safe, and it
    // allocates nothing (`inherit` was allocated before the fork and is only read).
    unsafe {
        command.pre_exec(move || {
            for &fd in &inherit {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            // SIGUSR1 stays blocked until the worker has its handler (its default action
            // would kill a worker signalled between exec and the handler's installation).
            let mut set = std::mem::zeroed::<libc::sigset_t>();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGUSR1);
            libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
    command.spawn()
}

/// Takes ownership of an fd this process inherited from its parent (named on its command
/// line), and makes it close-on-exec again. Fails if the number is not an open fd or was
/// already adopted.
pub fn adopt(fd: RawFd) -> io::Result<OwnedFd> {
    if fd < 3 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("fd {fd} is a standard stream, not an inherited socket"),
        ));
    }
    let mut adopted = ADOPTED
        .lock()
        .map_err(|_| io::Error::other("fd registry poisoned"))?;
    let adopted = adopted.get_or_insert_with(HashSet::new);
    if adopted.contains(&fd) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("fd {fd} was already taken"),
        ));
    }
    // SAFETY: fcntl on any integer is safe; it only reports whether the fd is open.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above; setting FD_CLOEXEC on an open fd changes nothing else.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    adopted.insert(fd);
    // SAFETY: the fd is open (checked above), it was handed to this process by its parent for
    // this purpose, and the registry guarantees no other OwnedFd was made from it here.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn adopting_a_closed_or_standard_fd_fails() {
        assert!(adopt(1).is_err());
        assert!(adopt(999_999).is_err());
    }
}
