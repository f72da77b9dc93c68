//! HTTP/1.1 message heads: parsing with `httparse`, the RFC 9112 checks httparse leaves to us,
//! and writing the heads a proxy forwards. Sans-io: bytes in, decisions and bytes out.
//!
//! Everything that could let two parties disagree on where a message ends is refused here
//! (request smuggling): Content-Length with Transfer-Encoding, differing or malformed
//! Content-Length values, a Transfer-Encoding whose final coding is not `chunked`, obs-fold,
//! whitespace before a colon, bare CR or LF, control characters in values, a missing or
//! repeated Host. Responses from backends get the same scrutiny (the caller answers 502).

use std::fmt::{self, Write as _};
use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr};

use crate::worker::buffer::Buf;

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

/// Parses a response head; `request_is_head` because a HEAD answer has no body whatever its
/// fields say.
pub fn parse_response<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut HeaderSlots<'b>,
    request_is_head: bool,
) -> Result<Option<ResponseHead<'h, 'b>>, HeadError> {
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
fn is(field: &[u8], lower: &[u8]) -> bool {
    field.len() == lower.len()
        && field
            .iter()
            .zip(lower)
            .fold(0u8, |diff, (&f, &l)| diff | ((f | 0x20) ^ l))
            == 0
}

/// Comma-separated list elements of a field value, trimmed, empty ones skipped (RFC 9110 5.6.1).
fn list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
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

/// Whether some `Connection` field names other fields (beyond `close`, `keep-alive` and
/// `upgrade`), which are then hop-by-hop too. Checked once per head, so the common head pays
/// nothing per field for it.
fn connection_names_fields(headers: &[httparse::Header<'_>]) -> bool {
    headers
        .iter()
        .filter(|h| is(h.name.as_bytes(), b"connection"))
        .flat_map(|h| list(h.value))
        .any(|token| !is(token, b"close") && !is(token, b"keep-alive") && !is(token, b"upgrade"))
}

/// Whether a field is hop-by-hop: never forwarded as is (RFC 9110 7.6.1). `Upgrade` passes
/// only on an upgrade exchange; fields named in `Connection` are hop-by-hop too (looked up
/// only when `named` says some are).
fn is_hop_by_hop(
    name: &str,
    headers: &[httparse::Header<'_>],
    named: bool,
    upgrading: bool,
) -> bool {
    let n = name.as_bytes();
    // `Trailer` is end-to-end (RFC 9110 6.6.2): it announces the trailers that follow.
    // `HTTP2-Settings` belongs to an h2c upgrade, which is never passed on (RFC 9113 3.1
    // makes it hop-by-hop even when a client forgot to list it in Connection).
    if is(n, b"connection")
        || is(n, b"keep-alive")
        || is(n, b"proxy-connection")
        || is(n, b"te")
        || is(n, b"http2-settings")
    {
        return true;
    }
    if is(n, b"upgrade") {
        return !upgrading;
    }
    named
        && headers
            .iter()
            .filter(|h| is(h.name.as_bytes(), b"connection"))
            .flat_map(|h| list(h.value))
            .any(|token| {
                token.eq_ignore_ascii_case(n)
                    && !is(token, b"upgrade")
                    && !is(n, b"host")
                    && !is(n, b"content-length")
                    && !is(n, b"transfer-encoding")
            })
}

/// Writes a head into a buffer's free tail; remembers if it did not fit. Nothing reaches the
/// buffer unless the whole head does ([`HeadWriter::finish`]).
///
/// Fields forwarded unchanged are not written one by one: [`HeadWriter::keep`] grows a run
/// over the received head, and a run of adjacent kept fields goes out as one copy of those
/// bytes (for a typical head, all its fields but one or two), written before anything else.
#[derive(Debug)]
pub struct HeadWriter<'a, 'b> {
    out: &'a mut [u8],
    at: usize,
    overflow: bool,
    raw: &'b [u8],
    /// `raw[start..end]`: kept fields not yet copied, from the first one's name to the last
    /// one's value.
    run: Option<(usize, usize)>,
}

impl<'a, 'b> HeadWriter<'a, 'b> {
    /// A writer into `out`'s free tail for a head made from `raw`, the received one.
    pub fn new(out: &'a mut Buf, raw: &'b [u8]) -> HeadWriter<'a, 'b> {
        HeadWriter {
            out: out.spare_mut(),
            at: 0,
            overflow: false,
            raw,
            run: None,
        }
    }

    pub fn bytes(&mut self, bytes: &[u8]) {
        self.flush_run();
        self.put(bytes);
    }

    fn put(&mut self, bytes: &[u8]) {
        match self.out.get_mut(self.at..self.at + bytes.len()) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                self.at += bytes.len();
            }
            None => self.overflow = true,
        }
    }

    fn flush_run(&mut self) {
        if let Some((start, end)) = self.run.take() {
            let raw = self.raw;
            self.put(&raw[start..end]);
            self.put(b"\r\n");
        }
    }

    fn field(&mut self, name: &str, value: &[u8]) {
        self.bytes(name.as_bytes());
        self.put(b": ");
        self.put(value);
        self.put(b"\r\n");
    }

    /// Forwards a received field as it came. It joins the current run when only the line
    /// break (and the trailing whitespace httparse trimmed) separates the two, that is when no
    /// field between them was dropped or rewritten.
    fn keep(&mut self, h: &httparse::Header<'b>) {
        let Some((start, end)) = span_in(self.raw, h) else {
            // Not from the received head (never the case for httparse's fields): written
            // out like any other field.
            return self.field(h.name, h.value);
        };
        match self.run {
            Some((first, last))
                if last <= start
                    && self.raw[last..start]
                        .iter()
                        .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n')) =>
            {
                self.run = Some((first, end));
            }
            _ => {
                self.flush_run();
                self.run = Some((start, end));
            }
        }
    }

    /// Writes `n` in decimal, as `Display` would, without the formatting machinery (this
    /// runs for several fields of every request and response).
    fn decimal(&mut self, mut n: u64) {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.bytes(&digits[at..]);
    }

    /// How many bytes the head took, if everything fit; the caller commits them.
    fn finish(mut self) -> Result<usize, HeadError> {
        self.flush_run();
        if self.overflow {
            Err(HeadError::TooManyHeaders)
        } else {
            Ok(self.at)
        }
    }
}

/// Where a field lies in the head it was parsed from: from its name to the end of its value.
/// Offsets come from the slices' addresses (as hyper records header indices); `None` if the
/// field does not lie in `raw`.
fn span_in(raw: &[u8], h: &httparse::Header<'_>) -> Option<(usize, usize)> {
    let base = raw.as_ptr() as usize;
    let start = (h.name.as_ptr() as usize).checked_sub(base)?;
    let end = (h.value.as_ptr() as usize)
        .checked_sub(base)?
        .checked_add(h.value.len())?;
    (start < end && end <= raw.len()).then_some((start, end))
}

/// A client address as `Display` writes it, rendered once per request for the two fields that
/// carry it; IPv4, the common case, without `fmt`.
#[derive(Debug)]
struct AddrText {
    /// The longest IPv6 text (`ffff:…:255.255.255.255`) is 45 bytes.
    text: [u8; 45],
    len: usize,
}

impl AddrText {
    fn new(ip: IpAddr) -> AddrText {
        let mut a = AddrText {
            text: [0; 45],
            len: 0,
        };
        match ip {
            IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        a.push(b'.');
                    }
                    if octet >= 100 {
                        a.push(b'0' + octet / 100);
                    }
                    if octet >= 10 {
                        a.push(b'0' + octet / 10 % 10);
                    }
                    a.push(b'0' + octet % 10);
                }
            }
            IpAddr::V6(v6) => {
                // Cannot fail: every IPv6 text fits.
                let _ = write!(a, "{v6}");
            }
        }
        a
    }

    fn push(&mut self, b: u8) {
        if let Some(slot) = self.text.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.text[..self.len]
    }
}

