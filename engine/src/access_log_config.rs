//! The `[access_log]` settings: where access lines go and in which format.
//!
//! Read from `weir.toml` by the main process (strictly: an unknown target is refused at start
//! with its file and line) and handed to every worker in its [`WorkerConfig`], since workers
//! write their lines themselves. A host name in a `udp://` or `tcp://` target is resolved once,
//! when the file is read, so workers never wait on DNS.
//!
//! [`WorkerConfig`]: crate::channel::WorkerConfig

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How an access line is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable `key=value` line.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Where access lines go.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum LogTarget {
    #[default]
    Stdout,
    /// A file, appended to; reopened on SIGUSR1 (for logrotate).
    File(PathBuf),
    /// One datagram per line.
    Udp(SocketAddr),
    /// A stream of lines; reconnected in the background when it breaks.
    Tcp(SocketAddr),
    /// A unix datagram socket (as syslog's `/dev/log`, and as nginx's and HAProxy's `unix:`
    /// log targets): one datagram per line.
    Unix(PathBuf),
}

impl TryFrom<String> for LogTarget {
    type Error = String;

    fn try_from(text: String) -> Result<LogTarget, String> {
        let resolve = |scheme: &str, rest: &str| -> Result<SocketAddr, String> {
            rest.to_socket_addrs()
                .map_err(|e| format!("`{scheme}{rest}`: {e} (expected {scheme}HOST:PORT)"))?
                .next()
                .ok_or_else(|| format!("`{scheme}{rest}` resolves to no address"))
        };
        if text == "stdout" {
            Ok(LogTarget::Stdout)
        } else if let Some(rest) = text.strip_prefix("udp://") {
            resolve("udp://", rest).map(LogTarget::Udp)
        } else if let Some(rest) = text.strip_prefix("tcp://") {
            resolve("tcp://", rest).map(LogTarget::Tcp)
        } else if let Some(rest) = text.strip_prefix("unix:") {
            if rest.is_empty() {
                return Err("`unix:` needs a socket path (unix:/dev/log)".to_owned());
            }
            Ok(LogTarget::Unix(PathBuf::from(rest)))
        } else if text.is_empty() || text.contains("://") {
            Err(format!(
                "unknown access log target `{text}` (expected stdout, a file path, \
                 udp://HOST:PORT, tcp://HOST:PORT or unix:PATH)"
            ))
        } else {
            Ok(LogTarget::File(PathBuf::from(text)))
        }
    }
}

impl From<LogTarget> for String {
    fn from(target: LogTarget) -> String {
        target.to_string()
    }
}

impl fmt::Display for LogTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogTarget::Stdout => f.write_str("stdout"),
            LogTarget::File(path) => write!(f, "{}", path.display()),
            LogTarget::Udp(addr) => write!(f, "udp://{addr}"),
            LogTarget::Tcp(addr) => write!(f, "tcp://{addr}"),
            LogTarget::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// The `[access_log]` section; without it there is no access log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessLogConfig {
    pub target: LogTarget,
    pub format: LogFormat,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn target(text: &str) -> Result<LogTarget, String> {
        LogTarget::try_from(text.to_owned())
    }

    #[test]
    fn every_target_kind_parses_and_prints_back() {
        for text in [
            "stdout",
            "/var/log/weir/access.log",
            "udp://127.0.0.1:514",
            "tcp://127.0.0.1:5140",
            "unix:/dev/log",
        ] {
            assert_eq!(target(text).unwrap().to_string(), text);
        }
        assert_eq!(
            target("udp://localhost:514").unwrap(),
            LogTarget::Udp("127.0.0.1:514".parse().unwrap())
        );
    }

    #[test]
    fn bad_targets_say_what_is_expected() {
        for text in ["", "http://x:1", "udp://nowhere", "unix:"] {
            let e = target(text).unwrap_err();
            assert!(e.contains("expected") || e.contains("needs"), "{text}: {e}");
        }
    }
}
