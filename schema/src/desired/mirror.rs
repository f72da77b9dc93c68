//! The serde mirror of one desired-state file: the five lists exactly as written, before any
//! reference is resolved.
//!
//! Every struct denies unknown fields, so a typo is an error rather than a silently ignored
//! setting. Values whose spelling alone decides whether they are valid (durations, byte sizes,
//! enums, TLS versions) are parsed here, so their errors carry the position serde reports.
//! Everything that needs the rest of the files (references, duplicates) or the State's rules
//! (addresses, hostnames, certificates) is left to `resolve`, which can report many errors at
//! once.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::duration;
use crate::model::{LoadBalancing, Protocol, TlsCipherSuite, TlsVersion};

/// One file: any of the five lists, each optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct FileDoc {
    pub listeners: Vec<ListenerDoc>,
    pub clusters: Vec<ClusterDoc>,
    pub frontends: Vec<FrontendDoc>,
    pub certificates: Vec<CertificateDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListenerDoc {
    pub name: Option<String>,
    pub address: String,
    pub protocol: ProtocolDoc,
    pub front_timeout: Option<DurationValue>,
    pub tunnel_timeout: Option<DurationValue>,
    pub request_timeout: Option<DurationValue>,
    pub max_request_body: Option<ByteSize>,
    pub answer_404: Option<String>,
    pub answer_503: Option<String>,
    pub tls_versions: Option<Vec<TlsVersionValue>>,
    pub cipher_suites: Option<Vec<CipherSuiteValue>>,
    /// A certificate's name: what clients that send no SNI are shown.
    pub default_certificate: Option<String>,
    pub allow_underscores_in_headers: Option<bool>,
    pub max_connections_per_ip: Option<u32>,
    pub max_requests_per_connection: Option<u32>,
    pub request_body_timeout: Option<DurationValue>,
    pub send_timeout: Option<DurationValue>,
    pub request_id_header: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ProtocolDoc {
    Http,
    Https,
    Tcp,
}

impl From<ProtocolDoc> for Protocol {
    fn from(p: ProtocolDoc) -> Protocol {
        match p {
            ProtocolDoc::Http => Protocol::Http,
            ProtocolDoc::Https => Protocol::Https,
            ProtocolDoc::Tcp => Protocol::Tcp,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClusterDoc {
    pub id: String,
    pub load_balancing: Option<LoadBalancingDoc>,
    pub health_check: Option<HealthCheckDoc>,
    pub connect_timeout: Option<DurationValue>,
    pub response_timeout: Option<DurationValue>,
    #[serde(default)]
    pub backends: Vec<BackendDoc>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum LoadBalancingDoc {
    RoundRobin,
    Random,
    LeastConnections,
    PowerOfTwo,
}

impl From<LoadBalancingDoc> for LoadBalancing {
    fn from(lb: LoadBalancingDoc) -> LoadBalancing {
        match lb {
            LoadBalancingDoc::RoundRobin => LoadBalancing::RoundRobin,
            LoadBalancingDoc::Random => LoadBalancing::Random,
            LoadBalancingDoc::LeastConnections => LoadBalancing::LeastConnections,
            LoadBalancingDoc::PowerOfTwo => LoadBalancing::PowerOfTwo,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HealthCheckDoc {
    pub path: String,
    pub interval: Option<DurationValue>,
    pub timeout: Option<DurationValue>,
    pub healthy_threshold: Option<u32>,
    pub unhealthy_threshold: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BackendDoc {
    pub id: String,
    pub address: String,
    pub weight: Option<u32>,
    #[serde(default)]
    pub backup: bool,
    /// Served by `weir up`'s built-in demo origin.
    #[serde(default)]
    pub demo: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FrontendDoc {
    /// A listener's name, or its address.
    pub listener: String,
    pub hostname: Option<String>,
    pub path: Option<String>,
    pub cluster: String,
    /// A certificate's name.
    pub certificate: Option<String>,
    /// http listeners: answer with a redirect to https.
    pub redirect_https: Option<bool>,
    /// https listeners: the `Strict-Transport-Security` value.
    pub hsts: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CertificateDoc {
    pub name: String,
    /// PEM file, leaf first; relative to the file that names it.
    pub certificate: String,
    /// PEM private key file; relative to the file that names it.
    pub key: String,
}

/// A duration written with a unit (`500ms`, `30s`, `2m`, `1h`: the rule of [`crate::duration`]).
/// Zero is refused because the wire uses 0 for "the proxy's default": leave the setting out
/// for that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DurationValue(pub Duration);

const DURATION_EXPECTED: &str = "a duration such as \"500ms\", \"30s\", \"2m\" or \"1h\"";

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = DurationValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(DURATION_EXPECTED)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationValue, E> {
                match duration::parse(v) {
                    Ok(d) if d.is_zero() => Err(E::custom(format_args!(
                        "`{}` is zero, which is refused: leave the setting out for the \
                         proxy's default",
                        v.trim()
                    ))),
                    Ok(d) => Ok(DurationValue(d)),
                    Err(e) => Err(E::custom(e)),
                }
            }
            // `front_timeout: 30` (YAML) or `= 30` (TOML) is a number: told it needs a unit,
            // as the same text quoted would be.
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DurationValue, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DurationValue, E> {
                self.visit_str(&v.to_string())
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A size in bytes: an integer, or a string with a unit (`B`, `KB`/`MB`/`GB` in powers of
/// 1000, `KiB`/`MiB`/`GiB` in powers of 1024). Zero is refused: leave the setting out for
/// "unlimited".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ByteSize(pub u64);

const SIZE_EXPECTED: &str =
    "a size in bytes: a positive integer, or a string such as \"10MB\" or \"1MiB\"";

/// Parses `1048576`, `512B`, `10KB`, `10MB`, `1GB`, `64KiB`, `1MiB`, `1GiB`.
pub(crate) fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(factor).filter(|bytes| *bytes > 0)
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(SIZE_EXPECTED)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                if v == 0 {
                    return Err(E::invalid_value(de::Unexpected::Unsigned(v), &self));
                }
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::invalid_value(de::Unexpected::Signed(v), &self)),
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                parse_size(v)
                    .map(ByteSize)
                    .ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// `"1.2"` or `"1.3"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TlsVersionValue(pub TlsVersion);

impl<'de> Deserialize<'de> for TlsVersionValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = TlsVersionValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a TLS version: \"1.2\" or \"1.3\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TlsVersionValue, E> {
                TlsVersion::parse(v)
                    .map(TlsVersionValue)
                    .ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
            }
            // YAML reads an unquoted 1.2 as a number; accept it rather than make users quote.
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<TlsVersionValue, E> {
                self.visit_str(&v.to_string())
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// An IANA cipher suite name, such as `"TLS_AES_128_GCM_SHA256"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CipherSuiteValue(pub TlsCipherSuite);

impl<'de> Deserialize<'de> for CipherSuiteValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = CipherSuiteValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a cipher suite's IANA name, one of ")?;
                let names: Vec<&str> = TlsCipherSuite::ALL.iter().map(|s| s.as_str()).collect();
                f.write_str(&names.join(", "))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<CipherSuiteValue, E> {
                TlsCipherSuite::parse(v)
                    .map(CipherSuiteValue)
                    .ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
            }
        }
        deserializer.deserialize_str(V)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    /// What `load` says of a directory holding `text` as its one file `name`.
    fn load_errors(name: &str, text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(name), text).unwrap();
        let errors = crate::desired::load_at(dir.path(), 0).unwrap_err();
        errors
            .to_string()
            .replace(&format!("{}/", dir.path().display()), "")
    }

    #[test]
    fn a_duration_without_a_unit_is_placed_and_told_it_needs_one() {
        let listener = "listeners:\n  - address: 127.0.0.1:8080\n    protocol: http\n";
        for (setting, expected) in [
            (
                "front_timeout: 30",
                "weir.yaml:4:20: listeners[0].front_timeout: `30` needs a unit: ms, s, m or h \
                 (for example `30s`)",
            ),
            (
                "tunnel_timeout: \"45\"",
                "weir.yaml:4:21: listeners[0].tunnel_timeout: `45` needs a unit: ms, s, m or h \
                 (for example `45s`)",
            ),
            (
                "request_timeout: 0s",
                "weir.yaml:4:22: listeners[0].request_timeout: `0s` is zero, which is refused: \
                 leave the setting out for the proxy's default",
            ),
        ] {
            let yaml = format!("{listener}    {setting}\n");
            assert_eq!(load_errors("weir.yaml", &yaml), expected);
        }
        let toml = "[[listeners]]\naddress = \"127.0.0.1:8080\"\nprotocol = \"http\"\n\
                    front_timeout = 30\n";
        assert_eq!(
            load_errors("weir.toml", toml),
            "weir.toml:4:17: listeners[0].front_timeout: `30` needs a unit: ms, s, m or h \
             (for example `30s`)"
        );
    }

    #[test]
    fn sizes_take_decimal_and_binary_units() {
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("10KB"), Some(10_000));
        assert_eq!(parse_size("10MB"), Some(10_000_000));
        assert_eq!(parse_size("1MiB"), Some(1 << 20));
        assert_eq!(parse_size("2GiB"), Some(2 << 30));
        for bad in ["0", "0MB", "MB", "10mb", "1.5MB", "99999999999999999999GB"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }
}
