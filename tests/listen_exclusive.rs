//! A listening address belongs to one proxy: a second proxy (or a listener added through the
//! command socket) cannot take an address another process listens on, even though Weir's own
//! sockets use SO_REUSEPORT, which would otherwise let both in and split the traffic.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod util;

use std::time::Duration;

use util::control::*;
use weir_testkit::{http_get, wait_until, Backend};

#[test]
fn a_second_proxy_cannot_take_a_listening_address_from_the_first() {
    let blue = Backend::start("blue");
    let yaml = format!(
        "listeners:\n  - name: web\n    address: 127.0.0.1:{{port}}\n    protocol: http\n\
         clusters:\n  - id: app\n    backends:\n      - id: blue\n        address: {}\n\
         frontends:\n  - listener: web\n    hostname: site.test\n    cluster: app\n",
        blue.addr
    );
    let (_first_dir, _first, address) = util::proxy_on_yaml(&yaml, None);
    assert!(wait_until(Duration::from_secs(20), || {
        http_get(address, "site.test", "/").is_ok_and(|a| a.status == 200)
    }));

    // A second proxy with the same listener: refused at start, naming the listener and file.
    let second = util::Desired::new();
    let file = second.write(
        "routes/site.yaml",
        &yaml.replace("{port}", &address.port().to_string()),
    );
    let routes = second.path().join("routes");
    let stderr = util::proxy_fails_to_start(
        &second.path().join("weir.sock"),
        &["--workers", "2", "--desired", routes.to_str().unwrap()],
    );
    let expected = format!(
        "listener \"web\" cannot listen on {address} (defined at {}:2:5): ",
        file.display()
    );
    assert!(
        stderr.contains(&expected),
        "expected {expected:?} in:\n{stderr}"
    );
    assert_eq!(
        stderr.matches("another proxy or program").count(),
        1,
        "{stderr}"
    );

    // Through the command socket of a running proxy too: AddListener is refused.
    let third = util::Proxy::start(&["--workers", "2"]);
    let mut c = client(&third);
    let answer = apply(&mut c, add_http_listener(address));
    assert!(!is_ok(&answer), "{answer:?}");
    assert!(
        answer.message.contains(&address.to_string())
            && answer.message.contains("another proxy or program"),
        "{}",
        answer.message
    );

    // The first proxy still has every connection: a burst all reaches its backend.
    for _ in 0..50 {
        let a = http_get(address, "site.test", "/").unwrap();
        assert_eq!((a.status, a.body.as_slice()), (200, &b"blue"[..]));
    }
}
