//! The main process's admin endpoint (`[metrics] prometheus` in weir.toml), end to end: a real
//! proxy, real backends, real clients.
//!
//! - `GET /metrics` parses with a real Prometheus parser (the `prometheus_client` Python
//!   package's), and its counts per status class and per backend match the traffic sent;
//!   each cluster has its latency histogram;
//! - other methods get 405, other paths 404, `HEAD` the headers alone; connections are capped
//!   and a silent one is closed at the read deadline; after `weir upgrade` the new main process
//!   serves the address;
//! - a non-loopback address, or one in use, stops the start with a clear error;
//! - the status page loads in headless Chromium (Debian's `chromium` package): a screenshot of
//!   sane size, and the DOM it rendered holds the live cluster and backend names. A screenshot
//!   cannot be searched for text without OCR, so the names are checked in `--dump-dom`'s
//!   output of the same page, rendered by the same browser.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

mod util;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use util::metrics::{parse_with_prometheus_client, scrape, value, Samples};
use util::{curl, proxy_on_yaml, wait_for_port, Desired, Proxy};
use weir_schema::metric_names::LATENCY_BOUNDS_US;
use weir_schema::{prometheus, proto};
use weir_testkit::{closed_by_peer, free_addr, http_get, wait_until, Backend};

/// A backend answering 500 to `/fail` and 200 with its name to anything else.
fn backend(name: &'static str) -> Backend {
    Backend::with_handler(
        name,
        Arc::new(move |seen, stream| {
            let answer = if seen.path() == "/fail" {
                "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nfail".to_owned()
            } else {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{name}",
                    name.len()
                )
            };
            let _ = stream.write_all(answer.as_bytes());
            true
        }),
    )
}

/// A proxy routing `shop.test` to the cluster `shop` with `backends`, its admin endpoint on a
/// free loopback port. Returns once both the route and the endpoint answer.
fn proxy_with_admin(backends: &[&Backend]) -> (Desired, Proxy, SocketAddr, SocketAddr) {
    let admin = free_addr();
    let list: String = backends
        .iter()
        .map(|b| format!("      - id: {}\n        address: {}\n", b.name, b.addr))
        .collect();
    let yaml = format!(
        "listeners:\n  - name: web\n    address: 127.0.0.1:{{port}}\n    protocol: http\n\
         clusters:\n  - id: shop\n    backends:\n{list}\
         frontends:\n  - listener: web\n    hostname: shop.test\n    cluster: shop\n"
    );
    let toml = format!("[metrics]\nprometheus = \"{admin}\"\n");
    let (desired, proxy, addr) = proxy_on_yaml(&yaml, Some(&toml));
    assert!(wait_for_port(admin), "the admin endpoint never listened");
    assert!(wait_until(Duration::from_secs(20), || {
        http_get(addr, "shop.test", "/").is_ok_and(|a| a.status == 200)
    }));
    (desired, proxy, addr, admin)
}

#[test]
fn metrics_parse_with_a_real_parser_and_count_the_traffic_sent() {
    let (blue, green) = (backend("blue-1"), backend("green-2"));
    let (_desired, proxy, addr, admin) = proxy_with_admin(&[&blue, &green]);
    let (before, _) = scrape(admin);
    let code = |samples: &Samples, class: &str| {
        value(samples, "weir_http_responses_total", &[("code", class)])
    };
    let (ok, failed, unrouted) = (10, 3, 4);
    for _ in 0..ok {
        assert_eq!(http_get(addr, "shop.test", "/").unwrap().status, 200);
    }
    for _ in 0..failed {
        assert_eq!(http_get(addr, "shop.test", "/fail").unwrap().status, 500);
    }
    for _ in 0..unrouted {
        assert_eq!(http_get(addr, "nowhere.test", "/").unwrap().status, 404);
    }
    // A worker counts an answer as it finishes it; poll until the scrape has all of them.
    let mut after = before.clone();
    let mut types = BTreeMap::new();
    wait_until(Duration::from_secs(10), || {
        (after, types) = scrape(admin);
        code(&after, "5xx") - code(&before, "5xx") >= failed as f64
            && code(&after, "4xx") - code(&before, "4xx") >= unrouted as f64
            && code(&after, "2xx") - code(&before, "2xx") >= ok as f64
    });
    assert_eq!(code(&after, "2xx") - code(&before, "2xx"), ok as f64);
    assert_eq!(code(&after, "5xx") - code(&before, "5xx"), failed as f64);
    assert_eq!(code(&after, "4xx") - code(&before, "4xx"), unrouted as f64);
    // Per backend: what each one itself saw, readiness polls included.
    for b in [&blue, &green] {
        let labels = [("cluster", "shop"), ("backend", b.name.as_str())];
        let requests = value(&after, "weir_backend_requests_total", &labels);
        assert_eq!(requests, b.request_count() as f64, "{}", b.name);
        assert!(requests > 0.0, "{} got no traffic", b.name);
        assert_eq!(value(&after, "weir_backend_up", &labels), 1.0);
    }
    assert_eq!(types["weir_backend_up"], "gauge");
    assert_eq!(types["weir_http_responses"], "counter");

    // Histograms: the cluster's latency histogram is there, in seconds, with every bucket,
    // counting at least every request the test sent through it.
    let mut client = util::control::client(&proxy);
    let reported = client.metrics().unwrap();
    let (now, types) = scrape(admin);
    let cluster_latency: Vec<&proto::Histogram> = reported
        .histograms
        .iter()
        .filter(|h| h.name.starts_with("cluster.") && h.name.ends_with(".latency"))
        .collect();
    assert_eq!(cluster_latency.len(), 1, "{:?}", reported.histograms);
    assert_eq!(types["weir_cluster_latency_seconds"], "histogram");
    let total = value(
        &now,
        "weir_cluster_latency_seconds_count",
        &[("cluster", "shop")],
    );
    let inf = value(
        &now,
        "weir_cluster_latency_seconds_bucket",
        &[("cluster", "shop"), ("le", "+Inf")],
    );
    assert_eq!(total, inf);
    assert!(total >= (ok + failed) as f64, "{total}");
    for h in &cluster_latency {
        let id = h.name["cluster.".len()..h.name.len() - ".latency".len()].to_owned();
        let buckets = now
            .keys()
            .filter(|(name, l)| name == "weir_cluster_latency_seconds_bucket" && l["cluster"] == id)
            .count();
        assert_eq!(buckets, LATENCY_BOUNDS_US.len() + 1);
    }
}

