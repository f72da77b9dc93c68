//! `weir watch DIR`: keep a running proxy reconciled with a directory, and correct drift.
//!
//! The loop itself lives in `weir_reconciler::watch`; this module parses options, wires the
//! file watcher and the signal handler to the loop's event channel, and prints reports as text
//! (plans on stdout, problems on stderr) or as one JSON object per line.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::json;
use signal_hook::consts::{SIGINT, SIGTERM};
use weir_reconciler::watch::socket::SocketProxy;
use weir_reconciler::watch::{self, Config, DirSource, Event, OnDrift, Report, Trigger};

use super::{exit, SocketArg};

/// A plan longer than this is summarised in the log rather than printed whole.
const MAX_PLAN_LINES: usize = 60;

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// Desired-state directory (or file) to keep the proxy reconciled with
    pub dir: PathBuf,
    #[command(flatten)]
    pub socket: SocketArg,
    #[command(flatten)]
    pub options: WatchOptions,
}

/// Options shared by `weir watch` and `weir up`.
#[derive(Debug, Clone, clap::Args)]
pub struct WatchOptions {
    /// Quiet period that ends a burst of file changes (e.g. 200ms, 1s)
    #[arg(long, default_value = "200ms", value_parser = weir_schema::duration::parse)]
    pub debounce: Duration,
    /// Longest a constant trickle of changes may delay a reload, from its first change
    #[arg(long, default_value = "2s", value_parser = weir_schema::duration::parse)]
    pub max_delay: Duration,
    /// How often to compare the live state with the last apply; 0 turns drift checks off
    #[arg(long, default_value = "10s", value_parser = weir_schema::duration::parse)]
    pub drift_interval: Duration,
    /// On drift, re-apply the desired state (correct) or only print what differs (report)
    #[arg(long, value_enum, default_value = "correct")]
    pub on_drift: DriftMode,
    /// Print one JSON object per line instead of text
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub owner: super::owner::OwnerArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DriftMode {
    Correct,
    Report,
}

pub fn run(args: WatchArgs) -> anyhow::Result<u8> {
    let (tx, rx) = mpsc::channel();
    let _signals = stop_on_signals(tx.clone())?;
    watch_until_stopped(
        &args.dir,
        &args.socket.path(),
        &args.options,
        tx,
        rx,
        |_| {},
    )
}

/// Forwards SIGINT and SIGTERM to the loop as [`Event::Stop`]. The handle unregisters the
/// handlers when dropped.
pub fn stop_on_signals(tx: Sender<Event>) -> anyhow::Result<signal_hook::iterator::Handle> {
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("cannot install the SIGINT/SIGTERM handlers")?;
    let handle = signals.handle();
    std::thread::Builder::new()
        .name("weir-signals".into())
        .spawn(move || {
            if signals.forever().next().is_some() {
                let _ = tx.send(Event::Stop);
            }
        })
        .context("cannot start the signal thread")?;
    Ok(handle)
}

/// Watches `dir` and keeps the proxy at `socket` reconciled until an [`Event::Stop`] arrives
/// on `rx` (or every sender is gone). `ready` is called once the first reconcile is done and
/// the watch is armed, with the reports of that first reconcile already printed.
pub fn watch_until_stopped(
    dir: &Path,
    socket: &Path,
    options: &WatchOptions,
    tx: Sender<Event>,
    rx: Receiver<Event>,
    ready: impl FnOnce(&Printer),
) -> anyhow::Result<u8> {
    if !dir.exists() {
        anyhow::bail!("{} does not exist", dir.display());
    }
    let proxy = SocketProxy::connect(socket)?;
    let config = Config {
        root: std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned()),
        debounce: options.debounce,
        max_delay: options.max_delay,
        drift_interval: (!options.drift_interval.is_zero()).then_some(options.drift_interval),
        on_drift: match options.on_drift {
            DriftMode::Correct => OnDrift::Correct,
            DriftMode::Report => OnDrift::Report,
        },
        scope: options.owner.scope(),
    };
    let printer = Printer {
        json: options.json,
        dir: dir.to_owned(),
    };
    // Watch before the first reconcile, so a save made meanwhile is not missed (it only costs
    // one more, probably empty, plan).
    let _fs = watch::fs::watch(dir, tx).with_context(|| format!("watching {}", dir.display()))?;
    let mut watch = watch::WatchLoop::new(config, DirSource(dir.to_owned()), proxy);
    for report in watch.start(Instant::now()) {
        printer.print(&report);
    }
    printer.watching(options);
    ready(&printer);
    watch::run(&mut watch, &rx, &mut |report| printer.print(report));
    printer.stopped();
    Ok(exit::OK)
}

/// Prints reports as text or JSON lines.
#[derive(Debug)]
pub struct Printer {
    json: bool,
    dir: PathBuf,
}

impl Printer {
    pub fn is_json(&self) -> bool {
        self.json
    }

    fn watching(&self, options: &WatchOptions) {
        let drift = if options.drift_interval.is_zero() {
            "off".to_owned()
        } else {
            format!("every {:?}", options.drift_interval)
        };
        if self.json {
            println!(
                "{}",
                json!({
                    "event": "watching",
                    "dir": self.dir.display().to_string(),
                    "debounce_ms": options.debounce.as_millis() as u64,
                    "max_delay_ms": options.max_delay.as_millis() as u64,
                    "drift_interval_ms": options.drift_interval.as_millis() as u64,
                })
            );
        } else {
            eprintln!(
                "watching {} (debounce {:?}, max delay {:?}, drift check {drift}, on drift: {})",
                self.dir.display(),
                options.debounce,
                options.max_delay,
                match options.on_drift {
                    DriftMode::Correct => "correct",
                    DriftMode::Report => "report",
                }
            );
        }
    }

