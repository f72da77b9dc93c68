//! An access line as text or JSON, appended to a reused buffer.
//!
//! A line is written in three pieces, each when its data is at hand, so a request pays only
//! for what changes with it: [`write_peers`] (client and listener addresses) once per
//! connection, [`write_head`] (host, method, path) when a request head is read, and
//! [`write_finished`] when the request ends: the time, then the first two pieces copied in one
//! go, then the status, sizes, names and timings (a [`Tail`]).
//! Both formats walk the same field list; a [`Syntax`] says what one puts between the values,
//! how it spells an absent value and how it writes a string.
//!
//! Nothing here allocates once the buffer has grown to its working size: numbers go through
//! `itoa`, IPv4 addresses are written digit by digit, the date is formatted once per second
//! and the milliseconds once per loop turn ([`Clock`]), and no `format!` is used. Bytes that
//! came from the client (host, method, path) are escaped, never trusted: in JSON, control
//! characters, `"` and `\` are escaped and a byte that is not part of valid UTF-8 becomes
//! `\u00XX` (so the line stays valid UTF-8 JSON, and the byte's value is kept); in text,
//! anything but a printable ASCII character other than `"` and `\` becomes `\xHH`, so a field
//! never holds a space or a line break.

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::access_log_config::LogFormat;
use crate::worker::request_id::RequestId;

/// One finished request (or TCP/WebSocket session), as the line shows it, whole: what the
/// tests write in one go to check the pieces against. Every field is borrowed or `Copy`.
#[cfg(test)]
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub client: SocketAddr,
    pub listener: SocketAddr,
    /// `None` for TCP sessions and for requests whose head could not be read.
    pub host: Option<&'a [u8]>,
    pub method: Option<&'a [u8]>,
    pub path: Option<&'a [u8]>,
    pub tail: Tail<'a>,
}

/// The fields known only when a request ends, which [`write_finished`] writes after what
/// [`write_peers`] and [`write_head`] wrote earlier.
#[derive(Debug, Clone, Copy)]
pub struct Tail<'a> {
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

/// The wall clock of the current loop turn as `YYYY-MM-DDTHH:MM:SS.mmmZ`: the date and time
/// formatted when the second changes, the milliseconds on every update.
#[derive(Debug, Clone)]
pub struct Clock {
    second: u64,
    text: [u8; 24],
}

impl Clock {
    pub fn new(now: SystemTime) -> Clock {
        let mut clock = Clock {
            second: u64::MAX,
            text: *b"0000-00-00T00:00:00.000Z",
        };
        clock.update(now);
        clock
    }

