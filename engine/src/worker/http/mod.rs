//! HTTP/1.1: message heads ([`parser`]), body framing ([`body`]), the proxy's own answers
//! ([`answers`]), the `Date` field ([`date`]) and the per-connection state machine
//! ([`session`]).

pub mod answers;
pub mod body;
pub mod date;
pub mod parser;
pub mod session;

#[cfg(test)]
mod props;
