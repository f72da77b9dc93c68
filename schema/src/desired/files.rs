//! Which files a desired-state path stands for.
//!
//! A directory means every `.yaml`, `.yml` and `.toml` file in it and in its subdirectories,
//! in path order (so the order frontends are added in, and with it which of two equal routes
//! wins, never depends on the filesystem). Hidden files and directories and editor leftovers
//! (`file~`, `#file#`, `.file.swp`) are skipped: saving in an editor must not load a half-written
//! copy. Other files (certificates, READMEs) are ignored.

use std::fs;
use std::path::{Path, PathBuf};

use super::LoadError;

/// How deep symlinked or nested directories are followed; deeper is surely a loop.
const MAX_DEPTH: usize = 32;

/// The formats a desired-state file can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Yaml,
    Toml,
}

impl Format {
    pub fn of(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()? {
            "yaml" | "yml" => Some(Format::Yaml),
            "toml" => Some(Format::Toml),
            _ => None,
        }
    }
}

fn io_error(path: &Path, e: &std::io::Error) -> LoadError {
    LoadError {
        location: None,
        field: None,
        message: format!("cannot read {}: {e}", path.display()),
    }
}

/// Whether a file or directory name is hidden or an editor's temporary file.
fn skipped(name: &str) -> bool {
    name.starts_with('.')
        || name.ends_with('~')
        || (name.starts_with('#') && name.ends_with('#'))
        || name.ends_with(".swp")
}

/// The desired-state files under `root` (a directory) in path order.
pub(crate) fn discover(root: &Path) -> Result<Vec<(PathBuf, Format)>, LoadError> {
    let mut found = Vec::new();
    walk(root, 0, &mut found)?;
    found.sort_by(|a, b| a.0.cmp(&b.0));
    if found.is_empty() {
        return Err(LoadError {
            location: None,
            field: None,
            message: format!(
                "no desired-state files (.yaml, .yml, .toml) in {}",
                root.display()
            ),
        });
    }
    Ok(found)
}

fn walk(dir: &Path, depth: usize, found: &mut Vec<(PathBuf, Format)>) -> Result<(), LoadError> {
    if depth > MAX_DEPTH {
        return Err(LoadError {
            location: None,
            field: None,
            message: format!(
                "{} is nested more than {MAX_DEPTH} directories deep (a symlink loop?)",
                dir.display()
            ),
        });
    }
    let entries = fs::read_dir(dir).map_err(|e| io_error(dir, &e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_error(dir, &e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue; // A non-UTF-8 name cannot be a .yaml/.toml file we would print.
        };
        if skipped(name) {
            continue;
        }
        let path = entry.path();
        // Follows symlinks, so a linked file or directory counts like a real one.
        let meta = fs::metadata(&path).map_err(|e| io_error(&path, &e))?;
        if meta.is_dir() {
            walk(&path, depth + 1, found)?;
        } else if let Some(format) = Format::of(&path) {
            found.push((path, format));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn editor_leftovers_and_hidden_files_are_skipped() {
        for name in [".hidden.yaml", "a.yaml~", "#a.yaml#", ".a.yaml.swp", ".git"] {
            assert!(skipped(name), "{name}");
        }
        for name in ["a.yaml", "routes.toml", "sub"] {
            assert!(!skipped(name), "{name}");
        }
    }

    #[test]
    fn formats_come_from_the_extension() {
        assert_eq!(Format::of(Path::new("a.yml")), Some(Format::Yaml));
        assert_eq!(Format::of(Path::new("a.yaml")), Some(Format::Yaml));
        assert_eq!(Format::of(Path::new("a.toml")), Some(Format::Toml));
        assert_eq!(Format::of(Path::new("a.pem")), None);
        assert_eq!(Format::of(Path::new("README")), None);
    }
}
