//! Times the stages of `weir plan` separately, for `bench/plan.sh`: loading a desired-state
//! directory, planning it against an empty state (everything added) and against itself (no
//! change), and rendering the text and JSON of the full plan.
//!
//! ```text
//! plan_timing DIR [RUNS]
//! ```
//!
//! Prints one line `PLANTIMING key=value ...` with the median of RUNS runs (default 5) of each
//! stage, in milliseconds.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use weir_reconciler::render::{self, TextOptions};
use weir_reconciler::{plan, State};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first().map(PathBuf::from) else {
        eprintln!("usage: plan_timing DIR [RUNS]");
        return ExitCode::FAILURE;
    };
    let runs: usize = args.get(1).and_then(|r| r.parse().ok()).unwrap_or(5).max(1);
    let (mut load, mut add, mut same, mut text, mut json) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut steps = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let desired = match weir_schema::desired::load(&dir) {
            Ok(d) => d.state,
            Err(e) => {
                eprintln!("plan_timing: {e}");
                return ExitCode::FAILURE;
            }
        };
        load.push(ms(t));
        let t = Instant::now();
        let full = plan(&State::new(), &desired, &[]);
        add.push(ms(t));
        steps = full.steps().len();
        let t = Instant::now();
        let none = plan(&desired, &desired, &[]);
        same.push(ms(t));
        assert!(
            none.is_empty(),
            "a state planned against itself has no change"
        );
        let t = Instant::now();
        let rendered = render::text(&full, &TextOptions::default());
        text.push(ms(t));
        let t = Instant::now();
        // What `weir plan --json` does: serialise straight to a writer.
        let mut rendered_json = Vec::new();
        render::json_to_writer(&mut rendered_json, &full).expect("serialise a plan");
        json.push(ms(t));
        std::hint::black_box((rendered, rendered_json));
    }
    println!(
        "PLANTIMING steps={steps} load_ms={:.1} plan_from_empty_ms={:.1} plan_no_change_ms={:.1} render_text_ms={:.1} render_json_ms={:.1}",
        median(load),
        median(add),
        median(same),
        median(text),
        median(json)
    );
    ExitCode::SUCCESS
}
