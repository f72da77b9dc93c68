//! The proxy's metrics from its workers' reports: counters folded by name (summed, or the
//! largest for the gauges `metric_names::fold_of` names), histograms summed bucket by
//! bucket. Without I/O; the core hands it each worker's answer.

use std::collections::BTreeMap;

use weir_schema::metric_names::{fold_of, Fold};
use weir_schema::proto;

/// Workers' reports folded so far.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct MetricSums {
    counters: BTreeMap<String, u64>,
    histograms: BTreeMap<String, proto::Histogram>,
}

impl MetricSums {
    /// Folds in one worker's report.
    pub fn add(&mut self, report: &proto::Metrics) {
        for c in &report.counters {
            let value = self.counters.entry(c.name.clone()).or_default();
            *value = match fold_of(&c.name) {
                Fold::Sum => value.saturating_add(c.value),
                Fold::Max => (*value).max(c.value),
            };
        }
        for h in &report.histograms {
            let sum = self
                .histograms
                .entry(h.name.clone())
                .or_insert_with(|| proto::Histogram {
                    name: h.name.clone(),
                    ..proto::Histogram::default()
                });
            if sum.buckets.len() < h.buckets.len() {
                sum.buckets.resize(h.buckets.len(), 0);
            }
            for (total, n) in sum.buckets.iter_mut().zip(&h.buckets) {
                *total = total.saturating_add(*n);
            }
            sum.sum_us = sum.sum_us.saturating_add(h.sum_us);
            sum.count = sum.count.saturating_add(h.count);
        }
    }

    /// The value folded so far for `name`.
    #[cfg(test)]
    pub fn counter(&self, name: &str) -> Option<u64> {
        self.counters.get(name).copied()
    }

    /// The answer's content, in name order.
    pub fn into_proto(self) -> proto::Metrics {
        proto::Metrics {
            counters: self
                .counters
                .into_iter()
                .map(|(name, value)| proto::Counter { name, value })
                .collect(),
            histograms: self.histograms.into_values().collect(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn counter(name: &str, value: u64) -> proto::Counter {
        proto::Counter {
            name: name.into(),
            value,
        }
    }

    fn histogram(buckets: &[u64], sum_us: u64) -> proto::Histogram {
        proto::Histogram {
            name: "cluster.shop.latency".into(),
            buckets: buckets.to_vec(),
            sum_us,
            count: buckets.iter().sum(),
        }
    }

    #[test]
    fn histograms_add_bucket_by_bucket_and_counters_by_their_fold() {
        let mut sums = MetricSums::default();
        sums.add(&proto::Metrics {
            counters: vec![
                counter("http.requests", 5),
                counter("backend.shop/a.up", 1),
                counter("backend.shop/a.active", 2),
            ],
            histograms: vec![histogram(&[1, 0, 2, 0], 700)],
        });
        sums.add(&proto::Metrics {
            counters: vec![
                counter("http.requests", 7),
                counter("backend.shop/a.up", 0),
                counter("backend.shop/a.active", 3),
                counter("certificate.ab12.seconds_left", 90),
            ],
            histograms: vec![histogram(&[0, 4, 1, 1], 900)],
        });
        sums.add(&proto::Metrics {
            counters: vec![counter("certificate.ab12.seconds_left", 91)],
            histograms: Vec::new(),
        });
        assert_eq!(sums.counter("http.requests"), Some(12));
        // Up in one worker of two: up. Active requests add up (a drain waits for all).
        assert_eq!(sums.counter("backend.shop/a.up"), Some(1));
        assert_eq!(sums.counter("backend.shop/a.active"), Some(5));
        // Every worker knows the same certificate: not a sum.
        assert_eq!(sums.counter("certificate.ab12.seconds_left"), Some(91));
        let out = sums.into_proto();
        assert_eq!(out.histograms, vec![histogram(&[1, 4, 3, 1], 1600)]);
        let names: Vec<&str> = out.counters.iter().map(|c| c.name.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
    }
}