#[test]
fn histograms_as_rendered_parse_with_the_real_parser() {
    // What the endpoint renders for a histogram, through the same parser: holds before the
    // workers report any.
    let mut buckets = vec![0u64; LATENCY_BOUNDS_US.len() + 1];
    buckets[2] = 4;
    buckets[LATENCY_BOUNDS_US.len()] = 1;
    let metrics = proto::Metrics {
        counters: vec![proto::Counter {
            name: "cluster.shop \"eu\".responses.2xx".into(),
            value: 5,
        }],
        histograms: vec![proto::Histogram {
            name: "backend.shop/blue-1.first_byte_latency".into(),
            buckets,
            sum_us: 11_000_000,
            count: 5,
        }],
    };
    let (samples, types) =
        parse_with_prometheus_client(&prometheus::render(&metrics, &Default::default()));
    assert_eq!(
        types["weir_backend_first_byte_latency_seconds"],
        "histogram"
    );
    let backend = [("cluster", "shop"), ("backend", "blue-1")];
    let at = |le| {
        let mut l = backend.to_vec();
        l.push(("le", le));
        value(
            &samples,
            "weir_backend_first_byte_latency_seconds_bucket",
            &l,
        )
    };
    assert_eq!(at("0.001"), 4.0);
    assert_eq!(at("10"), 4.0);
    assert_eq!(at("+Inf"), 5.0);
    assert_eq!(
        value(
            &samples,
            "weir_backend_first_byte_latency_seconds_sum",
            &backend
        ),
        11.0
    );
    assert_eq!(
        value(
            &samples,
            "weir_cluster_responses_total",
            &[("cluster", "shop \"eu\""), ("code", "2xx")]
        ),
        5.0
    );
}

#[test]
fn only_get_and_head_of_the_two_pages() {
    let blue = backend("blue-1");
    let (_desired, _proxy, _addr, admin) = proxy_with_admin(&[&blue]);
    let status = |args: &[&str]| {
        let out = curl(&[&["-o", "/dev/null", "-w", "%{http_code}"], args].concat());
        String::from_utf8(out.stdout).unwrap()
    };
    let metrics = format!("http://{admin}/metrics");
    let page = format!("http://{admin}/");
    assert_eq!(status(&["-X", "POST", &metrics]), "405");
    assert_eq!(status(&["-X", "DELETE", &page]), "405");
    assert_eq!(status(&[&format!("http://{admin}/favicon.ico")]), "404");
    assert_eq!(status(&[&page]), "200");
    let head = curl(&["-I", &metrics]);
    let head = String::from_utf8(head.stdout).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(length > 100, "HEAD carries GET's length: {head}");
    let refused = curl(&["-i", "-X", "PUT", &metrics]);
    let refused = String::from_utf8(refused.stdout).unwrap();
    assert!(refused.contains("Allow: GET, HEAD"), "{refused}");
}

