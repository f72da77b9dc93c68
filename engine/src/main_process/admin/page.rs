//! The status page (`GET /`): server-rendered HTML, inline CSS, no script and no external
//! asset (the answer's CSP forbids any), refreshed by the browser every few seconds. Every
//! string that comes from the state (ids, names, hostnames, change descriptions) is escaped.
//!
//! Rates need two samples: [`Sampler`] keeps the previous metrics answer and its time, so a
//! page shows rates over the interval since a sample at least a second older.

use std::fmt::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use weir_schema::cert::utc_date;
use weir_schema::metric_rates::{show_rate, show_seconds, show_share, up_word, Interval, Sample};

use super::Snapshot;

/// Seconds between the browser's reloads.
pub const REFRESH_SECONDS: u32 = 5;

/// The page's Content-Security-Policy: inline style only.
pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'";

/// Rates are over at least this long, so two quick reloads do not divide by nothing.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// The samples rates are computed from: the newest kept, and the one before it, at least
/// [`MIN_INTERVAL`] older.
#[derive(Debug, Default)]
pub struct Sampler {
    older: Option<(Instant, Sample)>,
    newer: Option<(Instant, Sample)>,
}

impl Sampler {
    /// The interval from the newest sample at least [`MIN_INTERVAL`] old to `now`.
    pub fn interval<'a>(&'a self, now: &'a Sample) -> Interval<'a> {
        let at = Instant::now();
        let base = [&self.newer, &self.older]
            .into_iter()
            .flatten()
            .find(|(t, _)| at.duration_since(*t) >= MIN_INTERVAL);
        Interval {
            before: base.map(|(_, s)| s),
            now,
            seconds: base.map_or(0.0, |(t, _)| at.duration_since(*t).as_secs_f64()),
        }
    }

    /// Keeps `sample` if the newest kept one is at least [`MIN_INTERVAL`] old.
    pub fn keep(&mut self, sample: Sample) {
        let now = Instant::now();
        match &self.newer {
            Some((t, _)) if now.duration_since(*t) < MIN_INTERVAL => {}
            _ => self.older = self.newer.replace((now, sample)),
        }
    }
}

/// `text` with `& < > " '` escaped, for element content and attribute values alike.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str =
    "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}\
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.4em 0 .4em}\
table{border-collapse:collapse;background:#fff;min-width:40em}\
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left}\
th{background:#eee}td.n{text-align:right;font-variant-numeric:tabular-nums}\
tr.cluster td{background:#f0f4fa;font-weight:600}\
.up{color:#176b2c;font-weight:600}.down{color:#b3261e;font-weight:600}\
.meta{color:#555}code{font-size:.95em}";

/// The page for `snapshot`, with rates over `interval`.
pub fn render(snapshot: &Snapshot, interval: &Interval<'_>) -> String {
    let mut h = String::with_capacity(8 * 1024);
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
         <title>weir status</title><style>{STYLE}</style></head><body>\
         <h1>weir</h1><p class=\"meta\">state version <b>{}</b> · fingerprint <code>{}</code> · \
         {} worker(s) · refreshed every {REFRESH_SECONDS} s · read-only</p>",
        snapshot.version,
        escape(&snapshot.fingerprint),
        snapshot.workers,
    );
    match &snapshot.last_change {
        Some((what, when)) => {
            let _ = write!(
                h,
                "<p class=\"meta\">last change: {} at {} ({})</p>",
                escape(what),
                httpdate::fmt_http_date(*when),
                ago(*when)
            );
        }
        None => h.push_str("<p class=\"meta\">no change applied since this process started</p>"),
    }
    listeners(&mut h, snapshot);
    clusters(&mut h, snapshot, interval);
    certificates(&mut h, snapshot);
    h.push_str("</body></html>\n");
    h
}

fn ago(when: SystemTime) -> String {
    match SystemTime::now().duration_since(when) {
        Ok(d) => format!("{} s ago", d.as_secs()),
        Err(_) => "just now".to_owned(),
    }
}

fn listeners(h: &mut String, snapshot: &Snapshot) {
    h.push_str("<h2>Listeners</h2><table><tr><th>name</th><th>address</th><th>protocol</th><th>frontends</th></tr>");
    for l in &snapshot.listeners {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
            escape(&l.name),
            l.address,
            l.protocol.as_str(),
            l.frontends
        );
    }
    if snapshot.listeners.is_empty() {
        h.push_str("<tr><td colspan=\"4\">none</td></tr>");
    }
    h.push_str("</table>");
}

