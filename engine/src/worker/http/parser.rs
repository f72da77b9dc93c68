//! HTTP/1.1 message heads: parsing with `httparse` and the RFC 9112 checks httparse leaves to
//! us. Sans-io: bytes in, checked heads and decisions out ([`super::writer`] writes the heads
//! forwarded from them).
//!
//! Everything that could let two parties disagree on where a message ends is refused here
//! (request smuggling): Content-Length with Transfer-Encoding, differing or malformed
//! Content-Length values, a Transfer-Encoding whose final coding is not `chunked`, obs-fold,
//! whitespace before a colon, bare CR or LF, control characters in values, a missing or
//! repeated Host. Responses from backends get the same scrutiny (the caller answers 502).

use std::mem::MaybeUninit;

/// Most header fields accepted in one head; more is answered 431.
pub const MAX_HEADERS: usize = 100;

/// Room for the fields of one head. Left uninitialised (httparse fills what it parses): zeroing
/// 100 fields cost more per request than parsing a whole head.
pub type HeaderSlots<'b> = [MaybeUninit<httparse::Header<'b>>; MAX_HEADERS];

pub fn header_slots<'b>() -> HeaderSlots<'b> {
    [const { MaybeUninit::uninit() }; MAX_HEADERS]
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the sender closes (responses only).
    UntilClose,
}

/// Why a head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// A malformed or ambiguous message: 400 for a request, 502 for a response.
    #[error("{0}")]
    Malformed(&'static str),
    /// More header fields than [`MAX_HEADERS`]: 431.
    #[error("too many header fields")]
    TooManyHeaders,
    /// A well-formed `HTTP/x.y` version other than 1.0 and 1.1 (the HTTP/2 preface sent in
    /// the clear among them): 505 for a request, 502 for a response.
    #[error("unsupported HTTP version")]
    VersionNotSupported,
    /// A transfer coding other than `chunked` (`gzip, chunked`): the body would reach the
    /// other side still coded, which it never asked for. 501 for a request (RFC 9112 6.1),
    /// 502 for a response.
    #[error("unsupported transfer coding")]
    UnsupportedCoding,
}

/// What the `Connection` header (and the version) say about the connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionTokens {
    pub close: bool,
    pub keep_alive: bool,
    pub upgrade: bool,
}

/// The facts a proxy needs from a head's fields, checked.
#[derive(Debug, Clone, Copy, Default)]
struct FieldSummary<'b> {
    content_length: Option<u64>,
    transfer_encoding: bool,
    /// The final transfer coding is `chunked` (and no earlier one is).
    chunked: bool,
    /// Transfer codings named, over every Transfer-Encoding field (empty elements skipped).
    codings: usize,
    connection: ConnectionTokens,
    hosts: usize,
    host: Option<&'b [u8]>,
    upgrade: Option<&'b [u8]>,
    /// An `Upgrade` field offers `h2c` (see [`parse_request`]).
    upgrade_h2c: bool,
    expect_continue: bool,
}

/// A parsed, checked request head. Borrows the input buffer.
#[derive(Debug)]
pub struct RequestHead<'h, 'b> {
    pub method: &'b str,
    pub target: &'b str,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    pub headers: &'h [httparse::Header<'b>],
    /// The head as received, including the blank line: its length is what the head took of
    /// the input, and fields forwarded unchanged are copied from it.
    pub raw: &'b [u8],
    /// The host to route on (from an absolute-form target, else the Host field).
    pub host: Option<&'b [u8]>,
    /// The target's path (origin form: the whole target, query included), from which
    /// [`routing_path`](super::path::routing_path) makes the path routed on.
    pub path: &'b str,
    /// What followed an absolute target's empty path (`?q` of `http://a?q`): forwarded
    /// after the `/` that stands for that path. Empty otherwise.
    pub empty_path_query: &'b str,
    /// The target came in absolute form (`GET http://host/path`): it is forwarded in origin
    /// form with `Host` replaced by its authority (RFC 9112 3.2.2), so the backend sees the
    /// host the request was routed on.
    pub absolute: bool,
    /// The one Content-Length value, when the client sent the field (possibly as a list of
    /// equal values, which is forwarded as a single value).
    pub content_length: Option<u64>,
    pub framing: Framing,
    /// The client wants the connection kept after this exchange.
    pub keep_alive: bool,
    /// For an `Upgrade` request (`Connection: upgrade` with an `Upgrade` field), the
    /// protocols it offers (its `Upgrade` value), which a `101` must choose from.
    pub upgrade: Option<&'b [u8]>,
    pub expect_continue: bool,
}

impl RequestHead<'_, '_> {
    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }

    /// Whether sending it twice is harmless (RFC 9110 9.2.2), so it may be retried on a fresh
    /// backend connection when a reused one failed before answering.
    pub fn is_idempotent(&self) -> bool {
        matches!(
            self.method,
            "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
        )
    }
}

