//! Where a streamed body ends, and its chunk framing made canonical on the way. Sans-io.
//!
//! The proxy never holds a whole body: [`BodyFramer::advance_in_place`] looks at newly
//! received bytes in the buffer they were read into, says how many of them are ready to go on
//! as this message's body, and leaves the rest (a pipelined request, say) in the buffer.
//!
//! A chunked body does not go on as it came: it is rewritten in place into canonical form, as
//! HAProxy and nginx forward it: each size in lowercase hex without leading zeros, no chunk
//! extensions, the trailer section as received (it passed the checks below). A recipient whose
//! chunk parser is stricter or laxer than this one (a size with leading zeros it overflows on,
//! an extension it reads its own way) thus reads the body this framer read, and no other. The
//! canonical form is never longer than what came, so the rewrite needs no room but the bytes'
//! own: a chunk line split across reads keeps a few of its bytes in the buffer (at most
//! [`MAX_LINE`]) as room for the line it becomes.
//!
//! Chunk framing is checked strictly (RFC 9112 7.1):
//!
//! - sizes: hex digits without sign or prefix; zero padding is allowed, the value is bounded;
//! - extensions: to the letter of their grammar, names and values tokens or quoted strings,
//!   whitespace only where BWS allows it, the whole bounded;
//! - CRLF everywhere, no bare CR or LF;
//! - trailers: field lines (a token name, a colon right after it, a value of visible
//!   characters and whitespace), no obs-fold, none of the framing, routing and connection
//!   fields in [`FORBIDDEN_TRAILERS`], bounded as a whole. They are forwarded, as HAProxy does
//!   (RFC 9110 6.5.1 lets a recipient that does not know them ignore them).

use super::parser::Framing;

/// A chunk size has at most 15 significant hex digits (below 2^60, far above any real body),
/// so shifting in a digit never overflows. Checked before each digit: a size that already
/// needs more than 56 bits has its 15 digits and refuses another.
const MAX_SIZE_BITS: u32 = 56;
/// Most hex digits in a chunk size, leading zeros included. Only the value is bounded by
/// [`MAX_SIZE_BITS`]; this keeps a line of zeros from growing without end.
const MAX_SIZE_DIGITS: u8 = 64;
/// Longest chunk extension (after the size, before the CR) accepted on one chunk line.
const MAX_EXTENSION: usize = 4096;
/// Longest trailer section accepted, its final empty line included.
const MAX_TRAILERS: usize = 16 * 1024;
/// Longest canonical chunk line: 15 hex digits (see [`MAX_SIZE_BITS`]) and CRLF. A line split
/// across reads keeps this much of itself in the buffer, the room its canonical form needs.
const MAX_LINE: usize = 17;

/// Trailer fields refused (RFC 9110 6.5.1: a sender must not put fields needed for framing,
/// routing or connection handling in trailers): a recipient that merges trailers into the
/// head would take them as the message's own. Lowercase; names are compared without case.
const FORBIDDEN_TRAILERS: [&[u8]; 9] = [
    b"content-length",
    b"transfer-encoding",
    b"host",
    b"connection",
    b"keep-alive",
    b"te",
    b"trailer",
    b"upgrade",
    b"proxy-connection",
];

/// Every name of [`FORBIDDEN_TRAILERS`], one bit each.
const ALL_FORBIDDEN: u16 = (1 << FORBIDDEN_TRAILERS.len()) - 1;

/// Why a body's framing was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid chunked body: {0}")]
pub struct BodyError(pub &'static str);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading hex digits; `digits` so far, leading zeros included.
    Size {
        digits: u8,
    },
    /// Whitespace (BWS) after the size or an extension's value: a `;` must follow.
    ExtSpace,
    /// After a `;`: optional whitespace, then a name.
    ExtNameStart,
    /// In an extension's name (a token).
    ExtName,
    /// Whitespace after a name: a `=` or another `;` must follow.
    ExtNameSpace,
    /// After a `=`: optional whitespace, then a token or a quoted string.
    ExtValueStart,
    /// In a token value.
    ExtToken,
    /// In a quoted-string value; `escaped` just after a backslash.
    ExtQuoted {
        escaped: bool,
    },
    /// Just after a quoted string's closing quote.
    ExtQuotedEnd,
    /// Got CR after the size line.
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// In a trailer's field name, `len` bytes so far (saturating). Names are matched as they
    /// stream in, without keeping them: `candidates` has a bit set for each forbidden name
    /// that the bytes so far could still be.
    TrailerName {
        candidates: u16,
        len: u8,
    },
    /// After the colon: the field value with its surrounding whitespace.
    TrailerValue,
    /// CR seen; `empty` if it ends the empty (final) line.
    TrailerLf {
        empty: bool,
    },
    Done,
}

/// Tracks one message body.
#[derive(Debug, Clone)]
pub struct BodyFramer {
    kind: Kind,
    /// Payload bytes seen so far (chunk framing excluded), for body size limits.
    data: u64,
    /// Bytes at the front of the next window of [`BodyFramer::advance_in_place`] that were
    /// read already: room kept for the chunk line being read (see the module docs).
    held: usize,
}

/// What [`BodyFramer::advance_in_place`] made of a window of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advanced {
    /// Bytes at the window's front now ready to go on, in canonical form.
    pub ready: usize,
    /// Bytes at the window's end that no longer hold anything: the caller drops them from its
    /// buffer. What lies between is room held for a chunk line not yet whole, or (once the
    /// body is done) the bytes after it, moved down behind it.
    pub removed: usize,
}

