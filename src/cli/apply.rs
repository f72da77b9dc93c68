//! `weir apply`: shows the plan, asks, applies it step by step, and rolls back on failure.
//!
//! `PATH` is a desired-state directory or file, a saved state, or a plan saved by `weir plan
//! --out` (applied without asking, since it was reviewed; refused with exit 3 if the proxy's
//! state moved since). Exit codes: 0 applied or nothing to do, 1 error (or cancelled, or a
//! `--target` naming no resource), 3 saved plan stale, 4 a drain reached its deadline (the run
//! stops there, without rollback), 5 a step failed and everything applied was undone.
//!
//! `--json` streams one JSON object per line: `{"type":"plan",...}` first, then one
//! `{"type":"step",...}` per step with its request id and every answer, `{"type":"undo",...}`
//! per undone step, and a closing `{"type":"result","result":...,"exit_code":N}`.

use std::collections::HashMap;
use std::io::{BufRead, BufWriter, IsTerminal, Stdout, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use weir_reconciler::client::Client;
use weir_reconciler::render::{self, TextOptions};
use weir_reconciler::{saved_plan, ApplyError, ApplyEvent, ApplyObserver, Plan};
use weir_schema::proto::{self, response::Content, ResponseStatus};

use super::plan::{color_wanted, parse_targets, refuse_unknown_targets};
use super::{exit, SocketsArg};

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// Desired-state directory or file, a saved state, or a plan saved by `weir plan --out`
    pub path: PathBuf,
    #[command(flatten)]
    pub socket: SocketsArg,
    /// Apply without asking (needed when stdin is not a terminal)
    #[arg(long)]
    pub auto_approve: bool,
    /// Stream one JSON line per step instead of text
    #[arg(long)]
    pub json: bool,
    /// Apply only this resource and what it depends on; repeatable
    #[arg(long = "target", value_name = "ADDRESS")]
    pub targets: Vec<String>,
    /// How long each backend removal may drain (e.g. 30s, 500ms, 2m) [default: the proxy's]
    #[arg(long, value_name = "DURATION", value_parser = parse_drain_timeout)]
    pub drain_timeout: Option<Duration>,
    /// No colours, even on a terminal
    #[arg(long)]
    pub no_color: bool,
    #[command(flatten)]
    pub rollout: super::rollout::RolloutArgs,
    #[command(flatten)]
    pub owner: super::owner::OwnerArgs,
}

