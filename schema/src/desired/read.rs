//! Reading the files a desired state is made of, each up to a size cap.
//!
//! A desired-state file or a PEM file many times larger than any real one is a mistake (a
//! log or an image named `.yaml`, a path to `/dev/zero`): it is refused, naming the file and
//! the cap, rather than read into memory whole. Reading stops one byte past the cap, so even a
//! file that never ends costs no more than that.

use std::fs::File;
use std::io::Read;
use std::path::Path;

/// Most bytes read from one desired-state file (YAML or TOML). A thousand routes take a few
/// hundred kilobytes.
pub const MAX_DESIRED_FILE_BYTES: u64 = 8 << 20;
/// Most bytes read from one certificate or key file. A chain of ten certificates takes about
/// 20 KiB.
pub const MAX_PEM_FILE_BYTES: u64 = 1 << 20;

/// The file's bytes, or a message naming it: unreadable, or larger than `cap` (`what` says
/// what the file is for).
pub(crate) fn read_capped(path: &Path, cap: u64, what: &str) -> Result<Vec<u8>, String> {
    let cannot = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let file = File::open(path).map_err(cannot)?;
    let mut bytes = Vec::new();
    file.take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > cap {
        return Err(format!(
            "{} is larger than {}, the most a {what} may hold",
            path.display(),
            human(cap)
        ));
    }
    Ok(bytes)
}

/// Like [`read_capped`], for a text file.
pub(crate) fn read_capped_text(path: &Path, cap: u64, what: &str) -> Result<String, String> {
    let bytes = read_capped(path, cap, what)?;
    String::from_utf8(bytes).map_err(|_| {
        format!(
            "cannot read {}: stream did not contain valid UTF-8",
            path.display()
        )
    })
}

/// `8 MiB`, `1 MiB`, or bytes.
fn human(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes & ((1 << 20) - 1) == 0 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_file_over_the_cap_is_refused_naming_file_and_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.pem");
        std::fs::write(&path, vec![b'a'; 2 << 20]).unwrap();
        let e = read_capped(&path, 1 << 20, "certificate or key file").unwrap_err();
        assert!(e.contains("big.pem"), "{e}");
        assert!(
            e.ends_with("is larger than 1 MiB, the most a certificate or key file may hold"),
            "{e}"
        );
        std::fs::write(&path, vec![b'a'; 1 << 20]).unwrap();
        assert_eq!(read_capped(&path, 1 << 20, "x").unwrap().len(), 1 << 20);
    }

    #[test]
    fn a_file_without_end_costs_only_the_cap() {
        let e = read_capped(Path::new("/dev/zero"), 1000, "desired-state file").unwrap_err();
        assert_eq!(
            e,
            "/dev/zero is larger than 1000 bytes, the most a desired-state file may hold"
        );
    }
}
