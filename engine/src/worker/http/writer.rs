//! Writing the heads a proxy forwards, from heads [`super::parser`] parsed and checked: the
//! request line in origin form, hop-by-hop fields out, one canonical framing field,
//! `X-Forwarded-*`, `Forwarded` and `Via` added to what the client sent; on the way back our own
//! `Connection` field, a `Date` when the backend sent none, and the route's
//! `Strict-Transport-Security` in place of the backend's. Sans-io: bytes out into a buffer.
//!
//! Fields passed on unchanged are copied from the received head in runs (one copy per run of
//! adjacent kept fields), which is most of a head's bytes.

use std::fmt::{self, Write as _};
use std::net::{IpAddr, SocketAddr};

use super::parser::{is, list, HeadError, RequestHead, ResponseHead};
use crate::worker::buffer::Buf;
use crate::worker::front::Underscores;
use crate::worker::request_id::RequestId;

/// Whether some `Connection` token names a field of this head, which is then hop-by-hop too
/// (RFC 9110 7.6.1). Checked once per head, so the common head pays nothing per field for it.
/// `keep-alive` and `upgrade` name fields that are dropped or kept on their own terms anyway;
/// `close` is an option, but a field literally named `Close` listed with it is still named.
fn connection_names_fields(headers: &[httparse::Header<'_>]) -> bool {
    headers
        .iter()
        .filter(|h| is(h.name.as_bytes(), b"connection"))
        .flat_map(|h| list(h.value))
        .any(|token| {
            if is(token, b"close") {
                headers.iter().any(|h| is(h.name.as_bytes(), b"close"))
            } else {
                !is(token, b"keep-alive") && !is(token, b"upgrade")
            }
        })
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

/// Who is asking, for the `X-Forwarded-*` and `Forwarded` fields, what their listener does
/// with underscored field names, and the field (and value) it gives the request's id in.
#[derive(Debug, Clone, Copy)]
pub struct ClientInfo<'a> {
    pub peer: SocketAddr,
    pub proto: &'static str,
    pub port: u16,
    pub underscores: Underscores,
    pub request_id: Option<(&'a str, RequestId)>,
}

/// Writes the head forwarded to a backend: the request line, the fields minus the hop-by-hop
/// ones, `X-Forwarded-For` and `Forwarded` appended to what the client sent,
/// `X-Forwarded-Proto` and `X-Forwarded-Port` set by us, the listener's request id field
/// (replacing the client's: a backend must be able to trust it names this request), and
/// `Connection: upgrade` on upgrades.
///
/// An HTTP/1.0 client's request goes out as HTTP/1.0 (with `Connection: keep-alive`, so the
/// backend connection can still be pooled): the answer then never uses chunked framing, which
/// that client could not read. Everything else goes out as HTTP/1.1.
pub fn write_request_head(
    out: &mut Buf,
    req: &RequestHead<'_, '_>,
    client: ClientInfo<'_>,
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
            || dropped_for_underscores(name.as_bytes(), client.underscores)
            || client
                .request_id
                .is_some_and(|(ours, _)| same_field(name.as_bytes(), ours.as_bytes()))
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
    if let Some((name, id)) = client.request_id {
        w.bytes(name.as_bytes());
        w.bytes(b": ");
        w.bytes(&id.hex());
        w.bytes(b"\r\n");
    }
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

/// Fields that frame, route or forward a request, or handle its connection. CGI-style servers
/// (WSGI, PHP, Rack) read `-` and `_` alike, so a name spelling one of them with `_`
/// (`Content_Length`, `X_Forwarded_For`) would reach the application next to the real one,
/// and could win: such names are dropped whatever the listener says about underscores.
const NEVER_WITH_UNDERSCORES: [&[u8]; 9] = [
    b"content-length",
    b"transfer-encoding",
    b"keep-alive",
    b"proxy-connection",
    b"x-forwarded-for",
    b"x-forwarded-host",
    b"x-forwarded-port",
    b"x-forwarded-proto",
    b"x-real-ip",
];

/// Whether a request field is dropped for the `_` in its name: any such name by default, as
/// nginx drops them (`underscores_in_headers off`); with the listener's
/// `allow_underscores_in_headers`, only the names of [`NEVER_WITH_UNDERSCORES`] spelt with `_`
/// for `-`.
fn dropped_for_underscores(name: &[u8], underscores: Underscores) -> bool {
    if !name.contains(&b'_') {
        return false;
    }
    match underscores {
        Underscores::Drop => true,
        Underscores::Keep => NEVER_WITH_UNDERSCORES
            .iter()
            .any(|field| same_field(name, field)),
    }
}

/// Whether two field names name the same field for a backend: equal but for ASCII case,
/// with `_` and `-` alike (as CGI-style servers read them).
fn same_field(a: &[u8], b: &[u8]) -> bool {
    let fold = |c: u8| {
        if c == b'_' {
            b'-'
        } else {
            c.to_ascii_lowercase()
        }
    };
    a.len() == b.len() && a.iter().zip(b).all(|(&x, &y)| fold(x) == fold(y))
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

/// The fields the proxy adds to a response it forwards.
#[derive(Debug, Clone, Copy)]
pub struct Added<'a> {
    /// The whole `Date` field line, for a final response that came without one.
    pub date: &'a [u8],
    /// The route's `Strict-Transport-Security` value (its frontend's `hsts`).
    pub hsts: Option<&'a str>,
}

impl Added<'_> {
    /// Only a `Date`: interim heads, and routes without `hsts`.
    pub fn date(date: &[u8]) -> Added<'_> {
        Added { date, hsts: None }
    }
}

/// Writes the head forwarded to a client: HTTP/1.1 status line, the fields minus the
/// hop-by-hop ones, and our own `Connection` field. A final response that came without a
/// `Date` gets `added.date`, as RFC 9110 6.6.1 asks of a recipient with a clock that forwards
/// it. With `added.hsts`, a final response carries that `Strict-Transport-Security` value and
/// none of the backend's: the operator's setting for the route wins, and one field only,
/// since a browser heeds the first (RFC 6797 8.1). Interim heads get neither.
pub fn write_response_head(
    out: &mut Buf,
    res: &ResponseHead<'_, '_>,
    connection: ClientConnection,
    added: Added<'_>,
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
    let hsts = added.hsts.filter(|_| res.code >= 200);
    for h in res.headers {
        if is(h.name.as_bytes(), b"content-length") {
            write_content_length(&mut w, h, res.content_length, &mut length_written);
        } else if is(h.name.as_bytes(), b"transfer-encoding") {
            write_transfer_encoding(&mut w, h, &mut coding_written);
        } else if hsts.is_some() && is(h.name.as_bytes(), b"strict-transport-security") {
            // Replaced by the route's own, below.
        } else if !is_hop_by_hop(h.name, res.headers, named, upgrading) {
            dated |= is(h.name.as_bytes(), b"date");
            w.keep(h);
        }
    }
    if !dated {
        w.bytes(added.date);
    }
    if let Some(value) = hsts {
        w.bytes(b"Strict-Transport-Security: ");
        w.bytes(value.as_bytes());
        w.bytes(b"\r\n");
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
    use crate::worker::http::parser::{header_slots, parse_request, parse_response};

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

    /// The head written for `raw` received from `peer` on a listener port `port` that keeps
    /// underscored names (`allow_underscores_in_headers`).
    fn forwarded_from(raw: &[u8], peer: &str, port: u16) -> String {
        forwarded_as(raw, peer, port, Underscores::Keep)
    }

    /// The head written for `raw` by a listener that drops underscored names (the default).
    fn forwarded_by_default(raw: &[u8]) -> String {
        forwarded_as(raw, "192.0.2.7:5555", 80, Underscores::Drop)
    }

    fn forwarded_as(raw: &[u8], peer: &str, port: u16, underscores: Underscores) -> String {
        let mut headers = header_slots();
        let head = parse_request(raw, &mut headers).unwrap().unwrap();
        let mut pool = BufferPool::new(4096, 1);
        let mut out = pool.get().unwrap();
        let client = ClientInfo {
            peer: peer.parse().unwrap(),
            proto: "http",
            port,
            underscores,
            request_id: None,
        };
        write_request_head(&mut out, &head, client).unwrap();
        String::from_utf8(out.pending().to_vec()).unwrap()
    }

    /// The head a listener with `request_id_header: X-Req` writes for `raw` as request `id`.
    fn forwarded_with_id(raw: &[u8], id: u64) -> String {
        let mut headers = header_slots();
        let head = parse_request(raw, &mut headers).unwrap().unwrap();
        let mut pool = BufferPool::new(4096, 1);
        let mut out = pool.get().unwrap();
        let client = ClientInfo {
            peer: "192.0.2.7:5555".parse().unwrap(),
            proto: "http",
            port: 80,
            underscores: Underscores::Keep,
            request_id: Some(("X-Req", RequestId(id))),
        };
        write_request_head(&mut out, &head, client).unwrap();
        String::from_utf8(out.pending().to_vec()).unwrap()
    }

    #[test]
    fn the_request_id_replaces_what_the_client_sent_in_its_field() {
        let out = forwarded_with_id(
            b"GET / HTTP/1.1\r\nx-req: forged\r\nHost: a\r\nX_REQ: twin\r\nX-Reqs: kept\r\n\r\n",
            0x00c0_ffee_0000_002a,
        );
        assert!(out.contains("\r\nX-Req: 00c0ffee0000002a\r\n"), "{out}");
        assert_eq!(
            out.to_ascii_lowercase().matches("x-req:").count(),
            1,
            "{out}"
        );
        assert!(!out.contains("forged") && !out.contains("twin"), "{out}");
        assert!(out.contains("X-Reqs: kept\r\n"), "{out}");
        assert!(out.ends_with("\r\n\r\n"), "{out}");
    }

    #[test]
    fn without_a_request_id_field_the_clients_passes_as_any_other() {
        let out = forwarded(b"GET / HTTP/1.1\r\nHost: a\r\nX-Req: theirs\r\n\r\n");
        assert!(out.contains("X-Req: theirs\r\n"), "{out}");
        assert_eq!(out.matches("X-Req").count(), 1, "{out}");
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
    fn underscored_names_are_dropped_by_default() {
        let out = forwarded_by_default(
            b"POST / HTTP/1.1\r\nHost: a\r\nX_Custom: 1\r\nContent_Length: 5\r\n\
              Transfer_Encoding: chunked\r\nX-Plain: kept\r\n_: 2\r\nContent-Length: 0\r\n\r\n",
        );
        assert!(!out.contains('_'), "{out}");
        assert!(out.contains("X-Plain: kept\r\n"), "{out}");
        assert!(out.contains("Content-Length: 0\r\n"), "{out}");
    }

    #[test]
    fn framing_and_routing_look_alikes_are_dropped_even_where_underscores_are_kept() {
        let out = forwarded(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent_Length: 5\r\nTRANSFER_ENCODING: chunked\r\n\
              x_real_ip: 6.6.6.6\r\nX_Forwarded_Host: evil\r\nKeep_Alive: 1\r\n\
              Proxy_Connection: x\r\nX_Custom: kept\r\nContent-Length: 0\r\n\r\n",
        );
        let lower = out.to_ascii_lowercase();
        for gone in [
            "content_length",
            "transfer_encoding",
            "6.6.6.6",
            "evil",
            "keep_alive",
            "proxy_connection",
        ] {
            assert!(!lower.contains(gone), "{gone}: {out}");
        }
        assert!(out.contains("X_Custom: kept\r\n"), "{out}");
    }

    #[test]
    fn underscore_twins_of_our_fields_are_dropped_and_others_kept() {
        let out = forwarded(
            b"GET / HTTP/1.1\r\nHost: a\r\nX_Forwarded_Proto: https\r\nx-forwarded_for: 6.6.6.6\r\n\
              X_FORWARDED_PORT: 1\r\nX_Custom_Field: kept\r\nX_Request_Id: kept\r\n\r\n",
        );
        let lower = out.to_ascii_lowercase();
        assert!(!lower.contains("https"), "{out}");
        assert!(!lower.contains("6.6.6.6"), "{out}");
        assert!(!lower.contains("x_forwarded_port"), "{out}");
        assert!(out.contains("X_Custom_Field: kept\r\n"), "{out}");
        assert!(out.contains("X_Request_Id: kept\r\n"), "{out}");
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

    #[test]
    fn a_field_named_close_goes_when_connection_lists_close() {
        // RFC 9110 7.6.1: a field named by a Connection option is hop-by-hop, whatever its
        // name; `close` is both an option and the name of the field `Close` here.
        let text = forwarded(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nClose: secret\r\nX-A: 1\r\n\r\n",
        );
        assert!(!text.contains("secret"), "{text}");
        assert!(text.contains("X-A: 1\r\n"), "{text}");
        // Listed beside another token, and in a response.
        let text = forwarded(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, CLOSE\r\nclose: secret\r\n\r\n",
        );
        assert!(!text.contains("secret"), "{text}");
        let keep = ClientConnection::KeepAlive { http10: false };
        let text = forwarded_response(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nClose: secret\r\nContent-Length: 0\r\n\r\n",
            keep,
        );
        assert!(!text.contains("secret"), "{text}");
        // A `Close` field nobody lists is end-to-end: it stays.
        let text = forwarded(b"GET / HTTP/1.1\r\nHost: a\r\nClose: kept\r\n\r\n");
        assert!(text.contains("Close: kept\r\n"), "{text}");
        let text = forwarded(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nClose: kept\r\n\r\n",
        );
        assert!(text.contains("Close: kept\r\n"), "{text}");
    }

    /// The `Date` field the response tests hand the writer.
    const DATE: &[u8] = b"Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n";

    /// The head written for the response `raw` sent on with `connection`.
    fn forwarded_response(raw: &[u8], connection: ClientConnection) -> String {
        let mut headers = header_slots();
        let head = parse_response(raw, &mut headers, false).unwrap().unwrap();
        let mut pool = BufferPool::new(4096, 1);
        let mut out = pool.get().unwrap();
        write_response_head(&mut out, &head, connection, Added::date(DATE)).unwrap();
        String::from_utf8(out.pending().to_vec()).unwrap()
    }

    /// The head written for the response `raw` on a route with `hsts`.
    fn forwarded_with_hsts(raw: &[u8], hsts: &str) -> String {
        let mut headers = header_slots();
        let head = parse_response(raw, &mut headers, false).unwrap().unwrap();
        let mut pool = BufferPool::new(4096, 1);
        let mut out = pool.get().unwrap();
        let added = Added {
            date: DATE,
            hsts: Some(hsts),
        };
        let keep = ClientConnection::KeepAlive { http10: false };
        write_response_head(&mut out, &head, keep, added).unwrap();
        String::from_utf8(out.pending().to_vec()).unwrap()
    }

    #[test]
    fn a_route_with_hsts_puts_its_value_in_place_of_the_backends() {
        assert_eq!(
            forwarded_with_hsts(
                b"HTTP/1.1 200 OK\r\nstrict-transport-security: max-age=1\r\nX: y\r\n\
                  Strict-Transport-Security: preload\r\nContent-Length: 0\r\n\r\n",
                "max-age=31536000; includeSubDomains"
            ),
            "HTTP/1.1 200 OK\r\nX: y\r\nContent-Length: 0\r\n\
             Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             Strict-Transport-Security: max-age=31536000; includeSubDomains\r\n\r\n"
        );
        // Any final answer gets it, errors too; interim heads do not.
        let text = forwarded_with_hsts(b"HTTP/1.1 500 Oops\r\n\r\n", "max-age=5");
        assert!(
            text.ends_with("Strict-Transport-Security: max-age=5\r\n\r\n"),
            "{text}"
        );
        let text = forwarded_with_hsts(b"HTTP/1.1 100 Continue\r\n\r\n", "max-age=5");
        assert_eq!(text, "HTTP/1.1 100 Continue\r\n\r\n");
    }

    #[test]
    fn a_route_without_hsts_passes_the_backends_on_and_adds_none() {
        let keep = ClientConnection::KeepAlive { http10: false };
        let raw = b"HTTP/1.1 200 OK\r\nStrict-Transport-Security: max-age=1\r\n\
                    Content-Length: 0\r\n\r\n";
        let text = forwarded_response(raw, keep);
        assert_eq!(
            text.matches("Strict-Transport-Security: max-age=1\r\n")
                .count(),
            1,
            "{text}"
        );
        let text = forwarded_response(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", keep);
        assert!(!text.contains("Strict-Transport"), "{text}");
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

    #[test]
    fn a_field_lies_in_the_head_only_when_all_of_it_does_and_it_is_not_empty() {
        let buf = "X-A: 1\r\nX-B: 2\r\n";
        let raw = &buf.as_bytes()[..8];
        let inside = httparse::Header {
            name: &buf[..3],
            value: &buf.as_bytes()[5..6],
        };
        assert_eq!(span_in(raw, &inside), Some((0, 6)));
        // After the head in the same memory: a copy from it would run past its end.
        let beyond = httparse::Header {
            name: &buf[8..11],
            value: &buf.as_bytes()[13..14],
        };
        assert_eq!(span_in(raw, &beyond), None);
        let empty = httparse::Header {
            name: &buf[2..2],
            value: &buf.as_bytes()[2..2],
        };
        assert_eq!(span_in(raw, &empty), None);
    }

    #[test]
    fn forwarded_elements_from_earlier_proxies_come_before_ours() {
        let text = forwarded(
            b"GET / HTTP/1.1\r\nForwarded: for=198.51.100.1\r\nHost: a\r\n\
              Forwarded: for=198.51.100.2;proto=https\r\n\r\n",
        );
        assert!(
            text.contains(
                "Forwarded: for=198.51.100.1, for=198.51.100.2;proto=https, \
                 for=192.0.2.7;host=\"a\";proto=http\r\n"
            ),
            "{text}"
        );
        assert_eq!(text.matches("Forwarded:").count(), 1, "{text}");
    }

    #[test]
    fn near_twins_of_our_fields_are_kept() {
        // An underscore stands only for a dash, and only a dash: other bytes in a dash's
        // place, or an underscore elsewhere, make a field of the client's own.
        let out = forwarded(
            b"GET / HTTP/1.1\r\nHost: a\r\nX.Forwarded_For: 1\r\nX_Forwarded_Fo_: 2\r\n\r\n",
        );
        assert!(out.contains("X.Forwarded_For: 1\r\n"), "{out}");
        assert!(out.contains("X_Forwarded_Fo_: 2\r\n"), "{out}");
    }

    #[test]
    fn every_digit_of_the_status_code_goes_out() {
        let keep = ClientConnection::KeepAlive { http10: false };
        for (raw, line) in [
            (
                &b"HTTP/1.1 418 Teapot\r\nContent-Length: 0\r\n\r\n"[..],
                "HTTP/1.1 418 Teapot\r\n",
            ),
            (
                b"HTTP/1.1 599 Edge\r\nContent-Length: 0\r\n\r\n",
                "HTTP/1.1 599 Edge\r\n",
            ),
            (
                b"HTTP/1.1 226 Used\r\nContent-Length: 0\r\n\r\n",
                "HTTP/1.1 226 Used\r\n",
            ),
        ] {
            let text = forwarded_response(raw, keep);
            assert!(text.starts_with(line), "{text}");
        }
    }

    #[test]
    fn upgrade_passes_only_on_an_upgrade_exchange() {
        let text = forwarded_response(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
            ClientConnection::Upgrade,
        );
        assert_eq!(
            text,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"
        );
        let keep = ClientConnection::KeepAlive { http10: false };
        let text = forwarded_response(
            b"HTTP/1.1 200 OK\r\nUpgrade: websocket\r\nContent-Length: 0\r\n\r\n",
            keep,
        );
        assert!(!text.contains("Upgrade"), "{text}");
    }
}
