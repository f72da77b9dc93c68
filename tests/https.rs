//! HTTPS end to end: the real binary, certificates made at test time (rcgen, under a test CA),
//! and real clients: curl (`--resolve`, `--cacert`), `openssl s_client`, and rustls.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command as Process;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, SerialNumber,
};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use util::control::metric;
use util::{control, curl, Desired, Proxy};
use weir_schema::{Change, Command};
use weir_testkit::{free_addr, read_answer, wait_until, Backend};

/// A test certificate authority, and the leaves it signs.
struct Pki {
    ca: rcgen::Certificate,
    ca_key: KeyPair,
}

/// A leaf: its PEM chain and key, and its DER to recognise it on the client side.
struct Leaf {
    pem: String,
    key: String,
    der: CertificateDer<'static>,
}

impl Pki {
    fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "weir test CA");
        params.distinguished_name = dn;
        let ca_key = KeyPair::generate().unwrap();
        let ca = params.self_signed(&ca_key).unwrap();
        Pki { ca, ca_key }
    }

    fn leaf(&self, names: &[&str], serial: u64) -> Leaf {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.serial_number = Some(SerialNumber::from(serial));
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, names[0]);
        params.distinguished_name = dn;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        Leaf {
            pem: cert.pem(),
            key: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        roots
    }

    /// Writes the CA certificate for curl and openssl.
    fn write_ca(&self, desired: &Desired) -> String {
        let path = desired.write("ca/ca.pem", &self.ca.pem());
        path.to_str().unwrap().to_owned()
    }
}

/// A desired state: one https listener, one backend, certificates and the frontends using them.
struct Site {
    listener: SocketAddr,
    backend: SocketAddr,
    /// (name, leaf)
    certificates: Vec<(String, Leaf)>,
    /// (hostname, certificate name)
    frontends: Vec<(String, String)>,
    default_certificate: Option<String>,
    cluster: &'static str,
}

impl Site {
    fn new(backend: SocketAddr) -> Site {
        Site {
            listener: free_addr(),
            backend,
            certificates: Vec::new(),
            frontends: Vec::new(),
            default_certificate: None,
            cluster: "app",
        }
    }

    fn certificate(mut self, name: &str, leaf: Leaf) -> Site {
        self.certificates.push((name.to_owned(), leaf));
        self
    }

    fn frontend(mut self, host: &str, certificate: &str) -> Site {
        self.frontends
            .push((host.to_owned(), certificate.to_owned()));
        self
    }

    /// Writes the state into `desired` (`routes/`), replacing what was there.
    fn write(&self, desired: &Desired) {
        let mut yaml = format!(
            "listeners:\n  - name: tls\n    address: {}\n    protocol: https\n",
            self.listener
        );
        if let Some(default) = &self.default_certificate {
            yaml.push_str(&format!("    default_certificate: {default}\n"));
        }
        yaml.push_str(&format!(
            "clusters:\n  - id: {}\n    backends:\n      - id: b1\n        address: {}\n",
            self.cluster, self.backend
        ));
        yaml.push_str("certificates:\n");
        for (name, leaf) in &self.certificates {
            desired.write(&format!("routes/{name}.pem"), &leaf.pem);
            desired.write(&format!("routes/{name}.key"), &leaf.key);
            yaml.push_str(&format!(
                "  - name: {name}\n    certificate: {name}.pem\n    key: {name}.key\n"
            ));
        }
        yaml.push_str("frontends:\n");
        for (host, certificate) in &self.frontends {
            yaml.push_str(&format!(
                "  - listener: tls\n    hostname: \"{host}\"\n    cluster: {}\n    certificate: {certificate}\n",
                self.cluster
            ));
        }
        desired.write("routes/weir.yaml", &yaml);
    }

    fn routes(desired: &Desired) -> String {
        desired.path().join("routes").to_str().unwrap().to_owned()
    }

    /// Starts a proxy on this state with `workers` workers, and waits until its listener
    /// accepts.
    fn start(&self, desired: &Desired, workers: &str) -> Proxy {
        self.write(desired);
        let routes = Site::routes(desired);
        let proxy = Proxy::start(&["--desired", &routes, "--workers", workers]);
        assert!(util::wait_for_port(self.listener));
        proxy
    }
}

