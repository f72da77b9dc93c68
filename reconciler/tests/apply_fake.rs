//! `apply` against a scripted stand-in for the proxy: a unix socket served by a thread that
//! keeps a `State` and answers with the real framing and protocol, and that can be told to
//! fail a step, drop the connection after a step, or let a drain reach its deadline. This
//! checks pipelining, rollback and the error kinds without a real proxy.
#![allow(clippy::unwrap_used)]

use std::io::BufReader;
use std::net::SocketAddr;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use weir_reconciler::client::Client;
use weir_reconciler::{apply, plan, ApplyError, Quiet};
use weir_schema::framing::{read_frame, write_frame, DEFAULT_MAX_FRAME};
use weir_schema::model::{Backend, BackendId, BackendKey, Cluster, ClusterId, Frontend};
use weir_schema::proto::{self, response::Content};
use weir_schema::{Change, Command, Listener, ListenerSettings, Protocol, Request, State};

#[derive(Default)]
struct Script {
    /// Refuse the n-th change request (0-based, counting every change received).
    fail_at: Option<usize>,
    /// Apply the n-th change, then close the connection without answering.
    drop_at: Option<usize>,
    /// Answer backend removals with progress, then a drain-deadline failure.
    drain_deadline: bool,
    /// Apply this change (a concurrent writer) just before the n-th change.
    intrude_at: Option<(usize, Change)>,
}

struct Fake {
    state: State,
    script: Script,
    changes: usize,
}

fn serve(listener: UnixListener, fake: Arc<Mutex<Fake>>) {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            handle(stream, &fake);
        }
    });
}

fn handle(stream: UnixStream, fake: &Mutex<Fake>) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    while let Ok(Some(raw)) = read_frame::<proto::Request, _>(&mut reader, DEFAULT_MAX_FRAME) {
        let request = Request::try_from(&raw).unwrap();
        let mut f = fake.lock().unwrap();
        let mut answers = Vec::new();
        match &request.command {
            Command::QueryState => answers.push(
                proto::Response::ok(&request.id, f.state.version)
                    .with_content(Content::State(f.state.to_snapshot())),
            ),
            Command::Change(change) => {
                let n = f.changes;
                f.changes += 1;
                if let Some((at, intruder)) = f.script.intrude_at.clone() {
                    if at == n {
                        f.state.apply_change(&intruder, None).unwrap();
                    }
                }
                if f.script.fail_at == Some(n) {
                    answers.push(proto::Response::failure(
                        &request.id,
                        "injected failure",
                        f.state.version,
                    ));
                } else {
                    match f.state.apply(&request) {
                        Err(e) => answers.push(proto::Response::failure(
                            &request.id,
                            e.to_string(),
                            f.state.version,
                        )),
                        Ok(()) if f.script.drop_at == Some(n) => return,
                        Ok(()) => {
                            let v = f.state.version;
                            if let Change::RemoveBackend { key, .. } = change {
                                let progress = |live| {
                                    Content::Drain(proto::DrainProgress {
                                        cluster_id: key.cluster.0.clone(),
                                        backend_id: key.id.0.clone(),
                                        live_connections: live,
                                    })
                                };
                                answers.push(
                                    proto::Response::processing(&request.id, "draining", v)
                                        .with_content(progress(2)),
                                );
                                if f.script.drain_deadline {
                                    answers.push(
                                        proto::Response::failure(
                                            &request.id,
                                            "drain deadline reached",
                                            v,
                                        )
                                        .with_content(progress(1)),
                                    );
                                } else {
                                    answers.push(
                                        proto::Response::ok(&request.id, v)
                                            .with_content(progress(0)),
                                    );
                                }
                            } else {
                                answers.push(proto::Response::ok(&request.id, v));
                            }
                        }
                    }
                }
            }
            _ => answers.push(proto::Response::failure(&request.id, "unsupported", 0)),
        }
        drop(f);
        for a in answers {
            if write_frame(&mut writer, &a).is_err() {
                return;
            }
        }
    }
}

struct Harness {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    fake: Arc<Mutex<Fake>>,
}

fn start(live: &State, script: Script) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("fake.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let fake = Arc::new(Mutex::new(Fake {
        state: live.clone(),
        script,
        changes: 0,
    }));
    serve(listener, fake.clone());
    Harness {
        _dir: dir,
        socket,
        fake,
    }
}

fn listener() -> SocketAddr {
    "127.0.0.1:18080".parse().unwrap()
}

/// One http listener, and `n` apps named `<prefix>-<i>` (cluster, backend, route each).
fn apps(prefix: &str, n: usize) -> State {
    let mut s = State::new();
    let add = |s: &mut State, c: Change| s.apply_change(&c, None).unwrap();
    add(
        &mut s,
        Change::AddListener(Listener {
            owner: None,
            address: listener(),
            protocol: Protocol::Http,
            name: "web".into(),
            settings: ListenerSettings::default(),
        }),
    );
    for i in 0..n {
        let id = format!("{prefix}-{i}");
        add(&mut s, Change::AddCluster(Cluster::new(&id)));
        add(
            &mut s,
            Change::AddBackend(Backend {
                owner: None,
                key: BackendKey {
                    cluster: ClusterId(id.clone()),
                    id: BackendId("b1".into()),
                },
                address: format!("127.0.0.1:{}", 20_000 + i).parse().unwrap(),
                weight: 100,
                backup: false,
            }),
        );
        add(
            &mut s,
            Change::AddFrontend(Frontend {
                owner: None,
                listener: listener(),
                hostname: Some(format!("app-{i}.test")),
                path: "/".into(),
                cluster: ClusterId(id),
                certificate: None,
                options: Default::default(),
            }),
        );
    }
    s
}

