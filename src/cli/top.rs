//! `weir top`: a live view of the proxy's clusters, from the metrics query over the command
//! socket. Per cluster: requests per second, 5xx share, p50/p99 latency; per backend: up or
//! down, requests in flight, requests per second. Rates are over the interval between two
//! samples (`weir_schema::metric_rates`, shared with the status page).
//!
//! In a terminal it redraws every interval (plain ANSI, alternate screen) and quits on `q` or
//! Ctrl-C; `--once` and `--iterations N` print frames without any terminal control, for
//! scripts and tests. Each frame is made from two samples, so even `--once` shows rates.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::termios::{self, LocalFlags, SetArg, Termios};
use weir_reconciler::client::Client;
use weir_schema::metric_rates::{show_rate, show_seconds, show_share, up_word, Interval, Sample};
use weir_schema::State;

use super::{exit, SocketArg};

#[derive(Debug, clap::Args)]
pub struct TopArgs {
    #[command(flatten)]
    socket: SocketArg,
    /// Print one frame (rates over one interval) and exit, without terminal control
    #[arg(long, conflicts_with = "iterations")]
    once: bool,
    /// Print N frames, one per interval, and exit, without terminal control
    #[arg(long, value_name = "N")]
    iterations: Option<u32>,
    /// Time between samples
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = weir_schema::duration::parse)]
    interval: Duration,
}

/// What one query round gives: the state, the summed metrics, the live workers.
struct Round {
    state: State,
    sample: Sample,
    workers: usize,
    at: Instant,
}

fn round(client: &mut Client) -> anyhow::Result<Round> {
    let state = client.query_state().context("query the state")?;
    let metrics = client.metrics().context("query the metrics")?;
    let status = client.status().context("query the status")?;
    let workers = status.workers.iter().filter(|w| !w.unresponsive).count();
    Ok(Round {
        state,
        sample: Sample::new(&metrics),
        workers,
        at: Instant::now(),
    })
}

pub fn run(args: TopArgs) -> anyhow::Result<u8> {
    if args.interval.is_zero() {
        anyhow::bail!("--interval must be more than 0");
    }
    let mut client = Client::connect(&args.socket.path())?;
    let frames = if args.once { Some(1) } else { args.iterations };
    let live =
        frames.is_none() && std::io::stdout().is_terminal() && std::io::stdin().is_terminal();
    let mut screen = if live { Some(Screen::enter()?) } else { None };
    let mut before = round(&mut client)?;
    let mut shown = 0u32;
    loop {
        if let Some(screen) = &mut screen {
            if screen.quit_within(args.interval)? {
                return Ok(exit::OK);
            }
        } else {
            std::thread::sleep(args.interval);
        }
        let now = round(&mut client)?;
        let interval = Interval {
            before: Some(&before.sample),
            now: &now.sample,
            seconds: now.at.duration_since(before.at).as_secs_f64(),
        };
        let text = frame(&now.state, &interval, now.workers);
        let mut out = std::io::stdout().lock();
        if screen.is_some() {
            // Home, clear, then the frame with CRLF: the terminal is in raw mode.
            write!(out, "\x1b[H\x1b[2J{}", text.replace('\n', "\r\n"))?;
        } else {
            if shown > 0 {
                writeln!(out)?;
            }
            write!(out, "{text}")?;
        }
        out.flush()?;
        shown += 1;
        if frames.is_some_and(|n| shown >= n) {
            return Ok(exit::OK);
        }
        before = now;
    }
}

