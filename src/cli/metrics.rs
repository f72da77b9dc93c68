//! `weir metrics`: the proxy's counters and latency histograms, summed over its workers, as
//! `name value` lines and a latency table, or as JSON; `--cluster` keeps one cluster's.

use anyhow::bail;
use serde_json::{json, Map, Value};
use weir_schema::metric_names::{
    quantile_seconds, BackendCounter, ClusterCounter, Latency, LatencyScope, LATENCY_BOUNDS_US,
};
use weir_schema::{proto, ClusterId};

use super::{exit, SocketArg};

#[derive(Debug, clap::Args)]
pub struct MetricsArgs {
    /// Print counters and histograms as JSON
    #[arg(long)]
    json: bool,
    /// Only this cluster's metrics and its backends'
    #[arg(long, value_name = "ID")]
    cluster: Option<String>,
    #[command(flatten)]
    socket: SocketArg,
}

pub fn run(args: MetricsArgs) -> anyhow::Result<u8> {
    let mut metrics = weir_reconciler::client::Client::connect(&args.socket.path())?.metrics()?;
    if let Some(id) = &args.cluster {
        let id = ClusterId(id.clone());
        metrics
            .counters
            .retain(|c| counter_cluster(&c.name).as_ref() == Some(&id));
        metrics
            .histograms
            .retain(|h| histogram_cluster(&h.name).as_ref() == Some(&id));
        if metrics.counters.is_empty() && metrics.histograms.is_empty() {
            bail!("no metrics for cluster `{id}`: the proxy has no such cluster");
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&as_json(&metrics))?);
    } else {
        print!("{}", as_text(&metrics));
    }
    Ok(exit::OK)
}

/// The cluster a counter is about (its own or its backend's), if any.
fn counter_cluster(name: &str) -> Option<ClusterId> {
    ClusterCounter::ALL
        .iter()
        .find_map(|c| c.cluster_of(name))
        .or_else(|| {
            BackendCounter::ALL
                .iter()
                .find_map(|c| c.backend_of(name))
                .map(|key| key.cluster)
        })
}

fn histogram_cluster(name: &str) -> Option<ClusterId> {
    match Latency::parse(name)?.1 {
        LatencyScope::Cluster(id) => Some(id),
        LatencyScope::Backend(key) => Some(key.cluster),
    }
}

/// Seconds as a short reading: `-` for none, else milliseconds.
fn ms(seconds: Option<f64>) -> String {
    seconds.map_or_else(|| "-".to_owned(), |s| format!("{:.2}ms", s * 1e3))
}

/// Counters as `name value` lines; then, after an empty line, one line per histogram.
fn as_text(metrics: &proto::Metrics) -> String {
    let mut out = String::new();
    for c in &metrics.counters {
        out.push_str(&format!("{} {}\n", c.name, c.value));
    }
    if metrics.histograms.is_empty() {
        return out;
    }
    let width = metrics
        .histograms
        .iter()
        .map(|h| h.name.len())
        .max()
        .unwrap_or(0)
        .max("latency".len());
    out.push_str(&format!(
        "\n{:<width$} {:>8} {:>10} {:>10} {:>10}\n",
        "latency", "count", "mean", "p50", "p99"
    ));
    for h in &metrics.histograms {
        let mean = (h.count > 0).then(|| h.sum_us as f64 / h.count as f64 / 1e6);
        out.push_str(&format!(
            "{:<width$} {:>8} {:>10} {:>10} {:>10}\n",
            h.name,
            h.count,
            ms(mean),
            ms(quantile_seconds(&h.buckets, 0.5)),
            ms(quantile_seconds(&h.buckets, 0.99)),
        ));
    }
    out
}

/// `{"counters": {name: value}, "histograms": {name: {...}}, "latency_bounds_us": [...]}`.
fn as_json(metrics: &proto::Metrics) -> Value {
    let counters: Map<String, Value> = metrics
        .counters
        .iter()
        .map(|c| (c.name.clone(), json!(c.value)))
        .collect();
    let histograms: Map<String, Value> = metrics
        .histograms
        .iter()
        .map(|h| {
            let value = json!({
                "count": h.count,
                "sum_us": h.sum_us,
                "p50_seconds": quantile_seconds(&h.buckets, 0.5),
                "p99_seconds": quantile_seconds(&h.buckets, 0.99),
                "buckets": h.buckets,
            });
            (h.name.clone(), value)
        })
        .collect();
    json!({
        "counters": counters,
        "histograms": histograms,
        "latency_bounds_us": LATENCY_BOUNDS_US,
    })
}
