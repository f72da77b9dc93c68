//! The on-disk form of a saved state (`weir state save`, automatic saving, upgrades).
//!
//! Layout: the magic line `weir-state v1\n`, the hex SHA-256 of the body and `\n`, then the
//! body: a protobuf `StateSnapshot`. The checksum makes a truncated or corrupted file an
//! error before anything is applied, never a half-loaded state. Writers write a temporary file,
//! fsync it and rename it over the old one (see the engine's saving code), so a crash leaves
//! either the old file or the new one.

use prost::Message;
use sha2::{Digest, Sha256};

use crate::proto;
use crate::state::{State, StateError};

/// First line of every saved state file; the `v1` is the format version.
pub const MAGIC: &[u8] = b"weir-state v1\n";

/// Why a saved state could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SavedStateError {
    #[error("not a weir saved state (missing the `weir-state v1` header)")]
    NotSavedState,
    #[error("saved state format {0:?} is not supported by this weir (it reads v1)")]
    UnsupportedVersion(String),
    #[error("saved state is truncated or corrupt: checksum mismatch")]
    Checksum,
    #[error("saved state does not decode: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("saved state is inconsistent: {0}")]
    State(#[from] StateError),
}

/// Serialises a state to the saved-state format.
pub fn encode(state: &State) -> Vec<u8> {
    // A saved state is for restoring: certificates need their keys.
    let body = state
        .snapshot(crate::command::PrivateKeys::Included)
        .encode_to_vec();
    let mut out = Vec::with_capacity(MAGIC.len() + 65 + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(hex::encode(Sha256::digest(&body)).as_bytes());
    out.push(b'\n');
    out.extend_from_slice(&body);
    out
}

/// Whether `bytes` look like a saved state (so a path can be told apart from desired files).
pub fn is_saved_state(bytes: &[u8]) -> bool {
    bytes.starts_with(b"weir-state ")
}

/// Parses and checks a saved state, rebuilding it through [`State::from_snapshot`].
pub fn decode(bytes: &[u8]) -> Result<State, SavedStateError> {
    let Some(rest) = bytes.strip_prefix(MAGIC) else {
        if let Some(rest) = bytes.strip_prefix(b"weir-state ") {
            let line = rest.split(|b| *b == b'\n').next().unwrap_or_default();
            return Err(SavedStateError::UnsupportedVersion(
                String::from_utf8_lossy(line).into_owned(),
            ));
        }
        return Err(SavedStateError::NotSavedState);
    };
    if rest.len() < 65 || rest[64] != b'\n' {
        return Err(SavedStateError::Checksum);
    }
    let (sum, body) = (&rest[..64], &rest[65..]);
    if hex::encode(Sha256::digest(body)).as_bytes() != sum {
        return Err(SavedStateError::Checksum);
    }
    let snapshot = proto::StateSnapshot::decode(body)?;
    Ok(State::from_snapshot(&snapshot)?)
}
