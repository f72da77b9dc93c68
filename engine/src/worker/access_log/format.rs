//! An access [`Record`] as one line of text or JSON, appended to a reused buffer.
//!
//! Nothing here allocates once the buffer has grown to its working size: numbers go through
//! `itoa`, IPv4 addresses are written digit by digit, the date is formatted once per second
//! ([`Clock`]), and no `format!` is used. Bytes that came from the client (host, method, path)
//! are escaped, never trusted: in JSON, control characters, `"` and `\` are escaped and a byte
//! that is not part of valid UTF-8 becomes `\u00XX` (so the line stays valid UTF-8 JSON, and
//! the byte's value is kept); in text, anything but a printable ASCII character other than
//! `"` and `\` becomes `\xHH`, so a field never holds a space or a line break.

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::access_log_config::LogFormat;

/// One finished request (or TCP/WebSocket session), as the line shows it. Every field is
/// borrowed or `Copy`: it is filled where the exchange finishes and formatted at once.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub client: SocketAddr,
    pub listener: SocketAddr,
    /// `None` for TCP sessions and for requests whose head could not be read.
    pub host: Option<&'a [u8]>,
    pub method: Option<&'a [u8]>,
    pub path: Option<&'a [u8]>,
    /// The status sent to the client; `None` for a TCP session.
    pub status: Option<u16>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// `None` when the proxy answered without a route (404, 400, ...).
    pub cluster: Option<&'a str>,
    /// `None` when no backend connection was had.
    pub backend: Option<&'a str>,
    pub duration: Duration,
    /// Until a backend connection was ready (0 for a pooled one).
    pub connect: Option<Duration>,
    /// Until the backend's first byte.
    pub backend_time: Option<Duration>,
    pub request_id: u64,
}

/// The wall clock's current second as `YYYY-MM-DDTHH:MM:SS`, formatted when the second changes.
#[derive(Debug, Clone)]
pub struct Clock {
    second: u64,
    millis: u32,
    text: [u8; 19],
}

impl Clock {
    pub fn new(now: SystemTime) -> Clock {
        let mut clock = Clock {
            second: u64::MAX,
            millis: 0,
            text: [b'0'; 19],
        };
        clock.update(now);
        clock
    }

    /// Brings the clock to `now` (once per loop turn).
    pub fn update(&mut self, now: SystemTime) {
        let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        self.millis = since.subsec_millis();
        let second = since.as_secs();
        if second == self.second {
            return;
        }
        self.second = second;
        let days = i64::try_from(second / 86_400).unwrap_or(0);
        let of_day = second % 86_400;
        let (y, m, d) = civil_from_days(days);
        let mut at = &mut self.text[..];
        // Cannot fail: 19 bytes exactly for years 0..=9999.
        let _ = write!(
            at,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
            of_day / 3600,
            of_day / 60 % 60,
            of_day % 60
        );
    }

    /// `2026-12-06T22:58:58.123Z`.
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.text);
        out.push(b'.');
        push_padded3(out, self.millis);
        out.push(b'Z');
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Room for a typical line with short host and path.
const LINE_ROOM: usize = 512;

/// Appends `record` as one line (ending in `\n`) in `format`.
pub fn write_line(out: &mut Vec<u8>, format: LogFormat, clock: &Clock, record: &Record<'_>) {
    // One growth check for the whole line in the common case, not one per piece.
    out.reserve(LINE_ROOM);
    match format {
        LogFormat::Json => write_json(out, clock, record),
        LogFormat::Text => write_text(out, clock, record),
    }
}

fn write_json(out: &mut Vec<u8>, clock: &Clock, r: &Record<'_>) {
    out.extend_from_slice(b"{\"time\":\"");
    clock.write(out);
    out.extend_from_slice(b"\",\"client\":\"");
    push_addr(out, r.client);
    out.extend_from_slice(b"\",\"listener\":\"");
    push_addr(out, r.listener);
    out.extend_from_slice(b"\",\"host\":");
    json_string(out, r.host);
    out.extend_from_slice(b",\"method\":");
    json_string(out, r.method);
    out.extend_from_slice(b",\"path\":");
    json_string(out, r.path);
    out.extend_from_slice(b",\"status\":");
    match r.status {
        Some(code) => push_int(out, code),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"bytes_in\":");
    push_int(out, r.bytes_in);
    out.extend_from_slice(b",\"bytes_out\":");
    push_int(out, r.bytes_out);
    out.extend_from_slice(b",\"cluster\":");
    json_string(out, r.cluster.map(str::as_bytes));
    out.extend_from_slice(b",\"backend\":");
    json_string(out, r.backend.map(str::as_bytes));
    out.extend_from_slice(b",\"duration_ms\":");
    push_millis(out, r.duration);
    out.extend_from_slice(b",\"connect_ms\":");
    match r.connect {
        Some(d) => push_millis(out, d),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"backend_ms\":");
    match r.backend_time {
        Some(d) => push_millis(out, d),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"request_id\":\"");
    push_hex(out, r.request_id);
    out.extend_from_slice(b"\"}\n");
}

