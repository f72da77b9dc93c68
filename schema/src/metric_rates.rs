//! Rates from two metrics samples: what an operator reads off `weir metrics` by hand, computed
//! once for the two views that show it live (`weir top` and the main process's status page).
//!
//! Counters only grow, so a rate needs two samples and the time between them. Per cluster:
//! requests per second, the share of 5xx answers, and p50/p99 of the latency histogram over the
//! interval; per backend: up or down, requests in flight, requests per second, an error share
//! and p99. Whatever the workers do not report is `None` and shown as such, never a made-up 0:
//! - a cluster's requests are `cluster.<id>.requests`, or else the sum of its backends'
//!   `requests`;
//! - an error share is 5xx over all answers where the scope has `responses.<N>xx` counters; a
//!   backend without them counts failed connects over connect attempts instead;
//! - a counter that went down (a worker restarted) counts from zero.

use std::collections::BTreeMap;

use crate::metric_names::{quantile_seconds, BackendCounter, ClusterCounter, Latency};
use crate::{proto, BackendKey, ClusterId};

/// One metrics answer, indexed by name.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    counters: BTreeMap<String, u64>,
    histograms: BTreeMap<String, Vec<u64>>,
}

impl Sample {
    pub fn new(metrics: &proto::Metrics) -> Sample {
        Sample {
            counters: metrics
                .counters
                .iter()
                .map(|c| (c.name.clone(), c.value))
                .collect(),
            histograms: metrics
                .histograms
                .iter()
                .map(|h| (h.name.clone(), h.buckets.clone()))
                .collect(),
        }
    }

    pub fn counter(&self, name: &str) -> Option<u64> {
        self.counters.get(name).copied()
    }
}

/// What the views show for a cluster.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterRates {
    pub rps: Option<f64>,
    /// 5xx answers over all answers, 0..=1.
    pub error_rate: Option<f64>,
    /// Seconds.
    pub p50: Option<f64>,
    pub p99: Option<f64>,
}

/// What the views show for a backend.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BackendRates {
    /// How many workers count it up (`backend.<key>.up`, summed over workers).
    pub up: Option<u64>,
    /// Requests in flight now.
    pub active: Option<u64>,
    pub rps: Option<f64>,
    pub error_rate: Option<f64>,
    pub p99: Option<f64>,
}

/// How far a counter moved from `before` to `now`; from zero if it went down.
fn delta(before: Option<u64>, now: u64) -> u64 {
    match before {
        Some(b) if b <= now => now - b,
        _ => now,
    }
}

/// Two samples and the seconds between them. Without a previous sample, rates are `None` and
/// quantiles are over everything counted so far.
#[derive(Debug)]
pub struct Interval<'a> {
    pub before: Option<&'a Sample>,
    pub now: &'a Sample,
    pub seconds: f64,
}

