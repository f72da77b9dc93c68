//! `State::apply`: one test per refusal, each checking that a refused change leaves the state
//! (and its version) exactly as it was.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

mod common;

use common::*;
use weir_schema::model::ResourceRef;
use weir_schema::wire::WireError;
use weir_schema::{
    proto, CertError, Change, ClusterId, Command, Fingerprint, Frontend, Protocol, Request,
    RequestIdHeaderError, State, StateError,
};

const HTTP: &str = "127.0.0.1:8080";
const HTTPS: &str = "127.0.0.1:8443";
const TCP: &str = "127.0.0.1:5432";

fn tls_frontend(host: &str, fp: Fingerprint) -> Frontend {
    let mut f = http_frontend(HTTPS, host, "/", "shop");
    f.certificate = Some(fp);
    f
}

fn tcp_frontend() -> Frontend {
    Frontend {
        owner: None,
        listener: addr(TCP),
        hostname: None,
        path: "/".to_owned(),
        cluster: ClusterId("shop".to_owned()),
        certificate: None,
        options: Default::default(),
    }
}

/// Three listeners, a cluster with a backend, a certificate and a route on each listener.
fn base() -> State {
    let mut s = State::new();
    let a = cert_a();
    for change in [
        Change::AddListener(listener(HTTP, Protocol::Http)),
        Change::AddListener(listener(HTTPS, Protocol::Https)),
        Change::AddListener(listener(TCP, Protocol::Tcp)),
        Change::AddCluster(cluster("shop")),
        Change::AddCluster(cluster("empty")),
        Change::AddBackend(backend("shop", "blue", "127.0.0.1:9001")),
        Change::AddCertificate(Box::new(a.clone())),
        Change::AddFrontend(http_frontend(HTTP, "shop.example.com", "/", "shop")),
        Change::AddFrontend(tls_frontend("a.test.example.com", a.fingerprint)),
        Change::AddFrontend(tcp_frontend()),
    ] {
        s.apply_change(&change, None).unwrap();
    }
    assert_eq!(s.version, 10);
    s
}

/// Applies a change that must be refused; checks nothing moved and returns the error.
fn refused(change: Change) -> StateError {
    let mut s = base();
    let before = s.clone();
    let err = s.apply_change(&change, None).unwrap_err();
    assert_eq!(s, before, "a refused change must not touch the state");
    assert_eq!(s.fingerprint(), before.fingerprint());
    err
}

#[test]
fn accepted_changes_bump_the_version() {
    let mut s = base();
    s.apply_change(&Change::AddCluster(cluster("new")), Some(10))
        .unwrap();
    assert_eq!(s.version, 11);
}

#[test]
fn version_mismatch() {
    let mut s = base();
    let before = s.clone();
    let err = s
        .apply(&Request {
            id: "r".into(),
            expected_version: Some(3),
            command: Command::Change(Change::AddCluster(cluster("new"))),
            private_keys: Default::default(),
        })
        .unwrap_err();
    assert_eq!(
        err,
        StateError::VersionMismatch {
            expected: 3,
            actual: 10
        }
    );
    assert_eq!(s, before);
}

#[test]
fn duplicate_listener() {
    let err = refused(Change::AddListener(listener(HTTP, Protocol::Http)));
    assert_eq!(err, StateError::DuplicateListener(addr(HTTP)));
}

#[test]
fn unknown_listener() {
    assert_eq!(
        refused(Change::UpdateListener(listener(
            "127.0.0.1:1",
            Protocol::Http
        ))),
        StateError::UnknownListener(addr("127.0.0.1:1"))
    );
    assert_eq!(
        refused(Change::RemoveListener(addr("127.0.0.1:1"))),
        StateError::UnknownListener(addr("127.0.0.1:1"))
    );
    assert_eq!(
        refused(Change::AddFrontend(http_frontend(
            "127.0.0.1:1",
            "x.example.com",
            "/",
            "shop"
        ))),
        StateError::UnknownListener(addr("127.0.0.1:1"))
    );
}

