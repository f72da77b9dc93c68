//! HTTPS termination over real loopback TCP, against an in-process rustls client, with
//! certificates made at test time.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, Tls12Resumption};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    AlertDescription, ClientConfig, ClientConnection, DigitallySignedStruct, HandshakeKind,
    ProtocolVersion, SignatureScheme, SupportedProtocolVersion,
};
use weir_schema::cert::fingerprint_der;
use weir_schema::{
    Certificate, ClusterId, Fingerprint, Frontend, Listener, ListenerSettings, Protocol,
    TlsCipherSuite, TlsVersion,
};

use super::*;

fn certificate(name: &str, dns: &[&str]) -> Certificate {
    let made =
        rcgen::generate_simple_self_signed(dns.iter().map(|d| d.to_string()).collect::<Vec<_>>())
            .unwrap();
    Certificate::from_pem(name, &made.cert.pem(), &made.key_pair.serialize_pem()).unwrap()
}

fn frontend(listener: SocketAddr, host: &str, cert: &Certificate) -> Frontend {
    Frontend {
        owner: None,
        listener,
        hostname: Some(host.into()),
        path: "/".into(),
        cluster: ClusterId("app".into()),
        certificate: Some(cert.fingerprint),
        options: Default::default(),
    }
}

fn https(address: SocketAddr, settings: ListenerSettings) -> Listener {
    Listener {
        owner: None,
        address,
        protocol: Protocol::Https,
        name: "tls".into(),
        settings,
    }
}

/// Accepts any certificate and remembers which one the server showed, so tests can tell which
/// certificate the SNI choice picked. Handshake signatures are still verified.
#[derive(Debug, Default)]
struct Shown(Mutex<Vec<Fingerprint>>);