#[derive(Debug, Clone, Copy)]
struct ChunkState {
    state: Chunk,
    /// Size of the chunk being read, then data bytes left in it.
    size: u64,
    /// Framing bytes counted against a bound: the current chunk line's extensions
    /// ([`MAX_EXTENSION`]), then the whole trailer section ([`MAX_TRAILERS`]).
    counted: usize,
}

#[derive(Debug, Clone)]
enum Kind {
    /// Bytes left.
    Length(u64),
    Chunked {
        chunk: ChunkState,
    },
    UntilClose,
    Done,
}

impl BodyFramer {
    pub fn new(framing: Framing) -> BodyFramer {
        let kind = match framing {
            Framing::Empty | Framing::Length(0) => Kind::Done,
            Framing::Length(n) => Kind::Length(n),
            Framing::Chunked => Kind::Chunked {
                chunk: ChunkState {
                    state: Chunk::Size { digits: 0 },
                    size: 0,
                    counted: 0,
                },
            },
            Framing::UntilClose => Kind::UntilClose,
        };
        BodyFramer {
            kind,
            data: 0,
            held: 0,
        }
    }

    /// Payload bytes seen so far, chunk framing excluded.
    pub fn data_bytes(&self) -> u64 {
        self.data
    }

    /// Whether the whole body has been seen (never true for read-until-close).
    pub fn is_done(&self) -> bool {
        matches!(self.kind, Kind::Done)
    }

    pub fn until_close(&self) -> bool {
        matches!(self.kind, Kind::UntilClose)
    }

    /// Bytes still expected, when known.
    pub fn remaining(&self) -> Option<u64> {
        match self.kind {
            Kind::Length(n) => Some(n),
            Kind::Done => Some(0),
            _ => None,
        }
    }

    /// Looks at `bytes` (received after what was seen before) and returns how many of them
    /// belong to this body, without rewriting anything: the check alone, for tests and fuzzing.
    /// A framer is driven either by this or by [`BodyFramer::advance_in_place`], never both.
    pub fn advance(&mut self, bytes: &[u8]) -> Result<usize, BodyError> {
        match &mut self.kind {
            Kind::Chunked { chunk } => {
                let pass = advance_chunked(chunk, &mut self.data, &mut Check(bytes), 0)?;
                if chunk.state == Chunk::Done {
                    self.kind = Kind::Done;
                }
                Ok(pass.read)
            }
            _ => Ok(self.advance_plain(bytes.len())),
        }
    }

    /// Looks at `window`, the bytes of the buffer after those already ready to go on (first
    /// the room held from the last call, then newly received bytes), and rewrites a chunked
    /// body into canonical form in place. See [`Advanced`] for what the window then holds.
    pub fn advance_in_place(&mut self, window: &mut [u8]) -> Result<Advanced, BodyError> {
        let Kind::Chunked { chunk } = &mut self.kind else {
            return Ok(Advanced {
                ready: self.advance_plain(window.len()),
                removed: 0,
            });
        };
        let len = window.len();
        let start = self.held.min(len);
        let pass = advance_chunked(chunk, &mut self.data, &mut Rewrite(window), start)?;
        let w = pass.written;
        Ok(match pass.line_from {
            // A chunk line is not whole yet: keep room for its canonical form behind the
            // ready bytes.
            Some(from) if chunk.state != Chunk::Done => {
                self.held = (len - from).min(MAX_LINE);
                Advanced {
                    ready: w,
                    removed: len - w - self.held,
                }
            }
            _ => {
                self.held = 0;
                if chunk.state == Chunk::Done {
                    self.kind = Kind::Done;
                }
                // Bytes after the body's end follow it at once.
                window.copy_within(pass.read..len, w);
                Advanced {
                    ready: w,
                    removed: pass.read - w,
                }
            }
        })
    }

    /// How many of `n` new bytes belong to a body framed by a length or the close.
    fn advance_plain(&mut self, n: usize) -> usize {
        match &mut self.kind {
            Kind::Done | Kind::Chunked { .. } => 0,
            Kind::UntilClose => {
                self.data += n as u64;
                n
            }
            Kind::Length(left) => {
                let n = usize::try_from(*left).unwrap_or(usize::MAX).min(n);
                *left -= n as u64;
                self.data += n as u64;
                if *left == 0 {
                    self.kind = Kind::Done;
                }
                n
            }
        }
    }
}

/// Where a pass over chunked bytes ended.
#[derive(Debug, Clone, Copy)]
struct Pass {
    /// Bytes read (all of them, unless the body ended before).
    read: usize,
    /// Bytes of canonical output at the front of the window.
    written: usize,
    /// Where the chunk line being read began, if the pass ended inside one.
    line_from: Option<usize>,
}

/// The bytes a pass reads, and what it does with its canonical output: nothing ([`Check`])
/// or write it over the bytes already read ([`Rewrite`]).
trait Window {
    fn bytes(&self) -> &[u8];
    /// Output `n` bytes read at `from`, at `to` (never after `from`).
    fn pass_on(&mut self, from: usize, to: usize, n: usize);
    /// Output the canonical line of a chunk of `size` at `to`; returns its length.
    fn chunk_line(&mut self, to: usize, size: u64) -> usize;
}

struct Check<'a>(&'a [u8]);

impl Window for Check<'_> {
    fn bytes(&self) -> &[u8] {
        self.0
    }
    fn pass_on(&mut self, _: usize, _: usize, _: usize) {}
    fn chunk_line(&mut self, _: usize, size: u64) -> usize {
        hex_digits(size) + 2
    }
}

struct Rewrite<'a>(&'a mut [u8]);

