//! The only module that knows about `notify`: it watches a desired-state directory and turns
//! what the operating system reports into the loop's [`Event`]s.
//!
//! Two watches are kept. The directory itself is watched recursively. Its parent is watched
//! non-recursively, and only events naming the directory are kept from it: git-sync and
//! Kubernetes publish a new version by swapping a symlink, and a watch placed on the old
//! target would go silent. Whenever the directory's identity (device and inode of what the
//! path resolves to) changes, the recursive watch is placed again on what the path names now
//! and the loop is told to re-read everything.
//!
//! notify calls back on its own thread; a small forwarding thread owns the watchers so it can
//! re-place them, and ends when the loop's receiver is dropped.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;

use notify::event::{AccessKind, AccessMode, MetadataKind, ModifyKind};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};

use super::Event;

/// Why the watch could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("cannot watch {path}: {source}")]
    Watch {
        path: PathBuf,
        source: notify::Error,
    },
    #[error("cannot start the file watcher thread: {0}")]
    Thread(std::io::Error),
}

/// A running watch; it stops when dropped or when the loop's receiver goes away.
#[derive(Debug)]
pub struct FsWatch {
    // Dropping the sender wakes the forwarding thread, which drops the watchers.
    stop: Option<Sender<Raw>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Drop for FsWatch {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(Raw::Stop);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What the forwarding thread receives.
enum Raw {
    Dir(notify::Result<notify::Event>),
    Parent(notify::Result<notify::Event>),
    Stop,
}

/// Identity of what a path resolves to, so a swapped symlink or a re-created directory is seen.
fn identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Starts watching `dir` (a directory or a single file) and sends [`Event::FilesChanged`] and
/// [`Event::Rescan`] to `events`.
pub fn watch(dir: &Path, events: Sender<Event>) -> Result<FsWatch, FsError> {
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
    let (raw_tx, raw_rx) = mpsc::channel::<Raw>();
    // Taken before the watch is placed: a swap right after it must compare as a change.
    let watched = identity(&dir);

    let tx = raw_tx.clone();
    let mut dir_watcher = notify::recommended_watcher(move |e| {
        let _ = tx.send(Raw::Dir(e));
    })
    .map_err(|source| FsError::Watch {
        path: dir.clone(),
        source,
    })?;
    dir_watcher
        .watch(&dir, RecursiveMode::Recursive)
        .map_err(|source| FsError::Watch {
            path: dir.clone(),
            source,
        })?;

    // The parent watch is best effort: without it, only a symlink swap of the whole directory
    // goes unnoticed (the parent may be unreadable, or the directory may be `/`).
    let parent_watcher = dir.parent().and_then(|parent| {
        let tx = raw_tx.clone();
        let mut w = notify::recommended_watcher(move |e| {
            let _ = tx.send(Raw::Parent(e));
        })
        .ok()?;
        w.watch(parent, RecursiveMode::NonRecursive).ok()?;
        Some(w)
    });

    let thread = thread::Builder::new()
        .name("weir-watch-fs".into())
        .spawn({
            let dir = dir.clone();
            move || forward(dir, watched, dir_watcher, parent_watcher, raw_rx, events)
        })
        .map_err(FsError::Thread)?;
    Ok(FsWatch {
        stop: Some(raw_tx),
        thread: Some(thread),
    })
}

/// Whether an event can change what the directory says. Opening or reading a file cannot:
/// without this filter the loader's own reads would trigger the next reload, forever.
fn changes_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        // A read may update the access time; nothing a desired state depends on.
        EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)) => false,
        EventKind::Any
        | EventKind::Create(_)
        | EventKind::Modify(_)
        | EventKind::Remove(_)
        | EventKind::Other => true,
    }
}

/// Whether an event in the parent can mean the directory's entry now names something else.
fn replaces_entry(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Any
            | EventKind::Create(_)
            | EventKind::Remove(_)
            | EventKind::Modify(ModifyKind::Name(_))
            | EventKind::Other
    )
}