impl ServerCertVerifier for Shown {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0.lock().unwrap().push(fingerprint_der(end_entity));
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &ring_provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &ring_provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        ring_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The test client's provider. rustls 0.23.48 deprecates ring's default for its lack of
/// post-quantum groups, which a test client does not need.
#[allow(deprecated)]
fn ring_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

struct Client {
    config: Arc<ClientConfig>,
    shown: Arc<Shown>,
}

fn client(versions: &[&'static SupportedProtocolVersion], sni: bool) -> Client {
    let shown = Arc::new(Shown::default());
    let mut config = ClientConfig::builder_with_provider(Arc::new(ring_provider()))
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(shown.clone())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.enable_sni = sni;
    Client {
        config: Arc::new(config),
        shown,
    }
}

fn both() -> Client {
    client(rustls::ALL_VERSIONS, true)
}

/// One https listener of one worker.
struct Server {
    worker: WorkerTls,
    socket: StdListener,
    address: SocketAddr,
    tls: ListenerTls,
}

impl Server {
    fn new(settings: ListenerSettings) -> Server {
        let socket = StdListener::bind("127.0.0.1:0").unwrap();
        let address = socket.local_addr().unwrap();
        let mut worker = WorkerTls::new();
        worker.store.set_listener(&https(address, settings.clone()));
        let tls = worker.listener(address, &settings).unwrap();
        Server {
            worker,
            socket,
            address,
            tls,
        }
    }

    fn update(&mut self, settings: ListenerSettings) {
        self.worker
            .store
            .set_listener(&https(self.address, settings.clone()));
        self.tls = self.worker.listener(self.address, &settings).unwrap();
    }

    fn connect(&self, client: &Client, sni: &str) -> Conn {
        let socket = std::net::TcpStream::connect(self.address).unwrap();
        socket.set_nonblocking(true).unwrap();
        let (accepted, _) = self.socket.accept().unwrap();
        accepted.set_nonblocking(true).unwrap();
        let mut sock = mio::net::TcpStream::from_std(socket);
        let mut accept = TlsAccept::new(mio::net::TcpStream::from_std(accepted));
        let poll = Poll::new().unwrap();
        let both = Interest::READABLE | Interest::WRITABLE;
        poll.registry().register(&mut sock, Token(0), both).unwrap();
        poll.registry()
            .register(accept.socket_mut(), Token(1), both)
            .unwrap();
        let name = ServerName::try_from(sni.to_owned()).unwrap();
        Conn {
            client: ClientConnection::new(client.config.clone(), name).unwrap(),
            sock,
            server: Side::Accepting(accept),
            poll,
            tls: self.tls.clone(),
            client_error: None,
            client_saw_close_notify: false,
            client_tcp_eof: false,
            client_paused: false,
            to_client: Vec::new(),
            sent_to_client: 0,
            by_client: Vec::new(),
            by_server: Vec::new(),
            server_eof: false,
        }
    }

    /// The certificate a fresh client asking for `sni` is shown, or the alert it gets.
    fn shown(&self, sni: Option<&str>) -> Result<Fingerprint, rustls::Error> {
        let client = client(rustls::ALL_VERSIONS, sni.is_some());
        let mut conn = self.connect(&client, sni.unwrap_or("no-sni.invalid"));
        conn.handshake();
        if let Some(e) = conn.client_error.take() {
            return Err(e);
        }
        let shown = client.shown.0.lock().unwrap();
        Ok(*shown.last().unwrap())
    }
}

enum Side {
    Accepting(Box<TlsAccept>),
    Stream(Box<TlsStream>),
    Refused(Refused),
    Gone,
}

/// A client connection and its server side, driven together by readiness.
struct Conn {
    client: ClientConnection,
    sock: mio::net::TcpStream,
    server: Side,
    poll: Poll,
    tls: ListenerTls,
    client_error: Option<rustls::Error>,
    client_saw_close_notify: bool,
    client_tcp_eof: bool,
    /// The client reads nothing, so the server's socket fills up.
    client_paused: bool,
    /// What the server writes, and how much of it it has written.
    to_client: Vec<u8>,
    sent_to_client: usize,
    by_client: Vec<u8>,
    by_server: Vec<u8>,
    server_eof: bool,
}

impl Conn {
    fn stream(&mut self) -> &mut TlsStream {
        match &mut self.server {
            Side::Stream(s) => s,
            _ => panic!("no TLS stream on the server side"),
        }
    }

    fn refused(&self) -> Option<&Refusal> {
        match &self.server {
            Side::Refused(r) => Some(&r.why),
            _ => None,
        }
    }

    fn step(&mut self) {
        let mut buf = [0u8; 16384];
        while self.client.wants_write() {
            match self.client.write_tls(&mut self.sock) {
                Ok(_) => {}
                Err(_) => break,
            }
        }
        while !self.client_paused {
            match self.client.read_tls(&mut self.sock) {
                Ok(0) => {
                    self.client_tcp_eof = true;
                    break;
                }
                Ok(_) => {
                    if let Err(e) = self.client.process_new_packets() {
                        self.client_error.get_or_insert(e);
                        break;
                    }
                }
                Err(_) => break,
            }
            // Drain as it comes: rustls stops reading while its plaintext buffer is full.
            loop {
                match self.client.reader().read(&mut buf) {
                    Ok(0) => {
                        self.client_saw_close_notify = true;
                        break;
                    }
                    Ok(n) => self.by_client.extend_from_slice(&buf[..n]),
                    Err(_) => break,
                }
            }
        }
        self.server = match std::mem::replace(&mut self.server, Side::Gone) {
            Side::Accepting(accept) => match accept.advance(&self.tls) {
                Accepting::Pending(a) => Side::Accepting(a),
                Accepting::Ready(s) => Side::Stream(s),
                Accepting::Refused(r) => Side::Refused(r),
            },
            Side::Stream(mut s) => {
                if s.has_pending_output() {
                    let _ = s.flush_output();
                }
                while self.sent_to_client < self.to_client.len() {
                    match s.write(&self.to_client[self.sent_to_client..]) {
                        Ok(n) => self.sent_to_client += n,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => panic!("server write: {e}"),
                    }
                }
                loop {
                    match s.read(&mut buf) {
                        Ok(0) => {
                            self.server_eof = true;
                            break;
                        }
                        Ok(n) => {
                            self.by_server.extend_from_slice(&buf[..n]);
                            // The contract: a short read means nothing more for now.
                            if n < buf.len() {
                                break;
                            }
                        }
                        Err(_) => break,
                    }
                }
                Side::Stream(s)
            }
            other => other,
        };
    }

    /// Drives both sides until `done`, waiting on socket readiness in between; bounded in
    /// turns and in time.
    fn run_until(&mut self, what: &str, mut done: impl FnMut(&mut Conn) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut events = Events::with_capacity(8);
        for _ in 0..2_000 {
            self.step();
            if done(self) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            self.poll
                .poll(&mut events, Some(Duration::from_millis(20)))
                .unwrap();
        }
        panic!("gave up waiting for {what}");
    }

    /// Until both ends finished the handshake, or the client learnt it was refused.
    fn handshake(&mut self) {
        self.run_until("the handshake", |c| {
            c.client_error.is_some()
                || (c.refused().is_some() && c.client_tcp_eof)
                || (!c.client.is_handshaking()
                    && matches!(&c.server, Side::Stream(s) if !s.conn.is_handshaking()))
        });
    }

    /// A full exchange: handshake, a request and an answer (which also brings the client its
    /// session tickets, sent before the answer).
    fn exchange(&mut self) {
        self.handshake();
        assert!(self.client_error.is_none(), "{:?}", self.client_error);
        self.client.writer().write_all(b"ping").unwrap();
        self.run_until("the request", |c| c.by_server == b"ping");
        self.to_client = b"pong".to_vec();
        self.run_until("the answer", |c| c.by_client == b"pong");
    }

    fn server_handshake_kind(&mut self) -> Option<HandshakeKind> {
        self.stream().conn.handshake_kind()
    }
}

fn alert(e: &Option<rustls::Error>) -> Option<AlertDescription> {
    match e {
        Some(rustls::Error::AlertReceived(a)) => Some(*a),
        _ => None,
    }
}

#[test]
fn sni_picks_exact_names_before_wildcards_and_the_newest_frontend() {
    let mut s = Server::new(ListenerSettings::default());
    let (w, a, b) = (
        certificate("w", &["*.example.test"]),
        certificate("a", &["a.example.test"]),
        certificate("b", &["a.example.test"]),
    );
    for c in [&w, &a, &b] {
        s.worker.store.add_certificate(c);
    }
    let at = s.address;
    s.worker
        .store
        .add_frontend(&frontend(at, "*.example.test", &w), 1);
    s.worker
        .store
        .add_frontend(&frontend(at, "a.example.test", &a), 2);
    assert_eq!(s.shown(Some("a.example.test")).unwrap(), a.fingerprint);
    assert_eq!(s.shown(Some("A.Example.Test")).unwrap(), a.fingerprint);
    assert_eq!(s.shown(Some("x.example.test")).unwrap(), w.fingerprint);
    assert_eq!(s.shown(Some("deep.x.example.test")).unwrap(), w.fingerprint);

    // Hot changes: the next handshake sees them, with no new configuration built.
    s.worker
        .store
        .add_frontend(&frontend(at, "a.example.test", &b), 3);
    assert_eq!(s.shown(Some("a.example.test")).unwrap(), b.fingerprint);
    s.worker
        .store
        .remove_frontend(&frontend(at, "a.example.test", &b), 3);
    assert_eq!(s.shown(Some("a.example.test")).unwrap(), a.fingerprint);
    s.worker
        .store
        .remove_frontend(&frontend(at, "a.example.test", &a), 2);
    assert_eq!(s.shown(Some("a.example.test")).unwrap(), w.fingerprint);

    // A replacement takes over the names of the certificate it replaces.
    let w2 = certificate("w2", &["*.example.test"]);
    s.worker.store.replace_certificate(w.fingerprint, &w2);
    assert_eq!(s.shown(Some("x.example.test")).unwrap(), w2.fingerprint);
}

#[test]
fn clients_without_a_known_name_get_unrecognized_name_unless_a_default_serves_no_sni() {
    let mut s = Server::new(ListenerSettings::default());
    let a = certificate("a", &["a.example.test"]);
    s.worker.store.add_certificate(&a);
    s.worker
        .store
        .add_frontend(&frontend(s.address, "a.example.test", &a), 1);

    let unrecognized = Some(rustls::Error::AlertReceived(
        AlertDescription::UnrecognisedName,
    ));
    assert_eq!(s.shown(None).err(), unrecognized);
    assert_eq!(s.shown(Some("other.test")).err(), unrecognized);

    s.update(ListenerSettings {
        default_certificate: Some(a.fingerprint),
        ..Default::default()
    });
    assert_eq!(s.shown(None).unwrap(), a.fingerprint);
    // The default is for clients without SNI only.
    assert_eq!(s.shown(Some("other.test")).err(), unrecognized);
    // A default whose certificate the worker does not hold serves nobody.
    s.worker.store.remove_certificate(a.fingerprint);
    assert_eq!(s.shown(None).err(), unrecognized);
}

/// A ClientHello from a TLS 1.0/1.1-only client: no supported_versions extension, SNI set to
/// a name the listener has a certificate for, so only the version can be what is refused.
fn legacy_client_hello(version: [u8; 2], sni: &str) -> Vec<u8> {
    let name = sni.as_bytes();
    let mut list = vec![0u8];
    list.extend((name.len() as u16).to_be_bytes());
    list.extend(name);
    let mut server_name = (list.len() as u16).to_be_bytes().to_vec();
    server_name.extend(list);
    let mut extensions = vec![0, 0];
    extensions.extend((server_name.len() as u16).to_be_bytes());
    extensions.extend(server_name);
    // signature_algorithms (rustls requires it): ecdsa_secp256r1_sha256, rsa_pkcs1_sha256.
    extensions.extend([0x00, 0x0d, 0, 6, 0, 4, 0x04, 0x03, 0x04, 0x01]);
    let mut body = version.to_vec();
    body.extend([7u8; 32]);
    body.push(0);
    // TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA
    body.extend([0, 4, 0xc0, 0x2b, 0xc0, 0x09]);
    body.extend([1, 0]);
    body.extend((extensions.len() as u16).to_be_bytes());
    body.extend(extensions);
    let mut handshake = vec![1];
    handshake.extend(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend(body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend((handshake.len() as u16).to_be_bytes());
    record.extend(handshake);
    record
}

#[test]
fn tls_1_0_and_1_1_clients_are_refused_with_protocol_version() {
    let s = Server::new(ListenerSettings::default());
    let mut s = s;
    let a = certificate("a", &["a.example.test"]);
    s.worker.store.add_certificate(&a);
    s.worker
        .store
        .add_frontend(&frontend(s.address, "a.example.test", &a), 1);
    for version in [[3, 1], [3, 2]] {
        let mut raw = std::net::TcpStream::connect(s.address).unwrap();
        raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        raw.write_all(&legacy_client_hello(version, "a.example.test"))
            .unwrap();
        let (accepted, _) = s.socket.accept().unwrap();
        accepted.set_nonblocking(true).unwrap();
        let mut accept = TlsAccept::new(mio::net::TcpStream::from_std(accepted));
        let mut poll = Poll::new().unwrap();
        poll.registry()
            .register(accept.socket_mut(), Token(1), Interest::READABLE)
            .unwrap();
        let mut events = Events::with_capacity(4);
        let mut outcome = None;
        for _ in 0..200 {
            match accept.advance(&s.tls) {
                Accepting::Pending(a) => accept = a,
                Accepting::Ready(_) => panic!("a TLS {version:?} client was served"),
                Accepting::Refused(r) => {
                    outcome = Some(r);
                    break;
                }
            }
            poll.poll(&mut events, Some(Duration::from_millis(20)))
                .unwrap();
        }
        let refused = outcome.expect("no verdict on the ClientHello");
        assert!(
            matches!(refused.why, Refusal::Handshake(_)),
            "{:?}",
            refused.why
        );
        let mut answer = [0u8; 7];
        raw.read_exact(&mut answer).unwrap();
        // An alert record, fatal, protocol_version (70).
        assert_eq!(
            (answer[0], answer[5], answer[6]),
            (0x15, 2, 70),
            "{answer:?}"
        );
    }
}

#[test]
fn a_listener_narrows_versions_and_suites_and_offers_http_1_1() {
    let a = certificate("a", &["a.example.test"]);
    let serve = |settings: ListenerSettings| {
        let mut s = Server::new(settings);
        s.worker.store.add_certificate(&a);
        s.worker
            .store
            .add_frontend(&frontend(s.address, "a.example.test", &a), 1);
        s
    };

    let open = serve(ListenerSettings::default());
    let mut conn = open.connect(&both(), "a.example.test");
    conn.handshake();
    assert_eq!(
        conn.client.protocol_version(),
        Some(ProtocolVersion::TLSv1_3)
    );
    assert_eq!(conn.client.alpn_protocol(), Some(&b"http/1.1"[..]));
    let mut conn = open.connect(&client(&[&rustls::version::TLS12], true), "a.example.test");
    conn.handshake();
    assert_eq!(
        conn.client.protocol_version(),
        Some(ProtocolVersion::TLSv1_2)
    );

    let only_13 = serve(ListenerSettings {
        tls_versions: vec![TlsVersion::Tls13],
        ..Default::default()
    });
    let mut conn = only_13.connect(&client(&[&rustls::version::TLS12], true), "a.example.test");
    conn.handshake();
    assert_eq!(
        alert(&conn.client_error),
        Some(AlertDescription::ProtocolVersion)
    );
    assert!(matches!(conn.refused(), Some(Refusal::Handshake(_))));

    // The client's own first choices are AES-256 suites: ChaCha20 wins only if the listener
    // narrowed the list.
    let chacha = serve(ListenerSettings {
        cipher_suites: vec![
            TlsCipherSuite::Tls13Chacha20Poly1305Sha256,
            TlsCipherSuite::EcdheEcdsaChacha20Poly1305Sha256,
        ],
        ..Default::default()
    });
    for (versions, expected) in [
        (
            rustls::ALL_VERSIONS,
            rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
        ),
        (
            &[&rustls::version::TLS12][..],
            rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ),
    ] {
        let mut conn = chacha.connect(&client(versions, true), "a.example.test");
        conn.handshake();
        assert_eq!(
            conn.client.negotiated_cipher_suite().map(|s| s.suite()),
            Some(expected)
        );
    }
}

/// Two workers of one proxy: separate configurations and caches, the same certificates.
fn two_workers() -> (Server, Server) {
    let a = certificate("a", &["a.example.test"]);
    let make = || {
        let mut s = Server::new(ListenerSettings::default());
        s.worker.store.add_certificate(&a);
        s.worker
            .store
            .add_frontend(&frontend(s.address, "a.example.test", &a), 1);
        s
    };
    (make(), make())
}

fn resumed(server: &Server, client: &Client) -> bool {
    let mut conn = server.connect(client, "a.example.test");
    conn.exchange();
    conn.server_handshake_kind() == Some(HandshakeKind::Resumed)
}

#[test]
fn a_ticket_from_one_worker_resumes_on_another_and_survives_one_rotation() {
    let (one, two) = two_workers();
    let k1 = TicketKeys::new(TicketKey::generate().unwrap());
    for w in [&one, &two] {
        w.worker.set_ticket_keys(&k1).unwrap();
    }
    let (x, y, z) = (both(), both(), both());
    for c in [&x, &y, &z] {
        assert!(!resumed(&one, c), "a first connection cannot resume");
    }
    assert!(
        resumed(&two, &x),
        "a ticket from worker one must resume on two"
    );

    let k2 = k1.rotated(TicketKey::generate().unwrap());
    for w in [&one, &two] {
        w.worker.set_ticket_keys(&k2).unwrap();
    }
    assert!(resumed(&two, &y), "the previous key must still decrypt");

    let k3 = k2.rotated(TicketKey::generate().unwrap());
    for w in [&one, &two] {
        w.worker.set_ticket_keys(&k3).unwrap();
    }
    assert!(!resumed(&two, &z), "a key two rotations old must be gone");
    assert!(
        resumed(&one, &z),
        "after a full handshake, the new ticket resumes"
    );
}

#[test]
fn tls_1_2_sessions_resume_from_the_worker_cache_without_tickets() {
    let (one, two) = two_workers();
    let mut config = (*client(&[&rustls::version::TLS12], true).config).clone();
    config.resumption =
        Resumption::in_memory_sessions(8).tls12_resumption(Tls12Resumption::SessionIdOnly);
    let session_ids = Client {
        config: Arc::new(config),
        shown: Arc::new(Shown::default()),
    };
    assert!(!resumed(&one, &session_ids));
    assert!(
        resumed(&one, &session_ids),
        "the worker's cache must resume a session id"
    );
    // The cache is per worker: without ticket keys another worker cannot resume it.
    assert!(!resumed(&two, &session_ids));
}

#[test]
fn plaintext_flows_both_ways_and_shutdown_write_sends_close_notify() {
    let (s, _) = two_workers();
    let mut conn = s.connect(&both(), "a.example.test");
    conn.handshake();

    let request: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    conn.client.writer().write_all(&request).unwrap();
    conn.run_until("the request", |c| c.by_server.len() >= request.len());
    assert_eq!(conn.by_server, request);

    // More than the socket buffers hold while the client reads nothing: writes hit
    // WouldBlock with output waiting, which `flush_output` sends once the client reads.
    conn.to_client = (0..8_000_000u32).map(|i| (i % 241) as u8).collect();
    // Without rustls' own limit, only the stream's rule (no new plaintext while output waits)
    // keeps the 8 MB from piling up in memory.
    conn.stream().conn.set_buffer_limit(None);
    conn.client_paused = true;
    conn.run_until("a full socket", |c| c.stream().has_pending_output());
    let sent = conn.sent_to_client;
    assert!(
        sent < conn.to_client.len(),
        "all {sent} bytes fit in the socket buffers"
    );
    conn.step();
    assert_eq!(
        conn.sent_to_client, sent,
        "a write was accepted over waiting output"
    );
    conn.client_paused = false;
    conn.run_until("the answer", |c| c.by_client.len() >= c.to_client.len());
    assert!(
        conn.by_client == conn.to_client,
        "the answer arrived changed"
    );
    conn.run_until("the flush", |c| !c.stream().has_pending_output());

    conn.stream().shutdown_write();
    conn.run_until("close_notify", |c| {
        c.client_saw_close_notify && c.client_tcp_eof
    });
    assert!(conn.client_error.is_none(), "{:?}", conn.client_error);
    assert!(!conn.stream().has_pending_output());

    // Half-closed: the client can still send, and its own close_notify ends the stream.
    conn.client.writer().write_all(b"last words").unwrap();
    conn.client.send_close_notify();
    conn.by_server.clear();
    conn.run_until("the end of the stream", |c| c.server_eof);
    assert_eq!(conn.by_server, b"last words");
    assert!(!conn.stream().reset_by_peer());
}
