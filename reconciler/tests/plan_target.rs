//! What `weir plan --target` keeps, from desired-state files as a user writes them: the
//! named resources, what they cannot work without (created first), what must go before them
//! (removed first), and nothing else.
//!
//! Each test plans a live state and a desired state, both read from YAML, with the targets
//! parsed as the command line parses them, and lists the plan's changes exactly, so a targeted
//! plan that takes too little (a step the proxy would refuse) or too much (a change the user
//! did not ask for) fails. The property test `targeted_plans_are_valid` (plan_props.rs) checks
//! the same in general; these name the cases.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use weir_reconciler::{plan, Address, Plan, State};
use weir_schema::desired;

/// The state a YAML desired-state file describes. It is read as if it sat in tests/data/, so
/// `certificate: a.pem` finds the test certificate there.
fn state(yaml: &str) -> State {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/desired.yaml");
    match desired::load_text(&file, yaml, 0) {
        Ok(d) => d.state,
        Err(e) => panic!("test state does not load: {e}\n{yaml}"),
    }
}

/// Plans `live` to `desired` with the targets as given to `--target`.
fn targeted(live: &State, desired: &State, targets: &[&str]) -> Plan {
    let targets: Vec<Address> = targets.iter().map(|t| Address::parse(t).unwrap()).collect();
    plan(live, desired, &targets)
}

/// A plan's changes as `action address`, in the plan's order.
fn changes(p: &Plan) -> Vec<String> {
    p.changes()
        .iter()
        .map(|c| format!("{} {}", c.action.as_str(), c.address))
        .collect()
}

/// Every step of `p` applies to `live` in order, as the proxy would check it: a resource
/// something still refers to cannot be removed, nor a reference made to one not there yet.
fn applies(live: &State, p: &Plan) {
    let mut s = live.clone();
    for step in p.steps() {
        if let Err(e) = s.apply_change(&step.change, None) {
            panic!("the proxy would refuse {}: {e}", step.change);
        }
    }
}

const WEB: &str = "
listeners:
  - name: web
    address: 127.0.0.1:18080
    protocol: http
";

/// Two apps on the listener `web`: `shop` (two backends) and `blog` (one).
const TWO_APPS: &str = "
listeners:
  - name: web
    address: 127.0.0.1:18080
    protocol: http
clusters:
  - id: shop
    backends:
      - id: blue
        address: 127.0.0.1:19001
      - id: green
        address: 127.0.0.1:19002
  - id: blog
    backends:
      - id: one
        address: 127.0.0.1:19011
frontends:
  - listener: web
    hostname: shop.test
    cluster: shop
  - listener: web
    hostname: blog.test
    cluster: blog
";

#[test]
fn targeting_a_new_backend_brings_its_new_cluster_and_nothing_else() {
    let live = state(WEB);
    let desired = state(TWO_APPS);
    let p = targeted(&live, &desired, &["backend.shop/blue"]);
    assert_eq!(changes(&p), ["add cluster.shop", "add backend.shop/blue"]);
    applies(&live, &p);
}

#[test]
fn targeting_a_backend_of_an_existing_cluster_leaves_the_cluster_alone() {
    // The cluster changes in place too, but the backend does not need that change to be
    // added, so a plan of the backend alone leaves the cluster's settings as they are live.
    let live = state(TWO_APPS);
    let desired = state(
        "
listeners:
  - name: web
    address: 127.0.0.1:18080
    protocol: http
clusters:
  - id: shop
    load_balancing: random
    backends:
      - id: blue
        address: 127.0.0.1:19001
      - id: green
        address: 127.0.0.1:19002
      - id: red
        address: 127.0.0.1:19003
  - id: blog
    backends:
      - id: one
        address: 127.0.0.1:19011
      - id: two
        address: 127.0.0.1:19012
frontends:
  - listener: web
    hostname: shop.test
    cluster: shop
  - listener: web
    hostname: blog.test
    cluster: blog
",
    );
    let full = targeted(&live, &desired, &[]);
    assert_eq!(
        changes(&full),
        [
            "update cluster.shop",
            "add backend.blog/two",
            "add backend.shop/red"
        ],
        "the desired state this test means"
    );
    let p = targeted(&live, &desired, &["backend.shop/red"]);
    assert_eq!(changes(&p), ["add backend.shop/red"]);
    applies(&live, &p);
}

