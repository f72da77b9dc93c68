//! `weir top` against a live proxy: `--once` prints one frame, without terminal control, from
//! two metrics samples over the command socket, with the clusters, their backends up or down,
//! and a nonzero request rate while traffic flows.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

mod util;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use util::proxy_on_yaml;
use weir_testkit::{dead_addr, http_get, wait_until, Backend};

#[test]
fn top_once_shows_clusters_backends_up_or_down_and_the_rate_of_live_traffic() {
    let blue = Backend::start("blue-1");
    let dead = dead_addr();
    let yaml = [
        "listeners:",
        "  - name: web",
        "    address: 127.0.0.1:{port}",
        "    protocol: http",
        "clusters:",
        "  - id: shop",
        "    backends:",
        &format!("      - {{ id: blue-1, address: \"{}\" }}", blue.addr),
        &format!("      - {{ id: gone-2, address: \"{dead}\" }}"),
        "  - id: quiet",
        "frontends:",
        "  - listener: web",
        "    hostname: shop.test",
        "    cluster: shop",
    ]
    .join("\n");
    let (_desired, proxy, addr) = proxy_on_yaml(&yaml, None);
    assert!(wait_until(Duration::from_secs(20), || {
        http_get(addr, "shop.test", "/").is_ok_and(|a| a.status == 200)
    }));
    // Traffic while top samples: bounded in count and in time, stopped once top is done.
    let done = Arc::new(AtomicBool::new(false));
    let traffic = {
        let done = done.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut sent = 0;
            while !done.load(Ordering::SeqCst) && Instant::now() < deadline && sent < 5_000 {
                let _ = http_get(addr, "shop.test", "/");
                sent += 1;
            }
            sent
        })
    };
    let out = proxy.weir(&["top", "--once", "--interval", "1s"]);
    done.store(true, Ordering::SeqCst);
    assert!(traffic.join().unwrap() > 0);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        !text.contains('\x1b'),
        "no terminal control with --once:\n{text}"
    );
    let shop = text
        .lines()
        .find(|l| l.starts_with("shop "))
        .unwrap_or_else(|| panic!("no shop line:\n{text}"));
    let rps: f64 = shop.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(rps > 0.0, "{text}");
    assert!(shop.ends_with("1/2 up"), "{text}");
    let backend = |id: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(&format!("{id} ")))
            .unwrap_or_else(|| panic!("no {id} line:\n{text}"))
            .to_owned()
    };
    assert!(backend("blue-1").contains(" up "), "{text}");
    // The dead backend is marked down once a worker failed to connect to it (requests are
    // spread over both, so some tried it during the traffic).
    assert!(backend("gone-2").contains(" down "), "{text}");
    assert!(text.lines().any(|l| l.starts_with("quiet ")), "{text}");
}
