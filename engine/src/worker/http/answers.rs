//! The answers the proxy writes itself, each with a short body saying what went wrong.
//!
//! They are static bytes (no buffer is needed to send them, so even an exhausted buffer pool
//! can answer `503`); listeners may replace the 404 and 503 bodies.

use std::rc::Rc;

/// One of the proxy's own answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    BadRequest,
    NotFound,
    RequestTimeout,
    PayloadTooLarge,
    /// The request line alone does not fit a buffer (RFC 9112 3: 414, not 431).
    UriTooLong,
    HeadTooLarge,
    BadGateway,
    Unavailable,
    GatewayTimeout,
    /// A well-formed request line with an HTTP major version other than 1 (`HTTP/2.0`, the
    /// HTTP/2 preface sent in the clear, `HTTP/3.0`) or an unknown 1.x minor.
    VersionNotSupported,
}

// Content-Length values are written out by hand (const string lengths cannot be spliced
// into `concat!`); the unit test `lengths_match_bodies` keeps them honest.
const BAD_REQUEST: &str = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nCache-Control: no-store\r\nContent-Length: 35\r\nConnection: close\r\n\r\n400 Bad Request: malformed request\n";
const NOT_FOUND_KEEP: &str = "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\nCache-Control: no-store\r\nContent-Length: 47\r\n\r\n404 Not Found: no route for this host and path\n";
const NOT_FOUND_CLOSE: &str = "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\nCache-Control: no-store\r\nContent-Length: 47\r\nConnection: close\r\n\r\n404 Not Found: no route for this host and path\n";
const REQUEST_TIMEOUT: &str = "HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain; charset=utf-8\r\nCache-Control: no-store\r\nContent-Length: 61\r\nConnection: close\r\n\r\n408 Request Timeout: the request head did not arrive in time\n";
const PAYLOAD_TOO_LARGE: &str = "HTTP/1.1 413 Content Too Large\r\nContent-Type: text/plain; charset=utf-8\r\nCache-Control: no-store\r\nContent-Length: 62\r\nConnection: close\r\n\r\n413 Content Too Large: the body is over this listener's limit\n";
const URI_TOO_LONG: &str = "HTTP/1.1 414 URI Too Long\r\nContent-Type: text/plain; charset=utf-8\r\nCache-Control: no-store\r\nContent-Length: 57\r\nConnection: close\r\n\r\n414 URI Too Long: the request line does not fit a buffer\n";
const HEAD_TOO_LARGE: &str = "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain; charset=utf-8\r\nCache-Control: no-store\r\nContent-Length: 68\r\nConnection: close\r\n\r\n431 Request Header Fields Too Large: the head does not fit a buffer\n";
const BAD_GATEWAY: &str = "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain; charset=utf-8\r\nCache-Control: no-store\r\nContent-Length: 65\r\nConnection: close\r\n\r\n502 Bad Gateway: the backend refused, closed or answered garbage\n";
const UNAVAILABLE: &str = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nCache-Control: no-store\r\nContent-Length: 62\r\nConnection: close\r\n\r\n503 Service Unavailable: no healthy backend, or over capacity\n";
const GATEWAY_TIMEOUT: &str = "HTTP/1.1 504 Gateway Timeout\r\nContent-Type: text/plain; charset=utf-8\r\nCache-Control: no-store\r\nContent-Length: 56\r\nConnection: close\r\n\r\n504 Gateway Timeout: the backend did not answer in time\n";
const VERSION_NOT_SUPPORTED: &str = "HTTP/1.1 505 HTTP Version Not Supported\r\nContent-Type: text/plain; charset=utf-8\r\nCache-Control: no-store\r\nContent-Length: 75\r\nConnection: close\r\n\r\n505 HTTP Version Not Supported: this listener speaks HTTP/1.0 and HTTP/1.1\n";

impl Status {
    pub fn code(self) -> u16 {
        match self {
            Status::BadRequest => 400,
            Status::NotFound => 404,
            Status::RequestTimeout => 408,
            Status::PayloadTooLarge => 413,
            Status::UriTooLong => 414,
            Status::HeadTooLarge => 431,
            Status::BadGateway => 502,
            Status::Unavailable => 503,
            Status::GatewayTimeout => 504,
            Status::VersionNotSupported => 505,
        }
    }

    /// The full response. Every answer closes the connection except a 404 to a client that
    /// keeps it (`keep_alive`) and sent no body.
    pub fn bytes(self, keep_alive: bool) -> &'static [u8] {
        let text = match self {
            Status::BadRequest => BAD_REQUEST,
            Status::NotFound if keep_alive => NOT_FOUND_KEEP,
            Status::NotFound => NOT_FOUND_CLOSE,
            Status::RequestTimeout => REQUEST_TIMEOUT,
            Status::PayloadTooLarge => PAYLOAD_TOO_LARGE,
            Status::UriTooLong => URI_TOO_LONG,
            Status::HeadTooLarge => HEAD_TOO_LARGE,
            Status::BadGateway => BAD_GATEWAY,
            Status::Unavailable => UNAVAILABLE,
            Status::GatewayTimeout => GATEWAY_TIMEOUT,
            Status::VersionNotSupported => VERSION_NOT_SUPPORTED,
        };
        text.as_bytes()
    }
}

/// An answer's bytes: static, or a listener's custom one.
#[derive(Debug, Clone)]
pub enum AnswerBytes {
    Static(&'static [u8]),
    Shared(Rc<[u8]>),
}

impl AnswerBytes {
    pub fn as_slice(&self) -> &[u8] {
        match self {
            AnswerBytes::Static(b) => b,
            AnswerBytes::Shared(b) => b,
        }
    }
}

/// A full response with a listener's own body.
pub fn custom(code: u16, reason: &str, body: &str, close: bool) -> Vec<u8> {
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nCache-Control: no-store\r\nContent-Length: {}\r\n{}\r\n{body}",
        body.len(),
        if close { "Connection: close\r\n" } else { "" },
    )
    .into_bytes()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn lengths_match_bodies() {
        for status in [
            Status::BadRequest,
            Status::NotFound,
            Status::RequestTimeout,
            Status::PayloadTooLarge,
            Status::UriTooLong,
            Status::HeadTooLarge,
            Status::BadGateway,
            Status::Unavailable,
            Status::GatewayTimeout,
            Status::VersionNotSupported,
        ] {
            for keep in [false, true] {
                let text = std::str::from_utf8(status.bytes(keep)).unwrap();
                let (head, body) = text.split_once("\r\n\r\n").unwrap();
                assert!(head.starts_with(&format!("HTTP/1.1 {} ", status.code())));
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .unwrap()
                    .parse()
                    .unwrap();
                assert_eq!(len, body.len(), "{status:?}");
            }
        }
    }
}
