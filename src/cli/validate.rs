//! `weir validate PATH`: loads desired-state files exactly as `plan` and `apply` will, and says
//! whether they are good, without talking to any proxy.
//!
//! Success prints the counts and any warnings and exits 0. Failure prints the problems found,
//! one per line as `file:line:col: field: message` (the shape editors and CI annotations
//! understand), and exits 1: every problem of the files that parse, and the first error of each
//! file that does not (its parser stops there).

use std::path::PathBuf;

use weir_schema::desired;

use super::exit;

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// A directory of .yaml/.yml/.toml files, one such file, or a saved state
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
}

pub fn run(args: ValidateArgs) -> anyhow::Result<u8> {
    match desired::load(&args.path) {
        Ok(desired) => {
            println!("ok: {}", desired.summary());
            for warning in &desired.warnings {
                println!("warning: {warning}");
            }
            Ok(exit::OK)
        }
        Err(errors) => {
            for error in &errors.0 {
                eprintln!("{error}");
            }
            let n = errors.0.len();
            eprintln!(
                "{}: {n} problem{} found",
                args.path.display(),
                if n == 1 { "" } else { "s" }
            );
            Ok(exit::ERROR)
        }
    }
}