impl Interval<'_> {
    /// How far `name` moved; `None` if `now` lacks it.
    fn moved(&self, name: &str) -> Option<u64> {
        let now = self.now.counter(name)?;
        Some(delta(self.before.and_then(|b| b.counter(name)), now))
    }

    fn per_second(&self, count: u64) -> Option<f64> {
        (self.before.is_some() && self.seconds > 0.0).then(|| count as f64 / self.seconds)
    }

    /// The quantile `q` (seconds) of histogram `name` over the interval.
    fn quantile(&self, name: &str, q: f64) -> Option<f64> {
        let now = self.now.histograms.get(name)?;
        let before = self.before.and_then(|b| b.histograms.get(name));
        let buckets: Vec<u64> = match before {
            Some(before) if before.len() == now.len() => {
                let moved: Vec<u64> = now
                    .iter()
                    .zip(before)
                    .map(|(n, b)| delta(Some(*b), *n))
                    .collect();
                // A restarted worker's histogram went down somewhere: count from zero.
                if now.iter().zip(before).any(|(n, b)| n < b) {
                    now.clone()
                } else {
                    moved
                }
            }
            _ => now.clone(),
        };
        quantile_seconds(&buckets, q)
    }

    /// 5xx over all answers of `scope` (`cluster.<id>` or `backend.<key>`), if it has them.
    fn error_share(&self, scope: &str) -> Option<f64> {
        let mut total = 0u64;
        let mut seen = false;
        let mut errors = 0;
        for class in 1..=5u8 {
            if let Some(moved) = self.moved(&format!("{scope}.responses.{class}xx")) {
                seen = true;
                total += moved;
                if class == 5 {
                    errors = moved;
                }
            }
        }
        share(seen, errors, total)
    }

    pub fn cluster(&self, id: &ClusterId, backends: &[BackendKey]) -> ClusterRates {
        let requests = self.moved(&ClusterCounter::Requests.name(id)).or_else(|| {
            let moved: Vec<u64> = backends
                .iter()
                .filter_map(|key| self.moved(&BackendCounter::Requests.name(key)))
                .collect();
            (!moved.is_empty()).then(|| moved.iter().sum())
        });
        let latency = Latency::Total.cluster_name(id);
        ClusterRates {
            rps: requests.and_then(|r| self.per_second(r)),
            error_rate: self.error_share(&format!("cluster.{id}")),
            p50: self.quantile(&latency, 0.5),
            p99: self.quantile(&latency, 0.99),
        }
    }

    pub fn backend(&self, key: &BackendKey) -> BackendRates {
        let error_rate = self.error_share(&format!("backend.{key}")).or_else(|| {
            let failed = self.moved(&BackendCounter::ConnectErrors.name(key))?;
            let opened = self.moved(&BackendCounter::ConnectionsOpened.name(key))?;
            share(true, failed, failed + opened)
        });
        BackendRates {
            up: self.now.counter(&BackendCounter::Up.name(key)),
            active: self.now.counter(&BackendCounter::Active.name(key)),
            rps: self
                .moved(&BackendCounter::Requests.name(key))
                .and_then(|r| self.per_second(r)),
            error_rate,
            p99: self.quantile(&Latency::Total.backend_name(key), 0.99),
        }
    }
}

/// `errors / total` when there was anything to count.
fn share(seen: bool, errors: u64, total: u64) -> Option<f64> {
    (seen && total > 0).then(|| errors as f64 / total as f64)
}

/// Up, down, or up on some workers only, from the summed `up` gauge and the workers asked.
pub fn up_word(up: Option<u64>, workers: usize) -> String {
    match up {
        None => "?".to_owned(),
        Some(0) => "down".to_owned(),
        Some(n) if n as usize >= workers => "up".to_owned(),
        Some(n) => format!("up on {n}/{workers}"),
    }
}

/// A rate for people: `12.3`, or `-` when unknown.
pub fn show_rate(rate: Option<f64>) -> String {
    rate.map_or_else(|| "-".to_owned(), |r| format!("{r:.1}"))
}

/// A share as a percentage: `1.5%`, or `-`.
pub fn show_share(share: Option<f64>) -> String {
    share.map_or_else(|| "-".to_owned(), |s| format!("{:.1}%", s * 100.0))
}

