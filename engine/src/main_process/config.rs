//! The daemon's settings: `weir.toml`, overridden by command-line flags.
//!
//! The file is parsed strictly: an unknown key or a bad value stops the proxy at start with a
//! message naming the key, because a typo in a daemon setting that is silently ignored shows up
//! only in production. Every key is optional; [`Config::default`] is what an empty file means.
//!
//! ```toml
//! socket = "/run/weir/weir.sock"
//! workers = 4                 # default: one per core
//! buffer_size = 16384
//! max_buffers = 16384
//! max_connections = 10000     # left out: 10000, or what the fd limit holds if less
//! max_idle_per_backend = 512 # idle keep-alive connections kept to each backend (0: none)
//! max_command_clients = 64    # command-socket clients connected at once
//! shared_listeners = false    # true: may listen where another proxy of this user does
//! log_level = "info"          # error | warn | info | debug
//! desired = "routes/"         # a desired-state directory applied at start
//!
//! [timeouts]                  # milliseconds
//! front_ms = 60000            # idle keep-alive connection
//! tunnel_ms = 3600000         # idle WebSocket or TCP connection
//! request_ms = 10000
//! connect_ms = 3000
//! response_ms = 30000
//! drain_ms = 30000            # RemoveBackend without its own drain timeout
//! stop_ms = 30000             # SoftStop / SIGTERM: longest wait for in-flight requests
//! worker_answer_ms = 5000     # a worker silent this long on a request is hung (replaced)
//! backend_idle_ms = 30000     # idle pooled backend connections are closed after this
//! command_idle_ms = 60000     # a command client silent this long is closed (unless it
//!                             # waits for an answer or follows events)
//!
//! [state]
//! path = "/var/lib/weir/state"
//! auto_save = true            # save after every accepted change
//!
//! [metrics]
//! prometheus = "127.0.0.1:9901"   # GET /metrics and the status page; loopback only
//! statsd = "127.0.0.1:8125"   # each worker sends statsd datagrams here, every second
//! prefix = "weir"             # statsd name prefix
//! [access_log]                # without this section: no access log
//! target = "stdout"           # stdout | /path/to/file | udp://h:p | tcp://h:p | unix:/path
//! format = "text"             # text | json
//! ```
//!
//! `worker_answer_ms` bounds how long the main process waits for a worker's first answer to a
//! forwarded request: past it, a status or metrics query is answered without that worker (and
//! flags it), and in both cases it is replaced (killed, restarted with the full state). A drain's
//! progress counts as an answer, so a long drain is governed by `drain_ms` alone.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use crate::access_log_config::{AccessLogConfig, LogTarget};
use crate::channel::WorkerConfig;

/// Why the configuration was refused.
///
/// The io error is in the message, not a `source`, so a chain of causes says it once.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config: `{key}` {problem}")]
    Invalid { key: &'static str, problem: String },
}

/// How much the proxy writes to stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
}

/// Default timeouts; listeners and clusters may set their own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timeouts {
    pub front_ms: u64,
    pub tunnel_ms: u64,
    pub request_ms: u64,
    pub connect_ms: u64,
    pub response_ms: u64,
    pub drain_ms: u64,
    pub stop_ms: u64,
    pub worker_answer_ms: u64,
    pub backend_idle_ms: u64,
    pub command_idle_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            front_ms: 60_000,
            tunnel_ms: 3_600_000,
            request_ms: 10_000,
            connect_ms: 3_000,
            response_ms: 30_000,
            drain_ms: 30_000,
            stop_ms: 30_000,
            worker_answer_ms: 5_000,
            backend_idle_ms: 30_000,
            command_idle_ms: 60_000,
        }
    }
}

/// Where the state is saved, and whether every change is saved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StateConfig {
    pub path: Option<PathBuf>,
    pub auto_save: bool,
}

/// Where metrics go besides the command socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// statsd over UDP: every worker sends here once a second.
    pub statsd: Option<SocketAddr>,
    /// The statsd name prefix (letters, digits, `_`, `-`, `.`; empty for none).
    pub prefix: String,
    /// The admin endpoint of the main process: `GET /metrics` and the status page. It has no
    /// authentication, so only a loopback address is accepted.
    #[serde(deserialize_with = "loopback")]
    pub prometheus: Option<SocketAddr>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            statsd: None,
            prefix: "weir".to_owned(),
            prometheus: None,
        }
    }
}