impl Window for Rewrite<'_> {
    fn bytes(&self) -> &[u8] {
        self.0
    }
    fn pass_on(&mut self, from: usize, to: usize, n: usize) {
        if from != to {
            self.0.copy_within(from..from + n, to);
        }
    }
    fn chunk_line(&mut self, to: usize, size: u64) -> usize {
        let digits = hex_digits(size);
        let mut rest = size;
        for i in (0..digits).rev() {
            self.0[to + i] = b"0123456789abcdef"[(rest & 0xf) as usize];
            rest >>= 4;
        }
        self.0[to + digits] = b'\r';
        self.0[to + digits + 1] = b'\n';
        digits + 2
    }
}

/// Hex digits of `size` without leading zeros (one for zero).
fn hex_digits(size: u64) -> usize {
    (64 - size.leading_zeros() as usize).div_ceil(4).max(1)
}

/// Reads chunked bytes from `start` on (bytes before it were read by an earlier pass), and
/// passes the canonical form on to `out` as it goes: data and trailers as they are, each chunk
/// line once it is whole.
fn advance_chunked(
    chunk: &mut ChunkState,
    data: &mut u64,
    out: &mut impl Window,
    start: usize,
) -> Result<Pass, BodyError> {
    let ChunkState {
        state,
        size,
        counted,
    } = chunk;
    let len = out.bytes().len();
    let mut i = start;
    let mut w = 0;
    // A pass that starts inside a chunk line (at the body's start, or with room held from the
    // last pass) has that line begin at the window's front.
    let mut line_from = matches!(
        *state,
        Chunk::Size { .. }
            | Chunk::SizeLf
            | Chunk::ExtSpace
            | Chunk::ExtNameStart
            | Chunk::ExtName
            | Chunk::ExtNameSpace
            | Chunk::ExtValueStart
            | Chunk::ExtToken
            | Chunk::ExtQuoted { .. }
            | Chunk::ExtQuotedEnd
    )
    .then_some(0);
    while i < len {
        let b = out.bytes()[i];
        match *state {
            Chunk::Done => break,
            Chunk::Data => {
                // A whole run of data at once.
                let n = usize::try_from(*size).unwrap_or(usize::MAX).min(len - i);
                *size -= n as u64;
                *data += n as u64;
                out.pass_on(i, w, n);
                w += n;
                i += n;
                if *size == 0 {
                    *state = Chunk::DataCr;
                }
                continue;
            }
            Chunk::Size { digits } => match b {
                b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                    // The bound is on the value, not the spelling: zero-padded sizes
                    // (`0000000000000005`) are accepted, as nginx and HAProxy accept them,
                    // and go on without their zeros.
                    if *size >> MAX_SIZE_BITS != 0 {
                        return Err(BodyError("chunk size too large"));
                    }
                    if digits >= MAX_SIZE_DIGITS {
                        return Err(BodyError("chunk size too long"));
                    }
                    let v = (b as char).to_digit(16).unwrap_or(0);
                    *size = *size * 16 + u64::from(v);
                    *state = Chunk::Size { digits: digits + 1 };
                }
                b'\r' if digits > 0 => *state = Chunk::SizeLf,
                b';' | b' ' | b'\t' if digits > 0 => {
                    // The extension's first byte, counted against MAX_EXTENSION. Read as
                    // if after whitespace: a `;` opens a name, whitespace waits for one.
                    *counted = 1;
                    *state = extension(Chunk::ExtSpace, b)?;
                }
                _ => return Err(BodyError("bad chunk size")),
            },
            Chunk::ExtSpace
            | Chunk::ExtNameStart
            | Chunk::ExtName
            | Chunk::ExtNameSpace
            | Chunk::ExtValueStart
            | Chunk::ExtToken
            | Chunk::ExtQuoted { .. }
            | Chunk::ExtQuotedEnd => {
                if b != b'\r' {
                    *counted += 1;
                    if *counted > MAX_EXTENSION {
                        return Err(BodyError("chunk extension too long"));
                    }
                }
                *state = extension(*state, b)?;
            }
            Chunk::SizeLf => {
                if b != b'\n' {
                    return Err(BodyError("bare CR in a chunk line"));
                }
                // The line is whole: its canonical form takes its place, extensions dropped.
                // It is never longer than the bytes read since the line began (room held
                // included), so it never runs over bytes not yet read.
                w += out.chunk_line(w, *size);
                line_from = None;
                *state = if *size == 0 {
                    *counted = 0;
                    Chunk::TrailerStart
                } else {
                    Chunk::Data
                };
            }
            Chunk::DataCr => {
                if b != b'\r' {
                    return Err(BodyError("chunk data longer than its size"));
                }
                out.pass_on(i, w, 1);
                w += 1;
                *state = Chunk::DataLf;
            }
            Chunk::DataLf => {
                if b != b'\n' {
                    return Err(BodyError("chunk data not followed by CRLF"));
                }
                out.pass_on(i, w, 1);
                w += 1;
                *state = Chunk::Size { digits: 0 };
                *size = 0;
                line_from = Some(i + 1);
            }
            Chunk::TrailerStart
            | Chunk::TrailerName { .. }
            | Chunk::TrailerValue
            | Chunk::TrailerLf { .. } => {
                *counted += 1;
                if *counted > MAX_TRAILERS {
                    return Err(BodyError("trailers too long"));
                }
                *state = trailer(*state, b)?;
                out.pass_on(i, w, 1);
                w += 1;
            }
        }
        i += 1;
    }
    Ok(Pass {
        read: i,
        written: w,
        line_from,
    })
}

