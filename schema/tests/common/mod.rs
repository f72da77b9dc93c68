//! Sample resources and requests shared by the schema's tests (and the workspace's wire golden
//! test, which includes this file by path). Certificates are small self-signed test
//! certificates committed under `tests/data/` (`NOT FOR PRODUCTION` in their subject).
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use weir_schema::model::{ListenerSettings, TlsVersion};
use weir_schema::{
    Backend, BackendId, BackendKey, Certificate, Change, Cluster, ClusterId, Command, Frontend,
    HealthCheck, Listener, LoadBalancing, Owner, Protocol, Request,
};

pub const CERT_A: &str = include_str!("../data/test-a.pem");
pub const KEY_A: &str = include_str!("../data/test-a.key");
pub const CERT_B: &str = include_str!("../data/test-b.pem");
pub const KEY_B: &str = include_str!("../data/test-b.key");

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

pub fn cert_a() -> Certificate {
    Certificate::from_pem("a", CERT_A, KEY_A).unwrap()
}

pub fn cert_b() -> Certificate {
    Certificate::from_pem("b", CERT_B, KEY_B).unwrap()
}

pub fn listener(address: &str, protocol: Protocol) -> Listener {
    Listener {
        owner: None,
        address: addr(address),
        protocol,
        name: address.to_owned(),
        settings: ListenerSettings::default(),
    }
}

/// A listener with every setting given.
pub fn tuned_listener() -> Listener {
    Listener {
        owner: None,
        address: addr("127.0.0.1:8443"),
        protocol: Protocol::Https,
        name: "tls".to_owned(),
        settings: ListenerSettings {
            front_timeout: Some(Duration::from_secs(30)),
            tunnel_timeout: Some(Duration::from_secs(600)),
            request_timeout: Some(Duration::from_millis(2500)),
            max_request_body: Some(1 << 20),
            answer_404: Some("nothing here\n".to_owned()),
            answer_503: Some("later\n".to_owned()),
            tls_versions: vec![TlsVersion::Tls13],
            // Left at their defaults: the golden encodings predate them (the limits are in
            // `limited_listener`, a request of its own).
            cipher_suites: Vec::new(),
            default_certificate: None,
            ..ListenerSettings::default()
        },
    }
}

/// An http listener with every limit given: underscored names kept, connections per address,
/// requests per connection, the body and slow-read deadlines.
pub fn limited_listener() -> Listener {
    Listener {
        owner: None,
        address: addr("127.0.0.1:8080"),
        protocol: Protocol::Http,
        name: "web".to_owned(),
        settings: ListenerSettings {
            allow_underscores_in_headers: true,
            max_connections_per_ip: Some(64),
            max_requests_per_connection: Some(500),
            request_body_timeout: Some(Duration::from_secs(90)),
            send_timeout: Some(Duration::from_millis(7500)),
            ..ListenerSettings::default()
        },
    }
}

/// [`limited_listener`]'s listener without its limits, giving backends each request's id in
/// `X-Request-Id`.
pub fn identifying_listener() -> Listener {
    Listener {
        settings: ListenerSettings {
            request_id_header: Some("X-Request-Id".to_owned()),
            ..ListenerSettings::default()
        },
        ..limited_listener()
    }
}

/// [`tuned_listener`] as the first wire golden (`request-change-0`) and the committed
/// fingerprint have it, without `tunnel_timeout`: committed bytes keep their meaning, so this
/// one stays as it was and the full listener is a request of its own at the end.
pub fn first_tuned_listener() -> Listener {
    let mut listener = tuned_listener();
    listener.settings.tunnel_timeout = None;
    listener
}

pub fn cluster(id: &str) -> Cluster {
    Cluster::new(id)
}

