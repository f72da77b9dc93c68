//! The file-descriptor budget: at start the soft `RLIMIT_NOFILE` is raised to the hard limit
//! (as nginx's `worker_rlimit_nofile` and HAProxy do on their own), and the operator is told
//! once when the limit cannot hold what `max_connections` promises.
//!
//! Left out of weir.toml, `max_connections` is 10,000 or what the limit holds, whichever is
//! less ([`default_max_connections`]), as HAProxy derives its `maxconn` from `ulimit -n`: a
//! default start never promises connections it has no fds for (common hard limits such as
//! 20,000 hold 9,936 a worker), so the worker's cap, not EMFILE, is what a flood meets (its
//! 503, and the oldest idle connections closed first). Only a value the operator set can be
//! too high, and that is warned about.
//!
//! A worker holds up to two fds per connection (the client's and the backend's) plus a
//! reserve (its channel, its poll, the listening sockets, probes, pooled connections being
//! closed). `RLIMIT_NOFILE` counts per process and every worker is a process, so the check is
//! per worker; the whole fleet is checked against the system's `fs.file-max`. Workers inherit
//! the raised limit across fork and exec.

use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};

/// Fds a worker needs besides two per connection.
pub const RESERVE: u64 = 128;

/// The soft limit before and after raising it to the hard one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raised {
    pub before: u64,
    pub after: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (no privilege needed for that).
pub fn raise() -> nix::Result<Raised> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft >= hard {
        return Ok(Raised {
            before: soft,
            after: soft,
        });
    }
    // An unlimited hard limit is refused as a soft one by Linux (nr_open caps it): fall back
    // to the system's per-process ceiling.
    let target = if hard == RLIM_INFINITY {
        nr_open().unwrap_or(soft).max(soft)
    } else {
        hard
    };
    setrlimit(Resource::RLIMIT_NOFILE, target, hard)?;
    Ok(Raised {
        before: soft,
        after: target,
    })
}

fn nr_open() -> Option<u64> {
    read_u64("/proc/sys/fs/nr_open")
}

/// The system-wide fd ceiling, if this system says.
pub fn file_max() -> Option<u64> {
    read_u64("/proc/sys/fs/file-max")
}

fn read_u64(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// `max_connections` when weir.toml leaves it out: `ceiling` (the default's 10,000), or as many
/// connections as `limit` holds at two fds each beside the reserve if that is less; at least 1
/// (a limit too low for even that gets [`shortfall`]'s warning).
pub fn default_max_connections(limit: u64, ceiling: usize) -> usize {
    let fits = limit.saturating_sub(RESERVE) / 2;
    usize::try_from(fits)
        .unwrap_or(usize::MAX)
        .clamp(1, ceiling.max(1))
}

/// What a worker with `max_connections` needs, per process.
pub fn per_worker(max_connections: usize) -> u64 {
    (max_connections as u64)
        .saturating_mul(2)
        .saturating_add(RESERVE)
}

/// The warning to log when `limit` (per process) or `file_max` (system-wide) is below what
/// `workers` workers of `max_connections` each need; `None` when both hold.
pub fn shortfall(
    limit: u64,
    file_max: Option<u64>,
    workers: usize,
    max_connections: usize,
) -> Option<String> {
    let need = per_worker(max_connections);
    if limit < need {
        return Some(format!(
            "the file descriptor limit ({limit} per process) is below what max_connections = \
             {max_connections} needs per worker (2 per connection + {RESERVE} = {need}): \
             connections past about {} per worker will be refused; raise the hard limit \
             (`ulimit -Hn`, systemd `LimitNOFILE=`) or lower max_connections",
            limit.saturating_sub(RESERVE) / 2
        ));
    }
    let total = need.saturating_mul(workers as u64);
    match file_max {
        Some(max) if max < total => Some(format!(
            "the system's file descriptor limit (fs.file-max = {max}) is below what {workers} \
             workers with max_connections = {max_connections} need ({total})"
        )),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn enough_fds_say_nothing() {
        assert_eq!(shortfall(1 << 20, Some(1 << 30), 8, 10_000), None);
        assert_eq!(shortfall(20_128, None, 8, 10_000), None);
    }

    #[test]
    fn the_default_fits_the_limit() {
        // A common hard limit: 10,000 would need 20,128.
        assert_eq!(default_max_connections(20_000, 10_000), 9_936);
        assert_eq!(shortfall(20_000, None, 2, 9_936), None);
        // Docker's and systemd's usual ones hold the whole default.
        assert_eq!(default_max_connections(1 << 20, 10_000), 10_000);
        assert_eq!(default_max_connections(524_288, 10_000), 10_000);
        assert_eq!(default_max_connections(20_128, 10_000), 10_000);
        assert_eq!(default_max_connections(1024, 10_000), 448);
        // Below the reserve: one connection, and the warning says why.
        assert_eq!(default_max_connections(64, 10_000), 1);
        assert!(shortfall(64, None, 1, 1).is_some());
    }

    #[test]
    fn too_few_per_process_names_the_numbers() {
        let w = shortfall(1024, None, 2, 10_000).unwrap();
        assert!(w.contains("1024 per process"), "{w}");
        assert!(w.contains("max_connections = 10000"), "{w}");
        assert!(w.contains("20128"), "{w}");
        assert!(w.contains("448 per worker"), "{w}");
    }

    #[test]
    fn too_few_for_the_fleet_names_file_max() {
        let w = shortfall(1 << 20, Some(50_000), 4, 10_000).unwrap();
        assert!(w.contains("fs.file-max = 50000"), "{w}");
        assert!(w.contains("80512"), "{w}");
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let raised = raise().unwrap();
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        assert_eq!(soft, raised.after);
        assert!(raised.after >= raised.before);
        assert!(hard == RLIM_INFINITY || soft == hard);
    }
}