/// The state after byte `b` of a chunk extension (RFC 9112 7.1.1):
///
/// ```text
/// chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
/// chunk-ext-name = token
/// chunk-ext-val  = token / quoted-string
/// ```
///
/// The framing is forwarded as received, so whatever passes here reaches the other side: a
/// name-less `;`, a value of separators or an unterminated quote is refused rather than left
/// to a downstream parser to read its own way. The CR ending the line may follow a name or a
/// value, never whitespace (BWS only comes before `;` or `=`).
fn extension(state: Chunk, b: u8) -> Result<Chunk, BodyError> {
    Ok(match (state, b) {
        (Chunk::ExtSpace, b' ' | b'\t') => Chunk::ExtSpace,
        (Chunk::ExtSpace, b';') => Chunk::ExtNameStart,
        (Chunk::ExtNameStart, b' ' | b'\t') => Chunk::ExtNameStart,
        (Chunk::ExtNameStart | Chunk::ExtName, _) if is_tchar(b) => Chunk::ExtName,
        (Chunk::ExtName | Chunk::ExtNameSpace, b' ' | b'\t') => Chunk::ExtNameSpace,
        (Chunk::ExtName | Chunk::ExtNameSpace, b'=') => Chunk::ExtValueStart,
        (Chunk::ExtName | Chunk::ExtNameSpace, b';') => Chunk::ExtNameStart,
        (Chunk::ExtValueStart, b' ' | b'\t') => Chunk::ExtValueStart,
        (Chunk::ExtValueStart, b'"') => Chunk::ExtQuoted { escaped: false },
        (Chunk::ExtValueStart | Chunk::ExtToken, _) if is_tchar(b) => Chunk::ExtToken,
        (Chunk::ExtToken | Chunk::ExtQuotedEnd, b' ' | b'\t') => Chunk::ExtSpace,
        (Chunk::ExtToken | Chunk::ExtQuotedEnd, b';') => Chunk::ExtNameStart,
        (Chunk::ExtName | Chunk::ExtToken | Chunk::ExtQuotedEnd, b'\r') => Chunk::SizeLf,
        // RFC 9110 5.6.4: qdtext, or after a backslash any of HTAB / SP / VCHAR / obs-text.
        (Chunk::ExtQuoted { escaped: false }, b'"') => Chunk::ExtQuotedEnd,
        (Chunk::ExtQuoted { escaped: false }, b'\\') => Chunk::ExtQuoted { escaped: true },
        (Chunk::ExtQuoted { .. }, b'\t' | b' '..=b'~' | 0x80..=0xff) => {
            Chunk::ExtQuoted { escaped: false }
        }
        (Chunk::ExtQuoted { .. }, _) => {
            return Err(BodyError(
                "bad or unterminated quoted string in a chunk extension",
            ))
        }
        (Chunk::ExtNameStart, _) => return Err(BodyError("chunk extension without a name")),
        (Chunk::ExtValueStart, _) => return Err(BodyError("chunk extension without a value")),
        _ => return Err(BodyError("bad chunk extension")),
    })
}

/// The state after byte `b` of a trailer line (RFC 9112 7.1.2, RFC 9110 5.5):
///
/// ```text
/// trailer-section = *( field-line CRLF )
/// field-line      = field-name ":" OWS field-value OWS
/// ```
///
/// Each line must be a field line, with no whitespace before the colon and none at the start
/// (obs-fold, which RFC 9112 5.2 says to reject or replace; replacing would mean rewriting
/// forwarded bytes). Anything else would be forwarded as received: a request line after
/// `0\r\n`, say, which an origin that ends the body there would run as a second request.
fn trailer(state: Chunk, b: u8) -> Result<Chunk, BodyError> {
    Ok(match (state, b) {
        (Chunk::TrailerStart, b'\r') => Chunk::TrailerLf { empty: true },
        (Chunk::TrailerStart, b' ' | b'\t') => {
            return Err(BodyError(
                "trailer line starting with whitespace (obs-fold)",
            ))
        }
        (Chunk::TrailerStart, _) if is_tchar(b) => Chunk::TrailerName {
            candidates: narrow(ALL_FORBIDDEN, 0, b),
            len: 1,
        },
        (Chunk::TrailerName { candidates, len }, _) if is_tchar(b) => Chunk::TrailerName {
            candidates: narrow(candidates, len, b),
            len: len.saturating_add(1),
        },
        (Chunk::TrailerName { candidates, len }, b':') => {
            if is_forbidden(candidates, len) {
                return Err(BodyError("framing or routing field in trailers"));
            }
            Chunk::TrailerValue
        }
        (Chunk::TrailerName { .. }, b' ' | b'\t') => {
            return Err(BodyError("whitespace before a colon in trailers"))
        }
        // field-vchar (VCHAR / obs-text), and SP / HTAB around and between them.
        (Chunk::TrailerValue, b'\t' | b' '..=b'~' | 0x80..=0xff) => Chunk::TrailerValue,
        (Chunk::TrailerValue, b'\r') => Chunk::TrailerLf { empty: false },
        (Chunk::TrailerLf { empty: true }, b'\n') => Chunk::Done,
        (Chunk::TrailerLf { empty: false }, b'\n') => Chunk::TrailerStart,
        (Chunk::TrailerLf { .. }, _) => return Err(BodyError("bare CR in trailers")),
        (_, b'\n') => return Err(BodyError("bare LF in trailers")),
        (Chunk::TrailerValue, _) => return Err(BodyError("control character in trailers")),
        _ => return Err(BodyError("trailer line not a field line")),
    })
}