/// Seconds as `850us`, `12.5ms` or `1.20s`, or `-`.
pub fn show_seconds(seconds: Option<f64>) -> String {
    match seconds {
        None => "-".to_owned(),
        Some(s) if s < 0.001 => format!("{:.0}us", s * 1e6),
        Some(s) if s < 1.0 => format!("{:.1}ms", s * 1e3),
        Some(s) => format!("{s:.2}s"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::metric_names::LATENCY_BOUNDS_US;
    use crate::BackendId;

    fn sample(counters: &[(&str, u64)], histograms: &[(&str, Vec<u64>)]) -> Sample {
        Sample::new(&proto::Metrics {
            counters: counters
                .iter()
                .map(|(n, v)| proto::Counter {
                    name: (*n).into(),
                    value: *v,
                })
                .collect(),
            histograms: histograms
                .iter()
                .map(|(n, b)| proto::Histogram {
                    name: (*n).into(),
                    buckets: b.clone(),
                    sum_us: 0,
                    count: b.iter().sum(),
                })
                .collect(),
        })
    }

    fn key(c: &str, b: &str) -> BackendKey {
        BackendKey {
            cluster: ClusterId(c.into()),
            id: BackendId(b.into()),
        }
    }

    #[test]
    fn cluster_rates_come_from_cluster_counters_over_the_interval() {
        let id = ClusterId("shop".into());
        let mut fast = vec![0u64; LATENCY_BOUNDS_US.len() + 1];
        fast[0] = 10;
        let mut later = fast.clone();
        later[3] = 100; // 100 new samples in (1ms, 2.5ms]
        let before = sample(
            &[
                ("cluster.shop.requests", 10),
                ("cluster.shop.responses.2xx", 10),
            ],
            &[("cluster.shop.latency", fast)],
        );
        let now = sample(
            &[
                ("cluster.shop.requests", 30),
                ("cluster.shop.responses.2xx", 25),
                ("cluster.shop.responses.5xx", 5),
            ],
            &[("cluster.shop.latency", later)],
        );
        let rates = Interval {
            before: Some(&before),
            now: &now,
            seconds: 2.0,
        }
        .cluster(&id, &[]);
        assert_eq!(rates.rps, Some(10.0));
        assert_eq!(rates.error_rate, Some(0.25));
        // Only the interval's samples count: the 10 fast ones before it do not pull p50 down.
        assert!((rates.p50.unwrap() - 0.00175).abs() < 1e-9, "{rates:?}");
        assert!(rates.p99.unwrap() <= 0.0025);
    }

    #[test]
    fn without_cluster_counters_a_cluster_sums_its_backends_and_unknowns_stay_none() {
        let id = ClusterId("shop".into());
        let keys = [key("shop", "a"), key("shop", "b")];
        let before = sample(&[("backend.shop/a.requests", 4)], &[]);
        let now = sample(
            &[
                ("backend.shop/a.requests", 8),
                ("backend.shop/b.requests", 2),
            ],
            &[],
        );
        let interval = Interval {
            before: Some(&before),
            now: &now,
            seconds: 1.0,
        };
        let rates = interval.cluster(&id, &keys);
        assert_eq!(rates.rps, Some(6.0));
        assert_eq!(rates.error_rate, None);
        assert_eq!(rates.p99, None);
        // No previous sample: no rate at all, not a zero.
        let first = Interval {
            before: None,
            now: &now,
            seconds: 0.0,
        };
        assert_eq!(first.cluster(&id, &keys).rps, None);
    }

    #[test]
    fn backend_rates_and_a_restart_counting_from_zero() {
        let k = key("shop", "a");
        let before = sample(
            &[
                ("backend.shop/a.requests", 100),
                ("backend.shop/a.connect_errors", 0),
                ("backend.shop/a.connections_opened", 10),
            ],
            &[],
        );
        let now = sample(
            &[
                ("backend.shop/a.requests", 5),
                ("backend.shop/a.connect_errors", 1),
                ("backend.shop/a.connections_opened", 13),
                ("backend.shop/a.up", 2),
                ("backend.shop/a.active", 3),
            ],
            &[],
        );
        let rates = Interval {
            before: Some(&before),
            now: &now,
            seconds: 1.0,
        }
        .backend(&k);
        assert_eq!(rates.rps, Some(5.0));
        assert_eq!(rates.error_rate, Some(0.25));
        assert_eq!(rates.up, Some(2));
        assert_eq!(rates.active, Some(3));
        assert_eq!(up_word(rates.up, 2), "up");
        assert_eq!(up_word(Some(1), 2), "up on 1/2");
        assert_eq!(up_word(Some(0), 2), "down");
    }

    #[test]
    fn shown_values() {
        assert_eq!(show_rate(None), "-");
        assert_eq!(show_rate(Some(2.26)), "2.3");
        assert_eq!(show_share(Some(0.015)), "1.5%");
        assert_eq!(show_seconds(Some(0.00025)), "250us");
        assert_eq!(show_seconds(Some(0.0125)), "12.5ms");
        assert_eq!(show_seconds(Some(1.2)), "1.20s");
    }
}