impl fmt::Write for AddrText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let dst = self.text.get_mut(self.len..end).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Who is asking, for the `X-Forwarded-*` and `Forwarded` fields.
#[derive(Debug, Clone, Copy)]
pub struct ClientInfo {
    pub peer: SocketAddr,
    pub proto: &'static str,
    pub port: u16,
}

/// Writes the head forwarded to a backend: the request line, the fields minus the hop-by-hop
/// ones, `X-Forwarded-For` and `Forwarded` appended to what the client sent,
/// `X-Forwarded-Proto` and `X-Forwarded-Port` set by us, and `Connection: upgrade` on upgrades.
///
/// An HTTP/1.0 client's request goes out as HTTP/1.0 (with `Connection: keep-alive`, so the
/// backend connection can still be pooled): the answer then never uses chunked framing, which
/// that client could not read. Everything else goes out as HTTP/1.1.
pub fn write_request_head(
    out: &mut Buf,
    req: &RequestHead<'_, '_>,
    client: ClientInfo,
) -> Result<(), HeadError> {
    let mut w = HeadWriter::new(out, req.raw);
    w.bytes(req.method.as_bytes());
    w.bytes(b" ");
    // Origin form towards the backend: not every origin server accepts the absolute form,
    // and the Host it sees must be the one the request was routed on.
    if req.absolute {
        w.bytes(req.path.as_bytes());
        w.bytes(req.empty_path_query.as_bytes());
    } else {
        w.bytes(req.target.as_bytes());
    }
    w.bytes(if req.minor == 0 {
        b" HTTP/1.0\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });
    if let (true, Some(host)) = (req.absolute, req.host) {
        w.field("Host", host);
    }
    let addr = AddrText::new(client.peer.ip());
    let named = connection_names_fields(req.headers);
    let mut xff_seen = false;
    let mut via_seen = false;
    let mut fwd_seen = false;
    let mut length_written = false;
    let mut coding_written = false;
    for h in req.headers {
        let name = h.name;
        if is(name.as_bytes(), b"x-forwarded-proto")
            || is(name.as_bytes(), b"x-forwarded-port")
            || (req.absolute && is(name.as_bytes(), b"host"))
            || is_hop_by_hop(name, req.headers, named, req.upgrade.is_some())
            || spells_ours_with_underscores(name.as_bytes())
        {
            continue;
        }
        if is(name.as_bytes(), b"content-length") {
            write_content_length(&mut w, h, req.content_length, &mut length_written);
            continue;
        }
        if is(name.as_bytes(), b"transfer-encoding") {
            write_transfer_encoding(&mut w, h, &mut coding_written);
            continue;
        }
        if is(name.as_bytes(), b"x-forwarded-for") {
            if !xff_seen {
                xff_seen = true;
                w.bytes(b"X-Forwarded-For: ");
                write_earlier_values(&mut w, req.headers, "x-forwarded-for");
                w.bytes(addr.as_bytes());
                w.bytes(b"\r\n");
            }
            continue;
        }
        if is(name.as_bytes(), b"via") {
            if !via_seen {
                via_seen = true;
                w.bytes(b"Via: ");
                write_earlier_values(&mut w, req.headers, "via");
                write_via_element(&mut w, req.minor);
            }
            continue;
        }
        if is(name.as_bytes(), b"forwarded") {
            if !fwd_seen {
                fwd_seen = true;
                w.bytes(b"Forwarded: ");
                write_earlier_values(&mut w, req.headers, "forwarded");
                write_forwarded_element(&mut w, req, client, &addr);
            }
            continue;
        }
        w.keep(h);
    }
    if !xff_seen {
        w.bytes(b"X-Forwarded-For: ");
        w.bytes(addr.as_bytes());
        w.bytes(b"\r\n");
    }
    if !via_seen {
        w.bytes(b"Via: ");
        write_via_element(&mut w, req.minor);
    }
    if !fwd_seen {
        w.bytes(b"Forwarded: ");
        write_forwarded_element(&mut w, req, client, &addr);
    }
    w.bytes(b"X-Forwarded-Proto: ");
    w.bytes(client.proto.as_bytes());
    w.bytes(b"\r\nX-Forwarded-Port: ");
    w.decimal(u64::from(client.port));
    w.bytes(b"\r\n");
    if req.upgrade.is_some() {
        w.bytes(b"Connection: upgrade\r\n");
    } else if req.minor == 0 {
        w.bytes(b"Connection: keep-alive\r\n");
    }
    w.bytes(b"\r\n");
    let n = w.finish()?;
    out.commit(n);
    Ok(())
}

/// Writes every value of the fields called `name` (lowercase), each followed by `, `: the list our own
/// element is appended to (RFC 9110 5.3: repeated fields combine into one list, in order).
fn write_earlier_values(w: &mut HeadWriter<'_, '_>, headers: &[httparse::Header<'_>], name: &str) {
    for h in headers
        .iter()
        .filter(|h| is(h.name.as_bytes(), name.as_bytes()))
    {
        w.bytes(h.value.trim_ascii());
        w.bytes(b", ");
    }
}

/// Our `Via` element (RFC 9110 7.6.3: a gateway MUST send one in each inbound request): the
/// protocol version we received the request in, and our pseudonym.
fn write_via_element(w: &mut HeadWriter<'_, '_>, minor: u8) {
    w.bytes(if minor == 0 {
        b"1.0 weir\r\n"
    } else {
        b"1.1 weir\r\n"
    });
}

/// Whether a field name is one of the fields Weir sets itself, spelt with `_` for `-`
/// (`X_Forwarded_For`). CGI-style servers (WSGI, PHP, Rack) read `-` and `_` alike, so such
/// a field would reach the application next to ours, and could win; nginx drops every name
/// with an underscore, this drops only the twins of ours.
fn spells_ours_with_underscores(name: &[u8]) -> bool {
    // Only names of the right lengths are looked at: the common field pays one compare.
    matches!(name.len(), 15..=17)
        && name.contains(&b'_')
        && [
            &b"x-forwarded-for"[..],
            b"x-forwarded-port",
            b"x-forwarded-proto",
        ]
        .iter()
        .any(|ours| {
            ours.len() == name.len()
                && name
                    .iter()
                    .zip(*ours)
                    .all(|(&n, &o)| n.to_ascii_lowercase() == o || (n == b'_' && o == b'-'))
        })
}

/// Writes `Transfer-Encoding: chunked` once, in place of the first field: the parser let
/// through only messages framed by `chunked` alone, however spelt (`CHUNKED`, `, chunked`,
/// a second field), and a parser downstream need not agree with us on the odd spellings.
fn write_transfer_encoding<'b>(
    w: &mut HeadWriter<'_, 'b>,
    field: &httparse::Header<'b>,
    written: &mut bool,
) {
    if !*written {
        if field.value == b"chunked" {
            w.keep(field);
        } else {
            w.bytes(b"Transfer-Encoding: chunked\r\n");
        }
        *written = true;
    }
}

/// Writes the checked Content-Length once, in place of the first field. Equal duplicates and
/// lists (`5, 5`) are valid for us (RFC 9110 8.6) but not for every parser behind or in front
/// of us: forwarding them as they came would let two parsers frame the message differently.
/// A first field holding one number (the usual case) already is that single value.
fn write_content_length<'b>(
    w: &mut HeadWriter<'_, 'b>,
    field: &httparse::Header<'b>,
    value: Option<u64>,
    written: &mut bool,
) {
    if let (false, Some(n)) = (*written, value) {
        if field.value.iter().all(u8::is_ascii_digit) {
            w.keep(field);
        } else {
            w.bytes(b"Content-Length: ");
            w.decimal(n);
            w.bytes(b"\r\n");
        }
        *written = true;
    }
}

fn write_forwarded_element(
    w: &mut HeadWriter<'_, '_>,
    req: &RequestHead<'_, '_>,
    client: ClientInfo,
    addr: &AddrText,
) {
    if client.peer.is_ipv4() {
        w.bytes(b"for=");
        w.bytes(addr.as_bytes());
    } else {
        w.bytes(b"for=\"[");
        w.bytes(addr.as_bytes());
        w.bytes(b"]\"");
    }
    if let Some(host) = req.host {
        w.bytes(b";host=\"");
        w.bytes(host);
        w.bytes(b"\"");
    }
    w.bytes(b";proto=");
    w.bytes(client.proto.as_bytes());
    w.bytes(b"\r\n");
}

/// What the client side of a response needs to be told about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientConnection {
    /// Keep it; an HTTP/1.0 client is told `Connection: keep-alive`.
    KeepAlive { http10: bool },
    /// `Connection: close`, and the proxy closes after this response.
    Close,
    /// `Connection: upgrade` (a 101).
    Upgrade,
}

