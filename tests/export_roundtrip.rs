//! `weir export`: the files it writes load back to the same state. Checked on every example,
//! in both formats and both layouts, on a state using every setting, on 10,000 apps, and
//! against a running proxy (where `weir plan` on the export must show no changes).
#![allow(clippy::unwrap_used)]

mod util;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use util::{weir, Desired, Proxy};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The examples that are desired-state directories (many-apps is a generator, covered by the
/// 10,000-app case).
fn examples() -> Vec<PathBuf> {
    ["quickstart", "blue-green", "cert-rotation", "ci/routes"]
        .iter()
        .map(|e| repo().join("examples").join(e))
        .collect()
}

/// A state using every setting the files can express; `{port}`, `{tcp}` and `{tls}` are
/// replaced with ports from the OS, `{certs}` with the example certificates' directory.
const EVERYTHING: &str = r#"
listeners:
  - name: web
    address: 127.0.0.1:{port}
    protocol: http
    front_timeout: 90s
    tunnel_timeout: 2m
    request_timeout: 1500ms
    max_request_body: 10MB
    answer_404: "no route here\n"
    answer_503: "try: again"
    allow_underscores_in_headers: true
    max_connections_per_ip: 50
    max_requests_per_connection: 200
    request_body_timeout: 90s
    send_timeout: 20s
    request_id_header: X-Request-Id
  - address: 127.0.0.1:{tcp}
    protocol: tcp
  - name: secure
    address: 127.0.0.1:{tls}
    protocol: https
    tls_versions: ["1.3"]
clusters:
  - id: shop
    load_balancing: least_connections
    connect_timeout: 3s
    response_timeout: 1h
    health_check:
      path: /healthz?full=1
      interval: 10s
    backends:
      - id: blue
        address: 127.0.0.1:9001
        weight: 300
      - id: spare
        address: 127.0.0.1:9003
        backup: true
  - id: "team/api"
    backends:
      - id: one
        address: 127.0.0.1:9002
  - id: db
    backends:
      - id: primary
        address: 127.0.0.1:5432
certificates:
  - name: shop-2026
    certificate: {certs}/example-shop-2026.pem
    key: {certs}/example-shop-2026.key
frontends:
  - listener: web
    hostname: Shop.Example.com
    cluster: shop
  - listener: web
    hostname: "*.example.com"
    path: /api/
    cluster: team/api
  - listener: web
    hostname: shop.example.com
    path: /api/
    cluster: team/api
  - listener: web
    hostname: shop.example.com
    path: /api/
    cluster: shop
  - listener: 127.0.0.1:{tcp}
    cluster: db
  - listener: secure
    hostname: shop.example.com
    cluster: shop
    certificate: shop-2026
"#;

fn everything(desired: &Desired) -> PathBuf {
    let certs = repo().join("examples/cert-rotation/certs");
    let yaml = EVERYTHING
        .replace("{port}", &weir_testkit::free_port().to_string())
        .replace("{tcp}", &weir_testkit::free_port().to_string())
        .replace("{tls}", &weir_testkit::free_port().to_string())
        .replace("{certs}", certs.to_str().unwrap());
    desired.write("weir.yaml", &yaml)
}

fn load(path: &Path) -> weir_schema::State {
    weir_schema::desired::load(path)
        .unwrap_or_else(|e| panic!("{} does not load:\n{e}", path.display()))
        .state
}

/// The clusters of each route (listener, hostname, path) in the order they were added: the
/// order that decides which of equal routes wins, and the only one that matters.
fn equal_routes_in_order(
    state: &weir_schema::State,
) -> BTreeMap<(SocketAddr, Option<String>, String), Vec<String>> {
    let mut routes: BTreeMap<_, Vec<String>> = BTreeMap::new();
    for f in state.frontends_in_order() {
        routes
            .entry((f.listener, f.hostname.clone(), f.path.clone()))
            .or_default()
            .push(f.cluster.0.clone());
    }
    routes
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Exports `source` offline with `extra` options into a new directory, checks that the files
/// load to the same fingerprint and that `weir plan` finds nothing to do, and returns the
/// directory.
fn round_trip(source: &Path, extra: &[&str]) -> tempfile::TempDir {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("export");
    let (dir_s, source_s) = (dir.to_str().unwrap(), source.to_str().unwrap());
    let mut args = vec!["export", dir_s, "--from-state", source_s, "--with-keys"];
    args.extend_from_slice(extra);
    let exported = weir(&args);
    assert!(
        exported.status.success(),
        "export of {source_s} {extra:?} failed:\n{}",
        text(&exported.stderr)
    );
    let before = load(source);
    let after = load(&dir);
    assert_eq!(
        before.fingerprint(),
        after.fingerprint(),
        "{source_s} {extra:?}: the export loads to another state"
    );
    assert!(
        equal_routes_in_order(&before) == equal_routes_in_order(&after),
        "{source_s} {extra:?}: equal routes are in another order (the newest of them wins)"
    );
    let plan = weir(&[
        "plan",
        dir_s,
        "--from-state",
        source_s,
        "--detailed-exitcode",
    ]);
    assert_eq!(
        plan.status.code(),
        Some(0),
        "{source_s} {extra:?}: plan of the export is not empty:\n{}{}",
        text(&plan.stdout),
        text(&plan.stderr)
    );
    out
}

#[test]
fn every_example_round_trips_in_every_format_and_layout() {
    for example in examples() {
        for extra in [
            &[][..],
            &["--format", "toml"],
            &["--split-by", "cluster"],
            &["--format", "toml", "--split-by", "cluster"],
        ] {
            round_trip(&example, extra);
        }
    }
}

#[test]
fn every_setting_round_trips() {
    let desired = Desired::new();
    let file = everything(&desired);
    for extra in [
        &[][..],
        &["--format", "toml"],
        &["--split-by", "cluster"],
        &["--format", "toml", "--split-by", "cluster"],
    ] {
        round_trip(&file, extra);
    }
}

#[test]
fn split_by_cluster_writes_a_file_per_cluster_and_the_header_names_the_source() {
    let desired = Desired::new();
    let file = everything(&desired);
    let out = round_trip(&file, &["--split-by", "cluster"]);
    let dir = out.path().join("export");
    let state = load(&file);
    for name in ["weir.yaml", "clusters/shop.yaml", "clusters/team_api.yaml"] {
        assert!(dir.join(name).is_file(), "{name} is missing");
    }
    let main = std::fs::read_to_string(dir.join("weir.yaml")).unwrap();
    assert!(main.contains(&format!("fingerprint {}", state.fingerprint())));
    assert!(main.contains(&format!("state file {}", file.display())));
    let api = std::fs::read_to_string(dir.join("clusters/team_api.yaml")).unwrap();
    assert!(api.contains("*.example.com"), "{api}");
    assert!(!api.contains("id: shop"), "{api}");
}

/// `examples/many-apps/generate.sh`'s layout, written here so the test needs no shell.
fn many_apps(desired: &Desired, n: usize) {
    desired.write(
        "listeners.yaml",
        "listeners:\n  - name: web\n    address: 127.0.0.1:8080\n    protocol: http\n",
    );
    for start in (0..n).step_by(100) {
        let mut yaml = String::from("clusters:\n");
        for i in start..(start + 100).min(n) {
            yaml.push_str(&format!(
                "  - id: app-{i}\n    backends:\n      - id: blue\n        address: 127.0.0.1:9001\n      - id: green\n        address: 127.0.0.1:9002\n"
            ));
        }
        yaml.push_str("frontends:\n");
        for i in start..(start + 100).min(n) {
            yaml.push_str(&format!(
                "  - listener: web\n    hostname: app-{i}.example.com\n    cluster: app-{i}\n"
            ));
        }
        desired.write(&format!("apps/apps-{:04}.yaml", start / 100), &yaml);
    }
}

#[test]
fn ten_thousand_apps_round_trip() {
    let desired = Desired::new();
    many_apps(&desired, 10_000);
    round_trip(desired.path(), &[]);
    round_trip(desired.path(), &["--split-by", "cluster"]);
}

#[test]
fn a_live_proxy_round_trips_and_keys_are_written_only_when_asked() {
    let desired = Desired::new();
    let file = everything(&desired);
    let proxy = Proxy::start(&["--workers", "1"]);
    let applied = proxy.weir(&["apply", file.to_str().unwrap(), "--auto-approve"]);
    assert!(applied.status.success(), "{}", text(&applied.stderr));

    let out = tempfile::tempdir().unwrap();
    let with_keys = out.path().join("with-keys");
    let exported = proxy.weir(&["export", with_keys.to_str().unwrap(), "--with-keys"]);
    assert!(exported.status.success(), "{}", text(&exported.stderr));
    let live = util::control::client(&proxy).query_state().unwrap();
    let stdout = text(&exported.stdout);
    assert!(
        stdout.contains(&format!("fingerprint {}", live.fingerprint())),
        "{stdout}"
    );
    assert_eq!(load(&with_keys).fingerprint(), live.fingerprint());
    let key = with_keys.join("certs/shop-2026.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "{} is readable by others",
        key.display()
    );
    let plan = proxy.weir(&["plan", with_keys.to_str().unwrap(), "--detailed-exitcode"]);
    assert_eq!(
        plan.status.code(),
        Some(0),
        "plan of the export against its proxy:\n{}{}",
        text(&plan.stdout),
        text(&plan.stderr)
    );

    // Without --with-keys: the certificate, no key, and the path to put it at.
    let no_keys = out.path().join("no-keys");
    let exported = proxy.weir(&["export", no_keys.to_str().unwrap()]);
    assert!(exported.status.success(), "{}", text(&exported.stderr));
    assert!(no_keys.join("certs/shop-2026.pem").is_file());
    let missing = no_keys.join("certs/shop-2026.key");
    assert!(!missing.exists());
    assert!(text(&exported.stdout).contains(missing.to_str().unwrap()));
    assert!(std::fs::read_to_string(no_keys.join("weir.yaml"))
        .unwrap()
        .contains("The private keys were not exported"));
    // Once the user puts the key in place, the files load to the live state.
    std::fs::copy(&key, &missing).unwrap();
    assert_eq!(load(&no_keys).fingerprint(), live.fingerprint());

    // An export never mixes with files already there.
    let again = proxy.weir(&["export", no_keys.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again.stderr).contains("is not empty"));
}