/// The forbidden names among `candidates` that have byte `b` (any case) at `pos`.
fn narrow(candidates: u16, pos: u8, b: u8) -> u16 {
    let b = b.to_ascii_lowercase();
    let mut left = candidates;
    for (bit, name) in FORBIDDEN_TRAILERS.iter().enumerate() {
        if name.get(usize::from(pos)) != Some(&b) {
            left &= !(1 << bit);
        }
    }
    left
}

/// Whether a name of `len` bytes that matched `candidates` all along is a forbidden one.
fn is_forbidden(candidates: u16, len: u8) -> bool {
    FORBIDDEN_TRAILERS
        .iter()
        .enumerate()
        .any(|(bit, name)| candidates & (1 << bit) != 0 && name.len() == usize::from(len))
}

/// A token character (RFC 9110 5.6.2): the characters of field names and extension names.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
/// What goes on of `input` offered in reads ending at `cuts` (sorted), each read appended
/// to a buffer and rewritten in place as the exchange does: the body as sent, and what is
/// left in the buffer after it.
pub(crate) fn canonical_in_reads(
    input: &[u8],
    cuts: &[usize],
) -> Result<(Vec<u8>, Vec<u8>), BodyError> {
    let mut f = BodyFramer::new(Framing::Chunked);
    let (mut buf, mut sent) = (Vec::new(), Vec::new());
    let mut from = 0;
    for &to in cuts.iter().chain([&input.len()]) {
        buf.extend_from_slice(&input[from..to]);
        from = to;
        let advanced = f.advance_in_place(&mut buf)?;
        buf.truncate(buf.len() - advanced.removed);
        sent.extend(buf.drain(..advanced.ready));
    }
    if !f.is_done() {
        // Room held for a line not yet whole is not bytes of the next message.
        buf.clear();
    }
    Ok((sent, buf))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    fn whole(input: &[u8]) -> Result<(usize, bool), BodyError> {
        let mut f = BodyFramer::new(Framing::Chunked);
        let n = f.advance(input)?;
        Ok((n, f.is_done()))
    }

    /// What the framer makes of `input` given in two reads split at `at`: bytes taken, whether
    /// the body ended, payload bytes, or the error.
    fn in_two(input: &[u8], at: usize) -> Result<(usize, bool, u64), BodyError> {
        let mut f = BodyFramer::new(Framing::Chunked);
        let mut n = f.advance(&input[..at])?;
        // Bytes after the end are left for the next message, never offered again.
        if n == at {
            n += f.advance(&input[at..])?;
        }
        Ok((n, f.is_done(), f.data_bytes()))
    }

    /// Every split point gives `input` the outcome it has in one read.
    fn assert_split_invariant(input: &[u8]) {
        let once = in_two(input, input.len());
        for at in 0..input.len() {
            assert_eq!(in_two(input, at), once, "{} at {at}", input.escape_ascii());
        }
    }

    /// A one-chunk body whose size line is `line`, then a pipelined request.
    fn after_line(line: &[u8]) -> Vec<u8> {
        [line, &b"\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n"[..]].concat()
    }

    #[test]
    fn chunked_bodies_go_on_in_canonical_form() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"5\r\nhello\r\n0\r\n\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
            (
                b"0000a\r\n0123456789\r\n00\r\n\r\n",
                b"a\r\n0123456789\r\n0\r\n\r\n",
            ),
            (
                b"A;name=value\r\n0123456789\r\n0;last\r\n\r\n",
                b"a\r\n0123456789\r\n0\r\n\r\n",
            ),
            (
                b"1 ; a=\"b;c\" ; d\r\nx\r\n0\r\nX-Sum: 1\r\n\r\n",
                b"1\r\nx\r\n0\r\nX-Sum: 1\r\n\r\n",
            ),
            (
                b"000000000000000000000000000000000001F\r\n0123456789012345678901234567890\r\n0\r\n\r\n",
                b"1f\r\n0123456789012345678901234567890\r\n0\r\n\r\n",
            ),
        ];
        for (input, canonical) in cases {
            let next = b"GET / HTTP/1.1\r\n";
            let whole_input = [*input, &next[..]].concat();
            for at in 0..=whole_input.len() {
                for at2 in at..=whole_input.len() {
                    let got = canonical_in_reads(&whole_input, &[at, at2]).unwrap();
                    assert_eq!(
                        (got.0.escape_ascii().to_string(), got.1),
                        (canonical.escape_ascii().to_string(), next.to_vec()),
                        "{} cut at {at}, {at2}",
                        input.escape_ascii()
                    );
                }
            }
        }
    }

    #[test]
    fn room_held_for_a_split_line_is_bounded() {
        // A long extension arriving in pieces: only the room a canonical line needs stays.
        let mut f = BodyFramer::new(Framing::Chunked);
        let mut buf = b"00005;a=".to_vec();
        buf.resize(1000, b'b');
        let advanced = f.advance_in_place(&mut buf).unwrap();
        assert_eq!(advanced.ready, 0);
        assert_eq!(buf.len() - advanced.removed, MAX_LINE);
        buf.truncate(MAX_LINE);
        buf.extend_from_slice(b"b\r\nhello\r\n0\r\n\r\n");
        let advanced = f.advance_in_place(&mut buf).unwrap();
        buf.truncate(buf.len() - advanced.removed);
        assert_eq!(&buf[..advanced.ready], b"5\r\nhello\r\n0\r\n\r\n");
        assert_eq!(buf.len(), advanced.ready);
        assert!(f.is_done());
    }

    #[test]
    fn other_framings_go_on_as_they_came() {
        let mut f = BodyFramer::new(Framing::Length(5));
        let mut buf = b"00005;abc".to_vec();
        assert_eq!(
            f.advance_in_place(&mut buf).unwrap(),
            Advanced {
                ready: 5,
                removed: 0
            }
        );
        assert_eq!(buf, b"00005;abc");
    }

    #[test]
    fn length_bodies_stop_at_their_end() {
        let mut f = BodyFramer::new(Framing::Length(5));
        assert_eq!(f.advance(b"abc").unwrap(), 3);
        assert!(!f.is_done());
        assert_eq!(f.advance(b"deGET /").unwrap(), 2);
        assert!(f.is_done());
        assert_eq!(f.advance(b"more").unwrap(), 0);
    }

    #[test]
    fn what_each_framing_reports() {
        // A length: what is left, and the payload seen.
        let mut f = BodyFramer::new(Framing::Length(5));
        assert_eq!(
            (f.remaining(), f.data_bytes(), f.until_close()),
            (Some(5), 0, false)
        );
        f.advance(b"abc").unwrap();
        assert_eq!((f.remaining(), f.data_bytes()), (Some(2), 3));
        f.advance(b"deGET /").unwrap();
        assert_eq!(
            (f.remaining(), f.data_bytes(), f.is_done()),
            (Some(0), 5, true)
        );
        // No body at all.
        for empty in [Framing::Empty, Framing::Length(0)] {
            let mut f = BodyFramer::new(empty);
            assert!(f.is_done());
            assert_eq!((f.remaining(), f.advance(b"GET /").unwrap()), (Some(0), 0));
            assert_eq!(f.data_bytes(), 0);
        }
        // Until the connection closes: everything is body, nothing says how much is left.
        let mut f = BodyFramer::new(Framing::UntilClose);
        assert!(f.until_close());
        assert_eq!(f.advance(b"abc").unwrap(), 3);
        assert_eq!(f.advance(b"0\r\n\r\n").unwrap(), 5);
        assert_eq!(
            (f.remaining(), f.data_bytes(), f.is_done()),
            (None, 8, false)
        );
        // Chunked: the payload without its framing, the length unknown until the end.
        let mut f = BodyFramer::new(Framing::Chunked);
        assert_eq!((f.remaining(), f.until_close()), (None, false));
        f.advance(b"3\r\nabc\r\n").unwrap();
        assert_eq!((f.remaining(), f.data_bytes()), (None, 3));
        f.advance(b"0\r\n\r\n").unwrap();
        assert_eq!((f.remaining(), f.data_bytes()), (Some(0), 3));
    }

    #[test]
    fn each_refusal_says_why() {
        let cases: &[(&[u8], &str)] = &[
            (b";a\r\n", "bad chunk size"),
            (b" 5\r\n", "bad chunk size"),
            (b"\t5\r\n", "bad chunk size"),
            (b"5\rhello", "bare CR in a chunk line"),
            (b"1\r\nab\r\n", "chunk data longer than its size"),
            (b"1\r\na\rx", "chunk data not followed by CRLF"),
            (b"1000000000000000\r\n", "chunk size too large"),
            (
                b"5;a=\"x\x01\"\r\n",
                "bad or unterminated quoted string in a chunk extension",
            ),
            (
                b"5;a=\"x\r\n",
                "bad or unterminated quoted string in a chunk extension",
            ),
            (b"5;;a\r\n", "chunk extension without a name"),
            (b"5; =x\r\n", "chunk extension without a name"),
            (b"5;a=;b\r\n", "chunk extension without a value"),
            (b"5;a= \r\n", "chunk extension without a value"),
            (b"5;a b\r\n", "bad chunk extension"),
            (
                b"0\r\n X-A: 1\r\n\r\n",
                "trailer line starting with whitespace (obs-fold)",
            ),
            (
                b"0\r\n\tX-A: 1\r\n\r\n",
                "trailer line starting with whitespace (obs-fold)",
            ),
            (b"0\r\nX-A: a\rb\r\n\r\n", "bare CR in trailers"),
            (b"0\r\n\rb", "bare CR in trailers"),
            (b"0\r\n\n", "bare LF in trailers"),
            (b"0\r\nX-A: a\n\r\n", "bare LF in trailers"),
            (b"0\r\nX-A\n", "bare LF in trailers"),
            (b"0\r\nX-A: 1\x00\r\n\r\n", "control character in trailers"),
            (b"0\r\nX-A: 1\x7f\r\n\r\n", "control character in trailers"),
            (b"0\r\nX(A): 1\r\n\r\n", "trailer line not a field line"),
            (b"0\r\n: 1\r\n\r\n", "trailer line not a field line"),
            (
                b"0\r\nX-A : 1\r\n\r\n",
                "whitespace before a colon in trailers",
            ),
            (
                b"0\r\nTE: x\r\n\r\n",
                "framing or routing field in trailers",
            ),
        ];
        for (input, why) in cases {
            assert_eq!(
                whole(input),
                Err(BodyError(why)),
                "{}",
                input.escape_ascii()
            );
        }
    }

    #[test]
    fn real_trailer_sections_of_several_kilobytes_pass() {
        // Signatures and checksums in trailers run to kilobytes; 16 KiB is the bound.
        let mut body = b"0\r\n".to_vec();
        for i in 0..13 {
            body.extend_from_slice(format!("X-Signature-{i}: ").as_bytes());
            body.resize(body.len() + 1000, b'q');
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"\r\n");
        assert!(body.len() > 12 * 1024);
        assert_eq!(whole(&body), Ok((body.len(), true)));
    }

    #[test]
    fn chunked_bodies_stop_after_the_last_chunk() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\nGET / HTTP/1.1";
        assert_eq!(whole(body).unwrap(), (body.len() - 14, true));
        let mut f = BodyFramer::new(Framing::Chunked);
        f.advance(body).unwrap();
        assert_eq!(f.data_bytes(), 11);
        let trailers = b"1\r\na\r\n0\r\nX-T: 1\r\n\r\n";
        assert_eq!(whole(trailers).unwrap(), (trailers.len(), true));
        let ws = b"1 ; a=\"b\"\r\na\r\n0\r\n\r\n";
        assert_eq!(whole(ws).unwrap(), (ws.len(), true));
    }

    #[test]
    fn leading_zeros_do_not_count_toward_the_size_bound() {
        let padded = b"0000000000000005\r\nhello\r\n0000\r\n\r\n";
        assert_eq!(whole(padded).unwrap(), (padded.len(), true));
        // Fifteen significant digits is the most a size may have, however it is padded.
        let mut f = BodyFramer::new(Framing::Chunked);
        assert_eq!(f.advance(b"000fffffffffffffff\r\n").unwrap(), 20);
        assert!(!f.is_done());
        // A line of zeros does not grow without end.
        let zeros = [b'0'; 65];
        assert!(whole(&zeros).is_err());
        assert!(whole(&zeros[..64]).is_ok());
    }

    /// Chunk lines whose extensions follow RFC 9112 7.1.1, each before the same data.
    const GOOD_EXTENSIONS: &[&[u8]] = &[
        b"5;a",
        b"5;a=b",
        b"5 ; a = b",
        b"5\t;\ta\t=\tb",
        b"5;a;b=c",
        b"5;a=\"b;c\"",
        b"5;a=\"\"",
        b"5;a=\"q\\\"d\\\\ \\\t\xff\"",
        b"5;a=\"\t !#[]~\x80\"",
        b"5;!#$%&'*+-.^_`|~09AZaz=!#$%&'*+-.^_`|~09AZaz",
        b"5;a=\"x\" ; b ;c=d",
        b"5;a=b;c=d",
        b"5;a=\"b\";c",
    ];

    /// Chunk lines whose extensions break RFC 9112 7.1.1.
    const BAD_EXTENSIONS: &[&[u8]] = &[
        b"5;",
        b"5;;a",
        b"5;=x",
        b"5; =x",
        b"5;a=",
        b"5;a= ",
        b"5;a=<b>",
        b"5;a=<b>{c}",
        b"5;a=b=c",
        b"5;a b",
        b"5;a=b c",
        b"5;a=\"x\"y",
        b"5;a=\"unterminated",
        b"5;a=\"x\\",
        b"5;a=\"x\x7f\"",
        b"5;a=\"\\\x01\"",
        b"5;\xff\xfe",
        b"5;a\xff",
        b"5;a=b\xff",
        b"5;a ",
        b"5;a=b ",
        b"5 ",
        b"5 a",
        b"5;a\x01",
        b"5;a=b;",
    ];

    #[test]
    fn chunk_extensions_follow_their_grammar() {
        for line in GOOD_EXTENSIONS {
            let body = after_line(line);
            let got = whole(&body);
            assert_eq!(got, Ok((body.len() - 16, true)), "{}", line.escape_ascii());
        }
        for line in BAD_EXTENSIONS {
            assert!(whole(&after_line(line)).is_err(), "{}", line.escape_ascii());
        }
    }

    /// Trailer sections (after the last chunk, final empty line included) that are field lines.
    const GOOD_TRAILERS: &[&[u8]] = &[
        b"\r\n",
        b"X-A: 1\r\n\r\n",
        b"X-A:1\r\n\r\n",
        b"X-A:\r\n\r\n",
        b"X-A: \t \r\n\r\n",
        b"X-A:\t1 \t\r\n\r\n",
        b"X-A: a b\tc \"d\" \xff\x80\r\n\r\n",
        b"X-A: 1\r\nX-B: 2\r\nx-c: 3\r\n\r\n",
        b"!#$%&'*+-.^_`|~09AZaz: v\r\n\r\n",
        b"Checksum: sha-256=:abc=:\r\n\r\n",
        b"X-A: GET /smug HTTP/1.1\r\n\r\n",
        // Names that share a start with a forbidden one, or contain one, are not it.
        b"Hos: a\r\nHosts: a\r\nX-Host: a\r\nT: a\r\nTE-X: a\r\nTrailers: a\r\n\r\n",
        b"Content-Length2: 1\r\nContent-Lengt: 1\r\nTransfer-Encodings: x\r\n\r\n",
        b"Proxy-Connections: x\r\nConnectio: x\r\nKeep-Alive-X: 1\r\nUpgrade1: x\r\n\r\n",
        b"X-Checksum: 1\r\nServer-Timing: a;dur=1\r\n\r\n",
    ];

    /// Trailer sections that are not field lines.
    const BAD_TRAILERS: &[&[u8]] = &[
        b"X-A: 1\r\n folded\r\n\r\n",
        b"X-A: 1\r\n\tfolded\r\n\r\n",
        b" X-A: 1\r\n\r\n",
        b"garbage line\r\n\r\n",
        b"garbage\r\n\r\n",
        b"X-A : 1\r\n\r\n",
        b"X-A\t: 1\r\n\r\n",
        b": 1\r\n\r\n",
        b"X(A): 1\r\n\r\n",
        b"X-\xffA: 1\r\n\r\n",
        b"X-A: 1\x00\r\n\r\n",
        b"X-A: 1\x7f\r\n\r\n",
        b"X-A: a\rb\r\n\r\n",
        b"X-A: a\n\r\n",
        b"X-A\r\n\r\n",
        b"X-A: 1\r\n\n",
        b"\n",
        b"GET /smug HTTP/1.1\r\nHost: a.test\r\n\r\n",
        b"Content-Length: 50\r\nTransfer-Encoding: chunked\r\nHost: evil.test\r\n\r\n",
        b"X-A: 1\r\nhOsT:evil.test\r\n\r\n",
    ];

    /// A body of one chunk and the trailer section `trailers`, then a pipelined request.
    fn with_trailers(trailers: &[u8]) -> Vec<u8> {
        [&b"5\r\nhello\r\n0\r\n"[..], trailers, b"GET / HTTP/1.1\r\n"].concat()
    }

    #[test]
    fn trailers_are_field_lines() {
        for trailers in GOOD_TRAILERS {
            let body = with_trailers(trailers);
            let got = whole(&body);
            assert_eq!(
                got,
                Ok((body.len() - 16, true)),
                "{}",
                trailers.escape_ascii()
            );
        }
        for trailers in BAD_TRAILERS {
            let body = with_trailers(trailers);
            assert!(whole(&body).is_err(), "{}", trailers.escape_ascii());
        }
    }

    #[test]
    fn a_request_after_the_last_chunk_is_not_a_trailer() {
        // An origin that ends the body at `0\r\n` would run /smug as a second request.
        let body = b"5\r\nhello\r\n0\r\nGET /smug HTTP/1.1\r\nHost: a.test\r\n\r\n";
        assert_eq!(
            whole(body),
            Err(BodyError("whitespace before a colon in trailers"))
        );
    }

    #[test]
    fn framing_routing_and_connection_fields_are_refused_in_trailers() {
        for name in FORBIDDEN_TRAILERS {
            let upper = name.to_ascii_uppercase();
            let mixed: Vec<u8> = name
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    if i % 2 == 0 {
                        b.to_ascii_uppercase()
                    } else {
                        *b
                    }
                })
                .collect();
            for spelling in [name, &upper[..], &mixed[..]] {
                let trailers = [b"X-A: 1\r\n", spelling, b": 1\r\n\r\n"].concat();
                let body = with_trailers(&trailers);
                assert_eq!(
                    whole(&body),
                    Err(BodyError("framing or routing field in trailers")),
                    "{}",
                    spelling.escape_ascii()
                );
                assert_split_invariant(&body);
            }
        }
    }

    #[test]
    fn long_trailer_names_are_not_mistaken_for_forbidden_ones() {
        // The name's length saturates at 255: a longer one starting like a forbidden name
        // is still not it.
        let mut name = b"host".to_vec();
        name.resize(300, b'x');
        let trailers = [&name[..], b": 1\r\n\r\n"].concat();
        let body = with_trailers(&trailers);
        assert_eq!(whole(&body), Ok((body.len() - 16, true)));
    }

    #[test]
    fn trailers_are_bounded() {
        let mut fits = b"0\r\nX-A: ".to_vec();
        fits.resize(3 + MAX_TRAILERS - 4, b'v');
        fits.extend_from_slice(b"\r\n\r\n");
        assert_eq!(whole(&fits).unwrap(), (fits.len(), true));
        let mut long = b"0\r\nX-A: ".to_vec();
        long.resize(3 + MAX_TRAILERS - 3, b'v');
        long.extend_from_slice(b"\r\n\r\n");
        assert_eq!(whole(&long), Err(BodyError("trailers too long")));
    }

    #[test]
    fn chunk_extensions_are_bounded() {
        let mut line = b"1;a=".to_vec();
        line.resize(MAX_EXTENSION + 1, b'b');
        line.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        assert_eq!(whole(&line).unwrap(), (line.len(), true));
        let mut long = b"1;a=".to_vec();
        long.resize(MAX_EXTENSION + 2, b'b');
        long.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        assert_eq!(whole(&long), Err(BodyError("chunk extension too long")));
    }

    #[test]
    fn chunked_survives_any_split() {
        let body = b"a\r\n0123456789\r\n3;x\r\nabc\r\n0\r\nT: v\r\n\r\n";
        for split in 0..body.len() {
            let mut f = BodyFramer::new(Framing::Chunked);
            let a = f.advance(&body[..split]).unwrap();
            let b = f.advance(&body[split..]).unwrap();
            assert_eq!(a + b, body.len());
            assert!(f.is_done(), "split at {split}");
        }
        for line in GOOD_EXTENSIONS {
            let body = after_line(line);
            assert_eq!(in_two(&body, 0), Ok((body.len() - 16, true, 5)));
            assert_split_invariant(&body);
        }
        for trailers in GOOD_TRAILERS {
            let body = with_trailers(trailers);
            assert_eq!(in_two(&body, 0), Ok((body.len() - 16, true, 5)));
            assert_split_invariant(&body);
        }
    }

    #[test]
    fn refusals_do_not_depend_on_the_split() {
        for line in BAD_EXTENSIONS {
            assert_split_invariant(&after_line(line));
        }
        for trailers in BAD_TRAILERS {
            assert_split_invariant(&with_trailers(trailers));
        }
    }

    #[test]
    fn bad_chunk_framing_is_refused() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"-1\r\n",
            b"0x5\r\nhello\r\n",
            b"5\rhello",
            b"5\nhello",
            b"5 5\r\n",
            b"1\r\nab\r\n",
            b"1\r\na\n",
            b"ffffffffffffffff\r\n",
            b"1000000000000000\r\n",
            b"0001000000000000000\r\n",
            b"1;\x01\r\n",
            b"0\r\nX: a\rb\r\n\r\n",
            b"0\r\nX: a\n\r\n",
        ] {
            assert!(whole(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