#[test]
fn targeting_a_new_route_brings_everything_it_routes_through() {
    // A new HTTPS app beside a new HTTP one; the route of the first, named without its
    // ` -> cluster` part, brings its listener, certificate, cluster and backends.
    let desired = state(
        "
listeners:
  - name: secure
    address: 127.0.0.1:18443
    protocol: https
  - name: web
    address: 127.0.0.1:18080
    protocol: http
certificates:
  - name: a
    certificate: a.pem
    key: a.key
clusters:
  - id: shop
    backends:
      - id: blue
        address: 127.0.0.1:19001
      - id: green
        address: 127.0.0.1:19002
  - id: blog
    backends:
      - id: one
        address: 127.0.0.1:19011
frontends:
  - listener: secure
    hostname: a.test
    cluster: shop
    certificate: a
  - listener: web
    hostname: blog.test
    cluster: blog
",
    );
    let live = State::new();
    let p = targeted(&live, &desired, &["frontend.secure/a.test/"]);
    assert_eq!(
        changes(&p),
        [
            "add listener.secure",
            "add cluster.shop",
            "add backend.shop/blue",
            "add backend.shop/green",
            "add certificate.a",
            "add frontend.secure/a.test/ -> shop",
        ]
    );
    applies(&live, &p);
}

#[test]
fn a_listener_target_may_name_its_socket_address() {
    let live = State::new();
    let desired = state(TWO_APPS);
    let p = targeted(&live, &desired, &["listener.127.0.0.1:18080"]);
    assert_eq!(changes(&p), ["add listener.web"]);
    // And when the listener goes: the live value is the one named.
    let p = targeted(&desired, &State::new(), &["listener.127.0.0.1:18080"]);
    assert_eq!(
        changes(&p),
        [
            "remove listener.web",
            "remove frontend.web/blog.test/ -> blog",
            "remove frontend.web/shop.test/ -> shop",
        ]
    );
    applies(&desired, &p);
}

#[test]
fn a_listener_re_created_for_a_new_protocol_takes_its_routes_along() {
    // http -> tcp cannot change in place: the listener's routes go before it is re-created
    // and its new route comes after. The blog's new backend was not asked for.
    let live = state(TWO_APPS);
    let desired = state(
        "
listeners:
  - name: web
    address: 127.0.0.1:18080
    protocol: tcp
clusters:
  - id: shop
    backends:
      - id: blue
        address: 127.0.0.1:19001
      - id: green
        address: 127.0.0.1:19002
  - id: blog
    backends:
      - id: one
        address: 127.0.0.1:19011
      - id: two
        address: 127.0.0.1:19012
frontends:
  - listener: web
    cluster: shop
",
    );
    let p = targeted(&live, &desired, &["listener.web"]);
    assert_eq!(
        changes(&p),
        [
            "replace listener.web",
            "add frontend.web -> shop",
            "remove frontend.web/blog.test/ -> blog",
            "remove frontend.web/shop.test/ -> shop",
        ]
    );
    applies(&live, &p);
}

