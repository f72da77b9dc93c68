//! The certificate expiry gauge end to end: an https listener's certificate made at test time
//! with a notAfter the test chose, the gauge read from a Prometheus scrape (parsed by
//! `prometheus_client`) and from `weir metrics --json`, and the gauge following the
//! certificate when `weir apply` replaces it.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

mod util;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{date_time_ymd, CertificateParams, DistinguishedName, DnType, KeyPair};
use util::metrics::{counter, metrics_json, scrape};
use util::{wait_for_port, Desired, Proxy};
use weir_schema::cert::fingerprint_der;
use weir_testkit::{free_addr, wait_until, Backend};

/// The gauge's family, as the admin endpoint names it.
const FAMILY: &str = "weir_certificate_seconds_left";

/// A self-signed certificate for `name` valid until `not_after` (Unix seconds, a midnight):
/// written as `routes/site.pem` and `routes/site.key`. Returns its fingerprint in hex.
fn write_certificate(desired: &Desired, name: &str, (y, m, d): (i32, u8, u8)) -> (String, i64) {
    let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.not_after = date_time_ymd(y, m, d);
    let not_after = params.not_after.unix_timestamp();
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    desired.write("routes/site.pem", &cert.pem());
    desired.write("routes/site.key", &key.serialize_pem());
    (fingerprint_der(cert.der()).to_hex(), not_after)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The gauge's samples in a scrape: (fingerprint, seconds left), checking it is a gauge.
fn gauges(admin: SocketAddr) -> Vec<(String, f64)> {
    let (samples, types) = scrape(admin);
    let found: Vec<(String, f64)> = samples
        .iter()
        .filter(|((name, _), _)| name == FAMILY)
        .map(|((_, labels), v)| {
            assert_eq!(
                labels.keys().collect::<Vec<_>>(),
                ["fingerprint"],
                "{labels:?}"
            );
            (labels["fingerprint"].clone(), *v)
        })
        .collect();
    if !found.is_empty() {
        assert_eq!(types[FAMILY], "gauge");
    }
    found
}

/// Checks the proxy reports exactly one certificate, `fingerprint`, with `not_after - now`
/// seconds left (within a few seconds: the clock moves between the worker's sample and ours),
/// in Prometheus and in `weir metrics`.
fn assert_one_certificate(proxy: &Proxy, admin: SocketAddr, fingerprint: &str, not_after: i64) {
    let mut found = Vec::new();
    // An apply is answered once every worker has it; a scrape after it sees it.
    assert!(
        wait_until(Duration::from_secs(10), || {
            found = gauges(admin);
            found.len() == 1 && found[0].0 == fingerprint
        }),
        "expected only {fingerprint}, scraped {found:?}"
    );
    let expected = (not_after - now()) as f64;
    assert!(
        (found[0].1 - expected).abs() <= 5.0,
        "{} seconds left, expected {expected}",
        found[0].1
    );
    let json = metrics_json(proxy, &[]);
    let left = counter(&json, &format!("certificate.{fingerprint}.seconds_left")) as i64;
    assert!(
        (left - (not_after - now())).abs() <= 5,
        "{left} in weir metrics"
    );
}

#[test]
fn the_expiry_gauge_is_not_after_minus_now_and_follows_a_replaced_certificate() {
    let backend = Backend::start("app");
    let (listener, admin) = (free_addr(), free_addr());
    let desired = Desired::new();
    let (first, first_expiry) = write_certificate(&desired, "a.test", (2031, 1, 1));
    desired.write(
        "routes/weir.yaml",
        &format!(
            "listeners:\n  - {{ name: tls, address: \"{listener}\", protocol: https }}\n\
             clusters:\n  - id: app\n    backends: [{{ id: b1, address: \"{}\" }}]\n\
             certificates:\n  - {{ name: site, certificate: site.pem, key: site.key }}\n\
             frontends:\n  - {{ listener: tls, hostname: a.test, cluster: app, certificate: site }}\n",
            backend.addr
        ),
    );
    let config = desired.write(
        "weir.toml",
        &format!("[metrics]\nprometheus = \"{admin}\"\n"),
    );
    let routes = desired.path().join("routes");
    let proxy = Proxy::start(&[
        "--desired",
        routes.to_str().unwrap(),
        "--workers",
        "2",
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(wait_for_port(admin), "the admin endpoint never listened");
    assert_one_certificate(&proxy, admin, &first, first_expiry);

    // A new certificate under the same name, expiring earlier: `apply` adds it, moves the
    // frontend over and removes the old one; the gauge is the new one's alone.
    let (second, second_expiry) = write_certificate(&desired, "a.test", (2029, 6, 15));
    assert_ne!(first, second);
    let out = proxy.weir(&["apply", routes.to_str().unwrap(), "--auto-approve"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_one_certificate(&proxy, admin, &second, second_expiry);
    assert!(first_expiry - second_expiry > 365 * 86_400);
}
