//! Desired-state files: a directory (or one file) of YAML/TOML merged into one [`State`].
//!
//! (Stub: the loader is being written; the API below is settled.)

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::model::BackendKey;
use crate::state::State;

/// A place in a desired-state file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
    /// 1-based.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// One problem found while loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    /// Where it is; `None` for problems with no place (an unreadable directory).
    pub location: Option<Location>,
    /// The field concerned, as a path (`clusters[0].backends[1].address`), when there is one.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(location) = &self.location {
            write!(f, "{location}: ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found (loading does not stop at the first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadErrors(pub Vec<LoadError>);

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadErrors {}

/// A backend that `weir up` serves itself with a built-in demo origin (`demo: true`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoOrigin {
    pub backend: BackendKey,
    pub address: SocketAddr,
}

/// What a desired-state directory says.
#[derive(Debug, Clone)]
pub struct Desired {
    pub state: State,
    pub demo_origins: Vec<DemoOrigin>,
    /// Non-fatal remarks (a certificate expiring within 30 days, say).
    pub warnings: Vec<String>,
}

/// Loads a directory of `.yaml`/`.yml`/`.toml` files, one such file, or a saved state file.
pub fn load(path: &Path) -> Result<Desired, LoadErrors> {
    Err(LoadErrors(vec![LoadError {
        location: None,
        field: None,
        message: format!("loading {} is not built yet", path.display()),
    }]))
}
