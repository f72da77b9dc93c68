//! Plans at scale: 10,000 apps (a cluster, a backend and a frontend each: 30,000 resources).
//! The goal is 200 ms in a release build; this test checks the plan is right at that size and
//! prints the time, with only a loose bound so a debug build on a busy machine passes.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use weir_reconciler::{plan, render};
use weir_schema::model::{Backend, BackendId, BackendKey, Cluster, ClusterId, Frontend};
use weir_schema::{Change, Listener, ListenerSettings, Protocol, State};

fn apps(n: usize, port_offset: u16) -> State {
    let mut s = State::new();
    let listener: std::net::SocketAddr = "127.0.0.1:8080".parse().unwrap();
    s.apply_change(
        &Change::AddListener(Listener {
            owner: None,
            address: listener,
            protocol: Protocol::Http,
            name: "web".into(),
            settings: ListenerSettings::default(),
        }),
        None,
    )
    .unwrap();
    for i in 0..n {
        let id = ClusterId(format!("app-{i:05}"));
        s.apply_change(&Change::AddCluster(Cluster::new(&id.0)), None)
            .unwrap();
        let port = 10_000 + u16::try_from(i % 50_000).unwrap() + port_offset;
        s.apply_change(
            &Change::AddBackend(Backend {
                owner: None,
                key: BackendKey {
                    cluster: id.clone(),
                    id: BackendId("b1".into()),
                },
                address: format!("127.0.0.1:{port}").parse().unwrap(),
                weight: 100,
                backup: false,
            }),
            None,
        )
        .unwrap();
        s.apply_change(
            &Change::AddFrontend(Frontend {
                owner: None,
                listener,
                hostname: Some(format!("app-{i:05}.example.com")),
                path: "/".into(),
                cluster: id,
                certificate: None,
                options: Default::default(),
            }),
            None,
        )
        .unwrap();
    }
    s
}

#[test]
fn ten_thousand_apps() {
    let desired = apps(10_000, 0);
    let empty = State::new();

    let started = Instant::now();
    let from_empty = plan(&empty, &desired, &[]);
    let took = started.elapsed();
    assert_eq!(from_empty.steps().len(), 30_001);
    eprintln!("plan from empty, 30,001 resources: {took:?}");

    // Every backend moves: 10,000 re-creations, each with a stand-in.
    let moved = apps(10_000, 1);
    let started = Instant::now();
    let moving = plan(&desired, &moved, &[]);
    let took_moving = started.elapsed();
    assert_eq!(moving.summary().add, 10_000);
    eprintln!("plan moving 10,000 backends: {took_moving:?}");

    let started = Instant::now();
    let text = render::text(&from_empty, &render::TextOptions::default());
    let json = render::json(&from_empty);
    eprintln!(
        "render text ({} bytes) and json: {:?}",
        text.len(),
        started.elapsed()
    );
    assert!(json["steps"].as_array().unwrap().len() == 30_001);
    assert!(took < Duration::from_secs(5), "{took:?}");
}