/// One frame of text.
fn frame(state: &State, interval: &Interval<'_>, workers: usize) -> String {
    let mut out = format!(
        "weir top · state version {} · {workers} worker(s) · rates over {:.1} s{}\n\n",
        state.version,
        interval.seconds,
        if interval.before.is_some() {
            ""
        } else {
            " (first sample)"
        }
    );
    let _ = writeln!(
        out,
        "{:<24} {:>9} {:>7} {:>9} {:>9}  BACKENDS",
        "CLUSTER", "RPS", "5XX", "P50", "P99"
    );
    for id in state.clusters.keys() {
        let backends: Vec<_> = state.backends_of(id).collect();
        let keys: Vec<_> = backends.iter().map(|b| b.key.clone()).collect();
        let rates = interval.cluster(id, &keys);
        let up = backends
            .iter()
            .filter(|b| interval.backend(&b.key).up.is_some_and(|u| u > 0))
            .count();
        let _ = writeln!(
            out,
            "{:<24} {:>9} {:>7} {:>9} {:>9}  {up}/{} up",
            id.0,
            show_rate(rates.rps),
            show_share(rates.error_rate),
            show_seconds(rates.p50),
            show_seconds(rates.p99),
            backends.len()
        );
        for backend in backends {
            let rates = interval.backend(&backend.key);
            let _ = writeln!(
                out,
                "  {:<22} {:>9} {:<12} active {:<5} {}",
                backend.key.id.0,
                show_rate(rates.rps),
                up_word(rates.up, workers),
                rates
                    .active
                    .map_or_else(|| "-".to_owned(), |a| a.to_string()),
                backend.address
            );
        }
    }
    if state.clusters.is_empty() {
        out.push_str("(no clusters)\n");
    }
    out
}

/// The terminal while `top` draws on it: alternate screen, no cursor, keys read one by one
/// without echo (Ctrl-C arrives as a byte, not a signal). Restored when dropped.
struct Screen {
    saved: Termios,
}

impl Screen {
    fn enter() -> anyhow::Result<Screen> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).context("read the terminal's mode")?;
        let mut raw = saved.clone();
        raw.local_flags
            .remove(LocalFlags::ICANON | LocalFlags::ECHO | LocalFlags::ISIG);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw)
            .context("set the terminal's mode")?;
        print!("\x1b[?1049h\x1b[?25l");
        Ok(Screen { saved })
    }

    /// Waits up to `interval` for a key; whether it was `q` or Ctrl-C.
    fn quit_within(&mut self, interval: Duration) -> anyhow::Result<bool> {
        let deadline = Instant::now() + interval;
        let stdin = std::io::stdin();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            let millis = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(millis)) {
                Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
                Ok(_) => {
                    let mut byte = [0u8; 1];
                    match nix::unistd::read(stdin.as_fd(), &mut byte) {
                        Ok(0) => return Ok(true),
                        Ok(_) if matches!(byte[0], b'q' | b'Q' | 0x03) => return Ok(true),
                        Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                        Err(e) => return Err(e).context("read a key"),
                    }
                }
                Err(e) => return Err(e).context("wait for a key"),
            }
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        print!("\x1b[?25h\x1b[?1049l");
        let _ = std::io::stdout().flush();
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use weir_schema::{proto, Backend, BackendId, BackendKey, Change, Cluster, ClusterId};

    #[test]
    fn a_frame_shows_each_cluster_its_rates_and_its_backends_up_or_down() {
        let mut state = State::new();
        state
            .apply_change(&Change::AddCluster(Cluster::new("shop")), None)
            .unwrap();
        for id in ["a", "b"] {
            let backend = Backend {
                owner: None,
                key: BackendKey {
                    cluster: ClusterId("shop".into()),
                    id: BackendId(id.into()),
                },
                address: "127.0.0.1:9".parse().unwrap(),
                weight: 100,
                backup: false,
            };
            state
                .apply_change(&Change::AddBackend(backend), None)
                .unwrap();
        }
        let sample = |requests| {
            Sample::new(&proto::Metrics {
                counters: [
                    ("backend.shop/a.requests", requests),
                    ("backend.shop/a.up", 1),
                    ("backend.shop/b.up", 0),
                ]
                .into_iter()
                .map(|(name, value)| proto::Counter {
                    name: name.into(),
                    value,
                })
                .collect(),
                histograms: vec![],
            })
        };
        let (before, now) = (sample(10), sample(40));
        let text = frame(
            &state,
            &Interval {
                before: Some(&before),
                now: &now,
                seconds: 2.0,
            },
            1,
        );
        let shop = text.lines().find(|l| l.starts_with("shop ")).unwrap();
        assert!(shop.contains(" 15.0 "), "{text}");
        assert!(shop.ends_with("1/2 up"), "{text}");
        assert!(text
            .lines()
            .any(|l| l.starts_with("  a ") && l.contains(" up ")));
        assert!(text
            .lines()
            .any(|l| l.starts_with("  b ") && l.contains(" down ")));
    }
}
