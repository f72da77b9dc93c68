//! HTTP/1.1: message heads, parsed ([`parser`], once [`head_scan`] says the bytes received may
//! finish one) and written ([`writer`]), the path a request is routed on ([`path`]), body
//! framing ([`body`]), the proxy's own answers ([`answers`]), the `Date` field ([`date`]) and
//! the per-connection state machine ([`session`]) with its exchanges with backends
//! ([`exchange`]).

pub mod answers;
pub mod body;
pub mod date;
pub mod exchange;
pub mod head_scan;
pub mod parser;
pub mod path;
pub mod session;
pub mod writer;

#[cfg(test)]
mod props;