#[test]
fn listener_protocol_cannot_change_in_place() {
    let err = refused(Change::UpdateListener(listener(HTTP, Protocol::Tcp)));
    assert!(
        matches!(err, StateError::ListenerProtocolChange { .. }),
        "{err}"
    );
}

#[test]
fn listener_on_port_zero() {
    let err = refused(Change::AddListener(listener("127.0.0.1:0", Protocol::Http)));
    assert!(matches!(err, StateError::ListenerPortZero { .. }), "{err}");
}

#[test]
fn listener_in_use() {
    assert_eq!(
        refused(Change::RemoveListener(addr(HTTP))),
        StateError::ListenerInUse {
            address: addr(HTTP),
            frontends: 1
        }
    );
}

#[test]
fn duplicate_cluster() {
    assert_eq!(
        refused(Change::AddCluster(cluster("shop"))),
        StateError::DuplicateCluster(ClusterId("shop".into()))
    );
}

#[test]
fn unknown_cluster() {
    let unknown = StateError::UnknownCluster(ClusterId("nope".into()));
    assert_eq!(refused(Change::UpdateCluster(cluster("nope"))), unknown);
    assert_eq!(
        refused(Change::RemoveCluster(ClusterId("nope".into()))),
        unknown
    );
    assert_eq!(
        refused(Change::AddBackend(backend("nope", "x", "127.0.0.1:9009"))),
        unknown
    );
    assert_eq!(
        refused(Change::AddFrontend(http_frontend(
            HTTP,
            "x.example.com",
            "/",
            "nope"
        ))),
        unknown
    );
}

#[test]
fn cluster_in_use() {
    assert_eq!(
        refused(Change::RemoveCluster(ClusterId("shop".into()))),
        StateError::ClusterInUse {
            id: ClusterId("shop".into()),
            backends: 1,
            frontends: 3
        }
    );
}

#[test]
fn duplicate_backend() {
    assert_eq!(
        refused(Change::AddBackend(backend(
            "shop",
            "blue",
            "127.0.0.1:9002"
        ))),
        StateError::DuplicateBackend(key("shop", "blue"))
    );
}

#[test]
fn unknown_backend() {
    let unknown = StateError::UnknownBackend(key("shop", "red"));
    assert_eq!(
        refused(Change::UpdateBackend(backend(
            "shop",
            "red",
            "127.0.0.1:9001"
        ))),
        unknown
    );
    assert_eq!(
        refused(Change::RemoveBackend {
            key: key("shop", "red"),
            drain_timeout: None
        }),
        unknown
    );
}

#[test]
fn backend_address_cannot_change_in_place() {
    let err = refused(Change::UpdateBackend(backend(
        "shop",
        "blue",
        "127.0.0.1:9999",
    )));
    assert!(
        matches!(err, StateError::BackendAddressChange { .. }),
        "{err}"
    );
}

#[test]
fn duplicate_certificate() {
    let a = cert_a();
    assert_eq!(
        refused(Change::AddCertificate(Box::new(a.clone()))),
        StateError::DuplicateCertificate(a.fingerprint)
    );
}

#[test]
fn unknown_certificate() {
    let b = cert_b();
    let unknown = StateError::UnknownCertificate(b.fingerprint);
    assert_eq!(refused(Change::RemoveCertificate(b.fingerprint)), unknown);
    assert_eq!(
        refused(Change::AddFrontend(tls_frontend(
            "b.test.example.com",
            b.fingerprint
        ))),
        unknown
    );
    assert_eq!(
        refused(Change::ReplaceCertificate {
            old: b.fingerprint,
            new: Box::new(cert_a())
        }),
        unknown
    );
}

#[test]
fn certificate_still_used_by_a_frontend() {
    let a = cert_a();
    assert_eq!(
        refused(Change::RemoveCertificate(a.fingerprint)),
        StateError::CertificateInUse {
            fingerprint: a.fingerprint,
            frontends: vec![tls_frontend("a.test.example.com", a.fingerprint)]
        }
    );
}