/// A loopback address, refused at parse time so the error carries the file's line.
///
/// `null` is no endpoint: the upgrade hand-over carries the config as JSON, where an unset
/// address is written that way.
fn loopback<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let Some(address) = Option::<SocketAddr>::deserialize(d)? else {
        return Ok(None);
    };
    if !address.ip().is_loopback() {
        return Err(serde::de::Error::custom(format!(
            "{address} is not a loopback address: the admin endpoint has no authentication, \
             so it listens only on 127.0.0.0/8 or ::1 (put a proxy with access control in \
             front of it to reach it from elsewhere)"
        )));
    }
    Ok(Some(address))
}

/// How many command clients may be connected at once, and how long one may stay idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    pub max: usize,
    pub idle: Duration,
}

/// Everything `weir proxy` runs with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The command socket; `None` is the per-user default path.
    pub socket: Option<PathBuf>,
    /// Worker processes; `None` is one per core.
    pub workers: Option<usize>,
    pub buffer_size: usize,
    pub max_buffers: usize,
    /// Client connections per worker; `None`: 10,000, or what the fd limit holds if less
    /// (set at start by `fd_limit::default_max_connections`).
    pub max_connections: Option<usize>,
    pub max_connect_attempts: u32,
    /// Idle keep-alive connections kept per backend, per worker.
    pub max_idle_per_backend: usize,
    /// Command-socket clients connected at once; one more is refused, saying so.
    pub max_command_clients: usize,
    /// Listen on an address another proxy of the same user already listens on, sharing its
    /// connections through SO_REUSEPORT (several proxies on one host on purpose, e.g. a fleet
    /// tried out on one machine). Off: such an address is refused.
    pub shared_listeners: bool,
    pub log_level: LogLevel,
    /// A desired-state directory (or file) applied at start, after the saved state.
    pub desired: Option<PathBuf>,
    pub timeouts: Timeouts,
    pub state: StateConfig,
    pub metrics: MetricsConfig,
    /// Where workers write access lines; `None`: no access log (our choice, as HAProxy's).
    pub access_log: Option<AccessLogConfig>,
}

impl Default for Config {
    fn default() -> Self {
        let worker = WorkerConfig::default();
        Config {
            socket: None,
            workers: None,
            buffer_size: worker.buffer_size,
            max_buffers: worker.max_buffers,
            max_connections: None,
            max_connect_attempts: worker.max_connect_attempts,
            max_idle_per_backend: worker.max_idle_per_backend,
            max_command_clients: 64,
            shared_listeners: false,
            log_level: LogLevel::Info,
            desired: None,
            timeouts: Timeouts::default(),
            state: StateConfig::default(),
            metrics: MetricsConfig::default(),
            access_log: None,
        }
    }
}

/// Command-line flags that override the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub socket: Option<PathBuf>,
    pub workers: Option<usize>,
    pub desired: Option<PathBuf>,
}