fn write_text(out: &mut Vec<u8>, clock: &Clock, r: &Record<'_>) {
    out.extend_from_slice(b"time=");
    clock.write(out);
    out.extend_from_slice(b" client=");
    push_addr(out, r.client);
    out.extend_from_slice(b" listener=");
    push_addr(out, r.listener);
    out.extend_from_slice(b" host=");
    text_value(out, r.host);
    out.extend_from_slice(b" method=");
    text_value(out, r.method);
    out.extend_from_slice(b" path=");
    text_value(out, r.path);
    out.extend_from_slice(b" status=");
    match r.status {
        Some(code) => push_int(out, code),
        None => out.push(b'-'),
    }
    out.extend_from_slice(b" bytes_in=");
    push_int(out, r.bytes_in);
    out.extend_from_slice(b" bytes_out=");
    push_int(out, r.bytes_out);
    out.extend_from_slice(b" cluster=");
    text_value(out, r.cluster.map(str::as_bytes));
    out.extend_from_slice(b" backend=");
    text_value(out, r.backend.map(str::as_bytes));
    out.extend_from_slice(b" duration_ms=");
    push_millis(out, r.duration);
    out.extend_from_slice(b" connect_ms=");
    match r.connect {
        Some(d) => push_millis(out, d),
        None => out.push(b'-'),
    }
    out.extend_from_slice(b" backend_ms=");
    match r.backend_time {
        Some(d) => push_millis(out, d),
        None => out.push(b'-'),
    }
    out.extend_from_slice(b" request_id=");
    push_hex(out, r.request_id);
    out.push(b'\n');
}

fn push_int(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Milliseconds with three decimals (microsecond resolution): `12.345`.
fn push_millis(out: &mut Vec<u8>, d: Duration) {
    // In u64: u128 division costs a hundred instructions, and 2^64 µs is 584,000 years.
    let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    push_int(out, micros / 1000);
    out.push(b'.');
    push_padded3(out, (micros % 1000) as u32);
}

fn push_padded3(out: &mut Vec<u8>, n: u32) {
    out.extend_from_slice(&[
        b'0' + (n / 100 % 10) as u8,
        b'0' + (n / 10 % 10) as u8,
        b'0' + (n % 10) as u8,
    ]);
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Sixteen lowercase hex digits.
fn push_hex(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 16];
    for (i, d) in digits.iter_mut().enumerate() {
        *d = HEX[((n >> (60 - 4 * i)) & 0xf) as usize];
    }
    out.extend_from_slice(&digits);
}

/// `a.b.c.d:port` without the formatting machinery; IPv6 through it (`[::1]:port`).
fn push_addr(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(v4) => {
            // Built on the stack, appended once: `255.255.255.255:65535` is 21 bytes.
            let mut text = [0u8; 21];
            let mut len = 0;
            for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    text[len] = b'.';
                    len += 1;
                }
                len += put_u8(&mut text[len..], octet);
            }
            text[len] = b':';
            len += 1;
            let mut port = itoa::Buffer::new();
            let port = port.format(v4.port()).as_bytes();
            text[len..len + port.len()].copy_from_slice(port);
            len += port.len();
            out.extend_from_slice(&text[..len]);
        }
        SocketAddr::V6(v6) => {
            // Writing to a Vec cannot fail.
            let _ = write!(out, "{v6}");
        }
    }
}

/// Writes `n` in decimal at the start of `to` (3 bytes of room); returns its length.
fn put_u8(to: &mut [u8], n: u8) -> usize {
    if n >= 100 {
        to[..3].copy_from_slice(&[b'0' + n / 100, b'0' + n / 10 % 10, b'0' + n % 10]);
        3
    } else if n >= 10 {
        to[..2].copy_from_slice(&[b'0' + n / 10, b'0' + n % 10]);
        2
    } else {
        to[0] = b'0' + n;
        1
    }
}