#[test]
fn replacing_a_certificate_moves_its_frontends() {
    let mut s = base();
    let (a, b) = (cert_a(), cert_b());
    s.apply_change(
        &Change::ReplaceCertificate {
            old: a.fingerprint,
            new: Box::new(b.clone()),
        },
        None,
    )
    .unwrap();
    assert!(!s.certificates.contains_key(&a.fingerprint));
    assert!(s
        .frontends
        .contains_key(&tls_frontend("a.test.example.com", b.fingerprint)));
}

#[test]
fn duplicate_frontend() {
    let f = http_frontend(HTTP, "shop.example.com", "/", "shop");
    assert_eq!(
        refused(Change::AddFrontend(f.clone())),
        StateError::DuplicateFrontend(Box::new(f))
    );
}

#[test]
fn unknown_frontend() {
    let f = http_frontend(HTTP, "other.example.com", "/", "shop");
    assert_eq!(
        refused(Change::RemoveFrontend(f.clone())),
        StateError::UnknownFrontend(Box::new(f))
    );
}

#[test]
fn updating_a_frontend_sets_its_owner_in_place() {
    let f = http_frontend(HTTP, "other.example.com", "/", "shop");
    assert_eq!(
        refused(Change::UpdateFrontend(f.clone())),
        StateError::UnknownFrontend(Box::new(f))
    );
    let mut s = base();
    let order = |s: &State| {
        s.frontends_in_order()
            .into_iter()
            .cloned()
            .collect::<Vec<_>>()
    };
    let before = (order(&s), s.fingerprint());
    let mut owned = http_frontend(HTTP, "shop.example.com", "/", "shop");
    owned.owner = Some(weir_schema::Owner("platform".to_owned()));
    s.apply_change(&Change::UpdateFrontend(owned.clone()), Some(10))
        .unwrap();
    assert_eq!(s.version, 11);
    let (live, _) = s.frontends.get_key_value(&owned).unwrap();
    assert_eq!(live.owner, owned.owner, "the owner is the new one");
    // The same route at the same place in the add order (the newest route wins, so a moved
    // one would route differently); only the fingerprint, which holds owners, changed.
    assert_eq!(order(&s), before.0);
    assert_ne!(s.fingerprint(), before.1);
    let back = http_frontend(HTTP, "shop.example.com", "/", "shop");
    s.apply_change(&Change::UpdateFrontend(back), None).unwrap();
    assert_eq!(
        s.fingerprint(),
        before.1,
        "clearing the owner restores the state"
    );
}

fn mismatch(change: Change) -> &'static str {
    match refused(change) {
        StateError::FrontendMismatch { problem, .. } => problem,
        other => panic!("expected a frontend mismatch, got {other}"),
    }
}

#[test]
fn https_frontend_without_a_certificate() {
    let f = http_frontend(HTTPS, "a.test.example.com", "/x", "shop");
    assert_eq!(
        mismatch(Change::AddFrontend(f)),
        "an https frontend needs a certificate"
    );
}

#[test]
fn hostname_on_a_tcp_frontend() {
    let mut f = tcp_frontend();
    f.cluster = ClusterId("empty".into());
    f.hostname = Some("db.example.com".into());
    assert_eq!(
        mismatch(Change::AddFrontend(f)),
        "a tcp listener routes no hostname"
    );
}

#[test]
fn frontend_protocol_not_matching_its_listener() {
    // A certificate on a plain http listener.
    let mut f = http_frontend(HTTP, "x.example.com", "/", "shop");
    f.certificate = Some(cert_a().fingerprint);
    assert!(mismatch(Change::AddFrontend(f)).contains("http listener takes no certificate"));
    // A path on a tcp listener.
    let mut f = tcp_frontend();
    f.cluster = ClusterId("empty".into());
    f.path = "/api".into();
    assert_eq!(
        mismatch(Change::AddFrontend(f)),
        "a tcp listener routes no path"
    );
    // An http route without a hostname.
    let mut f = http_frontend(HTTP, "x", "/", "shop");
    f.hostname = None;
    assert_eq!(
        mismatch(Change::AddFrontend(f)),
        "an http frontend needs a hostname"
    );
}

