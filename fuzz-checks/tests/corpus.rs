//! Replays every committed fuzz corpus file (`fuzz/corpus/<target>/`) through its target's
//! check, on the stable toolchain: the seeds and every crash the fuzzer found, kept as
//! regression cases, stay checked by CI without nightly or cargo-fuzz.

use std::fs;
use std::panic;
use std::path::{Path, PathBuf};

use weir_fuzz_checks::TARGETS;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_file_passes_its_targets_check() {
    let mut failures = Vec::new();
    for (target, check) in TARGETS {
        let files = files_in(&fuzz_dir().join("corpus").join(target));
        assert!(
            files.len() >= 10,
            "{target}: only {} seed files in fuzz/corpus/{target}",
            files.len()
        );
        for file in files {
            let data = fs::read(&file).expect("a corpus file");
            if panic::catch_unwind(|| check(&data)).is_err() {
                failures.push(file.display().to_string());
            }
        }
    }
    assert!(failures.is_empty(), "failed: {failures:#?}");
}

#[test]
fn every_fuzz_target_is_replayed() {
    let targets: Vec<String> = files_in(&fuzz_dir().join("fuzz_targets"))
        .iter()
        .filter_map(|p| Some(p.file_stem()?.to_str()?.to_owned()))
        .collect();
    let replayed: Vec<&str> = TARGETS.iter().map(|(name, _)| *name).collect();
    assert_eq!(targets, replayed, "fuzz/fuzz_targets and TARGETS differ");
    let manifest = fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("fuzz/Cargo.toml");
    for target in targets {
        assert!(
            manifest.contains(&format!("path = \"fuzz_targets/{target}.rs\"")),
            "{target} is not a [[bin]] of fuzz/Cargo.toml"
        );
    }
}