fn state_of(h: &Harness) -> State {
    h.fake.lock().unwrap().state.clone()
}

#[test]
fn a_plan_applies_in_full() {
    let live = apps("blue", 3);
    let desired = apps("green", 3);
    let h = start(&live, Script::default());
    let p = plan(&live, &desired, &[]);
    let mut client = Client::connect(&h.socket).unwrap();
    let report = apply(&mut client, &p, &mut Quiet).unwrap();
    assert_eq!(report.applied, p.steps().len());
    assert_eq!(report.version, live.version + p.steps().len() as u64);
    assert_eq!(state_of(&h).fingerprint(), desired.fingerprint());
}

#[test]
fn a_large_plan_is_pipelined_and_applies() {
    let live = State::new();
    let desired = apps("app", 2_000);
    let h = start(&live, Script::default());
    let p = plan(&live, &desired, &[]);
    let mut client = Client::connect(&h.socket).unwrap();
    apply(&mut client, &p, &mut Quiet).unwrap();
    assert_eq!(state_of(&h).fingerprint(), desired.fingerprint());
}

#[test]
fn a_failed_step_in_a_pipelined_phase_rolls_everything_back() {
    let live = apps("blue", 2);
    let desired = apps("green", 600);
    let p = plan(&live, &desired, &[]);
    // Fail inside phase 3 (backends), with many requests in flight behind it.
    let fail_at = 600 + 300;
    let h = start(
        &live,
        Script {
            fail_at: Some(fail_at),
            ..Script::default()
        },
    );
    let mut client = Client::connect(&h.socket).unwrap();
    match apply(&mut client, &p, &mut Quiet) {
        Err(ApplyError::RolledBack {
            failed_step,
            message,
            undone,
            ..
        }) => {
            assert_eq!(failed_step, fail_at + 1);
            assert!(message.contains("injected"), "{message}");
            assert_eq!(undone.len(), fail_at);
        }
        other => panic!("expected a rollback, got {other:?}"),
    }
    assert_eq!(state_of(&h).fingerprint(), live.fingerprint());
}

#[test]
fn a_concurrent_writer_is_detected_and_its_change_kept() {
    let live = apps("blue", 2);
    let desired = apps("green", 2);
    let p = plan(&live, &desired, &[]);
    let intruder = Change::AddCluster(Cluster::new("intruder"));
    // Step 5 is the first removal (phase 6): the writer slips in before it.
    let h = start(
        &live,
        Script {
            intrude_at: Some((6, intruder.clone())),
            ..Script::default()
        },
    );
    let mut client = Client::connect(&h.socket).unwrap();
    let err = apply(&mut client, &p, &mut Quiet).unwrap_err();
    let ApplyError::RolledBack {
        failed_step,
        message,
        ..
    } = &err
    else {
        panic!("expected a rollback, got {err:?}")
    };
    assert_eq!(*failed_step, 7);
    assert!(message.contains("version"), "{message}");
    let mut expected = live.clone();
    expected.apply_change(&intruder, None).unwrap();
    assert_eq!(state_of(&h).fingerprint(), expected.fingerprint());
}

#[test]
fn a_lost_connection_rolls_back_what_was_applied() {
    let live = apps("blue", 2);
    let desired = apps("green", 2);
    let p = plan(&live, &desired, &[]);
    let h = start(
        &live,
        Script {
            drop_at: Some(4),
            ..Script::default()
        },
    );
    let mut client = Client::connect(&h.socket).unwrap();
    let err = apply(&mut client, &p, &mut Quiet).unwrap_err();
    let ApplyError::RolledBack {
        message, undone, ..
    } = &err
    else {
        panic!("expected a rollback, got {err:?}")
    };
    assert!(message.contains("lost"), "{message}");
    // Steps 1-5 were applied (the 5th just before the connection dropped).
    assert_eq!(undone.len(), 5, "{undone:?}");
    assert_eq!(state_of(&h).fingerprint(), live.fingerprint());
}

#[test]
fn a_drain_deadline_stops_without_rollback() {
    let live = apps("blue", 1);
    let desired = apps("green", 1);
    let p = plan(&live, &desired, &[]);
    let drain = p.steps().iter().position(|s| s.is_drain()).unwrap();
    let h = start(
        &live,
        Script {
            drain_deadline: true,
            ..Script::default()
        },
    );
    let mut client = Client::connect(&h.socket).unwrap();
    let err = apply(&mut client, &p, &mut Quiet).unwrap_err();
    let ApplyError::DrainDeadline {
        step,
        applied,
        remaining,
        ..
    } = &err
    else {
        panic!("expected a drain deadline, got {err:?}")
    };
    assert_eq!(*step, drain + 1);
    assert_eq!(*applied, drain + 1);
    assert_eq!(*remaining, p.steps().len() - drain - 1);
    let state = state_of(&h);
    assert!(state.backends.keys().all(|k| k.cluster.0 != "blue-0"));
    assert!(state.clusters.keys().any(|c| c.0 == "blue-0"));
}

#[test]
fn a_plan_from_another_state_is_stale() {
    let live = apps("blue", 1);
    let desired = apps("green", 1);
    let p = plan(&live, &desired, &[]);
    let h = start(&apps("blue", 2), Script::default());
    let mut client = Client::connect(&h.socket).unwrap();
    assert!(matches!(
        apply(&mut client, &p, &mut Quiet),
        Err(ApplyError::Stale { .. })
    ));
    assert_eq!(state_of(&h).fingerprint(), apps("blue", 2).fingerprint());
}