#[test]
fn queries_are_not_changes() {
    let mut s = base();
    let err = s
        .apply(&Request::new("q", Command::QueryState))
        .unwrap_err();
    assert!(matches!(err, StateError::NotAChange(_)));
    assert_eq!(s.version, 10);
}

/// Certificates arrive as PEM over the wire; what does not parse is refused before the State
/// sees it, with a typed error.
fn add_certificate_from_wire(cert_pem: &str, key_pem: &str) -> Result<Request, WireError> {
    let message = proto::Request {
        id: "c".into(),
        expected_version: None,
        kind: Some(proto::request::Kind::AddCertificate(proto::Certificate {
            owner: String::new(),
            name: "c".into(),
            certificate_pem: cert_pem.into(),
            key_pem: key_pem.into(),
        })),
    };
    Request::try_from(&message)
}

#[test]
fn certificate_pem_that_does_not_parse() {
    assert_eq!(
        add_certificate_from_wire("not a certificate", KEY_A).unwrap_err(),
        WireError::Certificate(CertError::NoCertificate)
    );
    let truncated = &CERT_A[..CERT_A.len() / 2];
    assert!(matches!(
        add_certificate_from_wire(truncated, KEY_A).unwrap_err(),
        WireError::Certificate(CertError::BadCertificatePem(_) | CertError::NoCertificate)
    ));
    assert!(matches!(
        add_certificate_from_wire(CERT_A, "garbage").unwrap_err(),
        WireError::Certificate(CertError::BadKeyPem(_))
    ));
}

#[test]
fn key_not_matching_its_certificate() {
    assert_eq!(
        add_certificate_from_wire(CERT_A, KEY_B).unwrap_err(),
        WireError::Certificate(CertError::KeyMismatch)
    );
    assert!(add_certificate_from_wire(CERT_A, KEY_A).is_ok());
}

#[test]
fn resources_are_named_for_errors_and_plans() {
    assert_eq!(
        ResourceRef::Backend(key("shop", "blue")).to_string(),
        "backend shop/blue"
    );
}

/// A request id field only where requests are read, and only in a field that is not one the
/// proxy frames, routes or forwards with; a command-socket client is held to what the loader
/// says at the field's line.
#[test]
fn a_request_id_field_must_be_a_free_field_name_on_an_http_listener() {
    let with_id = |address: &str, protocol: Protocol, name: &str| {
        let mut l = listener(address, protocol);
        l.settings.request_id_header = Some(name.to_owned());
        Change::UpdateListener(l)
    };
    assert_eq!(
        refused(with_id(TCP, Protocol::Tcp, "X-Request-Id")),
        StateError::ListenerRequestIdHeader {
            address: addr(TCP),
            error: RequestIdHeaderError::NotHttp(Protocol::Tcp),
        }
    );
    for bad in ["", "X Request", "X-Id:", "Ünïcode"] {
        assert_eq!(
            refused(with_id(HTTP, Protocol::Http, bad)),
            StateError::ListenerRequestIdHeader {
                address: addr(HTTP),
                error: RequestIdHeaderError::NotAName(bad.to_owned()),
            }
        );
    }
    for reserved in [
        "Host",
        "content_length",
        "X-FORWARDED-FOR",
        "Via",
        "forwarded",
    ] {
        assert_eq!(
            refused(with_id(HTTPS, Protocol::Https, reserved)),
            StateError::ListenerRequestIdHeader {
                address: addr(HTTPS),
                error: RequestIdHeaderError::Reserved(reserved.to_owned()),
            }
        );
    }
    let mut s = base();
    s.apply_change(&with_id(HTTP, Protocol::Http, "X-Request-Id"), None)
        .unwrap();
    s.apply_change(&with_id(HTTPS, Protocol::Https, "Request-Id"), None)
        .unwrap();
}
