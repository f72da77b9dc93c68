//! `weir plan|apply DIR --socket A --socket B ...`: one desired state, many proxies.
//!
//! `plan` prints one plan per group of proxies with the same plan (drifted proxies apart).
//! `apply` rolls out in waves (`weir_reconciler::rollout`): canaries first, each proxy
//! verified (plan empty, every worker live) before the next, a pause between waves. Exit
//! codes: 0 all applied (or nothing to do), 1 an error before anything changed (a proxy
//! unreachable, the files invalid), 5 a proxy failed at a step: it rolled itself back, the
//! proxies after it were not touched.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use weir_reconciler::fleet_render;
use weir_reconciler::render::TextOptions;
use weir_reconciler::rollout::{self, Event, Outcome};
use weir_reconciler::{Address, Plan};
use weir_schema::State;

use super::apply::{confirm, ApplyArgs};
use super::exit;
use super::plan::{color_wanted, load_desired, PlanArgs};

/// How a rollout to several proxies proceeds (used only with several `--socket`s).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RolloutArgs {
    /// With several proxies: how many (the first given) are applied first, one at a time
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub canary: usize,
    /// With several proxies: how many proxies each wave after the canaries holds
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub wave_size: usize,
    /// With several proxies: the pause between two waves (e.g. 10s)
    #[arg(long, value_name = "DURATION", value_parser = weir_schema::duration::parse)]
    pub pause: Option<Duration>,
}

/// Each proxy's plan, made before anything changes; an unreachable proxy is an error.
fn plans(sockets: &[PathBuf], desired: &State) -> anyhow::Result<Vec<rollout::Planned>> {
    rollout::plan_all(sockets, desired).map_err(|(socket, message)| {
        anyhow::anyhow!(
            "proxy {}: step plan: {message}; nothing was changed",
            socket.display()
        )
    })
}

pub fn plan_many(args: &PlanArgs, desired: &State, targets: &[Address]) -> anyhow::Result<u8> {
    if args.out.is_some() || !targets.is_empty() {
        anyhow::bail!("--out and --target plan for one proxy: give one --socket");
    }
    let planned = plans(&args.socket.paths(), desired)?;
    let plans: Vec<(PathBuf, Plan)> = planned.into_iter().map(|p| (p.socket, p.plan)).collect();
    let groups = fleet_render::group(&plans);
    let mut stdout = BufWriter::new(std::io::stdout().lock());
    if args.json {
        serde_json::to_writer_pretty(&mut stdout, &fleet_render::json(&groups))?;
        writeln!(stdout)?;
    } else {
        let opts = TextOptions {
            color: color_wanted(args.no_color),
            ..TextOptions::default()
        };
        stdout.write_all(fleet_render::text(&groups, &opts).as_bytes())?;
    }
    stdout.flush()?;
    let changes = plans.iter().any(|(_, p)| !p.is_empty());
    Ok(if changes && args.detailed_exitcode {
        exit::CHANGES
    } else {
        exit::OK
    })
}

