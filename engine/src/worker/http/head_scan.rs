//! When a head still arriving is worth parsing, deciding from each byte about once: a
//! request head from a client (`session.rs`) or a response head from a backend
//! (`exchange/response.rs`), the same way.
//!
//! httparse parses a head from its first byte, and keeps nothing between calls. Parsing the
//! whole buffer after every read would make a head that arrives one byte per segment cost
//! quadratic time: a 64 KiB head would be parsed 65,536 times, two billion bytes looked at.
//! [`HeadScan`] remembers how far it has looked and asks for a parse only when the new bytes
//! can change the answer:
//!
//! - the first time bytes are there (a whole head usually comes in one read: the common path
//!   parses at once, as before);
//! - when the new bytes hold the blank line that ends a head (`\r\n\r\n`), searched for from
//!   three bytes before them, so one split across reads is found too. Empty lines before the
//!   start line, which the parser skips (RFC 9112 2.2), do not count: a peer sending them one
//!   at a time would otherwise have the head parsed again for each;
//! - when they hold a bare CR or LF, which the parser refuses: that answer comes at once;
//! - when the buffer has doubled since the last parse found the head incomplete, so any other
//!   flaw (a bad token, a control character) is still answered after at most twice its bytes.
//!
//! The parses of an incomplete head then look at fewer than twice its final length in all,
//! and the scan at each byte a few times: linear work however the head is cut up.

/// The scanning state of the head at the start of a buffer (a session's for a request, an
/// exchange's for a response).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HeadScan {
    /// Bytes at the start of the buffer already looked at.
    scanned: usize,
    /// Buffered length when a parse last found the head incomplete (0: none yet).
    parsed: usize,
    /// Where the first byte other than CR and LF is, once seen: the start line's start.
    start: Option<usize>,
}

impl HeadScan {
    /// Whether `pending` (the buffered bytes; the first ones are those seen before) should be
    /// parsed now.
    pub fn should_parse(&mut self, pending: &[u8]) -> bool {
        if self.parsed == 0 {
            // Nothing parsed yet: parse at once, and look at nothing (the common head comes
            // whole in one read). Should it be incomplete, the next call scans these bytes
            // from the start, once.
            return true;
        }
        if pending.len() < self.scanned {
            // The buffer no longer starts where it did: look at it afresh.
            *self = HeadScan::default();
        }
        let mut from = self.scanned.saturating_sub(3);
        if self.start.is_none() {
            let fresh = pending.get(self.scanned..).unwrap_or_default();
            self.start = fresh
                .iter()
                .position(|&b| b != b'\r' && b != b'\n')
                .map(|i| self.scanned + i);
        }
        self.scanned = pending.len();
        if pending.len() >= self.parsed.saturating_mul(2) {
            return true;
        }
        let Some(start) = self.start else {
            // Empty lines only, none of them bare (a bare CR or LF is refused at once).
            return breaks(pending.get(from..).unwrap_or_default());
        };
        if breaks(pending.get(from..).unwrap_or_default()) {
            return true;
        }
        from = from.max(start);
        pending
            .get(from..)
            .unwrap_or_default()
            .windows(4)
            .any(|w| w == b"\r\n\r\n")
    }

    /// A parse of `len` buffered bytes found the head incomplete.
    pub fn incomplete(&mut self, len: usize) {
        self.parsed = len;
    }

    /// The head was taken from the buffer (or refused): the next one starts afresh.
    pub fn reset(&mut self) {
        *self = HeadScan::default();
    }
}