/// A cluster with every setting given.
pub fn tuned_cluster(id: &str) -> Cluster {
    Cluster {
        owner: None,
        id: ClusterId(id.to_owned()),
        load_balancing: LoadBalancing::PowerOfTwo,
        health_check: Some(HealthCheck {
            path: "/healthz".to_owned(),
            interval: Duration::from_secs(2),
            timeout: Duration::from_millis(500),
            healthy_threshold: 1,
            unhealthy_threshold: 4,
        }),
        connect_timeout: Some(Duration::from_secs(1)),
        response_timeout: Some(Duration::from_secs(20)),
    }
}

pub fn key(cluster: &str, id: &str) -> BackendKey {
    BackendKey {
        cluster: ClusterId(cluster.to_owned()),
        id: BackendId(id.to_owned()),
    }
}

pub fn backend(cluster: &str, id: &str, address: &str) -> Backend {
    Backend {
        owner: None,
        key: key(cluster, id),
        address: addr(address),
        weight: 100,
        backup: false,
    }
}

pub fn http_frontend(listener: &str, host: &str, path: &str, cluster: &str) -> Frontend {
    Frontend {
        owner: None,
        listener: addr(listener),
        hostname: Some(host.to_owned()),
        path: path.to_owned(),
        cluster: ClusterId(cluster.to_owned()),
        certificate: None,
        options: Default::default(),
    }
}

/// One request of every kind the protocol has, with non-default values where there are any.
pub fn one_request_of_each_kind() -> Vec<Request> {
    let a = cert_a();
    let b = cert_b();
    let mut tls_frontend = http_frontend("127.0.0.1:8443", "a.test.example.com", "/", "shop");
    tls_frontend.certificate = Some(a.fingerprint);
    let mut weighted = backend("shop", "blue", "127.0.0.1:9001");
    weighted.weight = 250;
    weighted.backup = true;
    let mut owned_frontend = http_frontend("127.0.0.1:8080", "shop.example.com", "/", "shop");
    owned_frontend.owner = Some(Owner("platform".to_owned()));
    // Append only: a request's id is its position, and its committed encoding is named by it.
    let changes = vec![
        Change::AddListener(first_tuned_listener()),
        Change::UpdateListener(listener("127.0.0.1:8080", Protocol::Http)),
        Change::RemoveListener(addr("[::1]:8080")),
        Change::AddCluster(tuned_cluster("shop")),
        Change::UpdateCluster(cluster("shop")),
        Change::RemoveCluster(ClusterId("old".to_owned())),
        Change::AddBackend(weighted),
        Change::UpdateBackend(backend("shop", "blue", "127.0.0.1:9001")),
        Change::RemoveBackend {
            key: key("shop", "blue"),
            drain_timeout: Some(Duration::from_secs(30)),
        },
        Change::AddFrontend(tls_frontend.clone()),
        Change::RemoveFrontend(http_frontend(
            "127.0.0.1:8080",
            "*.example.com",
            "/api",
            "shop",
        )),
        Change::AddCertificate(Box::new(a.clone())),
        Change::ReplaceCertificate {
            old: a.fingerprint,
            new: Box::new(b),
        },
        Change::RemoveCertificate(a.fingerprint),
        Change::AddListener(tuned_listener()),
        Change::UpdateListener(limited_listener()),
        Change::UpdateFrontend(owned_frontend),
        Change::UpdateListener(identifying_listener()),
    ];
    let mut requests: Vec<Request> = changes
        .into_iter()
        .enumerate()
        .map(|(i, c)| Request::change(format!("change-{i}"), c))
        .collect();
    let commands = vec![
        Command::QueryState,
        Command::QueryMetrics,
        Command::Status,
        Command::SaveState(PathBuf::from("/var/lib/weir/state")),
        Command::LoadState(PathBuf::from("/var/lib/weir/state")),
        Command::SoftStop,
        Command::HardStop,
        Command::UpgradeMain,
        Command::UpgradeWorker(3),
        Command::SubscribeEvents {
            from_sequence: Some(41),
        },
    ];
    requests.extend(
        commands
            .into_iter()
            .enumerate()
            .map(|(i, c)| Request::new(format!("command-{i}"), c)),
    );
    // One request carries the version it expects.
    requests[0].expected_version = Some(7);
    requests
}
