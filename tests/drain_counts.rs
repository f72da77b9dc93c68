//! The live connection count `weir plan` shows next to a backend it would drain, end to end: a
//! real proxy holds a request at a backend, and the plan of a desired state without that
//! backend shows the count, in text and in `--json`. The count travels from the workers'
//! metrics to the plan by name, so this fails whenever the name workers publish and the name
//! the plan reads differ (they once did: `.active` against `.connections`, and no count ever
//! showed).
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

mod util;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use util::{Desired, Proxy};
use weir_testkit::{free_addr, http_get, wait_until, Backend};

/// One http listener routing `shop.test` to the cluster `shop` with one backend.
fn app(listener: SocketAddr, backend: &str, address: SocketAddr) -> String {
    format!(
        "listeners:\n  - name: web\n    address: {listener}\n    protocol: http\n\
         clusters:\n  - id: shop\n    backends:\n      - id: {backend}\n        address: {address}\n\
         frontends:\n  - listener: web\n    hostname: shop.test\n    cluster: shop\n"
    )
}

/// A latch the held backend waits on, for at most 30 s.
#[derive(Clone, Default)]
struct Latch(Arc<(Mutex<bool>, Condvar)>);

impl Latch {
    fn open(&self) {
        *self.0 .0.lock().unwrap() = true;
        self.0 .1.notify_all();
    }

    fn wait(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut open = self.0 .0.lock().unwrap();
        while !*open {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return;
            };
            open = self.0 .1.wait_timeout(open, left).unwrap().0;
        }
    }
}

/// A backend that answers `/hold` only once `latch` opens, and anything else at once.
fn holding_backend(latch: &Latch) -> Backend {
    let latch = latch.clone();
    Backend::with_handler(
        "blue-1",
        Arc::new(move |seen, stream| {
            if seen.path() == "/hold" {
                latch.wait();
            }
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            true
        }),
    )
}

fn plan_text(proxy: &Proxy, desired: &Desired) -> String {
    let out = proxy.weir(&["plan", desired.path().to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The line of the plan's text that removes `address`.
fn line_of<'t>(text: &'t str, address: &str) -> &'t str {
    text.lines()
        .find(|l| l.contains(&format!("- {address} ")) || l.ends_with(&format!("- {address}")))
        .unwrap_or_else(|| panic!("no step removes {address}:\n{text}"))
}

#[test]
fn plan_shows_the_live_connections_of_a_backend_it_drains() {
    let latch = Latch::default();
    let blue = holding_backend(&latch);
    let green = Backend::start("green-1");
    let listener = free_addr();
    let live = Desired::new();
    live.write("app.yaml", &app(listener, "blue-1", blue.addr));
    let next = Desired::new();
    next.write("app.yaml", &app(listener, "green-1", green.addr));

    // Two workers: the count the plan shows is summed over them.
    let proxy = Proxy::start(&["--workers", "2"]);
    let out = proxy.weir(&["apply", live.path().to_str().unwrap(), "--auto-approve"]);
    assert!(out.status.success(), "{out:?}");
    assert!(wait_until(Duration::from_secs(10), || {
        http_get(listener, "shop.test", "/").is_ok_and(|a| a.status == 200)
    }));

    let held = std::thread::spawn(move || http_get(listener, "shop.test", "/hold"));
    assert!(wait_until(Duration::from_secs(10), || {
        blue.request_count() > 0 && blue.last_seen().path() == "/hold"
    }));

    let text = plan_text(&proxy, &next);
    let drain = line_of(&text, "backend.shop/blue-1");
    assert!(drain.contains("[drains 1 live connection(s)]"), "{text}");

    let out = proxy.weir(&["plan", next.path().to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{out:?}");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let steps = json["steps"].as_array().unwrap();
    let step = steps
        .iter()
        .find(|s| s["address"] == "backend.shop/blue-1")
        .unwrap_or_else(|| panic!("no step for blue-1: {json:#}"));
    assert_eq!(step["drain"], true, "{step}");
    assert_eq!(step["live_connections"], 1, "{step}");
    assert!(
        steps
            .iter()
            .filter(|s| s["address"] != "backend.shop/blue-1")
            .all(|s| s.get("live_connections").is_none()),
        "{json:#}"
    );

    // Once the request is answered, the backend is idle: the count is live, not fixed.
    latch.open();
    assert_eq!(held.join().unwrap().unwrap().status, 200);
    let mut last = String::new();
    let idle = wait_until(Duration::from_secs(10), || {
        last = plan_text(&proxy, &next);
        line_of(&last, "backend.shop/blue-1").contains("[drains 0 live connection(s)]")
    });
    assert!(idle, "{last}");
}