fn client_config(pki: &Pki) -> Arc<ClientConfig> {
    // Deprecated since rustls 0.23.48 for its lack of post-quantum groups, which a test
    // client does not need.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(pki.roots())
            .with_no_client_auth(),
    )
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// When a handshake started, and the certificate it was shown or its error.
type Handshake = (Instant, Result<CertificateDer<'static>, String>);

/// A completed rustls handshake with `sni`, or its error.
fn handshake(addr: SocketAddr, config: &Arc<ClientConfig>, sni: &str) -> Result<Tls, String> {
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    let conn = ClientConnection::new(config.clone(), name).unwrap();
    let sock = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut tls = StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .map_err(|e| e.to_string())?;
    }
    Ok(tls)
}

/// The leaf certificate the server showed.
fn shown(tls: &Tls) -> CertificateDer<'static> {
    tls.conn.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

fn get(tls: &mut Tls, host: &str) -> weir_testkit::Answer {
    tls.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .unwrap();
    read_answer(tls).unwrap()
}

/// `openssl s_client` against `addr`, with `args`; its stdout and stderr together.
fn s_client(addr: SocketAddr, args: &[&str]) -> String {
    s_client_sending(addr, args, "")
}

/// `openssl s_client` against `addr`, with `args`, sending `input` and then reading until the
/// server closes (`-ign_eof`) when there is any; its stdout and stderr together.
fn s_client_sending(addr: SocketAddr, args: &[&str], input: &str) -> String {
    let mut child = Process::new("openssl")
        .arg("s_client")
        .arg("-connect")
        .arg(addr.to_string())
        .args(args)
        .args(if input.is_empty() {
            &[][..]
        } else {
            &["-ign_eof"]
        })
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run openssl");
    // Dropping stdin once written is the end of the input.
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().expect("run openssl");
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn sni_picks_among_several_certificates_and_a_wildcard() {
    let pki = Pki::new();
    let backend = Backend::start("app");
    let desired = Desired::new();
    let site = Site::new(backend.addr)
        .certificate("a", pki.leaf(&["a.test"], 1))
        .certificate("b", pki.leaf(&["b.test"], 2))
        .certificate("wild", pki.leaf(&["*.w.test"], 3))
        .frontend("a.test", "a")
        .frontend("b.test", "b")
        .frontend("*.w.test", "wild");
    let _proxy = site.start(&desired, "1");
    let config = client_config(&pki);
    for (host, index) in [("a.test", 0), ("b.test", 1), ("x.w.test", 2)] {
        let mut tls = handshake(site.listener, &config, host).unwrap();
        assert_eq!(shown(&tls), site.certificates[index].1.der, "{host}");
        let answer = get(&mut tls, host);
        assert_eq!(answer.status, 200, "{host}");
        assert_eq!(answer.text(), "app");
    }
    // curl, verifying against the test CA only.
    let ca = pki.write_ca(&desired);
    for host in ["a.test", "b.test", "y.w.test"] {
        let resolve = format!("{host}:{}:127.0.0.1", site.listener.port());
        let url = format!("https://{host}:{}/", site.listener.port());
        let out = curl(&["--resolve", &resolve, "--cacert", &ca, &url]);
        assert!(
            out.status.success(),
            "{host}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "app");
    }
    let seen = backend.last_seen();
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
}

#[test]
fn no_sni_gets_the_default_certificate_else_unrecognized_name_as_does_an_unknown_name() {
    let pki = Pki::new();
    let backend = Backend::start("app");
    let desired = Desired::new();
    let mut site = Site::new(backend.addr)
        .certificate("a", pki.leaf(&["a.test"], 1))
        .frontend("a.test", "a");
    let proxy = site.start(&desired, "1");
    let unknown = s_client(site.listener, &["-servername", "nobody.test"]);
    assert!(unknown.contains("unrecognized name"), "{unknown}");
    let no_sni = s_client(site.listener, &["-noservername"]);
    assert!(no_sni.contains("unrecognized name"), "{no_sni}");
    let known = s_client(site.listener, &["-servername", "a.test"]);
    assert!(known.contains("CN = a.test"), "{known}");

    // With a default certificate, a client without SNI gets it; an unknown name still not.
    site.default_certificate = Some("a".into());
    site.write(&desired);
    let out = proxy.weir(&["apply", &Site::routes(&desired), "--auto-approve"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let no_sni = s_client(site.listener, &["-noservername"]);
    assert!(no_sni.contains("CN = a.test"), "{no_sni}");
    let unknown = s_client(site.listener, &["-servername", "nobody.test"]);
    assert!(unknown.contains("unrecognized name"), "{unknown}");
    let failures = metric(&proxy, "tls.handshake_failures");
    assert!(failures >= 3, "{failures}");
}

/// A flood of failed handshakes is counted whole, but its log lines are rate-limited (a burst,
/// then a few a second), and the next line written says how many were suppressed.
#[test]
fn handshake_failure_lines_are_rate_limited_and_the_suppressed_ones_counted() {
    let pki = Pki::new();
    let backend = Backend::start("app");
    let desired = Desired::new();
    let site = Site::new(backend.addr)
        .certificate("a", pki.leaf(&["a.test"], 1))
        .frontend("a.test", "a");
    site.write(&desired);
    let stderr_path = desired.path().join("stderr.log");
    let stderr = std::fs::File::create(&stderr_path).unwrap();
    let routes = Site::routes(&desired);
    let proxy = Proxy::start_with_stderr(&["--desired", &routes, "--workers", "1"], stderr);
    assert!(util::wait_for_port(site.listener));
    // Plain HTTP on the TLS port: not a ClientHello, a failure each time.
    let flood = 300;
    let started = Instant::now();
    for _ in 0..flood {
        let mut conn = TcpStream::connect(site.listener).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        conn.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
            .unwrap();
        let _ = conn.read_to_end(&mut Vec::new());
    }
    let elapsed = started.elapsed();
    assert!(wait_until(Duration::from_secs(10), || {
        metric(&proxy, "tls.handshake_failures") >= flood
    }));
    let failure_lines = || {
        std::fs::read_to_string(&stderr_path)
            .unwrap()
            .lines()
            .filter(|l| l.contains("TLS handshake from"))
            .count() as u64
    };
    // A burst of 10, then 5 a second (plus one for the second under way).
    let allowed = 10 + 5 * (elapsed.as_secs() + 1);
    let written = failure_lines();
    assert!(
        written <= allowed && written < flood,
        "{written} lines in {elapsed:?}"
    );
    // Once the bucket refills, the next failure's line comes after the count of those dropped.
    let mut suppressed = String::new();
    // Each attempt is one more failure, itself suppressed until the bucket has a token.
    let mut attempts = 0;
    assert!(wait_until(Duration::from_secs(10), || {
        attempts += 1;
        let mut conn = TcpStream::connect(site.listener).unwrap();
        conn.write_all(b"garbage\r\n\r\n").unwrap();
        let _ = conn.read_to_end(&mut Vec::new());
        let text = std::fs::read_to_string(&stderr_path).unwrap();
        match text.lines().find(|l| l.contains("suppressed")) {
            Some(line) => {
                suppressed = line.to_owned();
                true
            }
            None => false,
        }
    }));
    let count: u64 = suppressed
        .split("suppressed ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{suppressed}"));
    assert!(
        count > 0 && count + written <= flood + attempts,
        "{suppressed} after {attempts} more failures"
    );
}

#[test]
fn tls_1_0_and_1_1_are_refused() {
    let pki = Pki::new();
    let backend = Backend::start("app");
    let desired = Desired::new();
    let site = Site::new(backend.addr)
        .certificate("a", pki.leaf(&["a.test"], 1))
        .frontend("a.test", "a");
    let _proxy = site.start(&desired, "1");
    for version in ["-tls1", "-tls1_1"] {
        // Security level 0 so that OpenSSL itself agrees to offer the old versions.
        let out = s_client(
            site.listener,
            &[
                "-servername",
                "a.test",
                version,
                "-cipher",
                "DEFAULT:@SECLEVEL=0",
            ],
        );
        // Refused with an alert (protocol_version; a TLS 1.0 hello, which has no signature
        // algorithms, gets handshake_failure first), no certificate shown.
        assert!(out.contains("SSL alert number"), "{version}: {out}");
        assert!(
            out.contains("no peer certificate available"),
            "{version}: {out}"
        );
        assert!(out.contains("Cipher is (NONE)"), "{version}: {out}");
    }
    let out = s_client(site.listener, &["-servername", "a.test", "-tls1_2"]);
    assert!(out.contains("CN = a.test"), "{out}");
}

#[test]
fn removing_a_certificate_in_use_is_refused_naming_its_frontends() {
    let pki = Pki::new();
    let backend = Backend::start("app");
    let desired = Desired::new();
    let site = Site::new(backend.addr)
        .certificate("a", pki.leaf(&["a.test", "www.a.test"], 1))
        .frontend("a.test", "a")
        .frontend("www.a.test", "a");
    let proxy = site.start(&desired, "1");
    let fingerprint = weir_schema::Certificate::from_pem(
        "a",
        &site.certificates[0].1.pem,
        &site.certificates[0].1.key,
    )
    .unwrap()
    .fingerprint;
    let mut client = control::client(&proxy);
    let answer = control::apply(&mut client, Change::RemoveCertificate(fingerprint));
    assert!(!control::is_ok(&answer), "{answer:?}");
    assert!(answer.message.contains("www.a.test"), "{}", answer.message);
    assert!(answer.message.contains("a.test"), "{}", answer.message);
    // Still served.
    let config = client_config(&pki);
    let tls = handshake(site.listener, &config, "a.test").unwrap();
    assert_eq!(shown(&tls), site.certificates[0].1.der);
}

#[test]
fn a_certificate_whose_key_does_not_match_is_refused_before_any_worker_sees_it() {
    let pki = Pki::new();
    let backend = Backend::start("app");
    let desired = Desired::new();
    let site = Site::new(backend.addr)
        .certificate("a", pki.leaf(&["a.test"], 1))
        .frontend("a.test", "a");
    let proxy = site.start(&desired, "1");
    let mut client = control::client(&proxy);
    let before = control::version(&mut client);
    let leaf = pki.leaf(&["b.test"], 2);
    let other = pki.leaf(&["c.test"], 3);
    let request = weir_schema::proto::Request {
        id: "mismatch".into(),
        expected_version: None,
        kind: Some(weir_schema::proto::request::Kind::AddCertificate(
            weir_schema::proto::Certificate {
                owner: String::new(),
                name: "b".into(),
                certificate_pem: leaf.pem,
                key_pem: other.key,
            },
        )),
    };
    let mut raw = std::os::unix::net::UnixStream::connect(&proxy.socket).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    weir_schema::framing::write_frame(&mut raw, &request).unwrap();
    let answer: weir_schema::proto::Response =
        weir_schema::framing::read_frame(&mut raw, weir_schema::framing::DEFAULT_MAX_FRAME)
            .unwrap()
            .unwrap();
    assert_eq!(
        answer.status,
        weir_schema::proto::ResponseStatus::Failure as i32,
        "{answer:?}"
    );
    assert!(answer.message.contains("key"), "{}", answer.message);
    assert_eq!(control::version(&mut client), before);
    // Every worker still runs the state it had (none was replaced for diverging).
    let status = control::status(&mut client);
    assert!(status
        .workers
        .iter()
        .all(|w| w.state_version == before && w.restarts == 0));
}

#[test]
fn rotation_under_new_connections_fails_none_and_after_apply_every_handshake_sees_the_new_certificate(
) {
    let pki = Pki::new();
    let backend = Backend::start("app");
    let desired = Desired::new();
    let site = Site::new(backend.addr)
        .certificate("old", pki.leaf(&["a.test"], 1))
        .frontend("a.test", "old");
    let proxy = site.start(&desired, "2");
    let config = client_config(&pki);
    assert!(wait_until(Duration::from_secs(10), || {
        handshake(site.listener, &config, "a.test").is_ok()
    }));
    let old = site.certificates[0].1.der.clone();

    // New connections in a loop, each recording when it started and what it was shown.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let seen: Arc<Mutex<Vec<Handshake>>> = Arc::default();
    let looper = {
        let (stop, done, seen, config) = (stop.clone(), done.clone(), seen.clone(), config.clone());
        let addr = site.listener;
        std::thread::spawn(move || {
            let end = Instant::now() + Duration::from_secs(20);
            for _ in 0..2000 {
                if stop.load(Ordering::Relaxed) || Instant::now() > end {
                    break;
                }
                let started = Instant::now();
                let result = handshake(addr, &config, "a.test").map(|tls| shown(&tls));
                seen.lock().unwrap().push((started, result));
                done.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    assert!(wait_until(Duration::from_secs(10), || done
        .load(Ordering::Relaxed)
        >= 20));

    let rotated = Site::new(backend.addr)
        .certificate("new", pki.leaf(&["a.test"], 2))
        .frontend("a.test", "new");
    let rotated = Site {
        listener: site.listener,
        ..rotated
    };
    rotated.write(&desired);
    std::fs::remove_file(desired.path().join("routes/old.pem")).unwrap();
    std::fs::remove_file(desired.path().join("routes/old.key")).unwrap();
    let out = proxy.weir(&["apply", &Site::routes(&desired), "--auto-approve"]);
    let applied = Instant::now();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let at_apply = done.load(Ordering::Relaxed);
    assert!(wait_until(Duration::from_secs(10), || {
        done.load(Ordering::Relaxed) >= at_apply + 50
    }));
    stop.store(true, Ordering::Relaxed);
    looper.join().unwrap();

    let new = rotated.certificates[0].1.der.clone();
    let seen = seen.lock().unwrap();
    let failed: Vec<_> = seen.iter().filter(|(_, r)| r.is_err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} failed: {:?}",
        failed.len(),
        seen.len(),
        failed[0]
    );
    assert!(seen.iter().any(|(_, r)| r.as_ref().ok() == Some(&old)));
    let after: Vec<_> = seen.iter().filter(|(t, _)| *t >= applied).collect();
    assert!(after.len() >= 50);
    assert!(
        after.iter().all(|(_, r)| r.as_ref().ok() == Some(&new)),
        "a handshake after apply saw the old certificate"
    );
}

#[test]
fn a_ticket_from_one_worker_resumes_on_the_other() {
    let pki = Pki::new();
    let backend = Backend::start("app");
    let desired = Desired::new();
    let site = Site::new(backend.addr)
        .certificate("a", pki.leaf(&["a.test"], 1))
        .frontend("a.test", "a");
    let proxy = site.start(&desired, "2");
    // One client config: its session store keeps the tickets between connections.
    let config = client_config(&pki);
    // Read an answer so that the connection's session tickets are in the store.
    let mut first = handshake(site.listener, &config, "a.test").unwrap();
    assert_eq!(get(&mut first, "a.test").status, 200);
    drop(first);
    let mut client = control::client(&proxy);
    // Resumed connections, held open until both workers hold some (bounded).
    let mut open = Vec::new();
    let mut resumed = 0;
    for _ in 0..64 {
        let mut tls = handshake(site.listener, &config, "a.test").unwrap();
        // Read the answer so the session tickets of this connection are in the store too.
        assert_eq!(get(&mut tls, "a.test").status, 200);
        if tls.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
            resumed += 1;
        } else {
            panic!("connection {} was not resumed", open.len() + 1);
        }
        open.push(tls);
        if open.len() >= 8 {
            let status = control::status(&mut client);
            if status.workers.iter().all(|w| w.connections > 0) {
                break;
            }
        }
    }
    let status = control::status(&mut client);
    assert_eq!(status.workers.len(), 2);
    assert!(
        status.workers.iter().all(|w| w.connections > 0),
        "one worker served all {resumed} connections: {:?}",
        status.workers
    );
}

#[test]
fn a_ticket_from_before_an_upgrade_resumes_after_it() {
    let pki = Pki::new();
    let backend = Backend::start("app");
    let desired = Desired::new();
    let site = Site::new(backend.addr)
        .certificate("a", pki.leaf(&["a.test"], 1))
        .frontend("a.test", "a");
    let mut proxy = site.start(&desired, "1");
    let ca = pki.write_ca(&desired);
    let session = desired.path().join("session.pem");
    let session = session.to_str().unwrap();
    // A whole exchange, so the session tickets (sent after the handshake in TLS 1.3) arrive
    // before the session is written out.
    let request = "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n";
    let args = ["-servername", "a.test", "-CAfile", &ca];
    let first = s_client_sending(
        site.listener,
        &[&args[..], &["-sess_out", session]].concat(),
        request,
    );
    assert!(first.contains("New, TLSv1.3"), "{first}");
    assert!(first.contains("HTTP/1.1 200"), "{first}");

    let mut client = control::client(&proxy);
    let before = control::status(&mut client);
    let out = proxy.weir(&["upgrade"]);
    assert!(out.status.success(), "{out:?}");
    // The old main process exits once its workers are gone: only the new ones serve now, and
    // their session caches are empty, so only a ticket under the handed-over keys resumes.
    assert!(control::wait_exit(&mut proxy.child, Duration::from_secs(20)).is_some());
    let mut client = control::client(&proxy);
    let after = control::status(&mut client);
    assert_ne!(after.pid, before.pid);

    let second = s_client_sending(
        site.listener,
        &[&args[..], &["-sess_in", session]].concat(),
        request,
    );
    // The new main process is not the harness's child: stop it before asserting.
    assert!(control::is_ok(&control::call(
        &mut client,
        Command::HardStop
    )));
    assert!(wait_until(Duration::from_secs(10), || !control::alive(
        after.pid
    )));
    assert!(second.contains("HTTP/1.1 200"), "{second}");
    assert!(
        second.contains("Reused, TLSv1.3"),
        "not resumed after the upgrade:\n{second}"
    );
}

#[test]
fn websocket_over_tls() {
    let pki = Pki::new();
    let backend = weir_testkit::websocket_echo();
    let desired = Desired::new();
    let site = Site::new(backend.addr)
        .certificate("a", pki.leaf(&["a.test"], 1))
        .frontend("a.test", "a");
    let _proxy = site.start(&desired, "1");
    let config = client_config(&pki);
    let mut tls = handshake(site.listener, &config, "a.test").unwrap();
    tls.write_all(
        b"GET /chat HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let answer = weir_testkit::read_answer_to_head(&mut tls).unwrap();
    assert_eq!(answer.status, 101);
    for message in [&b"hello over tls"[..], &[0x81u8, 0x02, b'h', b'i'][..]] {
        tls.write_all(message).unwrap();
        let mut echoed = vec![0u8; message.len()];
        tls.read_exact(&mut echoed).unwrap();
        assert_eq!(echoed, message);
    }
    assert_eq!(
        backend.last_seen().header("x-forwarded-proto"),
        Some("https")
    );
}

/// `examples/cert-rotation` as a user runs it (its ports moved to free ones): curl with
/// `--resolve` and `--cacert` gets the page over HTTPS, and after the rotation the new
/// certificate is the one shown.
#[test]
fn the_cert_rotation_example_serves_https_and_rotates() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/cert-rotation");
    let backend = Backend::start("shop");
    let listener = free_addr();
    let desired = Desired::new();
    for name in [
        "example-shop-2026.pem",
        "example-shop-2026.key",
        "example-shop-2027.pem",
        "example-shop-2027.key",
    ] {
        let text = std::fs::read_to_string(example.join("certs").join(name)).unwrap();
        desired.write(&format!("routes/certs/{name}"), &text);
    }
    let yaml = std::fs::read_to_string(example.join("weir.yaml"))
        .unwrap()
        .replace("127.0.0.1:8443", &listener.to_string())
        .replace("127.0.0.1:9031", &backend.addr.to_string());
    desired.write("routes/weir.yaml", &yaml);
    let routes = Site::routes(&desired);
    let proxy = Proxy::start(&["--desired", &routes, "--workers", "1"]);
    assert!(util::wait_for_port(listener));
    let cert = |year: &str| {
        desired
            .path()
            .join(format!("routes/certs/example-shop-{year}.pem"))
            .to_str()
            .unwrap()
            .to_owned()
    };
    let fetch = |host: &str, year: &str| {
        let resolve = format!("{host}:{}:127.0.0.1", listener.port());
        let url = format!("https://{host}:{}/", listener.port());
        curl(&["--resolve", &resolve, "--cacert", &cert(year), &url])
    };
    for host in ["shop.example.com", "api.shop.example.com"] {
        let out = fetch(host, "2026");
        assert!(
            out.status.success(),
            "{host}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "shop");
    }

    // The three steps of the README at once: add shop-2027, switch, remove shop-2026.
    let rotated = yaml
        .replace("  # - name: shop-2027", "  - name: shop-2027")
        .replace(
            "  #   certificate: certs/example-shop-2027.pem",
            "    certificate: certs/example-shop-2027.pem",
        )
        .replace(
            "  #   key: certs/example-shop-2027.key",
            "    key: certs/example-shop-2027.key",
        )
        .replace("    certificate: shop-2026\n", "    certificate: shop-2027\n")
        .replace(
            "  - name: shop-2026\n    certificate: certs/example-shop-2026.pem   # leaf first, then any chain\n    key: certs/example-shop-2026.key\n",
            "",
        );
    assert!(!rotated.contains("name: shop-2026"), "{rotated}");
    assert!(!rotated.contains("certificate: shop-2026"), "{rotated}");
    assert!(rotated.contains("  - name: shop-2027"), "{rotated}");
    desired.write("routes/weir.yaml", &rotated);
    let out = proxy.weir(&["apply", &routes, "--auto-approve"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = fetch("shop.example.com", "2027");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "shop");
    // The old certificate is no longer shown: trusting only it fails.
    assert!(!fetch("shop.example.com", "2026").status.success());
}
