//! Certificates: parsed from PEM once, identified by the SHA-256 of the leaf's DER.
//!
//! Parsing checks everything a worker will later rely on when it builds its TLS configuration:
//! the chain parses, the key parses into a rustls signing key of a supported type, and the key
//! matches the leaf. A certificate that passes here cannot be refused by a worker.
//!
//! The private key is held as a [`PrivateKeyPem`], whose `Debug` and `Display` never show it;
//! a certificate read back from a redacted `QueryState` answer has no key at all.

use std::fmt;
use std::sync::Arc;

// The same provider as the engine's handshakes (its `aws-lc-rs` feature turns on this one).
#[cfg(feature = "aws-lc-rs")]
use rustls::crypto::aws_lc_rs::sign::any_supported_type;
#[cfg(not(feature = "aws-lc-rs"))]
use rustls::crypto::ring::sign::any_supported_type;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::model::Fingerprint;

/// Why a certificate cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("no PEM certificate found")]
    NoCertificate,
    #[error("certificate PEM does not parse: {0}")]
    BadCertificatePem(String),
    #[error("leaf certificate is not valid X.509: {0}")]
    BadX509(String),
    #[error("private key PEM does not parse: {0}")]
    BadKeyPem(String),
    #[error("private key type is not supported: {0}")]
    UnsupportedKey(String),
    #[error("private key does not match the certificate")]
    KeyMismatch,
}

/// A private key in PEM form. Formatting it shows `<redacted>`: the text is reachable only
/// through [`PrivateKeyPem::expose`], at the few places that must hand it on (the wire, a saved
/// state).
#[derive(Clone, PartialEq, Eq)]
pub struct PrivateKeyPem(String);

impl PrivateKeyPem {
    pub fn new(pem: impl Into<String>) -> PrivateKeyPem {
        PrivateKeyPem(pem.into())
    }

    /// The PEM text itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PrivateKeyPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKeyPem(<redacted>)")
    }
}

impl fmt::Display for PrivateKeyPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A parsed certificate with its chain and, unless it came from a redacted answer, its key.
#[derive(Clone)]
pub struct Certificate {
    pub fingerprint: Fingerprint,
    /// The alias desired-state files use; not part of the identity.
    pub name: String,
    /// DNS names the leaf covers (subjectAltName DNS entries, else the subject CN).
    pub dns_names: Vec<String>,
    /// The leaf's notAfter, in seconds since the Unix epoch.
    pub not_after: i64,
    /// The leaf first, then the chain, as given.
    pub certificate_pem: String,
    /// `None` for a certificate read from a redacted state: it can be compared and listed, not
    /// served or re-added.
    pub key_pem: Option<PrivateKeyPem>,
    /// Not part of the identity; see [`crate::model::Owner`].
    pub owner: Option<crate::model::Owner>,
    /// The same chain as DER, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The key ready for rustls, built once here so workers share the parsing; `None` exactly
    /// when `key_pem` is.
    pub certified_key: Option<Arc<CertifiedKey>>,
}

impl PartialEq for Certificate {
    fn eq(&self, other: &Self) -> bool {
        self.fingerprint == other.fingerprint
            && self.name == other.name
            && self.owner == other.owner
    }
}

impl Eq for Certificate {}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("fingerprint", &self.fingerprint)
            .field("name", &self.name)
            .field("dns_names", &self.dns_names)
            .field("not_after", &self.not_after)
            .field("has_key", &self.key_pem.is_some())
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// SHA-256 of a DER certificate.
pub fn fingerprint_der(der: &[u8]) -> Fingerprint {
    Fingerprint(Sha256::digest(der).into())
}

impl Certificate {
    /// Parses a PEM chain (leaf first) and its PEM private key.
    pub fn from_pem(name: &str, certificate_pem: &str, key_pem: &str) -> Result<Self, CertError> {
        let mut cert = Certificate::public_from_pem(name, certificate_pem)?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| CertError::BadKeyPem(e.to_string()))?;
        let signing_key =
            any_supported_type(&key).map_err(|e| CertError::UnsupportedKey(e.to_string()))?;
        let certified_key = CertifiedKey::new(cert.chain.clone(), signing_key);
        match certified_key.keys_match() {
            Ok(()) => {}
            // A key type whose public half rustls cannot extract is accepted as it is: rustls
            // will still use it, and the handshake is what would fail.
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(_) => return Err(CertError::KeyMismatch),
        }
        cert.key_pem = Some(PrivateKeyPem::new(key_pem));
        cert.certified_key = Some(Arc::new(certified_key));
        Ok(cert)
    }

    /// Parses a PEM chain without its key, as a redacted state lists it.
    pub fn public_from_pem(name: &str, certificate_pem: &str) -> Result<Self, CertError> {
        let chain = CertificateDer::pem_slice_iter(certificate_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CertError::BadCertificatePem(e.to_string()))?;
        let leaf = chain.first().ok_or(CertError::NoCertificate)?;
        let (_, x509) = x509_parser::parse_x509_certificate(leaf.as_ref())
            .map_err(|e| CertError::BadX509(e.to_string()))?;
        let not_after = x509.validity().not_after.timestamp();
        let mut dns_names = Vec::new();
        if let Ok(Some(san)) = x509.subject_alternative_name() {
            for general in &san.value.general_names {
                if let x509_parser::extensions::GeneralName::DNSName(dns) = general {
                    dns_names.push(dns.to_ascii_lowercase());
                }
            }
        }
        if dns_names.is_empty() {
            for cn in x509.subject().iter_common_name() {
                if let Ok(cn) = cn.as_str() {
                    dns_names.push(cn.to_ascii_lowercase());
                }
            }
        }
        let fingerprint = fingerprint_der(leaf.as_ref());
        Ok(Certificate {
            fingerprint,
            name: name.to_owned(),
            dns_names,
            not_after,
            certificate_pem: certificate_pem.to_owned(),
            key_pem: None,
            chain,
            certified_key: None,
            owner: None,
        })
    }

    /// The same certificate without its key.
    pub fn redacted(&self) -> Certificate {
        Certificate {
            key_pem: None,
            certified_key: None,
            ..self.clone()
        }
    }

    /// Whether the leaf covers `hostname` (exact or one-label wildcard), for warnings.
    pub fn covers(&self, hostname: &str) -> bool {
        self.dns_names.iter().any(|name| {
            if name == hostname {
                return true;
            }
            match (name.strip_prefix("*."), hostname.split_once('.')) {
                (Some(suffix), Some((_, rest))) => suffix == rest,
                _ => false,
            }
        })
    }
}

/// A Unix time as its UTC calendar day (`2026-01-01`), how certificate dates are shown.
pub fn utc_date(unix: i64) -> String {
    // Howard Hinnant's days-to-civil algorithm.
    let z = unix.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_calendar_days() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
        assert_eq!(utc_date(1_700_000_000), "2023-11-14");
        assert_eq!(utc_date(1_767_225_599), "2025-12-31");
        assert_eq!(utc_date(1_767_225_600), "2026-01-01");
        assert_eq!(utc_date(-1), "1969-12-31");
    }
}
