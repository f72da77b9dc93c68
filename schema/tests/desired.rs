//! The desired-state loader through its public API: which files count, in which order, and
//! what the optional settings become. (Error wording and positions are covered by the golden
//! cases in the workspace's tests/golden/load/.)
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

use std::fs;
use std::path::Path;
use std::time::Duration;

use weir_schema::desired::{self, Desired};
use weir_schema::model::TlsVersion;
use weir_schema::{saved, ClusterId, HealthCheck, LoadBalancing};

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn load(dir: &Path) -> Desired {
    desired::load(dir).unwrap_or_else(|e| panic!("{e}"))
}

const BASE: &str = "\
listeners:
  - {name: web, address: 127.0.0.1:8080, protocol: http}
clusters:
  - id: a
  - id: b
";

fn route(cluster: &str) -> String {
    format!("frontends:\n  - {{listener: web, hostname: x.example.com, cluster: {cluster}}}\n")
}

#[test]
fn files_load_in_path_order_and_later_routes_are_newer() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "0-base.yaml", BASE);
    write(dir.path(), "b/route.yaml", &route("b"));
    write(dir.path(), "a.yaml", &route("a"));
    let d = load(dir.path());
    let order: Vec<&str> = d
        .state
        .frontends_in_order()
        .iter()
        .map(|f| f.cluster.0.as_str())
        .collect();
    // "a.yaml" < "b/route.yaml": the route to b is added last, so it wins.
    assert_eq!(order, ["a", "b"]);
}

#[test]
fn hidden_files_editor_leftovers_and_other_extensions_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "base.yaml", BASE);
    for ignored in [
        ".hidden.yaml",
        "base.yaml~",
        "#base.yaml#",
        ".base.yaml.swp",
        ".git/config.yaml",
        "notes.txt",
        "cert.pem",
    ] {
        write(dir.path(), ignored, "this: [is not valid");
    }
    assert_eq!(load(dir.path()).state.counts().listeners, 1);
}

#[test]
fn an_empty_directory_is_an_error_not_an_empty_state() {
    // Applying "nothing" would remove every route: never do it by accident.
    let dir = tempfile::tempdir().unwrap();
    let err = desired::load(dir.path()).unwrap_err();
    assert!(err.to_string().contains("no desired-state files"), "{err}");
}

#[test]
fn one_file_can_be_loaded_alone() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "all.yml", &format!("{BASE}{}", route("a")));
    write(dir.path(), "other.yaml", "clusters: [{id: c}]");
    let d = load(&dir.path().join("all.yml"));
    assert_eq!(d.state.counts().clusters, 2);

    write(dir.path(), "notes.txt", "hello");
    let err = desired::load(&dir.path().join("notes.txt")).unwrap_err();
    assert!(err.to_string().contains("expected a .yaml"), "{err}");
}

#[test]
fn optional_settings_become_the_state_s_settings() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "weir.toml",
        r#"
[[listeners]]
address = "127.0.0.1:8443"
protocol = "https"
front_timeout = "2m"
tunnel_timeout = "2h"
request_timeout = "1500ms"
max_request_body = "1MiB"
answer_404 = "none"
answer_503 = "later"
tls_versions = ["1.3"]
allow_underscores_in_headers = true
max_connections_per_ip = 50
max_requests_per_connection = 200
request_body_timeout = "90s"
send_timeout = "20s"
request_id_header = "X-Request-Id"

[[clusters]]
id = "shop"
load_balancing = "power_of_two"
connect_timeout = "1s"
response_timeout = "1h"
health_check = { path = "/healthz", timeout = "300ms", unhealthy_threshold = 5 }

[[clusters.backends]]
id = "one"
address = "127.0.0.1:9001"
weight = 7
backup = true
demo = true
"#,
    );
    let d = load(dir.path());
    let l = d.state.listeners.values().next().unwrap();
    assert_eq!(l.name, "127.0.0.1:8443", "the name defaults to the address");
    assert_eq!(l.settings.front_timeout, Some(Duration::from_secs(120)));
    assert_eq!(l.settings.tunnel_timeout, Some(Duration::from_secs(7200)));
    assert_eq!(
        l.settings.request_timeout,
        Some(Duration::from_millis(1500))
    );
    assert_eq!(l.settings.max_request_body, Some(1 << 20));
    assert_eq!(l.settings.answer_404.as_deref(), Some("none"));
    assert_eq!(l.settings.answer_503.as_deref(), Some("later"));
    assert_eq!(l.settings.tls_versions, [TlsVersion::Tls13]);
    assert!(l.settings.allow_underscores_in_headers);
    assert_eq!(l.settings.max_connections_per_ip, Some(50));
    assert_eq!(l.settings.max_requests_per_connection, Some(200));
    assert_eq!(
        l.settings.request_body_timeout,
        Some(Duration::from_secs(90))
    );
    assert_eq!(l.settings.send_timeout, Some(Duration::from_secs(20)));
    assert_eq!(
        l.settings.request_id_header.as_deref(),
        Some("X-Request-Id")
    );

    let c = &d.state.clusters[&ClusterId("shop".into())];
    assert_eq!(c.load_balancing, LoadBalancing::PowerOfTwo);
    assert_eq!(c.connect_timeout, Some(Duration::from_secs(1)));
    assert_eq!(c.response_timeout, Some(Duration::from_secs(3600)));
    assert_eq!(
        c.health_check,
        Some(HealthCheck {
            path: "/healthz".into(),
            interval: HealthCheck::DEFAULT_INTERVAL,
            timeout: Duration::from_millis(300),
            healthy_threshold: HealthCheck::DEFAULT_HEALTHY,
            unhealthy_threshold: 5,
        })
    );
    let b = d.state.backends.values().next().unwrap();
    assert_eq!((b.weight, b.backup), (7, true));
    assert_eq!(d.demo_origins.len(), 1);
    assert_eq!(d.demo_origins[0].address, b.address);
    assert_eq!(d.demo_origins[0].backend, b.key);
}

#[test]
fn a_saved_state_loads_as_desired_state() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "weir.yaml", &format!("{BASE}{}", route("a")));
    let d = load(dir.path());
    let backup = dir.path().join("backup.state");
    fs::write(&backup, saved::encode(&d.state)).unwrap();
    let restored = load(&backup);
    assert_eq!(restored.state.fingerprint(), d.state.fingerprint());
    assert!(restored.demo_origins.is_empty());
}

#[test]
fn the_summary_counts_each_kind() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "weir.yaml", &format!("{BASE}{}", route("a")));
    assert_eq!(
        load(dir.path()).summary(),
        "1 listener, 2 clusters, 0 backends, 0 certificates, 1 frontend"
    );
}