/// Writes the head forwarded to a client: HTTP/1.1 status line, the fields minus the
/// hop-by-hop ones, and our own `Connection` field. A final response that came without a
/// `Date` gets `date` (the whole field line), as RFC 9110 6.6.1 asks of a recipient with a
/// clock that forwards it.
pub fn write_response_head(
    out: &mut Buf,
    res: &ResponseHead<'_, '_>,
    connection: ClientConnection,
    date: &[u8],
) -> Result<(), HeadError> {
    let mut w = HeadWriter::new(out, res.raw);
    w.bytes(b"HTTP/1.1 ");
    // httparse takes exactly three digits for a status code.
    let code = res.code % 1000;
    w.bytes(&[
        b'0' + (code / 100) as u8,
        b'0' + (code / 10 % 10) as u8,
        b'0' + (code % 10) as u8,
        b' ',
    ]);
    w.bytes(res.reason.as_bytes());
    w.bytes(b"\r\n");
    let upgrading = connection == ClientConnection::Upgrade;
    let named = connection_names_fields(res.headers);
    // RFC 9110 8.6 and RFC 9112 6.1: no Content-Length or Transfer-Encoding in a 1xx or 204
    // (there is no body, whatever the backend announced).
    let bodiless = res.code < 200 || res.code == 204;
    let mut length_written = bodiless;
    let mut coding_written = bodiless;
    let mut dated = res.code < 200;
    for h in res.headers {
        if is(h.name.as_bytes(), b"content-length") {
            write_content_length(&mut w, h, res.content_length, &mut length_written);
        } else if is(h.name.as_bytes(), b"transfer-encoding") {
            write_transfer_encoding(&mut w, h, &mut coding_written);
        } else if !is_hop_by_hop(h.name, res.headers, named, upgrading) {
            dated |= is(h.name.as_bytes(), b"date");
            w.keep(h);
        }
    }
    if !dated {
        w.bytes(date);
    }
    match connection {
        ClientConnection::KeepAlive { http10: true } => w.bytes(b"Connection: keep-alive\r\n"),
        ClientConnection::KeepAlive { http10: false } => {}
        ClientConnection::Close => w.bytes(b"Connection: close\r\n"),
        ClientConnection::Upgrade => w.bytes(b"Connection: upgrade\r\n"),
    }
    w.bytes(b"\r\n");
    let n = w.finish()?;
    out.commit(n);
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;
    use crate::worker::buffer::BufferPool;

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
    fn numbers_and_addresses_are_written_as_display_writes_them() {
        let mut pool = BufferPool::new(4096, 1);
        let mut out = pool.get().unwrap();
        let numbers = [0, 1, 9, 10, 99, 100, 255, 8080, 65535, 1 << 32, u64::MAX];
        let ips: [IpAddr; 6] = [
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap(),
            "0.0.0.0".parse().unwrap(),
            "10.200.3.45".parse().unwrap(),
            "255.255.255.255".parse().unwrap(),
            "::1".parse().unwrap(),
            "2001:db8::ff00:42:8329".parse().unwrap(),
        ];
        let every_octet = (0..=255u8).map(|v| IpAddr::from([v, v / 3, 255 - v, v % 10]));
        let mut expected = String::new();
        let mut w = HeadWriter::new(&mut out, b"");
        for n in numbers {
            w.decimal(n);
            w.bytes(b" ");
            expected.push_str(&format!("{n} "));
        }
        for ip in ips.into_iter().chain(every_octet) {
            w.bytes(AddrText::new(ip).as_bytes());
            w.bytes(b" ");
            expected.push_str(&format!("{ip} "));
        }
        let n = w.finish().unwrap();
        out.commit(n);
        assert_eq!(String::from_utf8(out.pending().to_vec()).unwrap(), expected);
    }

    #[test]
    fn forwarded_for_an_ipv6_client_is_quoted_and_bracketed() {
        let text = forwarded_from(
            b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
            "[2001:db8::7]:5555",
            80,
        );
        assert!(text.contains("X-Forwarded-For: 2001:db8::7\r\n"), "{text}");
        assert!(
            text.contains("Forwarded: for=\"[2001:db8::7]\";host=\"a.test\";proto=http\r\n"),
            "{text}"
        );
        assert!(text.contains("X-Forwarded-Port: 80\r\n"), "{text}");
    }

    #[test]
    fn forwarded_request_head() {
        let text = forwarded_from(b"GET /a?b HTTP/1.1\r\nHost: shop.test:8080\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: https\r\nAccept: */*\r\n\r\n", "192.0.2.7:5555", 8080);
        assert!(
            text.starts_with("GET /a?b HTTP/1.1\r\nHost: shop.test:8080\r\n"),
            "{text}"
        );
        for gone in ["Connection", "X-Secret", "Keep-Alive", "TE:", "https"] {
            assert!(!text.contains(gone), "{gone} in {text}");
        }
        assert!(
            text.contains("X-Forwarded-For: 10.0.0.1, 192.0.2.7\r\n"),
            "{text}"
        );
        assert!(text.contains("Forwarded: for=192.0.2.7;host=\"shop.test:8080\";proto=http\r\n"));
        assert!(text.contains("X-Forwarded-Proto: http\r\nX-Forwarded-Port: 8080\r\n"));
        assert!(text.contains("Accept: */*\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
    }

    #[test]
    fn kept_fields_go_out_as_they_came_in_order_around_dropped_ones() {
        let text = forwarded(
            b"POST / HTTP/1.1\r\nHost: a\r\nX-A:1\r\nConnection: x-b\r\nX-B: 2\r\nX-C: \t3 \r\nContent-Length: 5\r\nX-D: 4\r\nContent-Length: 5\r\nTE: x\r\nX-E: 5 \r\n\r\n",
        );
        assert!(
            text.starts_with(
                "POST / HTTP/1.1\r\nHost: a\r\nX-A:1\r\nX-C: \t3 \r\nContent-Length: 5\r\nX-D: 4\r\nX-E: 5\r\nX-Forwarded-For: "
            ),
            "{text:?}"
        );
        // Empty values, with and without whitespace, at the start, middle and end of a run.
        let text =
            forwarded(b"GET / HTTP/1.1\r\nX-A:\r\nHost: a\r\nX-B:   \r\nX-C: 3\r\nX-D:\r\n\r\n");
        assert!(
            text.starts_with("GET / HTTP/1.1\r\nX-A:\r\nHost: a\r\nX-B:   \r\nX-C: 3\r\nX-D:\r\nX-Forwarded-For: "),
            "{text:?}"
        );
    }

    #[test]
    fn via_names_us_with_the_received_version_after_earlier_proxies() {
        let text = forwarded(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n");
        assert!(text.contains("Via: 1.1 weir\r\n"), "{text}");
        let text = forwarded(b"GET / HTTP/1.0\r\nHost: a.test\r\n\r\n");
        assert!(text.contains("Via: 1.0 weir\r\n"), "{text}");
        // Two Via fields are one list (RFC 9110 5.3): ours goes last, after both.
        let text = forwarded(
            b"GET / HTTP/1.1\r\nVia: 1.1 edge\r\nHost: a.test\r\nVia: HTTP/2 cdn (x)\r\n\r\n",
        );
        assert!(
            text.contains("Via: 1.1 edge, HTTP/2 cdn (x), 1.1 weir\r\n"),
            "{text}"
        );
        assert_eq!(text.matches("Via:").count(), 1, "{text}");
    }

    fn forwarded(raw: &[u8]) -> String {
        forwarded_from(raw, "192.0.2.7:5555", 80)
    }

    /// The head written for `raw` received from `peer` on a listener port `port`.
    fn forwarded_from(raw: &[u8], peer: &str, port: u16) -> String {
        let mut headers = header_slots();
        let head = parse_request(raw, &mut headers).unwrap().unwrap();
        let mut pool = BufferPool::new(4096, 1);
        let mut out = pool.get().unwrap();
        let client = ClientInfo {
            peer: peer.parse().unwrap(),
            proto: "http",
            port,
        };
        write_request_head(&mut out, &head, client).unwrap();
        String::from_utf8(out.pending().to_vec()).unwrap()
    }

    #[test]
    fn odd_spellings_of_chunked_go_out_as_one_plain_field() {
        let out = forwarded(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , CHUNKED\r\nAccept: */*\r\n\r\n",
        );
        assert_eq!(out.matches("Transfer-Encoding").count(), 1, "{out}");
        assert!(
            out.contains("Transfer-Encoding: chunked\r\nAccept: */*\r\n"),
            "{out}"
        );
        let plain = forwarded(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(
            plain.contains("\r\nTransfer-Encoding: chunked\r\n"),
            "{plain}"
        );
    }

    #[test]
    fn underscore_twins_of_our_fields_are_dropped_and_others_kept() {
        let out = forwarded(
            b"GET / HTTP/1.1\r\nHost: a\r\nX_Forwarded_Proto: https\r\nx-forwarded_for: 6.6.6.6\r\n\
              X_FORWARDED_PORT: 1\r\nX_Custom_Field: kept\r\nX_Forwarded_Host: kept\r\n\r\n",
        );
        let lower = out.to_ascii_lowercase();
        assert!(!lower.contains("https"), "{out}");
        assert!(!lower.contains("6.6.6.6"), "{out}");
        assert!(!lower.contains("x_forwarded_port"), "{out}");
        assert!(out.contains("X_Custom_Field: kept\r\n"), "{out}");
        assert!(out.contains("X_Forwarded_Host: kept\r\n"), "{out}");
        assert!(out.contains("X-Forwarded-Proto: http\r\n"), "{out}");
    }

    #[test]
    fn trailer_announcements_are_end_to_end() {
        let out = forwarded(
            b"POST / HTTP/1.1\r\nHost: a\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        assert!(out.contains("Trailer: X-Sum\r\n"), "{out}");
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
    fn bodiless_answers_go_out_without_length_or_coding() {
        for raw in [
            &b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n"[..],
            b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\nX-A: 1\r\n\r\n",
            b"HTTP/1.1 103 Early Hints\r\nContent-Length: 5\r\nX-A: 1\r\n\r\n",
        ] {
            let keep = ClientConnection::KeepAlive { http10: false };
            let text = forwarded_response(raw, keep).to_ascii_lowercase();
            assert!(!text.contains("content-length"), "{text}");
            assert!(!text.contains("transfer-encoding"), "{text}");
            assert!(text.contains("x-a: 1\r\n"), "{text}");
        }
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
    fn http2_settings_never_goes_out_even_unlisted() {
        let out = forwarded(
            b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n",
        );
        assert!(
            !out.to_ascii_lowercase().contains("http2-settings"),
            "{out}"
        );
    }

    #[test]
    fn an_h2c_offer_goes_out_as_a_plain_request() {
        let out = forwarded(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n\
              Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\nAccept: */*\r\n\r\n",
        );
        let lower = out.to_ascii_lowercase();
        for gone in ["upgrade", "http2-settings", "connection"] {
            assert!(!lower.contains(gone), "{gone} forwarded:\n{out}");
        }
        assert!(out.contains("Accept: */*\r\n"), "{out}");
    }

    /// The `Date` field the response tests hand the writer.
    const DATE: &[u8] = b"Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n";

    /// The head written for the response `raw` sent on with `connection`.
    fn forwarded_response(raw: &[u8], connection: ClientConnection) -> String {
        let mut headers = header_slots();
        let head = parse_response(raw, &mut headers, false).unwrap().unwrap();
        let mut pool = BufferPool::new(4096, 1);
        let mut out = pool.get().unwrap();
        write_response_head(&mut out, &head, connection, DATE).unwrap();
        String::from_utf8(out.pending().to_vec()).unwrap()
    }

    #[test]
    fn absolute_form_goes_out_in_origin_form_with_its_host() {
        let text = forwarded(b"GET HTTP://a.test:81/p?q HTTP/1.1\r\nHost: evil.test\r\n\r\n");
        assert!(
            text.starts_with("GET /p?q HTTP/1.1\r\nHost: a.test:81\r\n"),
            "{text}"
        );
        assert!(!text.contains("evil.test"), "{text}");
        let text = forwarded(b"GET http://a.test HTTP/1.0\r\n\r\n");
        assert!(
            text.starts_with("GET / HTTP/1.0\r\nHost: a.test\r\n"),
            "{text}"
        );
        let text = forwarded(b"GET http://a.test?q=1 HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(
            text.starts_with("GET /?q=1 HTTP/1.1\r\nHost: a.test\r\n"),
            "{text}"
        );
    }

    #[test]
    fn a_fragment_in_the_target_is_refused() {
        assert!(rejected(b"GET /admin#/public HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(rejected(b"GET http://a.test#x HTTP/1.1\r\nHost: a\r\n\r\n"));
    }

    #[test]
    fn content_length_lists_go_out_as_one_value() {
        let text = forwarded(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\nX: y\r\nContent-Length: 5\r\n\r\n",
        );
        assert!(
            text.starts_with("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nX: y\r\n"),
            "{text}"
        );
        assert_eq!(text.matches("Content-Length").count(), 1, "{text}");
        // A zero length is still sent: some origins want it on a POST.
        let text = forwarded(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
        assert!(text.contains("Content-Length: 0\r\n"), "{text}");
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
    fn http10_requests_go_out_as_http10_with_keep_alive() {
        let text = forwarded_from(
            b"GET / HTTP/1.0\r\nHost: a.test\r\n\r\n",
            "192.0.2.7:5555",
            80,
        );
        assert!(text.starts_with("GET / HTTP/1.0\r\n"), "{text}");
        assert!(text.ends_with("Connection: keep-alive\r\n\r\n"), "{text}");
    }

    #[test]
    fn forwarded_response_head() {
        let raw =
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nKeep-Alive: 1\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(
            forwarded_response(raw, ClientConnection::KeepAlive { http10: true }),
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             Connection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn a_response_keeps_its_own_date_and_interim_ones_get_none() {
        for (raw, expected) in [
            (
                &b"HTTP/1.1 200 OK\r\ndate: Mon, 07 Nov 1994 00:00:00 GMT\r\nContent-Length: 0\r\n\r\n"[..],
                &b"HTTP/1.1 200 OK\r\ndate: Mon, 07 Nov 1994 00:00:00 GMT\r\nContent-Length: 0\r\n\r\n"[..],
            ),
            (
                b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
                b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
            ),
        ] {
            let keep = ClientConnection::KeepAlive { http10: false };
            assert_eq!(
                forwarded_response(raw, keep),
                String::from_utf8_lossy(expected)
            );
        }
    }
}
