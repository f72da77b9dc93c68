//! Desired-state files: a directory (or one file) of YAML/TOML merged into one [`State`].
//!
//! Loading runs in three stages, each in its own module:
//! 1. [`files`] picks the files a path stands for, in path order;
//! 2. [`yaml_file`] / [`toml_file`] parse each into the serde [`mirror`] of the format; where
//!    every field was written ([`positions`]) is read only for a file that has an error;
//! 3. [`resolve`] turns the mirrors into one [`State`] by applying each resource as a
//!    [`crate::Change`] through [`State::apply_change`], so files obey exactly the rules the
//!    proxy enforces, and maps every refusal back to the file, line and column that caused it.
//!
//! Loading does not stop at the first problem: every file's syntax error, then every semantic
//! error of the files that parsed, is returned at once.

mod files;
mod mirror;
mod positions;
mod read;
mod resolve;
mod toml_file;
mod yaml_file;

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::model::BackendKey;
use crate::saved;
use crate::state::State;

use files::Format;
use positions::Pos;
pub use read::{MAX_DESIRED_FILE_BYTES, MAX_PEM_FILE_BYTES};
use resolve::SourceFile;

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

/// Where a resource was written: its file and its field path there (`listeners[0]`).
///
/// Kept without its line and column: loading reads positions only for a file with an error,
/// so a resource refused later (a listener whose port is taken) is located on demand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definition {
    pub file: PathBuf,
    pub field: String,
}

impl Definition {
    /// The line and column where the resource starts, read from its file now; `None` if the
    /// file can no longer be read or no longer holds that field.
    pub fn locate(&self) -> Option<Location> {
        let text = read::read_capped_text(&self.file, MAX_DESIRED_FILE_BYTES, "").ok()?;
        let positions = match Format::of(&self.file)? {
            Format::Yaml => yaml_file::positions(&text),
            Format::Toml => toml_file::positions(&text),
        };
        let pos = positions.value(&self.field)?;
        Some(Location {
            file: self.file.clone(),
            line: pos.line,
            column: pos.column,
        })
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
    /// Where each listener was defined, by address (empty for a saved state file).
    pub listener_definitions: BTreeMap<SocketAddr, Definition>,
    /// Non-fatal remarks (a certificate expiring within 30 days, say).
    pub warnings: Vec<String>,
}

impl Desired {
    /// One line of counts: `1 listener, 2 clusters, 4 backends, 0 certificates, 2 frontends`.
    pub fn summary(&self) -> String {
        let c = self.state.counts();
        let n = |count: usize, one: &str, many: &str| {
            format!("{count} {}", if count == 1 { one } else { many })
        };
        [
            n(c.listeners, "listener", "listeners"),
            n(c.clusters, "cluster", "clusters"),
            n(c.backends, "backend", "backends"),
            n(c.certificates, "certificate", "certificates"),
            n(c.frontends, "frontend", "frontends"),
        ]
        .join(", ")
    }
}

/// A problem in one file found while parsing it, before its path is attached.
#[derive(Debug)]
pub(crate) struct FileError {
    pos: Option<Pos>,
    field: Option<String>,
    message: String,
}

impl FileError {
    /// A serde error at `pos`, with the field it names found in the file's positions. Those
    /// are built by `positions` only here, since only an error needs them. serde reports an
    /// unknown field at its key and any other problem at the value.
    fn from_serde(
        pos: Option<Pos>,
        message: String,
        positions: impl FnOnce() -> positions::Positions,
    ) -> FileError {
        let at = if message.starts_with("unknown field") {
            positions::At::Key
        } else {
            positions::At::Value
        };
        let field = pos.and_then(|p| {
            positions()
                .path_at(p, at)
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
        });
        FileError {
            pos,
            field,
            message,
        }
    }
}

/// Loads a directory of `.yaml`/`.yml`/`.toml` files, one such file, or a saved state file.
pub fn load(path: &Path) -> Result<Desired, LoadErrors> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    load_at(path, now)
}

/// [`load`] with the current time given (seconds since the Unix epoch), which decides the
/// certificate expiry warnings; tests use it to stand at a chosen date.
pub fn load_at(path: &Path, now: i64) -> Result<Desired, LoadErrors> {
    load_inner(path, now, None)
}

/// [`load`] for a plan with an ownership scope: a listener, cluster or certificate the files
/// name but do not define is taken from `live` when it exists there (another team's, say),
/// as it is live. A saved state file is loaded as it is.
pub fn load_with_live(path: &Path, live: &State) -> Result<Desired, LoadErrors> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    load_inner(path, now, Some(live))
}

