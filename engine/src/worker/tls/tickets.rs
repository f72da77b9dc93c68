//! Session tickets under keys that come from outside the worker.
//!
//! The main process makes the keys and sends every worker the same [`TicketKeys`] (the
//! channel-only `set_ticket_keys` message), so a ticket one worker issued resumes on any other.
//! Rotation sends a new `current` with the old one as `previous`: tickets are issued under
//! `current` only, and both decrypt, so a client holding a ticket from just before a rotation
//! still resumes. The key before `previous` is forgotten, which is what bounds the damage a
//! stolen key does to forward secrecy. Until the first keys arrive the worker issues no tickets
//! (rustls then falls back to its per-worker session cache).
//!
//! A ticket is `name (16) | nonce (12) | ChaCha20-Poly1305(state) with the name as AAD`; the
//! name picks the key, so a ticket under a forgotten key is simply not resumed.

use std::fmt;
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use super::crypto::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use super::crypto::rand::{SecureRandom, SystemRandom};
use rustls::server::ProducesTickets;
use weir_schema::proto;

/// Bytes of a key's name.
pub const NAME_LEN: usize = 16;
/// Bytes of a key's secret.
pub const SECRET_LEN: usize = 32;
/// How long a client may keep a ticket when the keys do not say.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// Why ticket keys from the channel cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketKeyError {
    #[error("ticket keys have no current key")]
    NoCurrent,
    #[error("a ticket key's name must be {NAME_LEN} bytes, not {0}")]
    NameLength(usize),
    #[error("a ticket key's secret must be {SECRET_LEN} bytes, not {0}")]
    SecretLength(usize),
    #[error("the system random generator failed")]
    Random,
}

/// One key: a public name and a secret. `Debug` shows the name only.
#[derive(Clone, PartialEq, Eq)]
pub struct TicketKey {
    pub name: [u8; NAME_LEN],
    secret: [u8; SECRET_LEN],
}

impl fmt::Debug for TicketKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TicketKey")
            .field("name", &hex(&self.name))
            .field("secret", &"<redacted>")
            .finish()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl TicketKey {
    pub fn new(name: [u8; NAME_LEN], secret: [u8; SECRET_LEN]) -> TicketKey {
        TicketKey { name, secret }
    }

    /// A fresh random key (what the main process makes at start and at each rotation).
    pub fn generate() -> Result<TicketKey, TicketKeyError> {
        let rng = SystemRandom::new();
        let mut key = TicketKey {
            name: [0; NAME_LEN],
            secret: [0; SECRET_LEN],
        };
        rng.fill(&mut key.name)
            .and_then(|()| rng.fill(&mut key.secret))
            .map_err(|_| TicketKeyError::Random)?;
        Ok(key)
    }

    fn from_wire(key: &proto::TicketKey) -> Result<TicketKey, TicketKeyError> {
        Ok(TicketKey {
            name: key
                .name
                .as_slice()
                .try_into()
                .map_err(|_| TicketKeyError::NameLength(key.name.len()))?,
            secret: key
                .secret
                .as_slice()
                .try_into()
                .map_err(|_| TicketKeyError::SecretLength(key.secret.len()))?,
        })
    }

    fn to_wire(&self) -> proto::TicketKey {
        proto::TicketKey {
            name: self.name.to_vec(),
            secret: self.secret.to_vec(),
        }
    }

    fn aead(&self) -> Result<LessSafeKey, TicketKeyError> {
        UnboundKey::new(&CHACHA20_POLY1305, &self.secret)
            .map(LessSafeKey::new)
            .map_err(|_| TicketKeyError::SecretLength(self.secret.len()))
    }
}

/// The keys every worker shares: the one tickets are issued under, and the one before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketKeys {
    pub current: TicketKey,
    pub previous: Option<TicketKey>,
    /// The lifetime announced to clients.
    pub lifetime: Duration,
}

impl TicketKeys {
    pub fn new(current: TicketKey) -> TicketKeys {
        TicketKeys {
            current,
            previous: None,
            lifetime: DEFAULT_LIFETIME,
        }
    }

    /// The keys after a rotation to `next`: the current key becomes the previous one.
    pub fn rotated(&self, next: TicketKey) -> TicketKeys {
        TicketKeys {
            current: next,
            previous: Some(self.current.clone()),
            lifetime: self.lifetime,
        }
    }

    /// From the channel's `set_ticket_keys`.
    pub fn from_wire(keys: &proto::TicketKeys) -> Result<TicketKeys, TicketKeyError> {
        let current = keys.current.as_ref().ok_or(TicketKeyError::NoCurrent)?;
        Ok(TicketKeys {
            current: TicketKey::from_wire(current)?,
            previous: keys
                .previous
                .as_ref()
                .map(TicketKey::from_wire)
                .transpose()?,
            lifetime: match keys.lifetime_ms {
                0 => DEFAULT_LIFETIME,
                ms => Duration::from_millis(ms),
            },
        })
    }