/// Runs `weir proxy` with `toml` as its config, which must stop it from starting; returns its
/// stderr and the config's path.
fn start_fails(toml: &str) -> (String, PathBuf) {
    let dir = util::private_tempdir();
    let config = dir.path().join("weir.toml");
    std::fs::write(&config, toml).unwrap();
    let stderr = util::proxy_fails_to_start(
        &dir.path().join("weir.sock"),
        &["--config", config.to_str().unwrap(), "--workers", "1"],
    );
    (stderr, config)
}

#[test]
fn a_non_loopback_or_busy_address_stops_the_start() {
    let (err, config) = start_fails("workers = 1\n[metrics]\nprometheus = \"0.0.0.0:9901\"\n");
    assert!(err.contains(config.to_str().unwrap()), "{err}");
    assert!(err.contains("line 3"), "{err}");
    assert!(err.contains("not a loopback address"), "{err}");

    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap();
    let (err, _) = start_fails(&format!("[metrics]\nprometheus = \"{address}\"\n"));
    assert!(
        err.contains("cannot serve the admin endpoint") && err.contains(&address.to_string()),
        "{err}"
    );
}

/// Debian's `chromium` (or another Chromium on PATH). Not found is a failure, not a skip:
/// `.ci/run` installs it.
fn chromium() -> &'static str {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|name| {
            Command::new(name)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("no chromium on PATH: apt-get install -y chromium (.ci/run does)")
}

/// Runs headless Chromium on `url` with `args`, for at most 90 s.
fn headless(url: &str, profile: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn the_status_page_renders_in_headless_chromium_with_the_live_names() {
    let (blue, green) = (backend("blue-1"), backend("green-2"));
    let (_desired, _proxy, addr, admin) = proxy_with_admin(&[&blue, &green]);
    for _ in 0..5 {
        assert_eq!(http_get(addr, "shop.test", "/").unwrap().status, 200);
    }
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://{admin}/");
    let shot = dir.path().join("status.png");
    let out = headless(
        &url,
        &dir.path().join("profile"),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,900",
        ],
    );
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot ({e}): {out:?}"));
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert_eq!(&png[12..16], b"IHDR");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((width, height), (1280, 900));
    // A blank 1280x900 page compresses to a few KB; tables of text do not.
    assert!(
        png.len() > 10_000,
        "a blank screenshot? {} bytes",
        png.len()
    );

    let dom = headless(&url, &dir.path().join("profile"), &["--dump-dom"]);
    let dom = String::from_utf8_lossy(&dom.stdout);
    for name in ["shop", "blue-1", "green-2", "web"] {
        assert!(
            dom.contains(&format!(">{name}<")) || dom.contains(&format!(";{name}<")),
            "{name} not on the page:\n{dom}"
        );
    }
    assert!(dom.contains(&blue.addr.to_string()), "{dom}");
    assert!(dom.contains("http-equiv=\"refresh\""), "{dom}");
}

#[test]
fn connections_are_capped_and_a_silent_one_is_closed_at_the_read_deadline() {
    let blue = backend("blue-1");
    let (_desired, _proxy, _addr, admin) = proxy_with_admin(&[&blue]);
    // The cap is 32 connections (`admin/server.rs`); these say nothing.
    let silent: Vec<TcpStream> = (0..32)
        .map(|_| TcpStream::connect(admin).unwrap())
        .collect();
    let mut over = TcpStream::connect(admin).unwrap();
    over.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = String::new();
    over.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    // Each silent one is closed at the 5 s read deadline, which frees the endpoint.
    for mut stream in silent {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        closed_by_peer(&mut stream).unwrap();
    }
    let out = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("http://{admin}/metrics"),
    ]);
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "200");
}

#[test]
fn after_weir_upgrade_the_new_main_process_serves_the_endpoint() {
    let blue = backend("blue-1");
    let (_desired, mut proxy, _addr, admin) = proxy_with_admin(&[&blue]);
    let out = proxy.weir(&["upgrade"]);
    assert!(out.status.success(), "{out:?}");
    // The old main process lets go of the address and exits once its workers drained: from
    // then on only the new one can answer.
    assert!(wait_until(Duration::from_secs(30), || proxy
        .child
        .try_wait()
        .unwrap()
        .is_some()));
    let mut client = util::control::client(&proxy);
    let new = util::control::status(&mut client).pid;
    assert_ne!(new, proxy.pid());
    let answers = || {
        let out = curl(&[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("http://{admin}/metrics"),
        ]);
        String::from_utf8(out.stdout).unwrap() == "200"
    };
    let served = wait_until(Duration::from_secs(10), answers);
    // Not left running whatever the outcome: the new main process is no child of this test.
    util::control::call(&mut client, weir_schema::Command::HardStop);
    assert!(
        served,
        "the new main process never served the admin endpoint"
    );
}