/// A drain deadline, in the one duration syntax (`weir_schema::duration`). Zero is refused:
/// on the wire it would mean "the proxy's default", not "do not wait".
fn parse_drain_timeout(s: &str) -> Result<Duration, String> {
    match weir_schema::duration::parse(s) {
        Ok(d) if d.is_zero() => Err(format!(
            "`{}` is zero: give a deadline, or leave the flag out for the proxy's default",
            s.trim()
        )),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

pub fn run(args: ApplyArgs) -> anyhow::Result<u8> {
    if args.socket.several() {
        if args.owner.owner.is_some() {
            anyhow::bail!("--owner applies to one proxy at a time: give one --socket");
        }
        return super::rollout::apply_many(&args);
    }
    let mut client = Client::connect(&args.socket.path())?;
    let color = !args.json && color_wanted(args.no_color);
    // Buffered: a big apply prints a line per step, and stdout alone would make a system call
    // for each. It is flushed before anything that waits (the y/N prompt, the apply itself, a
    // drain) and at the end; `Progress` flushes every line when stdout is a terminal.
    let mut stdout = BufWriter::with_capacity(1 << 16, std::io::stdout());

    let bytes = if args.path.is_file() {
        Some(std::fs::read(&args.path)?)
    } else {
        None
    };
    let from_saved_plan = bytes.as_deref().is_some_and(saved_plan::is_saved_plan);
    let plan = if let Some(bytes) = bytes.as_deref().filter(|_| from_saved_plan) {
        let saved = saved_plan::from_slice(bytes)?;
        let live = client.query_state()?;
        match saved.replan(&live) {
            Some(plan) => plan,
            None => {
                let message = format!(
                    "the saved plan {} was made from state {} but the proxy's state is now {}: \
                     it moved since; make a new plan",
                    args.path.display(),
                    &saved.from_fingerprint.to_hex()[..12],
                    &live.fingerprint().to_hex()[..12],
                );
                finish(&mut stdout, args.json, "stale", exit::STALE_PLAN, &message)?;
                stdout.flush()?;
                return Ok(exit::STALE_PLAN);
            }
        }
    } else {
        let targets = parse_targets(&args.targets)?;
        let live = client.query_state()?;
        let desired = args.owner.desired(&args.path, &live)?;
        refuse_unknown_targets(&targets, &live, &desired)?;
        let mut plan = weir_reconciler::plan(&live, &desired, &targets);
        plan.set_drain_timeout(args.drain_timeout);
        plan
    };

    if args.json {
        // `{"plan":...,"type":"plan"}`, keys sorted as in every other line, with the plan
        // written straight from it rather than through a `Value` tree.
        stdout.write_all(b"{\"plan\":")?;
        serde_json::to_writer(&mut stdout, &render::json_view(&plan))?;
        stdout.write_all(b",\"type\":\"plan\"}\n")?;
    } else {
        let mut opts = TextOptions {
            color,
            ..TextOptions::default()
        };
        if plan.steps().iter().any(|s| s.is_drain()) {
            if let Ok(metrics) = client.metrics() {
                opts.live_connections = render::connections_from_metrics(&metrics);
            }
        }
        stdout.write_all(render::text(&plan, &opts).as_bytes())?;
    }
    if plan.is_empty() {
        finish(&mut stdout, args.json, "no_changes", exit::OK, "")?;
        stdout.flush()?;
        return Ok(exit::OK);
    }
    if !from_saved_plan && !args.auto_approve && !confirm(&mut stdout)? {
        finish(
            &mut stdout,
            args.json,
            "cancelled",
            exit::ERROR,
            "Apply cancelled.",
        )?;
        stdout.flush()?;
        return Ok(exit::ERROR);
    }
    stdout.flush()?;

    let mut observer = Progress::new(args.json, &plan, stdout);
    let result = weir_reconciler::apply(&mut client, &plan, &mut observer);
    observer.clear_progress();
    let mut stdout = observer.out;
    let (result, code, message) = match result {
        Ok(report) => (
            "applied",
            exit::OK,
            format!(
                "Apply complete: {} step(s) in {} ms, state version {}.",
                report.applied,
                report.elapsed.as_millis(),
                report.version
            ),
        ),
        Err(e) => {
            let (result, code) = match &e {
                ApplyError::Stale { .. } => ("stale", exit::STALE_PLAN),
                ApplyError::DrainDeadline { .. } => ("drain_deadline", exit::DRAIN_DEADLINE),
                ApplyError::RolledBack { .. } => ("rolled_back", exit::ROLLED_BACK),
                ApplyError::RollbackFailed { .. } => ("rollback_failed", exit::ERROR),
                ApplyError::Client(_) => ("error", exit::ERROR),
            };
            let mut message = format!("Apply failed: {e}");
            if let ApplyError::RolledBack { undone, .. } = &e {
                for u in undone {
                    message.push_str(&format!("\n  undone: {u}"));
                }
            }
            (result, code, message)
        }
    };
    finish(&mut stdout, args.json, result, code, &message)?;
    stdout.flush()?;
    Ok(code)
}

/// Asks on the terminal; refuses when stdin is not one.
pub(super) fn confirm(stdout: &mut impl Write) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "stdin is not a terminal, so the plan cannot be confirmed: pass --auto-approve to apply it"
        );
    }
    write!(stdout, "\nApply these changes? [y/N] ")?;
    stdout.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

/// The closing line: text for people, one JSON object for `--json`.
fn finish(
    out: &mut impl Write,
    as_json: bool,
    result: &str,
    code: u8,
    message: &str,
) -> std::io::Result<()> {
    if as_json {
        writeln!(
            out,
            "{}",
            json!({"type": "result", "result": result, "exit_code": code, "message": message})
        )
    } else if message.is_empty() {
        Ok(())
    } else if code == exit::OK {
        writeln!(out, "\n{message}")
    } else {
        // After what stdout holds, when both go to the same terminal or file.
        out.flush()?;
        eprintln!("\n{message}");
        Ok(())
    }
}

fn answer_json(answer: &proto::Response) -> Value {
    let status = match answer.status() {
        ResponseStatus::Ok => "ok",
        ResponseStatus::Processing => "processing",
        ResponseStatus::Failure => "failure",
        ResponseStatus::Unspecified => "unspecified",
    };
    let live = match &answer.content {
        Some(Content::Drain(d)) => Some(d.live_connections),
        _ => None,
    };
    json!({
        "status": status,
        "message": answer.message,
        "state_version": answer.state_version,
        "live_connections": live,
    })
}

/// How long a line may wait in the stdout buffer when stdout is not a terminal, so that a
/// program following `--json` through a pipe sees steps as they go, in batches.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// Shows an apply as it runs: a line per step (or a JSON line with every answer), and on a
/// terminal a live progress line while a backend drains.
struct Progress {
    json: bool,
    /// Whether stderr is a terminal (the drain progress line is redrawn in place there).
    tty: bool,
    /// Where step lines go; flushed after every line when `out_tty`, else before a wait and
    /// at least every [`FLUSH_EVERY`].
    out: BufWriter<Stdout>,
    out_tty: bool,
    last_flush: Instant,
    total: usize,
    answers: HashMap<String, Vec<Value>>,
    progress_shown: bool,
}

