//! The debouncer: turns a burst of file events into one reload decision.
//!
//! An editor's atomic save is three or four events (write a temp file, fsync, rename over the
//! original, chmod); a `git checkout` is hundreds. Reloading on each would plan against
//! half-written directories and flood the proxy with small plans. The debouncer waits for a
//! *quiet period* after the last event, but never longer than a *ceiling* after the first one,
//! so a constant trickle of writes (a log file someone put in the directory, a slow sync tool)
//! still gets applied.
//!
//! It is sans-io: it is told about events and the current time and answers with decisions; it
//! never reads the clock or the filesystem, so tests drive it with made-up instants.

use std::path::{Component, Path};
use std::time::{Duration, Instant};

/// Why a batch was released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// No event arrived for the quiet period.
    Quiet,
    /// Events kept coming; the ceiling since the first one was reached.
    Ceiling,
}

/// One batch of events, released as a single reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    /// How many relevant events were folded into it.
    pub events: usize,
    /// Whether the watcher lost events (overflow, error) during the batch. The reload reads
    /// the whole directory either way; this only changes what is logged.
    pub rescan: bool,
    pub release: Release,
}

/// Folds events into batches. See the module documentation.
#[derive(Debug, Clone)]
pub struct Debouncer {
    quiet: Duration,
    ceiling: Duration,
    pending: Option<Pending>,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    first: Instant,
    last: Instant,
    events: usize,
    rescan: bool,
}

impl Debouncer {
    /// `quiet`: the silence that ends a burst. `ceiling`: the longest a burst may delay a
    /// reload, counted from its first event (clamped to at least `quiet`).
    pub fn new(quiet: Duration, ceiling: Duration) -> Debouncer {
        Debouncer {
            quiet,
            ceiling: ceiling.max(quiet),
            pending: None,
        }
    }

    /// Records one relevant change seen at `now`.
    pub fn changed(&mut self, now: Instant) {
        self.record(now, false);
    }

    /// Records that the watcher lost track (overflow or error): the directory must be re-read.
    pub fn rescan(&mut self, now: Instant) {
        self.record(now, true);
    }

    fn record(&mut self, now: Instant, rescan: bool) {
        match &mut self.pending {
            Some(p) => {
                // Events are handled in arrival order, but a caller's clock may be coarse:
                // never let `last` move backwards.
                p.last = p.last.max(now);
                p.events += 1;
                p.rescan |= rescan;
            }
            None => {
                self.pending = Some(Pending {
                    first: now,
                    last: now,
                    events: 1,
                    rescan,
                })
            }
        }
    }

    /// When the pending batch is due, if there is one: the end of the quiet period, or the
    /// ceiling, whichever comes first.
    pub fn deadline(&self) -> Option<Instant> {
        self.pending
            .map(|p| (p.last + self.quiet).min(p.first + self.ceiling))
    }

    /// Whether a batch is waiting.
    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Releases the pending batch if it is due at `now`.
    pub fn poll(&mut self, now: Instant) -> Option<Batch> {
        let p = self.pending?;
        let release = if now >= p.last + self.quiet {
            Release::Quiet
        } else if now >= p.first + self.ceiling {
            Release::Ceiling
        } else {
            return None;
        };
        self.pending = None;
        Some(Batch {
            events: p.events,
            rescan: p.rescan,
            release,
        })
    }
}

/// Whether a changed path is noise that must not trigger a reload: editor backups and swap
/// files (`*~`, `.*.swp`/`.swo`/`.swx`, `.#*`, `#*#`, Vim's `4913` probe), `*.tmp` files, and
/// anything inside a `.git` directory (a checkout rewrites the index and objects; the
/// checked-out files themselves raise their own events).
///
/// `root` is the watched directory; only the part of `path` below it is inspected, so a
/// directory that itself lives under a dot-directory still works. Other hidden names are NOT
/// ignored: Kubernetes ConfigMaps swap a `..data` symlink to publish a new version.
pub fn is_ignored(root: &Path, path: &Path) -> bool {
    let relative = path.strip_prefix(root).unwrap_or(path);
    if relative
        .components()
        .any(|c| matches!(c, Component::Normal(name) if name == ".git"))
    {
        return true;
    }
    let Some(name) = relative.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    name.ends_with('~')
        || name.ends_with(".tmp")
        || name == "4913"
        || name.starts_with(".#")
        || (name.starts_with('#') && name.ends_with('#') && name.len() > 1)
        || (name.starts_with('.') && is_vim_swap(name))
}