/// Parses a request head from the start of `buf`. `Ok(None)`: incomplete, read more.
pub fn parse_request<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut HeaderSlots<'b>,
) -> Result<Option<RequestHead<'h, 'b>>, HeadError> {
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, headers) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            check_line_endings(buf)?;
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
        Err(httparse::Error::Version) if has_other_version(buf) => {
            return Err(HeadError::VersionNotSupported)
        }
        Err(e) => return Err(HeadError::Malformed(httparse_reason(e))),
    };
    check_line_endings(&buf[..len])?;
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(HeadError::Malformed("incomplete request line"));
    };
    let headers: &'h [httparse::Header<'b>] = req.headers;
    let fields = summarize(headers)?;
    if method == "CONNECT" {
        return Err(HeadError::Malformed("CONNECT is not supported"));
    }
    if fields.hosts > 1 {
        return Err(HeadError::Malformed("more than one Host field"));
    }
    if minor >= 1 && fields.hosts == 0 {
        return Err(HeadError::Malformed(
            "HTTP/1.1 request without a Host field",
        ));
    }
    if fields.transfer_encoding && minor == 0 {
        return Err(HeadError::Malformed(
            "Transfer-Encoding in an HTTP/1.0 request",
        ));
    }
    // No request-target form has a fragment (RFC 9112 3.2); a `#` passed on would let a
    // backend's path rules and ours disagree on where the path ends (CVE-2023-45539).
    if target.contains('#') {
        return Err(HeadError::Malformed("fragment in the request target"));
    }
    // A target is ASCII (RFC 3986: other characters are percent-encoded); raw UTF-8 is
    // refused rather than guessed at (RFC 9112 3.2: no autocorrection), as HAProxy does.
    if !target.is_ascii() {
        return Err(HeadError::Malformed("non-ASCII byte in the request target"));
    }
    let absolute = target
        .get(..7)
        .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
        || target
            .get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"));
    // Split only absolute targets: the common origin-form target pays no substring search.
    let split = if absolute {
        target.split_once("://")
    } else {
        None
    };
    let (host, path, empty_path_query) = match split {
        Some((_, rest)) => {
            // The authority ends at the path or the query (RFC 3986 3.2); an
            // empty path is forwarded as `/` (RFC 9112 3.2.1), before the query if any.
            let end = rest.find(['/', '?']).unwrap_or(rest.len());
            let (path, query) = match &rest[end..] {
                p if p.starts_with('/') => (p, ""),
                q => ("/", q),
            };
            (Some(&rest.as_bytes()[..end]), path, query)
        }
        None if target.starts_with('/') => (fields.host, target, ""),
        None if target == "*" && method == "OPTIONS" => (fields.host, "/", ""),
        None => return Err(HeadError::Malformed("request target is not a path")),
    };
    let framing = if fields.transfer_encoding {
        chunked_only(&fields)?;
        Framing::Chunked
    } else {
        match fields.content_length {
            Some(0) | None => Framing::Empty,
            Some(n) => Framing::Length(n),
        }
    };
    let keep_alive = if minor >= 1 {
        !fields.connection.close
    } else {
        fields.connection.keep_alive && !fields.connection.close
    };
    Ok(Some(RequestHead {
        method,
        target,
        minor,
        headers,
        raw: &buf[..len],
        host,
        path,
        empty_path_query,
        absolute,
        content_length: fields.content_length,
        framing,
        keep_alive,
        // Upgrade is ignored in an HTTP/1.0 request (RFC 9110 7.8). An offer of `h2c` is
        // ignored too: once the backend switched, the client could send it HTTP/2 requests
        // the proxy never routes or checks ("h2c smuggling"); Envoy and Traefik drop it the
        // same way. The request goes on as a plain one, its Upgrade and HTTP2-Settings fields
        // dropped as hop-by-hop.
        upgrade: fields
            .upgrade
            .filter(|_| fields.connection.upgrade && minor >= 1 && !fields.upgrade_h2c),
        expect_continue: fields.expect_continue,
    }))
}

/// A parsed, checked response head.
#[derive(Debug)]
pub struct ResponseHead<'h, 'b> {
    pub code: u16,
    pub reason: &'b str,
    pub minor: u8,
    pub headers: &'h [httparse::Header<'b>],
    /// The head as received (see [`RequestHead::raw`]).
    pub raw: &'b [u8],
    /// The one Content-Length value, forwarded as a single value.
    pub content_length: Option<u64>,
    pub framing: Framing,
    /// The backend keeps the connection open after this response.
    pub keep_alive: bool,
    /// The protocols a `101` switches to (its `Upgrade` value), empty if it has none.
    pub upgrade: &'b [u8],
}

