//! Ownership scopes against a real `weir proxy`: `weir apply --owner NAME --adopt` takes over
//! resources nobody owns, every kind of them, and another owner's later plans leave what it
//! took alone.
#![allow(clippy::unwrap_used)]

mod util;

use std::net::SocketAddr;
use std::process::Output;

use serde_json::Value;
use util::{Desired, Proxy};
use weir_testkit::{free_addr, http_get, wait_until, Backend};

/// One http listener `web`, a cluster `cluster` with one backend, and a route `host` to it.
fn app(listener: SocketAddr, cluster: &str, host: &str, backend: SocketAddr) -> String {
    format!(
        "listeners:\n  - name: web\n    address: {listener}\n    protocol: http\n\
         clusters:\n  - id: {cluster}\n    backends:\n      - id: {cluster}-1\n        \
         address: {backend}\n\
         frontends:\n  - listener: web\n    hostname: {host}\n    cluster: {cluster}\n"
    )
}

fn show(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ok(out: Output) -> Output {
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    out
}

fn state(proxy: &Proxy) -> Value {
    let out = ok(proxy.weir(&["state", "--json"]));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The frontend routing `host`, from `weir state --json`.
fn frontend<'a>(state: &'a Value, host: &str) -> Option<&'a Value> {
    state["frontends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["hostname"] == host)
}

#[test]
fn an_adopted_frontend_gets_its_owner_and_other_owners_leave_it_alone() {
    let proxy = Proxy::start(&["--workers", "2"]);
    let listener = free_addr();
    let shop = Backend::start("shop");
    let team = Backend::start("team-b");

    // Applied before anyone used owners: nothing has one.
    let platform = Desired::new();
    platform.write("shop.yaml", &app(listener, "shop", "shop.test", shop.addr));
    let dir = platform.path().to_str().unwrap();
    ok(proxy.weir(&["apply", dir, "--auto-approve"]));
    let before = state(&proxy);
    assert_eq!(
        frontend(&before, "shop.test").unwrap()["owner"],
        Value::Null
    );

    // The platform team adopts it all: the plan changes only owners, the frontend's too.
    let plan = ok(proxy.weir(&["plan", dir, "--owner", "platform", "--adopt", "--json"]));
    let plan: Value = serde_json::from_slice(&plan.stdout).unwrap();
    let requests: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["request"].as_str().unwrap())
        .collect();
    assert_eq!(
        requests,
        [
            "update_listener",
            "update_cluster",
            "update_backend",
            "update_frontend"
        ],
        "{plan:#}"
    );
    ok(proxy.weir(&[
        "apply",
        dir,
        "--owner",
        "platform",
        "--adopt",
        "--auto-approve",
    ]));
    let adopted = state(&proxy);
    let route = frontend(&adopted, "shop.test").unwrap();
    assert_eq!(route["owner"], "platform", "{adopted:#}");
    assert_eq!(adopted["listeners"][0]["owner"], "platform");
    assert_eq!(adopted["clusters"][0]["owner"], "platform");
    // In sync now: adopting again has nothing left to do.
    let again = proxy.weir(&[
        "plan",
        dir,
        "--owner",
        "platform",
        "--adopt",
        "--detailed-exitcode",
    ]);
    assert_eq!(again.status.code(), Some(0), "{}", show(&again));
    // Only the owner changed: the route still routes.
    assert!(wait_until(std::time::Duration::from_secs(10), || {
        http_get(listener, "shop.test", "/").is_ok_and(|a| a.text() == "shop")
    }));

    // Team b adopts whatever nobody owns, with a directory of its own route on the shared
    // listener. The platform's route is neither removed nor taken over.
    let b = Desired::new();
    b.write("b.yaml", &app(listener, "team-b", "b.test", team.addr));
    let b_dir = b.path().to_str().unwrap();
    let plan = ok(proxy.weir(&["plan", b_dir, "--owner", "b", "--adopt"]));
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(
        !text.contains("shop.test"),
        "b's plan touches shop.test:\n{text}"
    );
    ok(proxy.weir(&["apply", b_dir, "--owner", "b", "--adopt", "--auto-approve"]));
    let after = state(&proxy);
    let route = frontend(&after, "shop.test").unwrap();
    assert_eq!(route["owner"], "platform", "{after:#}");
    assert_eq!(frontend(&after, "b.test").unwrap()["owner"], "b");
    assert!(wait_until(std::time::Duration::from_secs(10), || {
        http_get(listener, "b.test", "/").is_ok_and(|a| a.text() == "team-b")
    }));
    assert_eq!(http_get(listener, "shop.test", "/").unwrap().text(), "shop");
}

#[test]
fn an_owner_with_several_sockets_is_refused_and_no_proxy_changes() {
    // A scope is computed against one live state; across a fleet each proxy would need its
    // own, so the CLI refuses rather than plan one proxy's scope for all.
    let proxies = [
        Proxy::start(&["--workers", "1"]),
        Proxy::start(&["--workers", "1"]),
    ];
    let shop = Backend::start("shop");
    let desired = Desired::new();
    desired.write(
        "shop.yaml",
        &app(free_addr(), "shop", "shop.test", shop.addr),
    );
    let dir = desired.path().to_str().unwrap();
    let sockets = [
        "--socket",
        proxies[0].socket_str(),
        "--socket",
        proxies[1].socket_str(),
    ];
    for (command, verb) in [("plan", "plans"), ("apply", "applies to")] {
        let mut args = vec![command, dir, "--owner", "team", "--auto-approve"];
        if command == "plan" {
            args.pop();
        }
        args.extend(sockets);
        let out = util::weir(&args);
        assert_eq!(out.status.code(), Some(1), "{}", show(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!(
                "--owner {verb} one proxy at a time: give one --socket"
            )),
            "{}",
            show(&out)
        );
    }
    for proxy in &proxies {
        let live = state(proxy);
        assert_eq!(live["version"], 0, "{live:#}");
    }
}
