//! The state's fingerprint, its replay through `to_requests()`, and saved-state files.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

mod common;

use common::*;
use weir_schema::saved::{self, SavedStateError};
use weir_schema::{Change, Protocol, State};

/// A state using every kind of resource and most settings.
fn fixed() -> State {
    let mut s = State::new();
    let a = cert_a();
    let mut tls = http_frontend("127.0.0.1:8443", "a.test.example.com", "/", "shop");
    tls.certificate = Some(a.fingerprint);
    let mut backup = backend("shop", "green", "127.0.0.1:9002");
    backup.backup = true;
    backup.weight = 5;
    for change in [
        Change::AddListener(listener("127.0.0.1:8080", Protocol::Http)),
        Change::AddListener(first_tuned_listener()),
        Change::AddCluster(tuned_cluster("shop")),
        Change::AddCluster(cluster("api")),
        Change::AddBackend(backend("shop", "blue", "127.0.0.1:9001")),
        Change::AddBackend(backup),
        Change::AddBackend(backend("api", "one", "[::1]:9100")),
        Change::AddCertificate(Box::new(a)),
        Change::AddFrontend(http_frontend(
            "127.0.0.1:8080",
            "*.example.com",
            "/",
            "shop",
        )),
        Change::AddFrontend(http_frontend(
            "127.0.0.1:8080",
            "api.example.com",
            "/v1",
            "api",
        )),
        Change::AddFrontend(tls),
    ] {
        s.apply_change(&change, None).unwrap();
    }
    s
}

/// Committed on purpose: if this changes, every proxy and every saved plan in the field
/// disagrees with this build about whether two states are equal. Change it only with a
/// deliberate, documented change of the fingerprint's encoding.
const FIXED_FINGERPRINT: &str = "06b1ba00825f6f3fd0094153c4b48e110d4bc9a087dd46fafbc12b1de58a4287";

#[test]
fn fingerprint_is_stable() {
    assert_eq!(fixed().fingerprint().to_hex(), FIXED_FINGERPRINT);
}

#[test]
fn fingerprint_ignores_history_but_not_content() {
    let s = fixed();
    // Same content, another history: added in reverse order within each kind, and a
    // version far away.
    let mut changes = s.to_changes();
    changes.reverse();
    changes.sort_by_key(|c| match c {
        Change::AddListener(_) => 0,
        Change::AddCluster(_) => 1,
        Change::AddBackend(_) => 2,
        Change::AddCertificate(_) => 3,
        _ => 4,
    });
    let mut other = State::new();
    other
        .apply_change(&Change::AddCluster(cluster("temp")), None)
        .unwrap();
    other
        .apply_change(
            &Change::RemoveCluster(weir_schema::ClusterId("temp".into())),
            None,
        )
        .unwrap();
    for c in &changes {
        other.apply_change(c, None).unwrap();
    }
    assert_ne!(other.version, s.version);
    assert_eq!(other.fingerprint(), s.fingerprint());

    // A weight is content.
    let mut heavier = backend("shop", "blue", "127.0.0.1:9001");
    heavier.weight = 101;
    let mut changed = s.clone();
    changed
        .apply_change(&Change::UpdateBackend(heavier), None)
        .unwrap();
    assert_ne!(changed.fingerprint(), s.fingerprint());
}

#[test]
fn to_requests_replayed_through_apply_rebuilds_the_state() {
    let s = fixed();
    let mut rebuilt = State::new();
    for request in s.to_requests("replay") {
        rebuilt.apply(&request).unwrap();
    }
    assert_eq!(rebuilt.fingerprint(), s.fingerprint());
    assert_eq!(rebuilt.frontends_in_order(), s.frontends_in_order());
    assert_eq!(rebuilt.counts(), s.counts());
}

#[test]
fn saved_state_round_trips() {
    let s = fixed();
    let bytes = saved::encode(&s);
    assert!(saved::is_saved_state(&bytes));
    let back = saved::decode(&bytes).unwrap();
    assert_eq!(back, s);
    assert_eq!(back.version, s.version);
    assert_eq!(back.fingerprint(), s.fingerprint());
    assert_eq!(back.frontends_in_order(), s.frontends_in_order());
}

#[test]
fn truncated_or_corrupt_saved_state_is_refused() {
    let bytes = saved::encode(&fixed());
    for cut in [bytes.len() - 1, bytes.len() / 2, saved::MAGIC.len() + 10] {
        assert!(
            matches!(saved::decode(&bytes[..cut]), Err(SavedStateError::Checksum)),
            "cut at {cut}"
        );
    }
    let mut flipped = bytes.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert!(matches!(
        saved::decode(&flipped),
        Err(SavedStateError::Checksum)
    ));
    assert!(matches!(
        saved::decode(b"weir-state v9\nwhatever"),
        Err(SavedStateError::UnsupportedVersion(v)) if v == "v9"
    ));
    assert!(matches!(
        saved::decode(b"listeners: []\n"),
        Err(SavedStateError::NotSavedState)
    ));
}