    /// Brings the clock to `now` (once per loop turn).
    pub fn update(&mut self, now: SystemTime) {
        let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        self.text[20..23].copy_from_slice(&padded3(since.subsec_millis()));
        let second = since.as_secs();
        if second == self.second {
            return;
        }
        self.second = second;
        let days = i64::try_from(second / 86_400).unwrap_or(0);
        let of_day = second % 86_400;
        let (y, m, d) = civil_from_days(days);
        let mut at = &mut self.text[..19];
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

/// The fields of a line, in the order both formats write them.
#[derive(Clone, Copy)]
enum Field {
    Time,
    Client,
    Listener,
    Host,
    Method,
    Path,
    Status,
    BytesIn,
    BytesOut,
    Cluster,
    Backend,
    Duration,
    Connect,
    BackendTime,
    RequestId,
}

const FIELDS: usize = Field::RequestId as usize + 1;

/// How a format spells a line around the values the field walk gives it. Implemented by
/// [`Json`] and [`Text`]; the walk is generic over it, so each format gets its own copy of
/// the walk with these constants folded in, and no branch on the format per field.
trait Syntax {
    /// What goes before each field's value, by [`Field`]. In JSON it also closes the quote
    /// the previous value opened (time, addresses and request id are quoted).
    const BEFORE: [&'static [u8]; FIELDS];
    /// What ends the line.
    const END: &'static [u8];
    /// An absent status or timing.
    const NULL: &'static [u8];
    /// A string value, escaped, or its absent spelling.
    fn string(out: &mut Vec<u8>, value: Option<&[u8]>);
}

/// One JSON object a line.
struct Json;
/// `name=value` pairs separated by spaces.
struct Text;

impl Syntax for Json {
    const BEFORE: [&'static [u8]; FIELDS] = [
        b"{\"time\":\"",
        b"\",\"client\":\"",
        b"\",\"listener\":\"",
        b"\",\"host\":",
        b",\"method\":",
        b",\"path\":",
        b",\"status\":",
        b",\"bytes_in\":",
        b",\"bytes_out\":",
        b",\"cluster\":",
        b",\"backend\":",
        b",\"duration_ms\":",
        b",\"connect_ms\":",
        b",\"backend_ms\":",
        b",\"request_id\":\"",
    ];
    const END: &'static [u8] = b"\"}\n";
    const NULL: &'static [u8] = b"null";

    #[inline]
    fn string(out: &mut Vec<u8>, value: Option<&[u8]>) {
        json_string(out, value);
    }
}

impl Syntax for Text {
    const BEFORE: [&'static [u8]; FIELDS] = [
        b"time=",
        b" client=",
        b" listener=",
        b" host=",
        b" method=",
        b" path=",
        b" status=",
        b" bytes_in=",
        b" bytes_out=",
        b" cluster=",
        b" backend=",
        b" duration_ms=",
        b" connect_ms=",
        b" backend_ms=",
        b" request_id=",
    ];
    const END: &'static [u8] = b"\n";
    const NULL: &'static [u8] = b"-";

    #[inline]
    fn string(out: &mut Vec<u8>, value: Option<&[u8]>) {
        text_value(out, value);
    }
}

/// Room for a typical line with short host and path.
const LINE_ROOM: usize = 512;

/// Appends `record` as one line (ending in `\n`) in `format`.
#[cfg(test)]
pub fn write_line(out: &mut Vec<u8>, format: LogFormat, clock: &Clock, record: &Record<'_>) {
    // One growth check for the whole line in the common case, not one per piece.
    out.reserve(LINE_ROOM);
    match format {
        LogFormat::Json => line::<Json>(out, clock, record),
        LogFormat::Text => line::<Text>(out, clock, record),
    }
}

#[cfg(test)]
fn line<S: Syntax>(out: &mut Vec<u8>, clock: &Clock, r: &Record<'_>) {
    field::<S>(out, Field::Time);
    clock.write(out);
    peers::<S>(out, r.client, r.listener);
    head::<S>(out, r.host, r.method, r.path);
    tail::<S>(out, &r.tail);
}

/// Appends the client and listener fields (the line's part that a connection's requests
/// share).
pub fn write_peers(out: &mut Vec<u8>, format: LogFormat, client: SocketAddr, listener: SocketAddr) {
    match format {
        LogFormat::Json => peers::<Json>(out, client, listener),
        LogFormat::Text => peers::<Text>(out, client, listener),
    }
}

/// Appends the host, method and path fields, escaped (all `None`: no request head was read).
pub fn write_head(
    out: &mut Vec<u8>,
    format: LogFormat,
    host: Option<&[u8]>,
    method: Option<&[u8]>,
    path: Option<&[u8]>,
) {
    match format {
        LogFormat::Json => head::<Json>(out, host, method, path),
        LogFormat::Text => head::<Text>(out, host, method, path),
    }
}

/// Appends a whole line: the time, `middle` (what [`write_peers`] then [`write_head`] wrote,
/// in the same `format`) and `tail`.
pub fn write_finished(
    out: &mut Vec<u8>,
    format: LogFormat,
    clock: &Clock,
    middle: &[u8],
    tail: &Tail<'_>,
) {
    out.reserve(LINE_ROOM + middle.len());
    match format {
        LogFormat::Json => finished::<Json>(out, clock, middle, tail),
        LogFormat::Text => finished::<Text>(out, clock, middle, tail),
    }
}

fn finished<S: Syntax>(out: &mut Vec<u8>, clock: &Clock, middle: &[u8], t: &Tail<'_>) {
    field::<S>(out, Field::Time);
    clock.write(out);
    out.extend_from_slice(middle);
    tail::<S>(out, t);
}

#[inline]
fn field<S: Syntax>(out: &mut Vec<u8>, f: Field) {
    out.extend_from_slice(S::BEFORE[f as usize]);
}

fn peers<S: Syntax>(out: &mut Vec<u8>, client: SocketAddr, listener: SocketAddr) {
    field::<S>(out, Field::Client);
    push_addr(out, client);
    field::<S>(out, Field::Listener);
    push_addr(out, listener);
}

fn head<S: Syntax>(
    out: &mut Vec<u8>,
    host: Option<&[u8]>,
    method: Option<&[u8]>,
    path: Option<&[u8]>,
) {
    field::<S>(out, Field::Host);
    S::string(out, host);
    field::<S>(out, Field::Method);
    S::string(out, method);
    field::<S>(out, Field::Path);
    S::string(out, path);
}

fn tail<S: Syntax>(out: &mut Vec<u8>, t: &Tail<'_>) {
    field::<S>(out, Field::Status);
    match t.status {
        Some(code) => push_int(out, code),
        None => out.extend_from_slice(S::NULL),
    }
    field::<S>(out, Field::BytesIn);
    push_int(out, t.bytes_in);
    field::<S>(out, Field::BytesOut);
    push_int(out, t.bytes_out);
    field::<S>(out, Field::Cluster);
    S::string(out, t.cluster.map(str::as_bytes));
    field::<S>(out, Field::Backend);
    S::string(out, t.backend.map(str::as_bytes));
    field::<S>(out, Field::Duration);
    push_millis(out, t.duration);
    field::<S>(out, Field::Connect);
    match t.connect {
        Some(d) => push_millis(out, d),
        None => out.extend_from_slice(S::NULL),
    }
    field::<S>(out, Field::BackendTime);
    match t.backend_time {
        Some(d) => push_millis(out, d),
        None => out.extend_from_slice(S::NULL),
    }
    field::<S>(out, Field::RequestId);
    out.extend_from_slice(&RequestId(t.request_id).hex());
    out.extend_from_slice(S::END);
}

fn push_int(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Milliseconds with three decimals (microsecond resolution): `12.345`.
fn push_millis(out: &mut Vec<u8>, d: Duration) {
    // In u64 (2^64 µs is 584,000 years): no u128 arithmetic.
    let micros = d
        .as_secs()
        .saturating_mul(1_000_000)
        .saturating_add(u64::from(d.subsec_micros()));
    // The point and the fraction (and, under a millisecond, the whole text) are appended
    // with a length known at compile time, which is not a call to memcpy as the line's
    // other small appends are; only the whole milliseconds above one vary in length.
    let fraction = padded3((micros % 1_000) as u32);
    if micros < 1_000 {
        // Under a millisecond: most connect and backend times on a local network.
        out.extend_from_slice(&[b'0', b'.', fraction[0], fraction[1], fraction[2]]);
        return;
    }
    out.extend_from_slice(itoa::Buffer::new().format(micros / 1_000).as_bytes());
    out.extend_from_slice(&[b'.', fraction[0], fraction[1], fraction[2]]);
}

/// `n % 1000` as three digits.
fn padded3(n: u32) -> [u8; 3] {
    [
        b'0' + (n / 100 % 10) as u8,
        b'0' + (n / 10 % 10) as u8,
        b'0' + (n % 10) as u8,
    ]
}

const HEX: &[u8; 16] = b"0123456789abcdef";

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

/// The bytes a format copies as they are: printable ASCII but `"` and `\`, and in JSON the
/// space as well. One table lookup a byte finds whether a value needs escaping at all.
const fn plain(space: bool) -> [bool; 256] {
    let mut table = [false; 256];
    let mut b = 0x21;
    while b < 0x7f {
        table[b] = b != b'"' as usize && b != b'\\' as usize;
        b += 1;
    }
    table[b' ' as usize] = space;
    table
}

const JSON_PLAIN: [bool; 256] = plain(true);
const TEXT_PLAIN: [bool; 256] = plain(false);

/// Whether every byte of `bytes` is plain in the format whose `table` it is (`low`: the
/// smallest plain byte, `' '` for JSON, `'!'` for text). Eight bytes are checked at a time
/// in a `u64` (the "has a byte less than / more than / equal to" word tricks), so a long path
/// costs a few instructions a word rather than a lookup a byte.
#[inline]
fn all_plain(bytes: &[u8], table: &[bool; 256], low: u8) -> bool {
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let Ok(word) = <[u8; 8]>::try_from(word) else {
            return false;
        };
        if !word_plain(u64::from_le_bytes(word), low) {
            return false;
        }
    }
    words.remainder().iter().all(|&b| table[usize::from(b)])
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Whether none of the eight bytes of `w` is below `low`, above `~`, `"` or `\`.
#[inline]
fn word_plain(w: u64, low: u8) -> bool {
    // A byte below `low` (< 0x80) borrows into its high bit; only bytes that are below
    // `low` themselves can make a higher byte borrow, so the test is exact for the word.
    let below = w.wrapping_sub(ONES * u64::from(low)) & !w;
    // A byte above 0x7e reaches the high bit when 1 is added, or has it already.
    let above = w.wrapping_add(ONES) | w;
    let quote = has_zero(w ^ (ONES * u64::from(b'"')));
    let backslash = has_zero(w ^ (ONES * u64::from(b'\\')));
    (below | above | quote | backslash) & HIGHS == 0
}

/// Not 0 when some byte of `v` is 0 (exact for the word as a whole, not per byte).
#[inline]
fn has_zero(v: u64) -> u64 {
    v.wrapping_sub(ONES) & !v & HIGHS
}

/// A JSON string, or `null`. The common case, nothing to escape, is inlined: one lookup a
/// byte and one copy.
#[inline]
fn json_string(out: &mut Vec<u8>, value: Option<&[u8]>) {
    let Some(bytes) = value else {
        out.extend_from_slice(b"null");
        return;
    };
    if all_plain(bytes, &JSON_PLAIN, b' ') {
        out.push(b'"');
        out.extend_from_slice(bytes);
        out.push(b'"');
    } else {
        json_escaped(out, bytes);
    }
}

/// A JSON string of `bytes`, some of which need escaping.
#[cold]
#[inline(never)]
fn json_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
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
/// other than `"` and `\`. The common case, nothing to escape, is inlined.
#[inline]
fn text_value(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        None | Some([]) => out.push(b'-'),
        Some(b) if all_plain(b, &TEXT_PLAIN, b'!') => out.extend_from_slice(b),
        Some(b) => text_escaped(out, b),
    }
}

/// `bytes`, some of which need escaping, as a text value.
#[cold]
#[inline(never)]
fn text_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if TEXT_PLAIN[usize::from(b)] {
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
            tail: Tail {
                status: Some(200),
                bytes_in: 78,
                bytes_out: 1234,
                cluster: Some("shop"),
                backend: None,
                duration: Duration::from_micros(12_345),
                connect: Some(Duration::ZERO),
                backend_time: None,
                request_id: 0x00c0_ffee_0000_0001,
            },
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

    #[test]
    fn milliseconds_have_three_decimals_at_any_size() {
        for (d, text) in [
            (Duration::ZERO, "0.000"),
            (Duration::from_nanos(999), "0.000"),
            (Duration::from_micros(1), "0.001"),
            (Duration::from_micros(999), "0.999"),
            (Duration::from_micros(1_000), "1.000"),
            (Duration::from_micros(12_345), "12.345"),
            (Duration::from_secs(3_600), "3600000.000"),
            (Duration::from_micros(u64::MAX), "18446744073709551.615"),
            (Duration::MAX, "18446744073709551.615"),
        ] {
            let mut out = Vec::new();
            push_millis(&mut out, d);
            assert_eq!(std::str::from_utf8(&out).unwrap(), text, "{d:?}");
        }
    }

    /// A line written in pieces as a request goes (the addresses, its head, then the rest)
    /// is the line written whole.
    #[test]
    fn lines_written_in_pieces_are_the_whole_line() {
        let hostile: &[u8] = b"h\\o\x01st \xff";
        let whole = record(b"shop.test", b"GET", b"/a b?c=\"d\"");
        let headless = Record {
            host: None,
            method: None,
            path: None,
            tail: Tail {
                status: None,
                connect: None,
                cluster: None,
                ..whole.tail
            },
            ..whole
        };
        let v4 = Record {
            listener: "10.0.0.1:80".parse().unwrap(),
            host: Some(hostile),
            tail: Tail {
                backend: Some("b1"),
                backend_time: Some(Duration::from_micros(7)),
                ..whole.tail
            },
            ..whole
        };
        for format in [LogFormat::Json, LogFormat::Text] {
            for r in [whole, headless, v4] {
                let mut expected = Vec::new();
                write_line(&mut expected, format, &clock(), &r);
                let mut middle = Vec::new();
                write_peers(&mut middle, format, r.client, r.listener);
                write_head(&mut middle, format, r.host, r.method, r.path);
                let mut out = b"previous line\n".to_vec();
                write_finished(&mut out, format, &clock(), &middle, &r.tail);
                assert_eq!(
                    std::str::from_utf8(&out[14..]).unwrap(),
                    std::str::from_utf8(&expected).unwrap()
                );
            }
        }
    }

    #[test]
    fn whole_lines_are_byte_for_byte_as_documented() {
        let mut r = record(b"shop.test", b"GET", b"/x");
        r.tail.backend = Some("b1");
        let mut json = Vec::new();
        write_line(&mut json, LogFormat::Json, &clock(), &r);
        assert_eq!(
            std::str::from_utf8(&json).unwrap(),
            "{\"time\":\"2026-12-06T22:58:58.123Z\",\"client\":\"127.0.0.1:40000\",\
             \"listener\":\"[::1]:8080\",\"host\":\"shop.test\",\"method\":\"GET\",\
             \"path\":\"/x\",\"status\":200,\"bytes_in\":78,\"bytes_out\":1234,\
             \"cluster\":\"shop\",\"backend\":\"b1\",\"duration_ms\":12.345,\
             \"connect_ms\":0.000,\"backend_ms\":null,\"request_id\":\"00c0ffee00000001\"}\n"
        );
        let mut text = Vec::new();
        write_line(&mut text, LogFormat::Text, &clock(), &r);
        assert_eq!(
            std::str::from_utf8(&text).unwrap(),
            "time=2026-12-06T22:58:58.123Z client=127.0.0.1:40000 listener=[::1]:8080 \
             host=shop.test method=GET path=/x status=200 bytes_in=78 bytes_out=1234 \
             cluster=shop backend=b1 duration_ms=12.345 connect_ms=0.000 backend_ms=- \
             request_id=00c0ffee00000001\n"
        );
    }

    #[test]
    fn empty_and_absent_strings_are_spelled_per_format() {
        let mut json = Vec::new();
        json_string(&mut json, Some(b""));
        json_string(&mut json, None);
        assert_eq!(json, b"\"\"null");
        let mut text = Vec::new();
        text_value(&mut text, Some(b""));
        text_value(&mut text, None);
        text_value(&mut text, Some(b"a\"\\~\x7f\x80 !"));
        assert_eq!(text, b"--a\\x22\\x5c~\\x7f\\x80\\x20!");
    }

    /// The eight-at-a-time check agrees with the table for every byte value in every
    /// position of a word and of the tail after it.
    #[test]
    fn the_word_check_agrees_with_the_table() {
        for (table, low) in [(&JSON_PLAIN, b' '), (&TEXT_PLAIN, b'!')] {
            for b in 0..=255u8 {
                for at in 0..19 {
                    let mut bytes = [b'a'; 19];
                    bytes[at] = b;
                    for len in [at + 1, 8, 16, 19] {
                        if at < len {
                            assert_eq!(
                                all_plain(&bytes[..len], table, low),
                                table[usize::from(b)],
                                "byte {b:#x} at {at} of {len}"
                            );
                        }
                    }
                }
            }
            assert!(all_plain(b"", table, low));
            // Neighbours that borrow or carry into each other: 0x7f and 0x80 next to 0x00.
            for pair in [
                [0x00u8, 0x7f],
                [0x7f, 0x00],
                [0x80, 0x00],
                [0xff, 0x20],
                [0x20, 0xff],
            ] {
                let mut bytes = [b'z'; 8];
                bytes[3..5].copy_from_slice(&pair);
                assert!(!all_plain(&bytes, table, low), "{pair:?}");
            }
        }
    }
}