    /// For the channel's `set_ticket_keys`.
    pub fn to_wire(&self) -> proto::TicketKeys {
        proto::TicketKeys {
            current: Some(self.current.to_wire()),
            previous: self.previous.as_ref().map(TicketKey::to_wire),
            lifetime_ms: u64::try_from(self.lifetime.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

/// Keys ready to seal and open.
struct Active {
    current: (TicketKey, LessSafeKey),
    previous: Option<(TicketKey, LessSafeKey)>,
    lifetime_secs: u32,
}

/// A worker's ticketer: one per worker, shared by every https listener's configuration, keys
/// swapped in place by [`Ticketer::set_keys`].
pub struct Ticketer {
    active: RwLock<Option<Active>>,
    rng: SystemRandom,
}

impl fmt::Debug for Ticketer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticketer")
            .field("enabled", &self.enabled())
            .finish_non_exhaustive()
    }
}

impl Default for Ticketer {
    fn default() -> Self {
        Ticketer::new()
    }
}

impl Ticketer {
    /// A ticketer without keys: it issues no tickets until [`Ticketer::set_keys`].
    pub fn new() -> Ticketer {
        Ticketer {
            active: RwLock::new(None),
            rng: SystemRandom::new(),
        }
    }

    /// Takes new keys; the next ticket issued or opened uses them.
    pub fn set_keys(&self, keys: &TicketKeys) -> Result<(), TicketKeyError> {
        let previous = match &keys.previous {
            Some(k) => Some((k.clone(), k.aead()?)),
            None => None,
        };
        let active = Active {
            current: (keys.current.clone(), keys.current.aead()?),
            previous,
            lifetime_secs: u32::try_from(keys.lifetime.as_secs()).unwrap_or(u32::MAX),
        };
        *self.active.write().unwrap_or_else(PoisonError::into_inner) = Some(active);
        Ok(())
    }
}

impl ProducesTickets for Ticketer {
    fn enabled(&self) -> bool {
        self.active
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    fn lifetime(&self) -> u32 {
        self.active
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map_or(0, |a| a.lifetime_secs)
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let active = self.active.read().unwrap_or_else(PoisonError::into_inner);
        let (key, aead) = &active.as_ref()?.current;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let mut ticket = Vec::with_capacity(NAME_LEN + NONCE_LEN + plain.len() + 16);
        ticket.extend_from_slice(&key.name);
        ticket.extend_from_slice(&nonce);
        let mut sealed = plain.to_vec();
        aead.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&key.name),
            &mut sealed,
        )
        .ok()?;
        ticket.extend_from_slice(&sealed);
        Some(ticket)
    }

    fn decrypt(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        let name = ticket.get(..NAME_LEN)?;
        let nonce: [u8; NONCE_LEN] = ticket
            .get(NAME_LEN..NAME_LEN + NONCE_LEN)?
            .try_into()
            .ok()?;
        let sealed = ticket.get(NAME_LEN + NONCE_LEN..)?;
        let active = self.active.read().unwrap_or_else(PoisonError::into_inner);
        let active = active.as_ref()?;
        let (key, aead) = std::iter::once(&active.current)
            .chain(active.previous.as_ref())
            .find(|(key, _)| key.name == name)?;
        let mut plain = sealed.to_vec();
        let opened = aead
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&key.name),
                &mut plain,
            )
            .ok()?
            .len();
        plain.truncate(opened);
        Some(plain)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn secrets_stay_out_of_debug_and_survive_the_wire() {
        let key = TicketKey::new([7; NAME_LEN], [0xab; SECRET_LEN]);
        let shown = format!("{key:?} {:?}", key.to_wire());
        assert!(
            !shown.contains("abab") && !shown.contains("171, 171"),
            "{shown}"
        );
        let keys = TicketKeys::new(key).rotated(TicketKey::generate().unwrap());
        assert_eq!(TicketKeys::from_wire(&keys.to_wire()).unwrap(), keys);
        let short = proto::TicketKeys {
            current: Some(proto::TicketKey {
                name: vec![1; 3],
                secret: vec![1; SECRET_LEN],
            }),
            ..Default::default()
        };
        assert_eq!(
            TicketKeys::from_wire(&short),
            Err(TicketKeyError::NameLength(3))
        );
    }

    #[test]
    fn a_forged_or_foreign_ticket_opens_to_nothing() {
        let t = Ticketer::new();
        assert!(!t.enabled());
        let keys = TicketKeys::new(TicketKey::generate().unwrap());
        t.set_keys(&keys).unwrap();
        let ticket = t.encrypt(b"session").unwrap();
        assert_eq!(t.decrypt(&ticket).unwrap(), b"session");
        let mut forged = ticket.clone();
        *forged.last_mut().unwrap() ^= 1;
        assert_eq!(t.decrypt(&forged), None);
        assert_eq!(t.decrypt(&ticket[..20]), None);
        let other = Ticketer::new();
        other
            .set_keys(&TicketKeys::new(TicketKey::generate().unwrap()))
            .unwrap();
        assert_eq!(other.decrypt(&ticket), None);
    }
}