pub fn apply_many(args: &ApplyArgs) -> anyhow::Result<u8> {
    if !args.targets.is_empty() {
        anyhow::bail!("--target applies to one proxy: give one --socket");
    }
    if args.path.is_file()
        && std::fs::read(&args.path).is_ok_and(|b| weir_reconciler::saved_plan::is_saved_plan(&b))
    {
        anyhow::bail!(
            "{} is a saved plan, made for one proxy: give one --socket, or apply the \
             desired-state directory to several",
            args.path.display()
        );
    }
    let desired = load_desired(&args.path)?;
    let planned = plans(&args.socket.paths(), &desired)?;
    let mut stdout = BufWriter::new(std::io::stdout());
    {
        let plans: Vec<(PathBuf, Plan)> = planned
            .iter()
            .map(|p| (p.socket.clone(), p.plan.clone()))
            .collect();
        let groups = fleet_render::group(&plans);
        if args.json {
            let line = json!({"type": "plans", "plans": fleet_render::json(&groups)});
            writeln!(stdout, "{line}")?;
        } else {
            let opts = TextOptions {
                color: color_wanted(args.no_color),
                ..TextOptions::default()
            };
            stdout.write_all(fleet_render::text(&groups, &opts).as_bytes())?;
        }
        if plans.iter().all(|(_, p)| p.is_empty()) {
            finish(&mut stdout, args.json, "no_changes", exit::OK, "", &[])?;
            return Ok(exit::OK);
        }
    }
    if !args.auto_approve && !confirm(&mut stdout)? {
        finish(
            &mut stdout,
            args.json,
            "cancelled",
            exit::ERROR,
            "Rollout cancelled.",
            &[],
        )?;
        return Ok(exit::ERROR);
    }
    stdout.flush()?;

    let options = rollout::Options {
        canary: args.rollout.canary,
        wave_size: args.rollout.wave_size,
        pause: args.rollout.pause.unwrap_or_default(),
        drain_timeout: args.drain_timeout,
        ..rollout::Options::default()
    };
    let json = args.json;
    let mut observer = |event: &Event<'_>| {
        let _ = show(&mut stdout, json, event);
        let _ = stdout.flush();
    };
    let reports = rollout::rollout(planned, &desired, &options, &mut observer);
    let failed = reports.iter().find_map(|r| match &r.outcome {
        Outcome::Failed { stage, message } => Some((r, *stage, message)),
        _ => None,
    });
    let (result, code, message) = match failed {
        Some((r, stage, message)) => {
            let untouched = reports
                .iter()
                .filter(|r| r.outcome == Outcome::NotReached)
                .count();
            (
                "failed",
                exit::ROLLED_BACK,
                format!(
                    "Rollout stopped: proxy {} failed at step {}: {message}\n{untouched} proxy(ies) \
                     not reached were left unchanged.",
                    r.socket.display(),
                    stage.as_str()
                ),
            )
        }
        None => (
            "applied",
            exit::OK,
            format!(
                "Rollout complete: {} proxy(ies) match the desired state.",
                reports.len()
            ),
        ),
    };
    finish(&mut stdout, args.json, result, code, &message, &reports)?;
    Ok(code)
}

fn show(out: &mut impl Write, json: bool, event: &Event<'_>) -> std::io::Result<()> {
    match (event, json) {
        (Event::WaveStarted { .. } | Event::Pausing(_), true) => Ok(()),
        (Event::ProxyDone(r), true) => {
            let mut line = fleet_render::report_json(r);
            line["type"] = json!("proxy");
            writeln!(out, "{line}")
        }
        (
            Event::WaveStarted {
                wave,
                canary,
                sockets,
            },
            false,
        ) => {
            let names: Vec<String> = sockets.iter().map(|s| s.display().to_string()).collect();
            writeln!(
                out,
                "\nWave {}{}: {}",
                wave + 1,
                if *canary { " (canary)" } else { "" },
                names.join(", ")
            )
        }
        (Event::ProxyDone(r), false) => writeln!(out, "  {}", fleet_render::report_text(r)),
        (Event::Pausing(d), false) => {
            writeln!(out, "Pausing {} ms before the next wave...", d.as_millis())
        }
    }
}

fn finish(
    out: &mut impl Write,
    as_json: bool,
    result: &str,
    code: u8,
    message: &str,
    reports: &[rollout::ProxyReport],
) -> std::io::Result<()> {
    if as_json {
        let proxies: Vec<_> = reports.iter().map(fleet_render::report_json).collect();
        writeln!(
            out,
            "{}",
            json!({"type": "result", "result": result, "exit_code": code, "message": message,
                   "proxies": proxies})
        )?;
    } else if code == exit::OK {
        if !message.is_empty() {
            writeln!(out, "\n{message}")?;
        }
    } else {
        out.flush()?;
        eprintln!("\n{message}");
    }
    out.flush()
}