#[test]
fn a_listener_updated_in_place_keeps_its_routes_as_they_are() {
    // A new timeout changes the listener in place; the new route on it was not asked for.
    let live = state(TWO_APPS);
    let desired = state(
        "
listeners:
  - name: web
    address: 127.0.0.1:18080
    protocol: http
    front_timeout: 30s
clusters:
  - id: shop
    backends:
      - id: blue
        address: 127.0.0.1:19001
      - id: green
        address: 127.0.0.1:19002
  - id: blog
    backends:
      - id: one
        address: 127.0.0.1:19011
frontends:
  - listener: web
    hostname: shop.test
    cluster: shop
  - listener: web
    hostname: blog.test
    cluster: blog
  - listener: web
    hostname: api.test
    cluster: shop
",
    );
    assert_eq!(
        changes(&targeted(&live, &desired, &[])),
        ["update listener.web", "add frontend.web/api.test/ -> shop"],
        "the desired state this test means"
    );
    let p = targeted(&live, &desired, &["listener.web"]);
    assert_eq!(changes(&p), ["update listener.web"]);
    applies(&live, &p);
}

#[test]
fn removing_a_listener_removes_its_routes_first() {
    // The admin listener goes, and with it its route; the shop's `green` goes too, but the
    // target does not reach it.
    let live = state(
        "
listeners:
  - name: web
    address: 127.0.0.1:18080
    protocol: http
  - name: admin
    address: 127.0.0.1:18081
    protocol: http
clusters:
  - id: shop
    backends:
      - id: blue
        address: 127.0.0.1:19001
      - id: green
        address: 127.0.0.1:19002
frontends:
  - listener: web
    hostname: shop.test
    cluster: shop
  - listener: admin
    hostname: admin.test
    cluster: shop
",
    );
    let desired = state(
        "
listeners:
  - name: web
    address: 127.0.0.1:18080
    protocol: http
clusters:
  - id: shop
    backends:
      - id: blue
        address: 127.0.0.1:19001
frontends:
  - listener: web
    hostname: shop.test
    cluster: shop
",
    );
    let p = targeted(&live, &desired, &["listener.admin"]);
    assert_eq!(
        changes(&p),
        [
            "remove listener.admin",
            "remove frontend.admin/admin.test/ -> shop",
        ]
    );
    applies(&live, &p);
}

#[test]
fn removing_a_cluster_removes_its_backends_and_routes_first() {
    let live = state(TWO_APPS);
    // The blog goes; the shop gains a backend, which the target does not reach.
    let desired = state(
        "
listeners:
  - name: web
    address: 127.0.0.1:18080
    protocol: http
clusters:
  - id: shop
    backends:
      - id: blue
        address: 127.0.0.1:19001
      - id: green
        address: 127.0.0.1:19002
      - id: red
        address: 127.0.0.1:19003
frontends:
  - listener: web
    hostname: shop.test
    cluster: shop
",
    );
    let p = targeted(&live, &desired, &["cluster.blog"]);
    assert_eq!(
        changes(&p),
        [
            "remove cluster.blog",
            "remove backend.blog/one",
            "remove frontend.web/blog.test/ -> blog",
        ]
    );
    applies(&live, &p);
}

/// An HTTPS listener with a route per certificate, both to `shop`.
const TWO_CERTS: &str = "
listeners:
  - name: secure
    address: 127.0.0.1:18443
    protocol: https
certificates:
  - name: a
    certificate: a.pem
    key: a.key
  - name: b
    certificate: b.pem
    key: b.key
clusters:
  - id: shop
    backends:
      - id: blue
        address: 127.0.0.1:19001
frontends:
  - listener: secure
    hostname: a.test
    cluster: shop
    certificate: a
  - listener: secure
    hostname: b.test
    cluster: shop
    certificate: b
";

#[test]
fn removing_a_certificate_removes_its_routes_first() {
    let live = state(TWO_CERTS);
    // Both certificates and their routes go; only `a` is targeted.
    let desired = state(
        "
listeners:
  - name: secure
    address: 127.0.0.1:18443
    protocol: https
clusters:
  - id: shop
    backends:
      - id: blue
        address: 127.0.0.1:19001
",
    );
    let p = targeted(&live, &desired, &["certificate.a"]);
    assert_eq!(
        changes(&p),
        [
            "remove certificate.a",
            "remove frontend.secure/a.test/ -> shop",
        ]
    );
    applies(&live, &p);
}