    fn stopped(&self) {
        if self.json {
            println!("{}", json!({"event": "stopped"}));
        } else {
            eprintln!("stopped watching {}", self.dir.display());
        }
    }

    pub fn print(&self, report: &Report) {
        if self.json {
            println!("{}", report_json(report));
            return;
        }
        match report {
            Report::Applied {
                trigger,
                summary,
                text,
                duration,
            } => {
                // A drift correction's plan was just printed with the drift report.
                if *trigger != Trigger::Drift {
                    print_plan(text);
                }
                println!(
                    "applied in {:.1} ms ({}): {summary}",
                    duration.as_secs_f64() * 1000.0,
                    trigger_text(trigger)
                );
            }
            // An empty plan is the common case of a save that changed nothing: stay quiet.
            Report::Unchanged { .. } => {}
            Report::Invalid { errors } => {
                eprintln!(
                    "desired state has errors; nothing applied (the last good state stays live):"
                );
                for error in &errors.0 {
                    eprintln!("{error}");
                }
            }
            Report::Valid => eprintln!("desired state is valid again"),
            Report::ApplyFailed {
                trigger,
                summary,
                failure,
            } => {
                let undone = if failure.rolled_back {
                    "rolled back"
                } else {
                    "NOT rolled back"
                };
                eprintln!(
                    "apply failed and was {undone} ({}; {summary}): {}; retrying on the next change or drift check",
                    trigger_text(trigger),
                    failure.message
                );
            }
            Report::Drift { text, correcting } => {
                println!("drift: the live state differs from the last apply:");
                print_plan(text);
                if *correcting {
                    println!("correcting drift");
                } else {
                    println!("drift left as is (--on-drift=report)");
                }
            }
            Report::Unreachable { error } => {
                eprintln!("proxy unreachable: {error}; retrying on the next change or drift check")
            }
            Report::Rescan { reason } => {
                eprintln!("re-reading {}: {reason}", self.dir.display())
            }
        }
    }
}

fn print_plan(text: &str) {
    let lines = text.lines().count();
    if lines <= MAX_PLAN_LINES {
        print!("{text}");
        if !text.is_empty() && !text.ends_with('\n') {
            println!();
        }
    } else {
        println!("({lines} lines of plan not shown; `weir plan` prints them)");
    }
}

fn trigger_text(trigger: &Trigger) -> String {
    match trigger {
        Trigger::Initial => "initial".into(),
        Trigger::Files { events, rescan } => {
            let s = if *events == 1 { "" } else { "s" };
            let rescan = if *rescan { ", re-read" } else { "" };
            format!("{events} file event{s}{rescan}")
        }
        Trigger::Drift => "drift correction".into(),
        Trigger::Retry => "retry".into(),
    }
}

fn trigger_json(trigger: &Trigger) -> serde_json::Value {
    match trigger {
        Trigger::Initial => json!({"kind": "initial"}),
        Trigger::Files { events, rescan } => {
            json!({"kind": "files", "events": events, "rescan": rescan})
        }
        Trigger::Drift => json!({"kind": "drift"}),
        Trigger::Retry => json!({"kind": "retry"}),
    }
}

fn report_json(report: &Report) -> serde_json::Value {
    match report {
        Report::Applied {
            trigger,
            summary,
            text,
            duration,
        } => json!({
            "event": "applied",
            "trigger": trigger_json(trigger),
            "summary": summary,
            "plan": text,
            "duration_ms": duration.as_secs_f64() * 1000.0,
        }),
        Report::Unchanged { trigger } => {
            json!({"event": "unchanged", "trigger": trigger_json(trigger)})
        }
        Report::Invalid { errors } => json!({
            "event": "invalid",
            "errors": errors.0.iter().map(|e| json!({
                "file": e.location.as_ref().map(|l| l.file.display().to_string()),
                "line": e.location.as_ref().map(|l| l.line),
                "column": e.location.as_ref().map(|l| l.column),
                "field": e.field,
                "message": e.message,
                "text": e.to_string(),
            })).collect::<Vec<_>>(),
        }),
        Report::Valid => json!({"event": "valid"}),
        Report::ApplyFailed {
            trigger,
            summary,
            failure,
        } => json!({
            "event": "apply_failed",
            "trigger": trigger_json(trigger),
            "summary": summary,
            "message": failure.message,
            "rolled_back": failure.rolled_back,
        }),
        Report::Drift { text, correcting } => {
            json!({"event": "drift", "plan": text, "correcting": correcting})
        }
        Report::Unreachable { error } => json!({"event": "unreachable", "error": error}),
        Report::Rescan { reason } => json!({"event": "rescan", "reason": reason}),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Flags {
        #[command(flatten)]
        options: WatchOptions,
    }

    fn flags(args: &[&str]) -> Result<WatchOptions, clap::Error> {
        use clap::Parser as _;
        Flags::try_parse_from(std::iter::once("watch").chain(args.iter().copied()))
            .map(|f| f.options)
    }

    #[test]
    fn duration_flags_take_the_shared_syntax_and_zero_turns_drift_checks_off() {
        let o = flags(&["--debounce", "1h", "--max-delay", "500ms"]).unwrap();
        assert_eq!(o.debounce, Duration::from_secs(3600));
        assert_eq!(o.max_delay, Duration::from_millis(500));
        assert_eq!(o.drift_interval, Duration::from_secs(10));
        let o = flags(&["--drift-interval", "0"]).unwrap();
        assert!(o.drift_interval.is_zero());
        let e = flags(&["--debounce", "10"]).unwrap_err().to_string();
        assert!(e.contains("needs a unit"), "{e}");
    }
}