#[cfg(test)]
thread_local! {
    /// Bytes handed to [`parse_response`] on this thread: the work tests count a response
    /// head's parsing by (an exchange must not parse a trickling head again on every read).
    pub static RESPONSE_BYTES_PARSED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Parses a response head; `request_is_head` because a HEAD answer has no body whatever its
/// fields say.
pub fn parse_response<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut HeaderSlots<'b>,
    request_is_head: bool,
) -> Result<Option<ResponseHead<'h, 'b>>, HeadError> {
    #[cfg(test)]
    RESPONSE_BYTES_PARSED.with(|n| n.set(n.get() + buf.len()));
    let mut res = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut res, buf, headers)
    {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            check_line_endings(buf)?;
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
        Err(httparse::Error::Version) if buf.starts_with(b"HTTP/") => {
            return Err(HeadError::VersionNotSupported)
        }
        Err(e) => return Err(HeadError::Malformed(httparse_reason(e))),
    };
    check_line_endings(&buf[..len])?;
    let (Some(code), Some(minor)) = (res.code, res.version) else {
        return Err(HeadError::Malformed("incomplete status line"));
    };
    // RFC 9110 15: other codes are invalid, to be handled as a 5xx; passing one on would
    // leave each client to guess (`000` is a library's error code, `099` an interim answer?).
    if !(100..=599).contains(&code) {
        return Err(HeadError::Malformed("status code outside 100..599"));
    }
    let reason = res.reason.unwrap_or("");
    let headers: &'h [httparse::Header<'b>] = res.headers;
    let fields = summarize(headers)?;
    // RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing.
    if fields.transfer_encoding && minor == 0 {
        return Err(HeadError::Malformed(
            "Transfer-Encoding in an HTTP/1.0 response",
        ));
    }
    let framing = if (100..200).contains(&code) || code == 204 || code == 304 || request_is_head {
        Framing::Empty
    } else if fields.transfer_encoding {
        chunked_only(&fields)?;
        Framing::Chunked
    } else {
        match fields.content_length {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    };
    let keep_alive = framing != Framing::UntilClose
        && if minor >= 1 {
            !fields.connection.close
        } else {
            fields.connection.keep_alive && !fields.connection.close
        };
    Ok(Some(ResponseHead {
        code,
        reason,
        minor,
        headers,
        raw: &buf[..len],
        content_length: fields.content_length,
        framing,
        keep_alive,
        upgrade: fields.upgrade.unwrap_or_default(),
    }))
}

/// Checks that a message with Transfer-Encoding is framed by `chunked` alone. A final coding
/// other than chunked leaves the end of the message to the connection's close, which two
/// parsers could see differently (400/502); other codings before it are well framed but
/// unsupported, since the body is forwarded as it came.
fn chunked_only(fields: &FieldSummary<'_>) -> Result<(), HeadError> {
    if !fields.chunked {
        return Err(HeadError::Malformed(
            "Transfer-Encoding whose final coding is not chunked",
        ));
    }
    if fields.codings > 1 {
        return Err(HeadError::UnsupportedCoding);
    }
    Ok(())
}

/// Whether a `101`'s `Upgrade` value (`answer`) switches only to protocols the request
/// offered (RFC 9110 7.8: a server MUST send Upgrade with a 101, and MUST NOT switch to a
/// protocol the client did not offer). Protocol names compare without regard to case.
pub fn upgrade_accepted(offer: &[u8], answer: &[u8]) -> bool {
    let mut chosen = list(answer).peekable();
    chosen.peek().is_some() && chosen.all(|p| list(offer).any(|o| o.eq_ignore_ascii_case(p)))
}

/// Whether the request line httparse refused for its version ends in a well-formed
/// `HTTP/<digit>.<digit>` (or `HTTP/<digit>`) that is simply not 1.0 or 1.1: that is a 505
/// (RFC 9110 15.6.6), where a garbled version, or none (HTTP/0.9), stays a 400.
fn has_other_version(buf: &[u8]) -> bool {
    let line_end = buf.iter().position(|&b| b == b'\r' || b == b'\n');
    let line = &buf[..line_end.unwrap_or(buf.len())];
    // Only a request line of three parts (method SP target SP version) has a version to
    // judge: `GET /a b HTTP/1.1` is malformed (400), whatever its last word.
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    if method.is_empty() || target.is_empty() {
        return false;
    }
    match version.strip_prefix(b"HTTP/") {
        Some([major]) => major.is_ascii_digit(),
        Some([major, b'.', minor]) => major.is_ascii_digit() && minor.is_ascii_digit(),
        _ => false,
    }
}

fn httparse_reason(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => {
            "invalid header field name (or whitespace before a colon, or obs-fold)"
        }
        httparse::Error::HeaderValue => "invalid header field value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid token",
        httparse::Error::Version => "invalid HTTP version",
        httparse::Error::TooManyHeaders => "too many header fields",
    }
}

