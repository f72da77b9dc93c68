//! Certificates in desired-state files: PEM files read relative to the file that names them,
//! parsed and checked (key matches, one name per certificate), expiry warned about, and names
//! resolved for the listeners and frontends that refer to them.

use std::path::Path;

use crate::cert::{utc_date as date, CertError, Certificate};
use crate::command::Change;
use crate::model::Fingerprint;

use super::super::mirror::CertificateDoc;
use super::super::read::{read_capped_text, MAX_PEM_FILE_BYTES};
use super::{known, Broken, CertEntry, Field, Place, Resolver, EXPIRY_WARNING_SECS};

impl Resolver<'_> {
    pub(super) fn certificate(&mut self, f: usize, path: Field, doc: &CertificateDoc) {
        let name = doc.name.trim().to_owned();
        if name.is_empty() {
            self.error(f, path.field("name"), "must not be empty");
            return;
        }
        if let Some(first) = self.certificate_names.get(&name) {
            let first = self.location(first.place);
            self.error(
                f,
                path.field("name"),
                format!("certificate {name:?} is defined twice: here and at {first}"),
            );
            return;
        }
        // Relative paths are relative to the file that names them, not to the working
        // directory, so a desired-state repository can be loaded from anywhere.
        let base = self
            .file(f)
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let cert_pem = self.read_pem(f, path.field("certificate"), &base, &doc.certificate);
        let key_pem = self.read_pem(f, path.field("key"), &base, &doc.key);
        let (Some(cert_pem), Some(key_pem)) = (cert_pem, key_pem) else {
            self.broken.insert(Broken::Certificate(name));
            return;
        };
        let cert = match Certificate::from_pem(&name, &cert_pem, &key_pem) {
            Ok(c) => c,
            Err(e) => {
                let field = match e {
                    CertError::BadKeyPem(_)
                    | CertError::UnsupportedKey(_)
                    | CertError::KeyMismatch => "key",
                    CertError::NoCertificate
                    | CertError::BadCertificatePem(_)
                    | CertError::BadX509(_) => "certificate",
                };
                self.error(f, path.field(field), e.to_string());
                self.broken.insert(Broken::Certificate(name));
                return;
            }
        };
        let fingerprint = cert.fingerprint;
        let not_after = cert.not_after;
        if let Some((other, first)) = self.certificate_fingerprints.get(&fingerprint) {
            let (other, first) = (other.clone(), self.location(*first));
            self.error(
                f,
                path.field("certificate"),
                format!(
                    "the same certificate (fingerprint {fingerprint}) is already defined as {other:?} at {first}; \
                     give it one name"
                ),
            );
            self.broken.insert(Broken::Certificate(name));
            return;
        }
        if !self.apply(&Change::AddCertificate(Box::new(cert)), f, path) {
            self.broken.insert(Broken::Certificate(name));
            return;
        }
        let here = Place {
            file: f,
            field: path,
        };
        self.certificate_fingerprints
            .insert(fingerprint, (name.clone(), here));
        self.certificate_names.insert(
            name.clone(),
            CertEntry {
                fingerprint,
                place: here,
            },
        );
        let left = not_after - self.now;
        if left <= 0 {
            self.warn(
                f,
                path,
                &format!("certificate {name:?} EXPIRED on {}", date(not_after)),
            );
        } else if left < EXPIRY_WARNING_SECS {
            let days = left / 86_400;
            self.warn(
                f,
                path,
                &format!(
                    "certificate {name:?} expires in {days} day{s} ({})",
                    date(not_after),
                    s = if days == 1 { "" } else { "s" }
                ),
            );
        }
    }

    fn read_pem(&mut self, f: usize, path: Field, base: &Path, file: &str) -> Option<String> {
        let resolved = base.join(file.trim());
        match read_capped_text(&resolved, MAX_PEM_FILE_BYTES, "certificate or key file") {
            Ok(text) => Some(text),
            Err(message) => {
                self.error(f, path, message);
                None
            }
        }
    }

    pub(super) fn find_certificate(
        &mut self,
        f: usize,
        path: Field,
        raw: &str,
    ) -> Option<Fingerprint> {
        let name = raw.trim();
        if let Some(entry) = self.certificate_names.get(name) {
            return Some(entry.fingerprint);
        }
        if let Some(fingerprint) = self.borrow_certificate(name) {
            return Some(fingerprint);
        }
        if self.complete && !self.broken.contains(&Broken::Certificate(name.to_owned())) {
            let known = known(
                "certificates",
                self.certificate_names.keys().map(String::as_str),
            );
            self.error(f, path, format!("unknown certificate {name:?} ({known})"));
        }
        None
    }
}