fn clusters(h: &mut String, snapshot: &Snapshot, interval: &Interval<'_>) {
    let over = if interval.before.is_some() {
        format!("over the last {:.1} s", interval.seconds)
    } else {
        "shown from the next refresh on".to_owned()
    };
    let _ = write!(
        h,
        "<h2>Clusters and backends</h2><p class=\"meta\">rates {over}; errors: 5xx share of \
         answers, or failed connects for a backend without answer counts</p><table><tr>\
         <th>cluster / backend</th><th>address</th><th>state</th><th>active</th><th>rps</th>\
         <th>errors</th><th>p99</th></tr>"
    );
    for cluster in &snapshot.clusters {
        let keys: Vec<_> = cluster.backends.iter().map(|b| b.key.clone()).collect();
        let rates = interval.cluster(&cluster.id, &keys);
        let _ = write!(
            h,
            "<tr class=\"cluster\"><td>{}</td><td></td><td>{} backend(s)</td><td></td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            escape(&cluster.id.0),
            cluster.backends.len(),
            show_rate(rates.rps),
            show_share(rates.error_rate),
            show_seconds(rates.p99)
        );
        for backend in &cluster.backends {
            let rates = interval.backend(&backend.key);
            let word = up_word(rates.up, snapshot.workers);
            let class = if word == "down" { "down" } else { "up" };
            let role = if backend.backup { ", backup" } else { "" };
            let _ = write!(
                h,
                "<tr><td>&nbsp;&nbsp;{}</td><td>{} (weight {}{role})</td>\
                 <td class=\"{class}\">{word}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                escape(&backend.key.id.0),
                backend.address,
                backend.weight,
                rates
                    .active
                    .map_or_else(|| "-".to_owned(), |a| a.to_string()),
                show_rate(rates.rps),
                show_share(rates.error_rate),
                show_seconds(rates.p99)
            );
        }
    }
    if snapshot.clusters.is_empty() {
        h.push_str("<tr><td colspan=\"7\">none</td></tr>");
    }
    h.push_str("</table>");
}

fn certificates(h: &mut String, snapshot: &Snapshot) {
    h.push_str("<h2>Certificates</h2><table><tr><th>name</th><th>covers</th><th>expires</th></tr>");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    for c in &snapshot.certificates {
        let days = (c.not_after - now).div_euclid(86_400);
        let left = if c.not_after <= now {
            "<span class=\"down\">expired</span>".to_owned()
        } else {
            format!("in {days} day(s)")
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{} ({left})</td></tr>",
            escape(&c.name),
            escape(&c.dns_names.join(", ")),
            utc_date(c.not_after)
        );
    }
    if snapshot.certificates.is_empty() {
        h.push_str("<tr><td colspan=\"3\">none</td></tr>");
    }
    h.push_str("</table>");
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::{BackendRow, ClusterRow, ListenerRow};
    use super::*;
    use weir_schema::{proto, BackendId, BackendKey, ClusterId, Protocol};

    fn snapshot(cluster: &str, backend: &str) -> Snapshot {
        Snapshot {
            version: 7,
            fingerprint: "ab12".into(),
            workers: 2,
            listeners: vec![ListenerRow {
                name: "<front>".into(),
                address: "127.0.0.1:8080".parse().unwrap(),
                protocol: Protocol::Http,
                frontends: 1,
            }],
            clusters: vec![ClusterRow {
                id: ClusterId(cluster.into()),
                backends: vec![BackendRow {
                    key: BackendKey {
                        cluster: ClusterId(cluster.into()),
                        id: BackendId(backend.into()),
                    },
                    address: "127.0.0.1:9000".parse().unwrap(),
                    weight: 100,
                    backup: false,
                }],
            }],
            certificates: vec![],
            last_change: Some(("add cluster <b>".into(), SystemTime::now())),
            ids: Default::default(),
        }
    }

    #[test]
    fn every_state_string_is_escaped() {
        let sample = Sample::default();
        let sampler = Sampler::default();
        let interval = sampler.interval(&sample);
        let page = render(&snapshot("shop<script>", "b\"1'&"), &interval);
        assert!(page.contains("shop&lt;script&gt;"), "{page}");
        assert!(page.contains("b&quot;1&#39;&amp;"), "{page}");
        assert!(page.contains("&lt;front&gt;"), "{page}");
        assert!(page.contains("add cluster &lt;b&gt;"), "{page}");
        assert!(!page.contains("<script>"));
        assert!(page.contains("<meta http-equiv=\"refresh\" content=\"5\">"));
    }

    #[test]
    fn rates_show_once_there_is_a_sample_a_second_older() {
        let metrics = |requests| proto::Metrics {
            counters: vec![
                proto::Counter {
                    name: "backend.shop/b1.requests".into(),
                    value: requests,
                },
                proto::Counter {
                    name: "backend.shop/b1.up".into(),
                    value: 2,
                },
            ],
            histograms: vec![],
        };
        let mut sampler = Sampler::default();
        let first = Sample::new(&metrics(10));
        assert!(sampler.interval(&first).before.is_none());
        // Taken "two seconds ago".
        sampler.newer = Some((Instant::now() - Duration::from_secs(2), first));
        let second = Sample::new(&metrics(30));
        let interval = sampler.interval(&second);
        let rates = interval.backend(&BackendKey {
            cluster: ClusterId("shop".into()),
            id: BackendId("b1".into()),
        });
        let rps = rates.rps.unwrap();
        assert!((9.0..=10.0).contains(&rps), "{rps}");
        let page = render(&snapshot("shop", "b1"), &interval);
        assert!(page.contains("<td class=\"up\">up</td>"), "{page}");
        // A quick reload keeps the older sample as the base.
        sampler.keep(second);
        sampler.keep(Sample::new(&metrics(31)));
        assert_eq!(
            sampler
                .newer
                .as_ref()
                .unwrap()
                .1
                .counter("backend.shop/b1.requests"),
            Some(30)
        );
    }
}
