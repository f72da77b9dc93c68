//! `weir export DIR`: a proxy's live state (or a saved state) written as desired-state files,
//! to bring an existing proxy under Git. The files round-trip: `weir plan DIR` against the same
//! proxy shows no changes.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use weir_reconciler::client::Client;
use weir_reconciler::export::{self, Format, Options, Split};
use weir_reconciler::owner::owned_by;
use weir_schema::Owner;

use super::plan::load_desired;
use super::{exit, SocketArg};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum FormatArg {
    Yaml,
    Toml,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum SplitArg {
    /// One file per cluster, with its backends and the routes to it
    Cluster,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Directory to write the files to (created; must be empty if it exists)
    pub dir: PathBuf,
    #[command(flatten)]
    pub socket: SocketArg,
    /// Export this saved state (or desired-state files) instead of a running proxy's
    #[arg(long, value_name = "FILE")]
    pub from_state: Option<PathBuf>,
    /// File format
    #[arg(long, value_enum, default_value = "yaml")]
    format: FormatArg,
    /// Spread the resources over several files (default: one file)
    #[arg(long, value_enum, value_name = "WHAT")]
    split_by: Option<SplitArg>,
    /// Also write the certificates' private keys (files of mode 0600)
    #[arg(long)]
    pub with_keys: bool,
    /// Export only this owner's resources (what `weir plan --owner NAME` compares); what they
    /// use of other owners is named, not written
    #[arg(long, value_name = "NAME")]
    pub owner: Option<String>,
}

pub fn run(args: ExportArgs) -> anyhow::Result<u8> {
    let (state, source) = match &args.from_state {
        Some(file) => (
            load_desired(file).with_context(|| format!("--from-state {}", file.display()))?,
            format!("state file {}", file.display()),
        ),
        None => {
            let socket = args.socket.path();
            let mut client = Client::connect(&socket)?;
            // Keys are opt-in over the socket too: asked for only when they are written.
            let state = if args.with_keys {
                client.query_state_with_keys()?
            } else {
                client.query_state()?
            };
            (state, format!("proxy {}", socket.display()))
        }
    };
    let state = match &args.owner {
        Some(name) => {
            let (owned, stranded) = owned_by(&state, &Owner(name.clone()));
            for key in stranded {
                let holder = state
                    .clusters
                    .get(&key.cluster)
                    .and_then(|c| c.owner.as_ref())
                    .map_or_else(|| "no one".to_owned(), ToString::to_string);
                eprintln!(
                    "warning: backend {key} is {name}'s, but its cluster is owned by {holder}:                      not exported (files hold a backend inside its cluster, and a plan by                      {name} cannot keep a backend in another owner's cluster)"
                );
            }
            owned
        }
        None => state,
    };
    let options = Options {
        format: match args.format {
            FormatArg::Yaml => Format::Yaml,
            FormatArg::Toml => Format::Toml,
        },
        split: match args.split_by {
            None => Split::None,
            Some(SplitArg::Cluster) => Split::Cluster,
        },
        with_keys: args.with_keys,
        source,
    };
    let exported = export::export(&state, &options)?;
    refuse_non_empty(&args.dir)?;
    for file in &exported.files {
        write_file(&args.dir.join(&file.path), &file.contents, file.secret)?;
    }
    let c = state.counts();
    println!(
        "Exported {} listener(s), {} cluster(s), {} backend(s), {} certificate(s) and {} \
         frontend(s) to {} (state version {}, fingerprint {}).",
        c.listeners,
        c.clusters,
        c.backends,
        c.certificates,
        c.frontends,
        args.dir.display(),
        state.version,
        state.fingerprint()
    );
    if !exported.missing_keys.is_empty() {
        println!(
            "The private keys were not exported (--with-keys writes them). Put each one in place \
             before planning these files:"
        );
        for key in &exported.missing_keys {
            println!("  {}", args.dir.join(key).display());
        }
    }
    Ok(exit::OK)
}

/// Refuses to mix an export with files already there: a stale file would define a resource
/// twice, or keep one the proxy no longer has.
fn refuse_non_empty(dir: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                anyhow::bail!(
                    "{} is not empty: export into a new or empty directory",
                    dir.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", dir.display())),
    }
}

fn write_file(path: &Path, contents: &str, secret: bool) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