/// Every line must end in CRLF: a bare CR or a bare LF is refused (two parsers could split
/// lines differently).
fn check_line_endings(head: &[u8]) -> Result<(), HeadError> {
    // Over adjacent pairs, as a reduction without early exit: it vectorises, where a
    // byte-at-a-time loop with branches cost more than httparse's whole parse. A CR at the very
    // end may be the first half of a CRLF still to come.
    let next = head.get(1..).unwrap_or_default();
    let (bare_lf, bare_cr) = head
        .iter()
        .zip(next)
        .fold((false, false), |(lf, cr), (&a, &b)| {
            (
                lf | ((b == b'\n') & (a != b'\r')),
                cr | ((a == b'\r') & (b != b'\n')),
            )
        });
    if bare_lf || head.first() == Some(&b'\n') {
        return Err(HeadError::Malformed("bare LF in the head"));
    }
    if bare_cr {
        return Err(HeadError::Malformed("bare CR in the head"));
    }
    Ok(())
}

/// `field == lower` ignoring ASCII case, for a `lower` of lowercase letters, digits and `-`:
/// one OR and one compare per byte without early exit, which vectorises (this runs for every
/// field of every head, several times). Exact for all bytes httparse lets into a name or a
/// value: only control characters, which it refuses, could pass for a digit or a `-`.
#[inline]
pub(super) fn is(field: &[u8], lower: &[u8]) -> bool {
    field.len() == lower.len()
        && field
            .iter()
            .zip(lower)
            .fold(0u8, |diff, (&f, &l)| diff | ((f | 0x20) ^ l))
            == 0
}

/// Comma-separated list elements of a field value, trimmed, empty ones skipped (RFC 9110 5.6.1).
pub(super) fn list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(|s| s.trim_ascii())
        .filter(|s| !s.is_empty())
}

fn parse_content_length(value: &[u8]) -> Result<u64, HeadError> {
    let bad = HeadError::Malformed("malformed Content-Length");
    let mut found: Option<u64> = None;
    let mut elements = 0;
    for element in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
        elements += 1;
        if element.is_empty() || element.len() > 19 || !element.iter().all(u8::is_ascii_digit) {
            return Err(bad);
        }
        let n = element
            .iter()
            .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
        if found.is_some_and(|f| f != n) {
            return Err(HeadError::Malformed("differing Content-Length values"));
        }
        found = Some(n);
    }
    match found {
        Some(n) if elements > 0 => Ok(n),
        _ => Err(bad),
    }
}