impl Config {
    /// Reads a config file; relative paths in it resolve against the file's directory.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        let mut config = Config::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let log_path = match config.access_log.as_mut().map(|log| &mut log.target) {
            Some(LogTarget::File(p) | LogTarget::Unix(p)) => Some(p),
            _ => None,
        };
        for p in [
            config.socket.as_mut(),
            config.desired.as_mut(),
            config.state.path.as_mut(),
            log_path,
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(config)
    }

    /// Parses TOML text; the error names the offending key and line.
    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().replace('\n', " "))
    }

    /// Applies command-line flags, then checks every value.
    pub fn finish(mut self, overrides: Overrides) -> Result<Config, ConfigError> {
        if overrides.socket.is_some() {
            self.socket = overrides.socket;
        }
        if overrides.workers.is_some() {
            self.workers = overrides.workers;
        }
        if overrides.desired.is_some() {
            self.desired = overrides.desired;
        }
        self.validate()?;
        Ok(self)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, problem: &str| {
            Err(ConfigError::Invalid {
                key,
                problem: problem.to_owned(),
            })
        };
        if let Some(w) = self.workers {
            if !(1..=256).contains(&w) {
                return invalid("workers", "must be between 1 and 256");
            }
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.buffer_size) {
            return invalid("buffer_size", "must be between 1024 and 16777216 bytes");
        }
        if self.max_buffers == 0 {
            return invalid("max_buffers", "must be at least 1");
        }
        if self.max_connections == Some(0) {
            return invalid("max_connections", "must be at least 1");
        }
        if self.max_command_clients == 0 {
            return invalid("max_command_clients", "must be at least 1");
        }
        if self.max_connect_attempts == 0 {
            return invalid("max_connect_attempts", "must be at least 1");
        }
        let t = &self.timeouts;
        for (key, value) in [
            ("timeouts.front_ms", t.front_ms),
            ("timeouts.tunnel_ms", t.tunnel_ms),
            ("timeouts.request_ms", t.request_ms),
            ("timeouts.connect_ms", t.connect_ms),
            ("timeouts.response_ms", t.response_ms),
            ("timeouts.drain_ms", t.drain_ms),
            ("timeouts.stop_ms", t.stop_ms),
            ("timeouts.worker_answer_ms", t.worker_answer_ms),
            ("timeouts.backend_idle_ms", t.backend_idle_ms),
            ("timeouts.command_idle_ms", t.command_idle_ms),
        ] {
            if value == 0 {
                return invalid(key, "must be at least 1 millisecond");
            }
        }
        if !self
            .metrics
            .prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        {
            return invalid(
                "metrics.prefix",
                "may hold only letters, digits, `_`, `-` and `.`",
            );
        }
        if self.state.auto_save && self.state.path.is_none() {
            return invalid("state.auto_save", "needs `state.path` to be set");
        }
        if let Some(LogTarget::File(path)) = self.access_log.as_ref().map(|l| &l.target) {
            // Workers open it themselves; a file they could not open is named here, at start.
            if let Err(e) = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(path)
            {
                return invalid(
                    "access_log.target",
                    &format!("cannot open {}: {e}", path.display()),
                );
            }
        }
        Ok(())
    }

    /// The number of workers to run.
    pub fn worker_count(&self) -> usize {
        self.workers.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
    }

    /// The command socket path.
    pub fn socket_path(&self) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(weir_schema::paths::default_socket_path)
    }

    /// What worker `id` runs with.
    pub fn worker_config(&self, id: u32) -> WorkerConfig {
        WorkerConfig {
            id,
            buffer_size: self.buffer_size,
            max_buffers: self.max_buffers,
            max_connections: self
                .max_connections
                .unwrap_or(WorkerConfig::default().max_connections),
            front_timeout: Duration::from_millis(self.timeouts.front_ms),
            tunnel_timeout: Duration::from_millis(self.timeouts.tunnel_ms),
            request_timeout: Duration::from_millis(self.timeouts.request_ms),
            connect_timeout: Duration::from_millis(self.timeouts.connect_ms),
            response_timeout: Duration::from_millis(self.timeouts.response_ms),
            max_connect_attempts: self.max_connect_attempts,
            max_idle_per_backend: self.max_idle_per_backend,
            backend_idle_timeout: Duration::from_millis(self.timeouts.backend_idle_ms),
            access_log: self.access_log.clone(),
            statsd: self.metrics.statsd,
            statsd_prefix: self.metrics.prefix.clone(),
        }
    }

    pub fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.timeouts.drain_ms)
    }

    pub fn stop_timeout(&self) -> Duration {
        Duration::from_millis(self.timeouts.stop_ms)
    }

    /// The bounds on command clients.
    pub fn client_limits(&self) -> ClientLimits {
        ClientLimits {
            max: self.max_command_clients,
            idle: Duration::from_millis(self.timeouts.command_idle_ms),
        }
    }

    /// How long a worker may stay silent on a request before it counts as hung.
    pub fn worker_answer_timeout(&self) -> Duration {
        Duration::from_millis(self.timeouts.worker_answer_ms)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_default() {
        assert_eq!(Config::from_toml("").unwrap(), Config::default());
    }

    #[test]
    fn every_section_parses() {
        let c = Config::from_toml(
            "workers = 2\nlog_level = \"debug\"\n[timeouts]\ndrain_ms = 500\n\
             [state]\npath = \"/tmp/s\"\nauto_save = true\n",
        )
        .unwrap()
        .finish(Overrides::default())
        .unwrap();
        assert_eq!(c.workers, Some(2));
        assert_eq!(c.log_level, LogLevel::Debug);
        assert_eq!(c.drain_timeout(), Duration::from_millis(500));
        assert_eq!(c.worker_answer_timeout(), Duration::from_secs(5));
        let idle = Config::from_toml("[timeouts]\nbackend_idle_ms = 1500\n").unwrap();
        assert_eq!(
            idle.worker_config(0).backend_idle_timeout,
            Duration::from_millis(1500)
        );
        let short = Config::from_toml("[timeouts]\nworker_answer_ms = 250\n").unwrap();
        assert_eq!(short.worker_answer_timeout(), Duration::from_millis(250));
        assert!(c.state.auto_save);
    }

    #[test]
    fn unknown_key_is_named() {
        let e = Config::from_toml("wrokers = 2\n").unwrap_err();
        assert!(e.contains("wrokers"), "{e}");
        let e = Config::from_toml("[timeouts]\ndrain = 2\n").unwrap_err();
        assert!(e.contains("drain"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        let e = Config::from_toml("workers = \"many\"\n").unwrap_err();
        assert!(e.contains("workers"), "{e}");
        let e = Config::from_toml("workers = 0\n")
            .unwrap()
            .finish(Overrides::default())
            .unwrap_err();
        assert!(e.to_string().contains("`workers`"), "{e}");
        let e = Config::from_toml("[state]\nauto_save = true\n")
            .unwrap()
            .finish(Overrides::default())
            .unwrap_err();
        assert!(e.to_string().contains("state.auto_save"), "{e}");
        let e = Config::from_toml("[timeouts]\nworker_answer_ms = 0\n")
            .unwrap()
            .finish(Overrides::default())
            .unwrap_err();
        assert!(e.to_string().contains("timeouts.worker_answer_ms"), "{e}");
    }

    #[test]
    fn a_config_without_the_admin_endpoint_survives_the_json_of_an_upgrade() {
        let config = Config::from_toml("workers = 1\n").unwrap();
        let json = serde_json::to_string(&config).unwrap();
        let back: Config = serde_json::from_str(&json).unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn the_admin_endpoint_is_loopback_only_and_refused_at_its_line() {
        let c = Config::from_toml("[metrics]\nprometheus = \"127.0.0.1:9901\"\n").unwrap();
        assert_eq!(c.metrics.prometheus, Some(([127, 0, 0, 1], 9901).into()));
        let c = Config::from_toml("[metrics]\nprometheus = \"[::1]:9901\"\n").unwrap();
        assert!(c.metrics.prometheus.is_some());
        assert_eq!(Config::default().metrics.prometheus, None);
        for public in ["0.0.0.0:9901", "192.0.2.1:9901", "[::]:9901"] {
            let text = format!("# admin\n[metrics]\nprometheus = \"{public}\"\n");
            let e = Config::from_toml(&text).unwrap_err();
            assert!(e.contains("line 3"), "{e}");
            assert!(e.contains("not a loopback address"), "{e}");
        }
    }

    #[test]
    fn access_log_section_parses_and_bad_targets_name_their_line() {
        assert_eq!(Config::from_toml("").unwrap().access_log, None);
        let c = Config::from_toml("[access_log]\nformat = \"json\"\n").unwrap();
        let log = c.access_log.unwrap();
        assert_eq!(log.target, LogTarget::Stdout);
        assert_eq!(log.format, crate::access_log_config::LogFormat::Json);
        let e =
            Config::from_toml("workers = 2\n[access_log]\ntarget = \"ftp://x:1\"\n").unwrap_err();
        assert!(e.contains("line 3") && e.contains("ftp://x:1"), "{e}");
        let e = Config::from_toml("[access_log]\nformat = \"xml\"\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("xml"), "{e}");
        let e = Config::from_toml("[access_log]\ntarget = \"/nonexistent-dir/a.log\"\n")
            .unwrap()
            .finish(Overrides::default())
            .unwrap_err();
        assert!(e.to_string().contains("access_log.target"), "{e}");
    }

    #[test]
    fn metrics_section_reaches_the_workers() {
        let c =
            Config::from_toml("[metrics]\nstatsd = \"127.0.0.1:8125\"\nprefix = \"edge.weir\"\n")
                .unwrap()
                .finish(Overrides::default())
                .unwrap();
        let w = c.worker_config(1);
        assert_eq!(w.statsd, Some(([127, 0, 0, 1], 8125).into()));
        assert_eq!(w.statsd_prefix, "edge.weir");
        assert_eq!(Config::default().worker_config(0).statsd, None);
        let e = Config::from_toml("[metrics]\nstatsd = \"localhost\"\n").unwrap_err();
        assert!(e.contains("statsd"), "{e}");
        let e = Config::from_toml("[metrics]\nprefix = \"a:b\"\n")
            .unwrap()
            .finish(Overrides::default())
            .unwrap_err();
        assert!(e.to_string().contains("metrics.prefix"), "{e}");
    }

    #[test]
    fn flags_override_the_file() {
        let c = Config::from_toml("workers = 2\n")
            .unwrap()
            .finish(Overrides {
                workers: Some(3),
                ..Overrides::default()
            })
            .unwrap();
        assert_eq!(c.worker_count(), 3);
    }
}