/// Whether `bytes` hold a bare CR or LF. A CR at the very end may be the first half of a CRLF
/// still to come: it is looked at again with the next bytes.
fn breaks(bytes: &[u8]) -> bool {
    bytes
        .windows(2)
        .any(|w| (w[1] == b'\n' && w[0] != b'\r') || (w[0] == b'\r' && w[1] != b'\n'))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::super::parser::{header_slots, parse_request, parse_response, Framing, HeadError};
    use super::*;

    type Parse = fn(&[u8]) -> Result<Option<usize>, HeadError>;

    fn request(pending: &[u8]) -> Result<Option<usize>, HeadError> {
        let mut headers = header_slots();
        parse_request(pending, &mut headers).map(|h| h.map(|h| h.raw.len()))
    }

    fn response(pending: &[u8]) -> Result<Option<usize>, HeadError> {
        let mut headers = header_slots();
        parse_response(pending, &mut headers, false).map(|h| h.map(|h| h.raw.len()))
    }

    /// Feeds a request head `raw` in pieces of `step` bytes, parsing when the scan says so, as
    /// the session does. Returns the parse's last answer and the bytes parsed in all.
    fn feed(raw: &[u8], step: usize) -> (Result<Option<usize>, HeadError>, usize) {
        feed_to(request, raw, step)
    }

    /// [`feed`] through `parse`.
    fn feed_to(parse: Parse, raw: &[u8], step: usize) -> (Result<Option<usize>, HeadError>, usize) {
        let mut scan = HeadScan::default();
        let mut parsed_bytes = 0;
        let mut last = Ok(None);
        let mut end = 0;
        while end < raw.len() {
            end = (end + step).min(raw.len());
            let pending = &raw[..end];
            if !scan.should_parse(pending) {
                continue;
            }
            parsed_bytes += pending.len();
            last = parse(pending);
            match last {
                Ok(None) => scan.incomplete(pending.len()),
                _ => break,
            }
        }
        (last, parsed_bytes)
    }

    fn big_head(size: usize) -> Vec<u8> {
        big_head_after(b"GET / HTTP/1.1\r\nHost: a\r\n", size)
    }

    fn big_head_after(start: &[u8], size: usize) -> Vec<u8> {
        let mut raw = start.to_vec();
        let mut i = 0;
        while raw.len() < size - 64 {
            raw.extend_from_slice(format!("X-Field-{i}: {}\r\n", "v".repeat(1000)).as_bytes());
            i += 1;
        }
        raw.extend_from_slice(b"\r\n");
        raw
    }

    #[test]
    fn a_head_fed_byte_by_byte_is_parsed_in_linear_work() {
        let raw = big_head(64 * 1024);
        let mut headers = header_slots();
        // About 64 fields of 1 KiB: under the limit of 100 fields.
        let whole = parse_request(&raw, &mut headers)
            .unwrap()
            .unwrap()
            .raw
            .len();
        assert_eq!(whole, raw.len());
        let (answer, parsed_bytes) = feed(&raw, 1);
        assert_eq!(answer, Ok(Some(raw.len())));
        // Parsing every time would look at about len²/2 bytes (two billion here).
        assert!(
            parsed_bytes <= 3 * raw.len(),
            "{parsed_bytes} bytes parsed for a head of {}",
            raw.len()
        );
    }

    #[test]
    fn a_response_head_fed_byte_by_byte_is_parsed_in_linear_work() {
        // What a backend trickling its answer makes the exchange do.
        let raw = big_head_after(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n", 64 * 1024);
        assert_eq!(response(&raw), Ok(Some(raw.len())));
        let (answer, parsed_bytes) = feed_to(response, &raw, 1);
        assert_eq!(answer, Ok(Some(raw.len())));
        assert!(
            parsed_bytes <= 3 * raw.len(),
            "{parsed_bytes} bytes parsed for a head of {}",
            raw.len()
        );
        for step in [2, 7, 1000] {
            assert_eq!(feed_to(response, &raw, step).0, Ok(Some(raw.len())));
        }
    }

    #[test]
    fn the_blank_line_is_found_whatever_the_split() {
        let raw = b"GET /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc";
        let head = raw.len() - 3;
        for step in 1..raw.len() {
            assert_eq!(feed(raw, step).0, Ok(Some(head)), "step {step}");
        }
    }

    #[test]
    fn empty_lines_before_the_request_line_do_not_each_cost_a_parse() {
        let mut raw = b"\r\n".repeat(16 * 1024);
        raw.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        let mut headers = header_slots();
        assert!(parse_request(&raw, &mut headers).unwrap().is_some());
        let (answer, parsed_bytes) = feed(&raw, 1);
        assert_eq!(answer, Ok(Some(raw.len())));
        assert!(parsed_bytes <= 3 * raw.len(), "{parsed_bytes}");
    }

    #[test]
    fn a_bare_cr_or_lf_is_answered_as_soon_as_it_arrives() {
        for raw in [
            &b"GET / HTTP/1.1\r\nHost: a\nX: y"[..],
            b"GET / HTTP/1.1\r\nHost: a\rX: y",
        ] {
            let (answer, _) = feed(raw, 1);
            assert!(matches!(answer, Err(HeadError::Malformed(_))), "{raw:?}");
        }
    }

    #[test]
    fn other_flaws_are_found_once_the_buffer_has_doubled() {
        // A space in a field name never completes a line the parser accepts; without the
        // blank line, only the doubling rule parses it again.
        let mut raw = b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n".to_vec();
        raw.extend(std::iter::repeat_n(b'y', 200));
        let (answer, _) = feed(&raw, 1);
        assert!(matches!(answer, Err(HeadError::Malformed(_))));
    }

    #[test]
    fn a_new_buffer_is_looked_at_afresh() {
        let mut scan = HeadScan::default();
        assert!(scan.should_parse(b"GET / HT"));
        scan.incomplete(8);
        assert!(!scan.should_parse(b"GET / HTT"));
        // Shorter than what was scanned: another head, from its start.
        assert!(scan.should_parse(b"GE"));
        scan.reset();
        assert_eq!(scan, HeadScan::default());
        let mut headers = header_slots();
        let head = parse_request(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", &mut headers);
        assert_eq!(head.unwrap().unwrap().framing, Framing::Empty);
    }
}
