//! The `weir` command line: a thin layer that parses arguments and calls the libraries.
//!
//! Exit codes are a contract with scripts and CI (see `cli::exit`); every subcommand returns
//! one. Errors are `anyhow` here and only here: the libraries return typed errors.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(cli::exit::ERROR)
        }
    }
}
