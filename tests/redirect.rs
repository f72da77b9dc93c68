//! `redirect_https` end to end, through the real `weir proxy` binary and curl: a plain-HTTP
//! request on a frontend that sets it gets a `301` to `https://` the host (without its port)
//! and the target as received, query included, with no body and the connection kept; a
//! frontend without it is routed as before, with no HSTS of Weir's own.
//!
//! HSTS is for https listeners only, and HTTPS is not served end to end yet: the field is
//! tested on the response head writer, the proxy's answers and the HTTP session
//! (`engine/src/worker/http/`), and belongs here once TLS reaches the sessions.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod util;

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use util::{curl, proxy_on_yaml, Desired, Proxy};
use weir_testkit::{connect, http_get, read_answer, read_answer_to_head, wait_until, Backend};

/// A proxy whose http listener redirects `shop.test` (and `*.shop.test`) and routes
/// `plain.test` to `origin`, once both routes are in.
fn start(origin: &Backend) -> (Desired, Proxy, SocketAddr) {
    let yaml = format!(
        r#"
listeners:
  - name: web
    address: 127.0.0.1:{{port}}
    protocol: http
clusters:
  - id: app
    backends: [{{ id: app-1, address: "{}" }}]
frontends:
  - {{ listener: web, hostname: shop.test, cluster: app, redirect_https: true }}
  - {{ listener: web, hostname: "*.shop.test", cluster: app, redirect_https: true }}
  - {{ listener: web, hostname: plain.test, cluster: app }}
"#,
        origin.addr
    );
    let (desired, proxy, addr) = proxy_on_yaml(&yaml, None);
    assert!(
        wait_until(Duration::from_secs(20), || {
            http_get(addr, "plain.test", "/").is_ok_and(|a| a.status == 200)
                && http_get(addr, "shop.test", "/").is_ok_and(|a| a.status == 301)
        }),
        "the proxy never served both routes"
    );
    (desired, proxy, addr)
}

/// curl's view of one request: the status line and fields, then the body.
fn curl_head_and_body(args: &[&str]) -> (String, String) {
    let out = curl(args);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.to_owned(), body.to_owned())
}

fn field<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[test]
fn a_plain_request_is_sent_to_https_with_its_path_and_query() {
    let origin = Backend::start("origin");
    let (_d, _proxy, addr) = start(&origin);
    let seen_before = origin.request_count();
    let url = format!("http://{addr}/cart/add?item=42&q=a%20b");
    let (head, body) = curl_head_and_body(&["-i", "-H", "Host: Shop.Test:8080", &url]);
    assert!(head.starts_with("HTTP/1.1 301 Moved Permanently"), "{head}");
    assert_eq!(
        field(&head, "Location"),
        Some("https://shop.test/cart/add?item=42&q=a%20b"),
        "{head}"
    );
    assert_eq!(field(&head, "Content-Length"), Some("0"), "{head}");
    assert_eq!(field(&head, "Strict-Transport-Security"), None, "{head}");
    assert_eq!(body, "");
    // A wildcard frontend redirects too, to the name that was asked for.
    let (head, _) = curl_head_and_body(&["-i", "-H", "Host: a.b.shop.test", &url]);
    assert_eq!(
        field(&head, "Location"),
        Some("https://a.b.shop.test/cart/add?item=42&q=a%20b"),
        "{head}"
    );
    // The target goes on as received, not as routed.
    let (head, _) = curl_head_and_body(&[
        "-i",
        "--path-as-is",
        "-H",
        "Host: shop.test",
        &format!("http://{addr}/a/../b//c"),
    ]);
    assert_eq!(
        field(&head, "Location"),
        Some("https://shop.test/a/../b//c"),
        "{head}"
    );
    // Nothing reached the backend: a redirect is answered by the proxy.
    assert_eq!(origin.request_count(), seen_before);
}

#[test]
fn a_head_request_gets_the_redirect_without_a_body_on_a_kept_connection() {
    let origin = Backend::start("origin");
    let (_d, _proxy, addr) = start(&origin);
    let (head, body) =
        curl_head_and_body(&["-I", "-H", "Host: shop.test", &format!("http://{addr}/x?y")]);
    assert!(head.starts_with("HTTP/1.1 301 "), "{head}");
    assert_eq!(field(&head, "Location"), Some("https://shop.test/x?y"));
    assert_eq!(body, "");

    // HEAD, then GET, then a routed GET, on one connection: each answer is whole, nothing
    // stray between them, and the redirect did not close the connection.
    let mut conn = connect(addr);
    conn.write_all(b"HEAD /h HTTP/1.1\r\nHost: shop.test\r\n\r\n")
        .unwrap();
    let answer = read_answer_to_head(&mut conn).unwrap();
    assert_eq!(answer.status, 301);
    assert_eq!(answer.header("Location"), Some("https://shop.test/h"));
    assert_eq!(answer.header("Connection"), None);
    conn.write_all(b"GET /g?1 HTTP/1.1\r\nHost: shop.test\r\n\r\n")
        .unwrap();
    let answer = read_answer(&mut conn).unwrap();
    assert_eq!(answer.status, 301);
    assert_eq!(answer.header("Location"), Some("https://shop.test/g?1"));
    assert!(answer.body.is_empty());
    conn.write_all(b"GET /p HTTP/1.1\r\nHost: plain.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let answer = read_answer(&mut conn).unwrap();
    assert_eq!(answer.status, 200);
}

#[test]
fn a_frontend_without_the_options_is_routed_with_no_redirect_and_no_hsts() {
    let origin = Backend::start("origin");
    let (_d, _proxy, addr) = start(&origin);
    let (head, body) = curl_head_and_body(&[
        "-i",
        "-H",
        "Host: plain.test",
        &format!("http://{addr}/page?q=1"),
    ]);
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert_eq!(field(&head, "Location"), None, "{head}");
    assert_eq!(field(&head, "Strict-Transport-Security"), None, "{head}");
    assert_eq!(body, "origin");
    assert_eq!(origin.last_seen().path(), "/page?q=1");
}
