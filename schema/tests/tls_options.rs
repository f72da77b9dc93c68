//! HTTPS options (listener TLS settings, frontend redirect and HSTS) through the wire and the
//! State's rules, and private keys kept out of answers and `Debug`.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

mod common;

use common::*;
use prost::Message;
use weir_schema::model::{RouteError, TlsSettingsError};
use weir_schema::proto::{self, request::Kind};
use weir_schema::wire::WireError;
use weir_schema::{
    Change, Command, Frontend, FrontendOptions, Listener, PrivateKeys, Protocol, Request, State,
    StateError, TlsCipherSuite, TlsVersion,
};

const HTTP: &str = "127.0.0.1:8080";
const HTTPS: &str = "127.0.0.1:8443";
const KEY_MARK: &str = "PRIVATE KEY";

fn https_frontend(host: &str, options: FrontendOptions) -> Frontend {
    let mut f = http_frontend(HTTPS, host, "/", "shop");
    f.certificate = Some(cert_a().fingerprint);
    f.options = options;
    f
}

fn with_options(listener: &str, options: FrontendOptions) -> Frontend {
    if listener == HTTPS {
        return https_frontend("a.test.example.com", options);
    }
    let mut f = http_frontend(listener, "shop.example.com", "/", "shop");
    f.options = options;
    f
}

fn state() -> State {
    let mut s = State::new();
    for change in [
        Change::AddListener(listener(HTTP, Protocol::Http)),
        Change::AddListener(listener(HTTPS, Protocol::Https)),
        Change::AddCluster(cluster("shop")),
        Change::AddCertificate(Box::new(cert_a())),
    ] {
        s.apply_change(&change, None).unwrap();
    }
    s
}

fn tls_listener(address: &str, protocol: Protocol) -> Listener {
    let mut l = listener(address, protocol);
    l.settings.tls_versions = vec![TlsVersion::Tls12, TlsVersion::Tls13];
    l.settings.cipher_suites = vec![
        TlsCipherSuite::Tls13Aes256GcmSha384,
        TlsCipherSuite::EcdheRsaAes256GcmSha384,
    ];
    l.settings.default_certificate = Some(cert_a().fingerprint);
    l
}

fn redirect() -> FrontendOptions {
    FrontendOptions {
        redirect_https: true,
        hsts: None,
    }
}

fn hsts(value: &str) -> FrontendOptions {
    FrontendOptions {
        redirect_https: false,
        hsts: Some(value.into()),
    }
}

/// Through the wire and back, as a request and as part of a snapshot.
fn round_trip(change: Change) -> Change {
    let wire = proto::Request::from(&Request::change("r", change));
    let bytes = wire.encode_to_vec();
    let back = Request::try_from(&proto::Request::decode(bytes.as_slice()).unwrap()).unwrap();
    match back.command {
        Command::Change(c) => c,
        other => panic!("{other:?}"),
    }
}

#[test]
fn tls_settings_and_frontend_options_survive_the_wire() {
    let listener = Change::AddListener(tls_listener(HTTPS, Protocol::Https));
    assert_eq!(round_trip(listener.clone()), listener);
    let frontend = Change::AddFrontend(https_frontend(
        "a.test.example.com",
        hsts("max-age=600; includeSubDomains"),
    ));
    assert_eq!(round_trip(frontend.clone()), frontend);
    let redirect = Change::AddFrontend(with_options(HTTP, redirect()));
    assert_eq!(round_trip(redirect.clone()), redirect);
}

#[test]
fn bad_suites_and_hsts_values_do_not_decode() {
    let mut wire = proto::Listener::from(&listener(HTTPS, Protocol::Https));
    wire.settings.as_mut().unwrap().cipher_suites = vec!["TLS_RSA_WITH_RC4_128_SHA".into()];
    assert_eq!(
        Listener::try_from(&wire),
        Err(WireError::BadCipherSuite("TLS_RSA_WITH_RC4_128_SHA".into()))
    );
    for bad in [
        "includeSubDomains",
        "max-age=",
        "max-age=1; max-age=2",
        "max-age=1; nope",
    ] {
        let mut f = proto::Frontend::from(&https_frontend(
            "a.test.example.com",
            FrontendOptions::default(),
        ));
        f.hsts = bad.into();
        assert!(
            matches!(
                Frontend::try_from(&f),
                Err(WireError::Route(RouteError::BadHsts(..)))
            ),
            "{bad}"
        );
    }
}

#[test]
fn tls_settings_are_refused_off_https_and_must_leave_each_version_a_suite() {
    let mut s = state();
    let plain = tls_listener("127.0.0.1:8081", Protocol::Http);
    assert!(matches!(
        s.apply_change(&Change::AddListener(plain), None),
        Err(StateError::ListenerTls {
            error: TlsSettingsError::NotHttps("tls_versions", Protocol::Http),
            ..
        })
    ));
    let mut no_12 = tls_listener("127.0.0.1:8444", Protocol::Https);
    no_12.settings.cipher_suites = vec![TlsCipherSuite::Tls13Aes128GcmSha256];
    assert_eq!(
        s.apply_change(
            &Change::UpdateListener({
                let mut l = no_12.clone();
                l.address = addr(HTTPS);
                l
            }),
            None
        ),
        Err(StateError::ListenerTls {
            address: addr(HTTPS),
            error: TlsSettingsError::NoSuiteForVersion("1.2"),
        })
    );
    // Only TLS 1.3 accepted: a 1.3 suite alone is enough.
    no_12.settings.tls_versions = vec![TlsVersion::Tls13];
    s.apply_change(&Change::AddListener(no_12), None).unwrap();
    s.apply_change(
        &Change::AddListener(tls_listener("127.0.0.1:8445", Protocol::Https)),
        None,
    )
    .unwrap();
}