fn load_inner(path: &Path, now: i64, live: Option<&State>) -> Result<Desired, LoadErrors> {
    let unplaced = |message: String| {
        LoadErrors(vec![LoadError {
            location: None,
            field: None,
            message,
        }])
    };
    let meta =
        fs::metadata(path).map_err(|e| unplaced(format!("cannot read {}: {e}", path.display())))?;
    let files = if meta.is_dir() {
        files::discover(path).map_err(|e| LoadErrors(vec![e]))?
    } else {
        // A desired-state file is read up to its cap; a saved state (any other name) whole.
        let bytes = match Format::of(path) {
            Some(_) => read::read_capped(path, MAX_DESIRED_FILE_BYTES, "desired-state file")
                .map_err(unplaced)?,
            None => fs::read(path)
                .map_err(|e| unplaced(format!("cannot read {}: {e}", path.display())))?,
        };
        if saved::is_saved_state(&bytes) {
            // A backup made by `weir state save` restores like any desired state.
            let state =
                saved::decode(&bytes).map_err(|e| unplaced(format!("{}: {e}", path.display())))?;
            return Ok(Desired {
                state,
                demo_origins: Vec::new(),
                listener_definitions: BTreeMap::new(),
                warnings: Vec::new(),
            });
        }
        let format = Format::of(path).ok_or_else(|| {
            unplaced(format!(
                "{}: expected a .yaml, .yml or .toml file, a directory of them, or a saved state",
                path.display()
            ))
        })?;
        vec![(path.to_owned(), format)]
    };

    let mut errors = Vec::new();
    let mut sources = Vec::new();
    for (file, format) in files {
        match read::read_capped_text(&file, MAX_DESIRED_FILE_BYTES, "desired-state file") {
            Ok(text) => parse_file(file, format, text, &mut sources, &mut errors),
            Err(message) => errors.push(LoadError {
                location: None,
                field: None,
                message,
            }),
        }
    }
    finish(&sources, errors, now, live)
}

/// Loads one desired-state file from its text, as if read from `file`: its extension gives
/// the format, its directory is where relative certificate paths start, and errors name it.
/// `now` is as in [`load_at`].
pub fn load_text(file: &Path, text: &str, now: i64) -> Result<Desired, LoadErrors> {
    let format = Format::of(file).ok_or_else(|| {
        LoadErrors(vec![LoadError {
            location: None,
            field: None,
            message: format!("{}: expected a .yaml, .yml or .toml file", file.display()),
        }])
    })?;
    let (mut sources, mut errors) = (Vec::new(), Vec::new());
    parse_file(
        file.to_owned(),
        format,
        text.to_owned(),
        &mut sources,
        &mut errors,
    );
    finish(&sources, errors, now, None)
}

/// Parses one file's text into `sources`, or its first syntax error into `errors`.
fn parse_file(
    file: PathBuf,
    format: Format,
    text: String,
    sources: &mut Vec<SourceFile>,
    errors: &mut Vec<LoadError>,
) {
    let parsed = match format {
        Format::Yaml => yaml_file::parse(&text),
        Format::Toml => toml_file::parse(&text),
    };
    match parsed {
        Ok(doc) => sources.push(SourceFile::new(file, format, text, doc)),
        Err(e) => {
            let pos = e.pos.unwrap_or(Pos { line: 1, column: 1 });
            errors.push(LoadError {
                location: Some(Location {
                    file,
                    line: pos.line,
                    column: pos.column,
                }),
                field: e.field,
                message: e.message,
            });
        }
    }
}

/// Resolves the parsed files into one state, or every error found (`errors`: those found
/// while reading and parsing).
fn finish(
    sources: &[SourceFile],
    mut errors: Vec<LoadError>,
    now: i64,
    live: Option<&State>,
) -> Result<Desired, LoadErrors> {
    // With a file unparsed, a reference to something it defines would look unknown.
    let complete = errors.is_empty();
    let resolved = resolve::resolve(sources, complete, now, live);
    errors.extend(resolved.errors);
    if !errors.is_empty() {
        // Stable and readable: by file, line and column (unplaced problems first).
        errors.sort_by(|a, b| a.location.cmp(&b.location));
        return Err(LoadErrors(errors));
    }
    Ok(Desired {
        state: resolved.state,
        demo_origins: resolved.demo_origins,
        listener_definitions: resolved.listener_definitions,
        warnings: resolved.warnings,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_definition_is_located_in_its_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("a.yaml"),
            "clusters:\n  - id: a\nlisteners:\n  - name: one\n    address: 127.0.0.1:8001\n    protocol: http\n  - {name: two, address: 127.0.0.1:8002, protocol: tcp}\n",
        )
        .unwrap();
        fs::write(
            dir.path().join("b.toml"),
            "[[listeners]]\nname = \"three\"\naddress = \"127.0.0.1:8003\"\nprotocol = \"http\"\n",
        )
        .unwrap();
        let desired = load(dir.path()).unwrap();
        let at = |port: u16| {
            let address = SocketAddr::from(([127, 0, 0, 1], port));
            let location = desired.listener_definitions[&address].locate().unwrap();
            let file = location.file.file_name().unwrap().to_string_lossy();
            format!("{file}:{}:{}", location.line, location.column)
        };
        assert_eq!(at(8001), "a.yaml:4:5");
        assert_eq!(at(8002), "a.yaml:7:5");
        assert_eq!(at(8003), "b.toml:1:1");
    }
}