fn summarize<'b>(headers: &[httparse::Header<'b>]) -> Result<FieldSummary<'b>, HeadError> {
    let mut s = FieldSummary::default();
    // Control characters in values need no pass of ours: httparse refuses every byte below
    // 0x20 but HTAB, and DEL, in a field value (the smuggling test pins that down).
    for h in headers {
        let name = h.name.as_bytes();
        if is(name, b"content-length") {
            let n = parse_content_length(h.value)?;
            if s.content_length.is_some_and(|c| c != n) {
                return Err(HeadError::Malformed("differing Content-Length values"));
            }
            s.content_length = Some(n);
        } else if is(name, b"transfer-encoding") {
            let mut any = false;
            for coding in list(h.value) {
                any = true;
                s.codings += 1;
                if s.chunked {
                    return Err(HeadError::Malformed(
                        "chunked is not the final transfer coding",
                    ));
                }
                s.chunked = is(coding, b"chunked");
            }
            if !any {
                return Err(HeadError::Malformed("empty Transfer-Encoding"));
            }
            s.transfer_encoding = true;
        } else if is(name, b"host") {
            s.hosts += 1;
            s.host = Some(h.value.trim_ascii());
        } else if is(name, b"connection") {
            for token in list(h.value) {
                if is(token, b"close") {
                    s.connection.close = true;
                } else if is(token, b"keep-alive") {
                    s.connection.keep_alive = true;
                } else if is(token, b"upgrade") {
                    s.connection.upgrade = true;
                }
            }
        } else if is(name, b"upgrade") {
            // One Upgrade field is what clients and servers send; of several, the first
            // one's protocols are the ones checked against the answer.
            s.upgrade = s.upgrade.or(Some(h.value));
            s.upgrade_h2c |= list(h.value).any(|p| is(p, b"h2c"));
        } else if is(name, b"expect") {
            s.expect_continue = is(h.value.trim_ascii(), b"100-continue");
        }
    }
    if s.transfer_encoding && s.content_length.is_some() {
        return Err(HeadError::Malformed(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    Ok(s)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    fn req(raw: &[u8]) -> Result<Option<(Framing, bool, bool)>, HeadError> {
        let mut headers = header_slots();
        parse_request(raw, &mut headers)
            .map(|o| o.map(|r| (r.framing, r.keep_alive, r.upgrade.is_some())))
    }

    fn rejected(raw: &[u8]) -> bool {
        matches!(req(raw), Err(HeadError::Malformed(_)))
    }

    #[test]
    fn plain_requests() {
        assert_eq!(
            req(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap(),
            Some((Framing::Empty, true, false))
        );
        assert_eq!(req(b"GET / HTTP/1.1\r\nHost: a\r\n").unwrap(), None);
        assert_eq!(
            req(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n").unwrap(),
            Some((Framing::Length(5), true, false))
        );
        // Chunked alone, however spelt (empty list elements are allowed, RFC 9110 5.6.1).
        for te in ["chunked", "CHUNKED", ", chunked,", "\tchunked"] {
            let raw = format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {te}\r\n\r\n");
            assert_eq!(
                req(raw.as_bytes()),
                Ok(Some((Framing::Chunked, true, false))),
                "{te}"
            );
        }
        // Other codings are well framed but not supported: 501, not 400.
        for te in [
            "gzip, chunked",
            "identity, chunked",
            "gzip\r\nTransfer-Encoding: chunked",
        ] {
            let raw = format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {te}\r\n\r\n");
            assert_eq!(
                req(raw.as_bytes()),
                Err(HeadError::UnsupportedCoding),
                "{te}"
            );
        }
        assert_eq!(
            req(b"GET / HTTP/1.0\r\n\r\n").unwrap(),
            Some((Framing::Empty, false, false))
        );
        assert_eq!(
            req(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap(),
            Some((Framing::Empty, true, false))
        );
        assert_eq!(
            req(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").unwrap(),
            Some((Framing::Empty, false, false))
        );
        assert_eq!(
            req(
                b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
            )
            .unwrap(),
            Some((Framing::Empty, true, true))
        );
        // Ignored in HTTP/1.0, and never to h2c (alone or in a list).
        assert_eq!(
            req(b"GET /ws HTTP/1.0\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n").unwrap(),
            Some((Framing::Empty, false, false))
        );
        for offer in ["h2c", "H2C", "websocket, h2c"] {
            let raw = format!(
                "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n\
                 Upgrade: {offer}\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n"
            );
            assert_eq!(
                req(raw.as_bytes()).unwrap(),
                Some((Framing::Empty, true, false)),
                "{offer}"
            );
        }
        // Equal duplicates merge.
        assert_eq!(
            req(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3, 3\r\n\r\n")
                .unwrap(),
            Some((Framing::Length(3), true, false))
        );
    }

    #[test]
    fn every_smuggling_shape_is_refused() {
        let shapes: &[&[u8]] = &[
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n  folded\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n",
            b"GET / HTTP/1.1\nHost: a\n\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x01c\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x7fc\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET nopath HTTP/1.1\r\nHost: a\r\n\r\n",
            b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n",
        ];
        for shape in shapes {
            assert!(
                rejected(shape),
                "{:?} was accepted",
                String::from_utf8_lossy(shape)
            );
        }
    }

    #[test]
    fn too_many_headers() {
        let mut raw = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..MAX_HEADERS {
            raw.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        raw.extend_from_slice(b"\r\n");
        assert_eq!(req(&raw), Err(HeadError::TooManyHeaders));
    }

    fn res(raw: &[u8], head: bool) -> Result<Option<(u16, Framing, bool)>, HeadError> {
        let mut headers = header_slots();
        parse_response(raw, &mut headers, head)
            .map(|o| o.map(|r| (r.code, r.framing, r.keep_alive)))
    }

    #[test]
    fn responses() {
        assert_eq!(
            res(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", false).unwrap(),
            Some((200, Framing::Length(3), true))
        );
        assert_eq!(
            res(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", true).unwrap(),
            Some((200, Framing::Empty, true))
        );
        assert_eq!(
            res(b"HTTP/1.1 200 OK\r\n\r\n", false).unwrap(),
            Some((200, Framing::UntilClose, false))
        );
        assert_eq!(
            res(b"HTTP/1.1 204 No Content\r\n\r\n", false).unwrap(),
            Some((204, Framing::Empty, true))
        );
        assert_eq!(
            res(
                b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
                false
            )
            .unwrap(),
            Some((304, Framing::Empty, true))
        );
        assert_eq!(
            res(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false).unwrap(),
            Some((200, Framing::Length(1), false))
        );
        assert_eq!(
            res(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
                false
            )
            .unwrap(),
            Some((200, Framing::Chunked, false))
        );
        for bad in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX : a\r\n\r\n",
            b"garbage\r\n\r\n",
        ] {
            assert!(
                res(bad, false).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn line_endings_check_agrees_with_the_plain_definition() {
        // Every line ends in CRLF; a CR at the very end may still get its LF.
        fn plain(head: &[u8]) -> bool {
            head.iter().enumerate().all(|(i, &b)| match b {
                b'\n' => i > 0 && head[i - 1] == b'\r',
                b'\r' => head.get(i + 1).is_none_or(|&n| n == b'\n'),
                _ => true,
            })
        }
        let alphabet = [b'a', b'\r', b'\n'];
        for len in 0..=6u32 {
            for mut code in 0..3usize.pow(len) {
                let mut head = Vec::new();
                for _ in 0..len {
                    head.push(alphabet[code % 3]);
                    code /= 3;
                }
                assert_eq!(
                    check_line_endings(&head).is_ok(),
                    plain(&head),
                    "{:?}",
                    String::from_utf8_lossy(&head)
                );
            }
        }
    }

    #[test]
    fn field_names_compare_as_eq_ignore_ascii_case_does_for_every_byte_httparse_allows() {
        let allowed = (0..=255u8).filter(|&b| b == b'\t' || b >= 0x20 && b != 0x7f);
        for lower in [
            &b"content-length"[..],
            b"te",
            b"100-continue",
            b"x-forwarded-for",
        ] {
            assert!(is(lower, lower));
            assert!(is(&lower.to_ascii_uppercase(), lower));
            assert!(!is(&lower[1..], lower));
            for at in 0..lower.len() {
                for b in allowed.clone() {
                    let mut field = lower.to_vec();
                    field[at] = b;
                    assert_eq!(
                        is(&field, lower),
                        field.eq_ignore_ascii_case(lower),
                        "{:?}",
                        String::from_utf8_lossy(&field)
                    );
                }
            }
        }
    }

    #[test]
    fn request_targets_are_ascii_and_malformed_lines_are_400_not_505() {
        assert!(rejected(b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n"));
        for line in [
            &b"GET /a b HTTP/1.1"[..],
            b"GET /x  HTTP/1.1",
            b" / HTTP/1.1",
        ] {
            let mut raw = line.to_vec();
            raw.extend_from_slice(b"\r\nHost: a\r\n\r\n");
            assert!(rejected(&raw), "{:?}", String::from_utf8_lossy(line));
        }
        assert_eq!(
            req(b"GET / HTTP/1.2\r\nHost: a\r\n\r\n"),
            Err(HeadError::VersionNotSupported)
        );
    }

    #[test]
    fn responses_out_of_range_or_with_faulty_framing_are_refused() {
        for raw in [
            &b"HTTP/1.1 000 Weird\r\nContent-Length: 0\r\n\r\n"[..],
            b"HTTP/1.1 099 Early\r\n\r\n",
            b"HTTP/1.1 600 Custom\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert!(
                matches!(res(raw, false), Err(HeadError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        assert_eq!(
            res(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                false
            ),
            Err(HeadError::UnsupportedCoding)
        );
        assert_eq!(
            res(b"HTTP/1.1 599 Edge\r\nContent-Length: 0\r\n\r\n", false),
            Ok(Some((599, Framing::Empty, true)))
        );
    }

    #[test]
    fn a_101_must_switch_to_a_protocol_offered() {
        assert!(upgrade_accepted(b"websocket", b"WebSocket"));
        assert!(upgrade_accepted(b"foo/2, websocket", b"websocket"));
        assert!(!upgrade_accepted(b"websocket", b""));
        assert!(!upgrade_accepted(b"websocket", b"h2c"));
        assert!(!upgrade_accepted(b"websocket", b"websocket, h2c"));
    }

    #[test]
    fn a_fragment_in_the_target_is_refused() {
        assert!(rejected(b"GET /admin#/public HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(rejected(b"GET http://a.test#x HTTP/1.1\r\nHost: a\r\n\r\n"));
    }

    #[test]
    fn other_http_versions_are_version_errors() {
        for raw in [
            &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..],
            b"GET / HTTP/1.2\r\nHost: a\r\n\r\n",
            b"GET / HTTP/3\r\n",
        ] {
            assert_eq!(
                req(raw),
                Err(HeadError::VersionNotSupported),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        for raw in [
            &b"GET /\r\n\r\n"[..],
            b"GET / HTTP/1.x\r\n\r\n",
            b"GET / HTTPS/1.1\r\n\r\n",
        ] {
            assert!(rejected(raw), "{:?}", String::from_utf8_lossy(raw));
        }
        let mut headers = header_slots();
        assert_eq!(
            parse_response(b"HTTP/2.0 200 OK\r\n\r\n", &mut headers, false).map(|_| ()),
            Err(HeadError::VersionNotSupported)
        );
    }

    #[test]
    fn request_heads_carry_their_line_and_the_fields_a_proxy_acts_on() {
        let raw = b"PUT /a?b HTTP/1.1\r\nHost:  b.test \r\nContent-Length: 12\r\n\
                    Expect: 100-continue\r\n\r\nbody";
        let mut headers = header_slots();
        let head = parse_request(raw, &mut headers).unwrap().unwrap();
        assert_eq!((head.method, head.target, head.minor), ("PUT", "/a?b", 1));
        assert_eq!(head.raw.len(), raw.len() - 4);
        assert_eq!(head.headers.len(), 3);
        assert_eq!(head.host, Some(&b"b.test"[..]));
        assert_eq!(
            (head.path, head.empty_path_query, head.absolute),
            ("/a?b", "", false)
        );
        assert_eq!(head.content_length, Some(12));
        assert_eq!(head.framing, Framing::Length(12));
        assert!(head.expect_continue);
        assert!(!head.is_head());
        assert!(head.is_idempotent());

        let mut headers = header_slots();
        let raw = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nExpect: 200-ok\r\n\r\n";
        let head = parse_request(raw, &mut headers).unwrap().unwrap();
        assert_eq!(head.minor, 1);
        assert_eq!(head.content_length, Some(0));
        assert_eq!(head.framing, Framing::Empty);
        assert!(!head.expect_continue);
        assert!(!head.is_head());
        assert!(!head.is_idempotent());

        let mut headers = header_slots();
        let head = parse_request(b"HEAD / HTTP/1.0\r\n\r\n", &mut headers)
            .unwrap()
            .unwrap();
        assert_eq!(
            (head.minor, head.host, head.content_length),
            (0, None, None)
        );
        assert!(head.is_head());
    }

    #[test]
    fn content_length_values_are_read_digit_by_digit_up_to_19_digits() {
        for (value, n) in [
            ("12", 12),
            ("907", 907),
            ("9999999999999999999", 9_999_999_999_999_999_999),
            ("12, 12", 12),
        ] {
            let raw = format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {value}\r\n\r\n");
            assert_eq!(
                req(raw.as_bytes()),
                Ok(Some((Framing::Length(n), true, false))),
                "{value}"
            );
        }
        assert!(rejected(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10000000000000000000\r\n\r\n"
        ));
        assert!(rejected(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1,\r\n\r\n"
        ));
    }

    #[test]
    fn absolute_targets_give_the_host_and_the_path_routed_on() {
        // (target, host, path, query after an empty path)
        for (target, host, path, query) in [
            ("http://a.test/x?y", "a.test", "/x?y", ""),
            ("HTTP://a.test/x", "a.test", "/x", ""),
            ("https://b.test:8443/", "b.test:8443", "/", ""),
            ("hTTpS://b.test/z", "b.test", "/z", ""),
            ("http://a.test", "a.test", "/", ""),
            ("http://a.test?q=1", "a.test", "/", "?q=1"),
            ("http://a.test?q=/x", "a.test", "/", "?q=/x"),
        ] {
            let raw = format!("GET {target} HTTP/1.1\r\nHost: other\r\n\r\n");
            let mut headers = header_slots();
            let head = parse_request(raw.as_bytes(), &mut headers)
                .unwrap()
                .unwrap();
            assert!(head.absolute, "{target}");
            assert_eq!(head.host, Some(host.as_bytes()), "{target}");
            assert_eq!(
                (head.path, head.empty_path_query),
                (path, query),
                "{target}"
            );
        }
        let mut headers = header_slots();
        let head = parse_request(b"OPTIONS * HTTP/1.1\r\nHost: c\r\n\r\n", &mut headers)
            .unwrap()
            .unwrap();
        assert_eq!(
            (head.host, head.path, head.absolute),
            (Some(&b"c"[..]), "/", false)
        );
        assert!(rejected(b"GET * HTTP/1.1\r\nHost: c\r\n\r\n"));
        assert!(rejected(b"GET ftp://a/ HTTP/1.1\r\nHost: c\r\n\r\n"));
    }

    #[test]
    fn keep_alive_and_upgrade_follow_every_connection_token() {
        for (raw, keep_alive) in [
            (
                &b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"[..],
                false,
            ),
            (b"GET / HTTP/1.0\r\nConnection: close\r\n\r\n", false),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n",
                true,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nConnection: x, Close\r\n\r\n",
                false,
            ),
        ] {
            assert_eq!(
                req(raw),
                Ok(Some((Framing::Empty, keep_alive, false))),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        // The first Upgrade field is the offer; h2c in any of them voids it.
        let mut headers = header_slots();
        let raw = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\
                    Upgrade: foo\r\n\r\n";
        let head = parse_request(raw, &mut headers).unwrap().unwrap();
        assert_eq!(head.upgrade, Some(&b"websocket"[..]));
        for offer in [
            "h2c\r\nUpgrade: h2c",
            "h2c\r\nUpgrade: websocket",
            "a\r\nUpgrade: h2c",
        ] {
            let raw = format!(
                "GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: {offer}\r\n\r\n"
            );
            assert_eq!(
                req(raw.as_bytes()),
                Ok(Some((Framing::Empty, true, false))),
                "{offer}"
            );
        }
        // An Upgrade field without the token is no upgrade.
        assert_eq!(
            req(b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n"),
            Ok(Some((Framing::Empty, true, false)))
        );
    }

    #[test]
    fn response_heads_carry_their_line_and_fields() {
        let raw = b"HTTP/1.0 201 Made It\r\nContent-Length: 10\r\nConnection: keep-alive\r\n\r\n";
        let mut headers = header_slots();
        let head = parse_response(raw, &mut headers, false).unwrap().unwrap();
        assert_eq!((head.code, head.reason, head.minor), (201, "Made It", 0));
        assert_eq!(head.raw.len(), raw.len());
        assert_eq!(head.headers.len(), 2);
        assert_eq!(head.content_length, Some(10));
        assert_eq!(head.framing, Framing::Length(10));
        assert!(head.keep_alive);
        assert_eq!(head.upgrade, b"");

        let raw = b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n\
                    Upgrade: websocket\r\n\r\n";
        let mut headers = header_slots();
        let head = parse_response(raw, &mut headers, false).unwrap().unwrap();
        assert_eq!(
            (head.code, head.minor, head.framing),
            (101, 1, Framing::Empty)
        );
        assert_eq!(head.upgrade, b"websocket");

        for (raw, expect) in [
            (
                &b"HTTP/1.1 100 Continue\r\n\r\n"[..],
                (100, Framing::Empty, true),
            ),
            (b"HTTP/1.1 199 Hm\r\n\r\n", (199, Framing::Empty, true)),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                (200, Framing::Empty, true),
            ),
            (
                b"HTTP/1.1 205 Reset\r\n\r\n",
                (205, Framing::UntilClose, false),
            ),
            (
                b"HTTP/1.1 303 See\r\n\r\n",
                (303, Framing::UntilClose, false),
            ),
            (
                b"HTTP/1.0 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 1\r\n\r\n",
                (200, Framing::Length(1), false),
            ),
            (
                b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n",
                (200, Framing::UntilClose, false),
            ),
        ] {
            assert_eq!(
                res(raw, false),
                Ok(Some(expect)),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn a_garbled_status_line_is_malformed_with_the_reason_httparse_gave() {
        for raw in [&b"garbage\r\n\r\n"[..], b"HTTX/1.1 200 OK\r\n\r\n"] {
            assert!(
                matches!(res(raw, false), Err(HeadError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        assert_eq!(
            req(b"GET / HTTP/1.1\r\nHost: a\r\nX A: b\r\n\r\n"),
            Err(HeadError::Malformed(
                "invalid header field name (or whitespace before a colon, or obs-fold)"
            ))
        );
        // An empty method or target leaves no version to judge: 400, not 505.
        for raw in [&b"GET  HTTP/1.2\r\n\r\n"[..], b" / HTTP/1.2\r\n\r\n"] {
            assert!(rejected(raw), "{:?}", String::from_utf8_lossy(raw));
        }
        // A bare LF is refused before the head is complete.
        assert!(rejected(b"GET / HTTP/1.1\r\nHost: a\n"));
        assert!(matches!(
            res(b"HTTP/1.1 200 OK\nX: a\r\n", false),
            Err(HeadError::Malformed(_))
        ));
    }

    #[test]
    fn only_a_three_part_line_ending_in_a_well_formed_version_has_another_version() {
        // httparse refuses an empty method or target before it reads the version, so these
        // reach the check only when called directly: it must not count on that.
        for (line, other) in [
            (&b"GET / HTTP/1.2\r\nHost: a"[..], true),
            (b"GET / HTTP/2", true),
            (b"GET / HTTP/2.x", false),
            (b" / HTTP/1.2", false),
            (b"GET  HTTP/1.2", false),
            (b"GET / x HTTP/1.2", false),
            (b"GET / HTTP/1.2\n", true),
        ] {
            assert_eq!(
                has_other_version(line),
                other,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn field_names_differing_alike_in_two_places_do_not_match() {
        // Differences in two bytes must not cancel out (`ud` is not `te`, though each byte is
        // one bit away in the same bit).
        assert!(!is(b"ud", b"te"));
        let allowed = |b: u8| b == b'\t' || b >= 0x20 && b != 0x7f;
        for lower in [&b"content-length"[..], b"te", b"100-continue"] {
            for i in 0..lower.len() {
                for j in i + 1..lower.len() {
                    for bit in 0..8 {
                        let mut field = lower.to_vec();
                        field[i] ^= 1 << bit;
                        field[j] ^= 1 << bit;
                        if !allowed(field[i]) || !allowed(field[j]) {
                            continue;
                        }
                        assert_eq!(
                            is(&field, lower),
                            field.eq_ignore_ascii_case(lower),
                            "{:?}",
                            String::from_utf8_lossy(&field)
                        );
                    }
                }
            }
        }
    }
}
