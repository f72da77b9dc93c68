//! Writing a file only its owner may read: saved plans and states hold private keys.
//!
//! [`write`] never writes through the target: it creates a new temporary file next to it with
//! `O_CREAT | O_EXCL | O_NOFOLLOW` and mode 0600 (so a planted file or symlink under that name
//! is refused, not followed or reused), writes and fsyncs it, renames it over the target and
//! fsyncs the directory. The target therefore ends up 0600 whatever mode an earlier file of
//! that name had, and a crash leaves the old file or the new one, never a mix. A missing parent
//! directory is created 0700.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Mode of the files [`write`] makes.
pub const FILE_MODE: u32 = 0o600;
/// Mode of the directories [`write`] makes.
pub const DIR_MODE: u32 = 0o700;

/// Attempts at a fresh temporary name before giving up (a name is taken only by a crash
/// leftover or by someone racing us).
const TEMP_ATTEMPTS: u32 = 16;

/// Writes `contents` to `path`, readable and writable by its owner only.
pub fn write(path: &Path, contents: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    if !dir.exists() {
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(&dir)?;
    }
    let (tmp, mut file) = create_temp(&dir, &name.to_string_lossy())?;
    let result = (|| {
        // The umask can only take bits away from 0600; this makes it exactly 0600.
        file.set_permissions(Permissions::from_mode(FILE_MODE))?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        // The rename is durable only once the directory entry is.
        File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn create_temp(dir: &Path, name: &str) -> io::Result<(PathBuf, File)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut last = io::Error::from(io::ErrorKind::AlreadyExists);
    for _ in 0..TEMP_ATTEMPTS {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.{}.{n}.{nanos:x}.tmp", std::process::id()));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
        {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_new_file_is_0600_in_a_new_0700_directory() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("keys/plan.json");
        write(&path, b"secret").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"secret");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&root.path().join("keys")), 0o700);
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(root.path().join("keys")).unwrap().count(), 1);
    }

    #[test]
    fn an_existing_world_readable_file_ends_up_0600() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("plan.json");
        fs::write(&path, b"old").unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        write(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn a_symlink_at_the_target_is_replaced_not_followed() {
        let root = tempfile::tempdir().unwrap();
        let elsewhere = root.path().join("elsewhere");
        fs::write(&elsewhere, b"untouched").unwrap();
        let path = root.path().join("plan.json");
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        write(&path, b"new").unwrap();
        assert_eq!(fs::read(&elsewhere).unwrap(), b"untouched");
        assert!(!fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(mode(&path), 0o600);
    }
}
