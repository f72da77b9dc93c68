//! Which files a desired-state path stands for.
//!
//! A directory means every `.yaml`, `.yml` and `.toml` file in it and in its subdirectories,
//! in path order (so the order frontends are added in, and with it which of two equal routes
//! wins, never depends on the filesystem). Hidden files and directories and editor leftovers
//! (`file~`, `#file#`, `.file.swp`) are skipped: saving in an editor must not load a half-written
//! copy. Other files (certificates, READMEs) are ignored.
//!
//! Symlinked directories are followed, each directory once: one reached again (by device and
//! inode) is refused, naming the link. Through a loop the walk would never end, and two links
//! to one directory would load its files twice.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::LoadError;

/// How deep nested (or symlinked) directories are followed.
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

/// A directory's identity: its device and inode.
type DirId = (u64, u64);

/// The desired-state files under `root` (a directory) in path order.
pub(crate) fn discover(root: &Path) -> Result<Vec<(PathBuf, Format)>, LoadError> {
    let mut found = Vec::new();
    let meta = fs::metadata(root).map_err(|e| io_error(root, &e))?;
    let mut visited = HashMap::from([((meta.dev(), meta.ino()), root.to_owned())]);
    walk(root, 0, &mut visited, &mut found)?;
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

fn walk(
    dir: &Path,
    depth: usize,
    visited: &mut HashMap<DirId, PathBuf>,
    found: &mut Vec<(PathBuf, Format)>,
) -> Result<(), LoadError> {
    if depth > MAX_DEPTH {
        return Err(LoadError {
            location: None,
            field: None,
            message: format!(
                "{} is nested more than {MAX_DEPTH} directories deep",
                dir.display()
            ),
        });
    }
    let mut entries = fs::read_dir(dir)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| io_error(dir, &e))?;
    // In name order, so which of two links to one directory is refused does not depend on
    // the filesystem.
    entries.sort_by_key(fs::DirEntry::file_name);
    for entry in entries {
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
            if let Some(first) = visited.get(&(meta.dev(), meta.ino())) {
                return Err(revisited(&path, first));
            }
            visited.insert((meta.dev(), meta.ino()), path.clone());
            walk(&path, depth + 1, visited, found)?;
        } else if let Some(format) = Format::of(&path) {
            found.push((path, format));
        }
    }
    Ok(())
}

/// The error for a directory reached a second time, at `path`, first seen at `first`.
fn revisited(path: &Path, first: &Path) -> LoadError {
    let message = if path.starts_with(first) {
        format!(
            "{} leads back to {}, which contains it: a symlink loop",
            path.display(),
            first.display()
        )
    } else {
        format!(
            "{} is the directory {} again (a second symlink to it): its files would load twice",
            path.display(),
            first.display()
        )
    };
    LoadError {
        location: None,
        field: None,
        message,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_symlink_loop_is_refused_naming_the_link() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(root.join("a.yaml"), "").unwrap();
        fs::create_dir(root.join("sub")).unwrap();
        // Two links back up: followed blindly, 2^32 paths before the depth bound.
        std::os::unix::fs::symlink("..", root.join("sub/up")).unwrap();
        std::os::unix::fs::symlink("..", root.join("sub/up2")).unwrap();
        let e = discover(root).unwrap_err();
        assert_eq!(
            e.message,
            format!(
                "{} leads back to {}, which contains it: a symlink loop",
                root.join("sub/up").display(),
                root.display()
            )
        );
    }

    #[test]
    fn a_directory_linked_twice_is_refused_naming_both() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("shared")).unwrap();
        fs::write(root.join("shared/a.yaml"), "").unwrap();
        std::os::unix::fs::symlink("shared", root.join("z-link")).unwrap();
        let e = discover(root).unwrap_err();
        assert_eq!(
            e.message,
            format!(
                "{} is the directory {} again (a second symlink to it): its files would load twice",
                root.join("z-link").display(),
                root.join("shared").display()
            )
        );
        // One link to a directory outside is followed like a real one.
        fs::remove_file(root.join("z-link")).unwrap();
        let other = tempfile::tempdir().unwrap();
        fs::write(other.path().join("b.yaml"), "").unwrap();
        std::os::unix::fs::symlink(other.path(), root.join("linked")).unwrap();
        let names: Vec<_> = discover(root)
            .unwrap()
            .into_iter()
            .map(|(p, _)| p.strip_prefix(root).unwrap().to_owned())
            .collect();
        assert_eq!(
            names,
            [Path::new("linked/b.yaml"), Path::new("shared/a.yaml")]
        );
    }

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