/// `.name.swp`, and the `.swo`, `.swx`, ... Vim falls back to when one exists.
fn is_vim_swap(name: &str) -> bool {
    let Some((_, ext)) = name.rsplit_once('.') else {
        return false;
    };
    ext.len() == 3 && ext.starts_with("sw") && ext.as_bytes()[2].is_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUIET: Duration = Duration::from_millis(200);
    const CEILING: Duration = Duration::from_millis(2000);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn nothing_pending_means_no_deadline_and_no_batch() {
        let mut d = Debouncer::new(QUIET, CEILING);
        let t0 = Instant::now();
        assert_eq!(d.deadline(), None);
        assert_eq!(d.poll(t0 + ms(10_000)), None);
    }

    #[test]
    fn a_burst_is_released_once_after_the_quiet_period() {
        let mut d = Debouncer::new(QUIET, CEILING);
        let t0 = Instant::now();
        // An editor's atomic save: four events within a few milliseconds.
        for i in 0..4 {
            d.changed(t0 + ms(i));
        }
        assert_eq!(d.deadline(), Some(t0 + ms(3) + QUIET));
        assert_eq!(d.poll(t0 + ms(202)), None, "still inside the quiet period");
        let batch = d.poll(t0 + ms(203)).expect("due");
        assert_eq!(
            batch,
            Batch {
                events: 4,
                rescan: false,
                release: Release::Quiet
            }
        );
        assert_eq!(d.poll(t0 + ms(10_000)), None, "released only once");
        assert_eq!(d.deadline(), None);
    }

    #[test]
    fn each_event_extends_the_quiet_period() {
        let mut d = Debouncer::new(QUIET, CEILING);
        let t0 = Instant::now();
        d.changed(t0);
        d.changed(t0 + ms(150));
        assert_eq!(d.poll(t0 + ms(250)), None);
        assert_eq!(d.deadline(), Some(t0 + ms(350)));
        assert!(d.poll(t0 + ms(350)).is_some());
    }

    #[test]
    fn a_constant_trickle_is_released_at_the_ceiling() {
        let mut d = Debouncer::new(QUIET, CEILING);
        let t0 = Instant::now();
        let mut released = Vec::new();
        // One write every 100 ms for 5 s: the quiet period never elapses.
        for i in 0..50u64 {
            let now = t0 + ms(i * 100);
            if let Some(b) = d.poll(now) {
                released.push((now, b));
            }
            d.changed(now);
        }
        assert!(released.len() >= 2, "got {released:?}");
        let (at, first) = released[0];
        assert_eq!(first.release, Release::Ceiling);
        assert_eq!(at, t0 + CEILING, "released exactly at the ceiling");
        assert_eq!(first.events, 20);
    }

    #[test]
    fn the_deadline_is_the_earlier_of_quiet_and_ceiling() {
        let mut d = Debouncer::new(QUIET, CEILING);
        let t0 = Instant::now();
        d.changed(t0);
        d.changed(t0 + ms(1900));
        assert_eq!(d.deadline(), Some(t0 + CEILING));
    }

    #[test]
    fn a_rescan_is_carried_in_the_batch() {
        let mut d = Debouncer::new(QUIET, CEILING);
        let t0 = Instant::now();
        d.changed(t0);
        d.rescan(t0 + ms(1));
        let b = d.poll(t0 + ms(500)).expect("due");
        assert!(b.rescan);
        assert_eq!(b.events, 2);
    }

    #[test]
    fn a_ceiling_below_the_quiet_period_is_raised_to_it() {
        let mut d = Debouncer::new(QUIET, ms(50));
        let t0 = Instant::now();
        d.changed(t0);
        assert_eq!(d.deadline(), Some(t0 + QUIET));
    }

    #[test]
    fn editor_temp_and_swap_files_are_ignored() {
        let root = Path::new("/srv/routes");
        for noise in [
            "shop.yaml~",
            ".shop.yaml.swp",
            ".shop.yaml.swx",
            ".shop.yaml.swo",
            ".#shop.yaml",
            "#shop.yaml#",
            "4913",
            "shop.yaml.tmp",
            "apps/.shop.yaml.swp",
            ".git/index",
            ".git/objects/ab/cdef",
            "apps/.git/HEAD",
        ] {
            assert!(
                is_ignored(root, &root.join(noise)),
                "{noise} should be ignored"
            );
        }
    }

    #[test]
    fn real_files_and_configmap_links_are_not_ignored() {
        let root = Path::new("/home/me/.config/weir");
        for real in [
            "shop.yaml",
            "apps/shop.toml",
            "certs/shop.pem",
            "..data",
            "..2026_01_01_00_00_00.123/shop.yaml",
            ".gitignore",
            "swap.yaml",
            "#",
        ] {
            assert!(!is_ignored(root, &root.join(real)), "{real} should count");
        }
        // The watched directory itself (a symlink swap names it) counts too.
        assert!(!is_ignored(root, root));
    }
}
