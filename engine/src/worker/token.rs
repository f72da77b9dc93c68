//! mio tokens: what a readiness event is for, encoded in the token's two low bits, so
//! dispatch is a shift and a match.
//!
//! A front socket is `key << 2 | 0` (its session's slab key), a backend connection
//! `conn << 2 | 1` (its `BackConn::owner` in the upstream names the session), a
//! listener `key << 2 | 2`, and the rest (the main-process channel, health probes)
//! `n << 2 | 3`.

const TAG_BITS: usize = 2;
const TAG_MASK: usize = 0b11;

/// What a mio token designates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Front(usize),
    Back(usize),
    Listener(usize),
    /// 0 is the channel; n ≥ 1 is health probe n − 1.
    Other(usize),
}

pub fn token_front(key: usize) -> usize {
    key << TAG_BITS
}

pub fn token_back(conn: usize) -> usize {
    (conn << TAG_BITS) | 1
}

pub fn token_listener(key: usize) -> usize {
    (key << TAG_BITS) | 2
}

pub fn token_other(n: usize) -> usize {
    (n << TAG_BITS) | 3
}

pub fn decode_token(token: usize) -> TokenKind {
    let key = token >> TAG_BITS;
    match token & TAG_MASK {
        0 => TokenKind::Front(key),
        1 => TokenKind::Back(key),
        2 => TokenKind::Listener(key),
        _ => TokenKind::Other(key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for key in [0usize, 1, 7, 1 << 40] {
            assert_eq!(decode_token(token_front(key)), TokenKind::Front(key));
            assert_eq!(decode_token(token_back(key)), TokenKind::Back(key));
            assert_eq!(decode_token(token_listener(key)), TokenKind::Listener(key));
            assert_eq!(decode_token(token_other(key)), TokenKind::Other(key));
        }
    }
}
