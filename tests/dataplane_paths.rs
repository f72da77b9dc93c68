//! Data plane end to end, through the real `weir proxy` binary: requests are routed on their
//! normalised path (dot segments, encoded dots, repeated slashes, no query), so a backend is
//! never handed a path that resolves outside its route, and they are forwarded exactly as the
//! client sent them.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod util;

use std::net::SocketAddr;
use std::time::Duration;

use util::{proxy_on_yaml, Desired, Proxy};
use weir_testkit::{http_get, http_raw, wait_until, Backend};

/// A proxy routing `app.test` `/` to `web` and `/api` to `api`, once both routes answer.
fn start(web: &Backend, api: &Backend) -> (Desired, Proxy, SocketAddr) {
    let yaml = format!(
        r#"
listeners:
  - name: front
    address: 127.0.0.1:{{port}}
    protocol: http
clusters:
  - id: web
    backends: [{{ id: web-1, address: "{}" }}]
  - id: api
    backends: [{{ id: api-1, address: "{}" }}]
frontends:
  - {{ listener: front, hostname: app.test, path: /, cluster: web }}
  - {{ listener: front, hostname: app.test, path: /api, cluster: api }}
  - {{ listener: front, hostname: app.test, path: "/caf%C3%A9", cluster: api }}
"#,
        web.addr, api.addr
    );
    let (desired, proxy, addr) = proxy_on_yaml(&yaml, None);
    let serves = |path: &str, name: &str| {
        http_get(addr, "app.test", path).is_ok_and(|a| a.status == 200 && a.text() == name)
    };
    assert!(
        wait_until(Duration::from_secs(20), || serves("/", "web")
            && serves("/api", "api")),
        "the proxy never served both routes"
    );
    (desired, proxy, addr)
}

/// Sends `GET target` and checks which backend answered, and that it received `target`
/// (origin form) exactly as sent.
fn check(addr: SocketAddr, target: &str, want: &Backend) {
    let request = format!("GET {target} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n");
    let answer = http_raw(addr, request.as_bytes()).unwrap();
    assert_eq!(answer.status, 200, "{target}");
    assert_eq!(
        answer.text(),
        want.name,
        "{target} went to the wrong cluster"
    );
    assert_eq!(
        want.last_seen().path(),
        target,
        "{target} was not forwarded as sent"
    );
}

#[test]
fn routes_on_the_normalised_path_and_forwards_the_target_unchanged() {
    let (web, api) = (Backend::start("web"), Backend::start("api"));
    let (_d, _proxy, addr) = start(&web, &api);

    check(addr, "/api/x", &api);
    check(addr, "/x", &web);
    // Percent-encoding is compared without regard to the case of its hex digits.
    for target in ["/caf%C3%A9", "/caf%c3%a9", "/caf%C3%a9/menu"] {
        check(addr, target, &api);
    }
    // Out of /api once resolved: the api backend must not see them.
    for target in [
        "/api/../secret",
        "/api/%2e%2e/secret",
        "/api/%2E%2E/secret",
        "/api/%2E%2e/secret",
        "/api/.%2e/secret",
        "/api/x/../../secret",
        "/api//../secret",
        "/%61pi/../secret",
        "/api/..",
    ] {
        check(addr, target, &web);
    }
    // Into /api once resolved.
    for target in [
        "//api/x",
        "/./api/x",
        "/x/../api/y",
        "/%2e/api/y",
        "/../api/y",
        "/%61pi/x",
        "/api/%2e/x",
    ] {
        check(addr, target, &api);
    }
    // An encoded slash is not a separator: no dot segment here, so it stays in /api.
    check(addr, "/api/..%2Fsecret", &api);
    // The query is not routed on, and goes on as it came.
    check(addr, "/api/../secret?next=/api/x", &web);
    check(addr, "/x?/../api", &web);
    check(addr, "/api?x=/../y", &api);
}

#[test]
fn an_absolute_target_is_routed_on_its_normalised_path_too() {
    let (web, api) = (Backend::start("web"), Backend::start("api"));
    let (_d, _proxy, addr) = start(&web, &api);
    for (target, want, forwarded) in [
        ("http://app.test/api/../secret", &web, "/api/../secret"),
        ("http://app.test//api/x?q=1", &api, "//api/x?q=1"),
    ] {
        let request =
            format!("GET {target} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n");
        let answer = http_raw(addr, request.as_bytes()).unwrap();
        assert_eq!(answer.text(), want.name, "{target}");
        assert_eq!(want.last_seen().path(), forwarded, "{target}");
    }
}