fn forward(
    dir: PathBuf,
    watched: Option<(u64, u64)>,
    mut dir_watcher: RecommendedWatcher,
    _parent_watcher: Option<RecommendedWatcher>,
    raw: Receiver<Raw>,
    events: Sender<Event>,
) {
    let mut current = watched;
    while let Ok(message) = raw.recv() {
        let event = match message {
            Raw::Stop => return,
            Raw::Dir(Ok(e)) if e.need_rescan() => {
                Event::Rescan("the file watcher lost events (queue overflow)".into())
            }
            Raw::Dir(Ok(e)) if !changes_content(&e.kind) => continue,
            Raw::Dir(Ok(e)) => Event::FilesChanged(e.paths),
            Raw::Dir(Err(e)) => Event::Rescan(format!("file watcher error: {e}")),
            Raw::Parent(Ok(e)) => {
                // Only the entry naming the directory matters (the parent may be busy), and
                // only when it is replaced: the loader's own reads of it must not count.
                let replaced = e.paths.iter().any(|p| p == &dir) && replaces_entry(&e.kind);
                if !(replaced || e.need_rescan()) {
                    continue;
                }
                Event::FilesChanged(vec![dir.clone()])
            }
            Raw::Parent(Err(_)) => continue,
        };
        // Check the directory is still what we watch before handing the event on, so the
        // reload that follows reads (and from now on watches) the new target.
        let now = identity(&dir);
        let replaced = now != current;
        if replaced {
            current = now;
            let _ = dir_watcher.unwatch(&dir);
            // If the path does not exist right now, the parent watch sees it come back.
            let _ = dir_watcher.watch(&dir, RecursiveMode::Recursive);
        }
        if events.send(event).is_err() {
            return;
        }
        if replaced
            && events
                .send(Event::Rescan(format!("{} was replaced", dir.display())))
                .is_err()
        {
            return;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use std::sync::mpsc::RecvTimeoutError;
    use std::time::{Duration, Instant};

    use notify::event::{CreateKind, RenameMode};

    use super::*;

    /// A fresh directory under the system's temp dir, removed when dropped.
    struct TempDir(PathBuf);
    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!(
                "weir-watch-fs-{name}-{}-{:?}",
                std::process::id(),
                Instant::now()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Waits for an event satisfying `check`, skipping others, for at most `timeout`.
    fn wait_for(rx: &Receiver<Event>, timeout: Duration, check: impl Fn(&Event) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(e) if check(&e) => return true,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return false,
            }
        }
    }

    #[test]
    fn only_events_that_can_change_content_count() {
        assert!(!changes_content(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(!changes_content(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(changes_content(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(changes_content(&EventKind::Create(CreateKind::File)));
        assert!(changes_content(&EventKind::Modify(ModifyKind::Name(
            RenameMode::Both
        ))));
        // In the parent, only what replaces the directory's entry counts.
        assert!(!replaces_entry(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(replaces_entry(&EventKind::Modify(ModifyKind::Name(
            RenameMode::To
        ))));
        assert!(replaces_entry(&EventKind::Create(CreateKind::Folder)));
    }

    #[test]
    fn a_write_is_seen_and_a_read_is_not() {
        let dir = TempDir::new("rw");
        std::fs::write(dir.0.join("a.yaml"), "x").unwrap();
        let (tx, rx) = mpsc::channel();
        let _watch = watch(&dir.0, tx).unwrap();
        std::fs::write(dir.0.join("b.yaml"), "y").unwrap();
        let b = dir.0.join("b.yaml");
        assert!(wait_for(&rx, Duration::from_secs(5), |e| matches!(
            e,
            Event::FilesChanged(paths) if paths.contains(&b)
        )));
        // Drain what the writes raised, then read: nothing may follow.
        while rx.recv_timeout(Duration::from_millis(200)).is_ok() {}
        let _ = std::fs::read_dir(&dir.0).unwrap().count();
        let _ = std::fs::read(dir.0.join("a.yaml")).unwrap();
        let _ = std::fs::read(&b).unwrap();
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(300)),
            Err(RecvTimeoutError::Timeout)
        );
    }

    #[test]
    fn a_symlink_swap_is_followed() {
        let root = TempDir::new("swap");
        for v in ["v1", "v2"] {
            std::fs::create_dir(root.0.join(v)).unwrap();
            std::fs::write(root.0.join(v).join("a.yaml"), v).unwrap();
        }
        let current = root.0.join("current");
        std::os::unix::fs::symlink("v1", &current).unwrap();
        let (tx, rx) = mpsc::channel();
        let _watch = watch(&current, tx).unwrap();

        let tmp = root.0.join(".current.tmp");
        std::os::unix::fs::symlink("v2", &tmp).unwrap();
        std::fs::rename(&tmp, &current).unwrap();
        assert!(
            wait_for(&rx, Duration::from_secs(5), |e| matches!(
                e,
                Event::Rescan(_)
            )),
            "the swap was not noticed"
        );
        // From now on the new target is watched.
        std::fs::write(root.0.join("v2/b.yaml"), "b").unwrap();
        let b = current.join("b.yaml");
        assert!(wait_for(&rx, Duration::from_secs(5), |e| matches!(
            e,
            Event::FilesChanged(paths) if paths.contains(&b)
        )));
    }
}