/// A JSON string, or `null`.
fn json_string(out: &mut Vec<u8>, value: Option<&[u8]>) {
    let Some(bytes) = value else {
        out.extend_from_slice(b"null");
        return;
    };
    out.push(b'"');
    // The common case, printable ASCII with nothing to escape, is one check a byte and one copy.
    if bytes
        .iter()
        .all(|&b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    for chunk in bytes.utf8_chunks() {
        let valid = chunk.valid().as_bytes();
        let mut start = 0;
        for (i, &b) in valid.iter().enumerate() {
            let escape: &[u8] = match b {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                0..=0x1f | 0x7f => b"",
                _ => continue,
            };
            out.extend_from_slice(&valid[start..i]);
            if escape.is_empty() {
                push_u00(out, b);
            } else {
                out.extend_from_slice(escape);
            }
            start = i + 1;
        }
        out.extend_from_slice(&valid[start..]);
        for &b in chunk.invalid() {
            push_u00(out, b);
        }
    }
    out.push(b'"');
}

fn push_u00(out: &mut Vec<u8>, b: u8) {
    out.extend_from_slice(b"\\u00");
    out.push(HEX[usize::from(b >> 4)]);
    out.push(HEX[usize::from(b & 0xf)]);
}

/// A text field's value: `-` when absent or empty, `\xHH` for anything but printable ASCII
/// other than `"` and `\`.
fn text_value(out: &mut Vec<u8>, value: Option<&[u8]>) {
    let bytes = match value {
        Some(b) if !b.is_empty() => b,
        _ => {
            out.push(b'-');
            return;
        }
    };
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\' {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(b"\\x");
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0xf)]);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn record<'a>(host: &'a [u8], method: &'a [u8], path: &'a [u8]) -> Record<'a> {
        Record {
            client: "127.0.0.1:40000".parse().unwrap(),
            listener: "[::1]:8080".parse().unwrap(),
            host: Some(host),
            method: Some(method),
            path: Some(path),
            status: Some(200),
            bytes_in: 78,
            bytes_out: 1234,
            cluster: Some("shop"),
            backend: None,
            duration: Duration::from_micros(12_345),
            connect: Some(Duration::ZERO),
            backend_time: None,
            request_id: 0x00c0_ffee_0000_0001,
        }
    }

    fn clock() -> Clock {
        // 2026-12-06T22:58:58.123Z
        Clock::new(UNIX_EPOCH + Duration::from_millis(1_796_597_938_123))
    }

    #[test]
    fn dates_match_the_calendar() {
        let mut out = Vec::new();
        clock().write(&mut out);
        assert_eq!(out, b"2026-12-06T22:58:58.123Z");
        for (days, date) in [
            (0, (1970, 1, 1)),
            (11_016, (2000, 2, 29)),
            (19_782, (2024, 2, 29)),
            (-1, (1969, 12, 31)),
        ] {
            assert_eq!(civil_from_days(days), date, "{days}");
        }
    }

    #[test]
    fn json_lines_parse_and_keep_hostile_bytes() {
        let hostile: &[u8] = b"a\"b\\c\x01d\x7f\xff\xc3\xa9\ne";
        let mut out = Vec::new();
        write_line(
            &mut out,
            LogFormat::Json,
            &clock(),
            &record(hostile, b"G\"ET", b"/p\tq"),
        );
        assert_eq!(out.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["host"], "a\"b\\c\u{1}d\u{7f}\u{ff}é\ne");
        assert_eq!(v["method"], "G\"ET");
        assert_eq!(v["path"], "/p\tq");
        assert_eq!(v["time"], "2026-12-06T22:58:58.123Z");
        assert_eq!(v["client"], "127.0.0.1:40000");
        assert_eq!(v["listener"], "[::1]:8080");
        assert_eq!(v["status"], 200);
        assert_eq!(v["bytes_out"], 1234);
        assert_eq!(v["cluster"], "shop");
        assert!(v["backend"].is_null());
        assert_eq!(v["duration_ms"], 12.345);
        assert_eq!(v["connect_ms"], 0.0);
        assert!(v["backend_ms"].is_null());
        assert_eq!(v["request_id"], "00c0ffee00000001");
    }

    #[test]
    fn addresses_print_as_std_prints_them() {
        for text in [
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "10.20.3.100:8080",
            "[::1]:443",
        ] {
            let mut out = Vec::new();
            push_addr(&mut out, text.parse().unwrap());
            assert_eq!(out, text.as_bytes());
        }
    }

    #[test]
    fn text_lines_have_one_token_per_field() {
        let mut out = Vec::new();
        write_line(
            &mut out,
            LogFormat::Text,
            &clock(),
            &record(b"evil host\n", b"GET", b"/"),
        );
        let line = std::str::from_utf8(&out).unwrap();
        assert_eq!(line.matches('\n').count(), 1, "{line}");
        assert!(line.contains(" host=evil\\x20host\\x0a "), "{line}");
        assert!(line.contains(" status=200 "), "{line}");
        assert!(line.contains(" backend=- "), "{line}");
        assert!(line.contains(" duration_ms=12.345 "), "{line}");
        assert_eq!(line.split(' ').count(), 15, "{line}");
    }
}