#[test]
fn redirect_is_for_http_frontends_and_hsts_for_https_ones() {
    let mut s = state();
    for (listener, options) in [(HTTPS, redirect()), (HTTP, hsts("max-age=60"))] {
        let refused = s.apply_change(&Change::AddFrontend(with_options(listener, options)), None);
        assert!(
            matches!(refused, Err(StateError::FrontendMismatch { .. })),
            "{listener}: {refused:?}"
        );
    }
    for (listener, options) in [(HTTP, redirect()), (HTTPS, hsts("max-age=60"))] {
        s.apply_change(&Change::AddFrontend(with_options(listener, options)), None)
            .unwrap();
    }
    // Options are part of the identity: the same route without them is another frontend.
    s.apply_change(
        &Change::AddFrontend(with_options(HTTPS, FrontendOptions::default())),
        None,
    )
    .unwrap();
    assert_eq!(s.frontends.len(), 3);
}

#[test]
fn removing_a_certificate_in_use_names_its_frontends() {
    let mut s = state();
    let f = https_frontend("a.test.example.com", FrontendOptions::default());
    s.apply_change(&Change::AddFrontend(f.clone()), None)
        .unwrap();
    let err = s
        .apply_change(&Change::RemoveCertificate(cert_a().fingerprint), None)
        .unwrap_err();
    assert!(err.to_string().contains("a.test.example.com"), "{err}");
    assert_eq!(
        err,
        StateError::CertificateInUse {
            fingerprint: cert_a().fingerprint,
            frontends: vec![f],
        }
    );
}

#[test]
fn a_replaced_certificate_stays_the_listener_default() {
    let mut s = state();
    s.apply_change(
        &Change::UpdateListener(tls_listener(HTTPS, Protocol::Https)),
        None,
    )
    .unwrap();
    let b = cert_b();
    s.apply_change(
        &Change::ReplaceCertificate {
            old: cert_a().fingerprint,
            new: Box::new(b.clone()),
        },
        None,
    )
    .unwrap();
    assert_eq!(
        s.listeners[&addr(HTTPS)].settings.default_certificate,
        Some(b.fingerprint)
    );
}

#[test]
fn state_answers_leave_keys_out_unless_asked_and_saved_states_keep_them() {
    let s = state();
    let redacted = s.to_snapshot();
    assert_eq!(redacted.certificates[0].key_pem, "");
    assert!(!format!("{redacted:?}").contains(KEY_MARK));
    let full = s.snapshot(PrivateKeys::Included);
    assert!(full.certificates[0].key_pem.contains(KEY_MARK));
    // Debug never shows a key, even where the message holds one.
    assert!(!format!("{full:?}").contains(KEY_MARK));

    // A redacted answer still reads back into a state that compares equal.
    let back = State::from_snapshot(&redacted).unwrap();
    assert_eq!(back.fingerprint(), s.fingerprint());
    assert!(back.certificates.values().all(|c| c.key_pem.is_none()));

    let saved = weir_schema::saved::decode(&weir_schema::saved::encode(&s)).unwrap();
    let cert = saved.certificates.values().next().unwrap();
    assert_eq!(cert.key_pem.as_ref().unwrap().expose(), KEY_A);
}

#[test]
fn a_query_asks_for_keys_explicitly() {
    let plain = Request::try_from(&proto::Request {
        id: "q".into(),
        expected_version: None,
        kind: Some(Kind::QueryState(proto::QueryState::default())),
    })
    .unwrap();
    assert_eq!(plain.private_keys, PrivateKeys::Redacted);
    let asked = Request::query_state_with_keys("q");
    let wire = proto::Request::from(&asked);
    assert!(matches!(
        &wire.kind,
        Some(Kind::QueryState(q)) if q.include_private_keys
    ));
    assert_eq!(Request::try_from(&wire).unwrap(), asked);
}

#[test]
fn ticket_keys_are_refused_from_a_client() {
    let wire = proto::Request {
        id: "t".into(),
        expected_version: None,
        kind: Some(Kind::SetTicketKeys(proto::TicketKeys::default())),
    };
    assert_eq!(
        Request::try_from(&wire),
        Err(WireError::ChannelOnly("set_ticket_keys"))
    );
}

#[test]
fn keys_stay_out_of_debug_and_certificates_need_them_to_be_added() {
    let change = Change::AddCertificate(Box::new(cert_a()));
    let request = Request::change("c", change.clone());
    let wire = proto::Request::from(&request);
    for shown in [
        format!("{:?}", cert_a()),
        format!("{change:?}"),
        format!("{request:?}"),
        format!("{wire:?}"),
        format!("{:?}", cert_a().key_pem),
        format!("{}", cert_a().key_pem.unwrap()),
    ] {
        let key_body = KEY_A.lines().nth(1).unwrap();
        assert!(
            !shown.contains(KEY_MARK) && !shown.contains(key_body),
            "{shown}"
        );
    }
    let mut keyless = wire.clone();
    if let Some(Kind::AddCertificate(c)) = &mut keyless.kind {
        c.key_pem.clear();
    }
    assert!(matches!(
        Request::try_from(&keyless),
        Err(WireError::Certificate(_))
    ));
}