impl Progress {
    fn new(json: bool, plan: &Plan, out: BufWriter<Stdout>) -> Progress {
        Progress {
            json,
            tty: std::io::stderr().is_terminal(),
            out_tty: std::io::stdout().is_terminal(),
            out,
            last_flush: Instant::now(),
            total: plan.steps().len(),
            answers: HashMap::new(),
            progress_shown: false,
        }
    }

    fn clear_progress(&mut self) {
        if self.progress_shown {
            eprint!("\r\x1b[2K");
            self.progress_shown = false;
        }
    }
}

impl ApplyObserver for Progress {
    fn event(&mut self, event: &ApplyEvent<'_>) {
        // Whether the apply waits after this event: a drain (its request is out, or the proxy
        // said it is still going) or a rollback. What is buffered is shown first, also before
        // a drain progress line on stderr.
        let waits = match event {
            ApplyEvent::Sent { step, .. } => step.is_drain(),
            ApplyEvent::Answer { answer, .. } => answer.status() == ResponseStatus::Processing,
            ApplyEvent::RollbackStarted { .. } => true,
            _ => false,
        };
        if waits {
            let _ = self.flush();
        }
        let _ = self.write_event(event);
        if self.out_tty || self.last_flush.elapsed() >= FLUSH_EVERY {
            let _ = self.flush();
        }
    }
}

impl Progress {
    fn flush(&mut self) -> std::io::Result<()> {
        self.last_flush = Instant::now();
        self.out.flush()
    }

    /// Shows one event. A closed stdout must not stop an apply half-way, so the caller drops
    /// the error.
    fn write_event(&mut self, event: &ApplyEvent<'_>) -> std::io::Result<()> {
        match event {
            ApplyEvent::Started { .. } | ApplyEvent::Sent { .. } => Ok(()),
            ApplyEvent::Answer {
                step,
                request_id,
                answer,
                ..
            } => {
                if self.json {
                    self.answers
                        .entry((*request_id).to_owned())
                        .or_default()
                        .push(answer_json(answer));
                }
                if let Some(Content::Drain(d)) = &answer.content {
                    if !self.json && answer.status() == ResponseStatus::Processing {
                        let line = format!(
                            "  draining {}: {} live connection(s)",
                            step.address, d.live_connections
                        );
                        if self.tty {
                            eprint!("\r\x1b[2K{line}");
                            self.progress_shown = true;
                        } else {
                            eprintln!("{line}");
                        }
                    }
                }
                Ok(())
            }
            ApplyEvent::StepDone {
                number,
                step,
                request_id,
                ok,
            } => {
                if self.json {
                    let mut line = render::step_json(*number, step);
                    if let Some(obj) = line.as_object_mut() {
                        obj.insert("type".into(), json!("step"));
                        obj.insert("request_id".into(), json!(request_id));
                        obj.insert(
                            "answers".into(),
                            json!(self.answers.remove(*request_id).unwrap_or_default()),
                        );
                        obj.insert("ok".into(), json!(ok));
                    }
                    writeln!(self.out, "{line}")
                } else {
                    self.clear_progress();
                    writeln!(
                        self.out,
                        "[{number}/{}] {} {}: {}",
                        self.total,
                        step.op.as_str(),
                        step.address,
                        if *ok { "done" } else { "FAILED" }
                    )
                }
            }
            ApplyEvent::RollbackStarted {
                failed_step,
                message,
                undo,
            } => {
                if self.json {
                    writeln!(
                        self.out,
                        "{}",
                        json!({"type": "rollback", "failed_step": failed_step, "message": message, "undo": undo})
                    )
                } else {
                    writeln!(
                        self.out,
                        "Step {failed_step} failed: {message}\nRolling back {undo} applied step(s)..."
                    )
                }
            }
            ApplyEvent::Undone {
                number,
                step,
                change,
                request_id,
                answer,
            } => {
                let ok = answer.status() == ResponseStatus::Ok;
                if self.json {
                    writeln!(
                        self.out,
                        "{}",
                        json!({
                            "type": "undo",
                            "number": number,
                            "address": step.address.to_string(),
                            "change": change.describe(),
                            "request_id": request_id,
                            "answer": answer_json(answer),
                            "ok": ok,
                        })
                    )
                } else {
                    writeln!(
                        self.out,
                        "  undo step {number}: {}: {}",
                        change.describe(),
                        if ok { "done" } else { "FAILED" }
                    )
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn drain_timeouts_take_the_shared_duration_syntax_but_not_zero() {
        assert_eq!(parse_drain_timeout("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_drain_timeout("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_drain_timeout("1h"), Ok(Duration::from_secs(3600)));
        let no_unit = parse_drain_timeout("7").unwrap_err();
        assert!(no_unit.contains("needs a unit"), "{no_unit}");
        assert!(parse_drain_timeout("fast").is_err());
        let zero = parse_drain_timeout("0s").unwrap_err();
        assert!(zero.contains("zero"), "{zero}");
    }
}
