//! Saving and loading the state on disk, atomically.
//!
//! A save writes a private temporary file next to the target (`weir_schema::private_file`:
//! 0600, created exclusively under an unguessable name), fsyncs it, renames it over the target
//! and fsyncs the directory, so a crash at any point leaves either the old file or the new one,
//! never a mix. The format (header, checksum, snapshot) is `weir_schema::saved`'s; a corrupt or
//! truncated file is refused before anything is applied.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use weir_schema::saved::{self, SavedStateError};
use weir_schema::{Change, State};

use super::config::StateConfig;

/// Why a state could not be saved or loaded.
///
/// The io error is in the message, not a `source`, so a chain of causes says it once.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("cannot write saved state {path}: {error}")]
    Write { path: PathBuf, error: io::Error },
    #[error("cannot read saved state {path}: {error}")]
    Read { path: PathBuf, error: io::Error },
    #[error("refusing saved state {path}: {error}")]
    Corrupt {
        path: PathBuf,
        error: Box<SavedStateError>,
    },
}

/// Writes `state` to `path` atomically (mode 0600: certificates' keys are in it), through
/// [`weir_schema::private_file`]: an exclusive, no-symlink temp file with an unguessable name,
/// so nobody can plant a file or a link where the keys are about to be written.
pub fn save(state: &State, path: &Path) -> Result<(), PersistError> {
    weir_schema::private_file::write(path, &saved::encode(state)).map_err(|error| {
        PersistError::Write {
            path: path.to_owned(),
            error,
        }
    })
}

/// The `[state]` file kept up to date after every accepted change, when `auto_save` is on.
#[derive(Debug)]
pub struct AutoSave {
    path: Option<PathBuf>,
    /// The version on disk, as far as this process knows.
    saved_version: u64,
}

impl AutoSave {
    /// Saving per `settings`; `saved_version` is the version known to be on disk already.
    pub fn new(settings: &StateConfig, saved_version: u64) -> AutoSave {
        AutoSave {
            path: settings.path.clone().filter(|_| settings.auto_save),
            saved_version,
        }
    }

    /// Whether every change is saved before it goes live.
    pub fn is_on(&self) -> bool {
        self.path.is_some()
    }

    /// Saves `state` if saving is on and the file is behind. The core saves each change
    /// ahead of applying it ([`AutoSave::save_ahead`]), so this only writes at start and
    /// after anything that changed the state without a check.
    pub fn save(&mut self, state: &State) -> Result<(), PersistError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if self.saved_version == state.version {
            return Ok(());
        }
        save(state, path)?;
        self.saved_version = state.version;
        Ok(())
    }

    /// Saves the state `changes` would make of `live`, before any of them is applied: with
    /// saving on, a change that cannot be made durable is refused (the live state stays as
    /// it was), never acknowledged and then lost at the next restart. The changes were
    /// checked already; one that fails to apply here is refused all the same.
    pub fn save_ahead(&mut self, live: &State, changes: &[Change]) -> Result<(), String> {
        if !self.is_on() {
            return Ok(());
        }
        let mut next = live.clone();
        for change in changes {
            next.apply_change(change, None)
                .map_err(|e| format!("{}: {e}", change.describe()))?;
        }
        self.save(&next)
            .map_err(|e| format!("{e}; nothing was changed (state.auto_save is on)"))
    }
}

/// Reads and checks a saved state.
pub fn load(path: &Path) -> Result<State, PersistError> {
    let bytes = fs::read(path).map_err(|error| PersistError::Read {
        path: path.to_owned(),
        error,
    })?;
    saved::decode(&bytes).map_err(|error| PersistError::Corrupt {
        path: path.to_owned(),
        error: Box::new(error),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use weir_schema::{Change, Cluster, ClusterId, LoadBalancing};

    fn sample() -> State {
        let mut state = State::new();
        state
            .apply_change(
                &Change::AddCluster(Cluster {
                    owner: None,
                    id: ClusterId("shop".into()),
                    load_balancing: LoadBalancing::RoundRobin,
                    health_check: None,
                    connect_timeout: None,
                    response_timeout: None,
                }),
                None,
            )
            .unwrap();
        state
    }

    #[test]
    fn save_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        save(&sample(), &path).unwrap();
        let loaded = load(&path).unwrap();
        assert_eq!(loaded.fingerprint(), sample().fingerprint());
        assert_eq!(loaded.version, 1);
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_saved_state_is_private_even_over_a_world_readable_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        fs::write(&path, b"old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        // A link planted where the old code put its temporary file (a guessable name) is
        // neither followed nor overwritten.
        let victim = dir.path().join("victim");
        fs::write(&victim, b"untouched").unwrap();
        let planted = dir
            .path()
            .join(format!(".state.tmp.{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        save(&sample(), &path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(fs::read(&victim).unwrap(), b"untouched");
        assert_eq!(load(&path).unwrap().fingerprint(), sample().fingerprint());
    }

    #[test]
    fn truncated_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        save(&sample(), &path).unwrap();
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let e = load(&path).unwrap_err();
        assert!(e.to_string().contains("checksum"), "{e}");
    }
}
