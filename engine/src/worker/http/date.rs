//! The `Date` field (RFC 9110 6.6.1), formatted once per second per worker.
//!
//! The proxy's own answers carry one (an origin server with a clock MUST send it with every
//! 2xx–4xx answer), and so does a forwarded response that arrived without one (a recipient
//! with a clock MUST add it before forwarding). Formatting an IMF-fixdate costs more than the
//! rest of writing a head, so the worker keeps the field ready and reformats it only when the
//! second changes.

use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// `Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n`: the name, 29 bytes of IMF-fixdate, CRLF.
const FIELD_LEN: usize = 6 + 29 + 2;

/// The current `Date` field, ready to copy into a head.
#[derive(Debug, Clone)]
pub struct HttpDate {
    second: u64,
    field: [u8; FIELD_LEN],
}

impl HttpDate {
    pub fn new(now: SystemTime) -> HttpDate {
        let mut date = HttpDate {
            second: u64::MAX,
            field: [0; FIELD_LEN],
        };
        date.update(now);
        date
    }

    /// Brings the field to `now`; a no-op within the same second.
    pub fn update(&mut self, now: SystemTime) {
        // A clock set before 1970 shows as the epoch: httpdate cannot show earlier dates.
        let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if second == self.second {
            return;
        }
        self.second = second;
        let mut at = &mut self.field[..];
        // Cannot fail: the name, an IMF-fixdate and CRLF are exactly FIELD_LEN bytes.
        let _ = write!(
            at,
            "Date: {}\r\n",
            httpdate::HttpDate::from(UNIX_EPOCH + std::time::Duration::from_secs(second))
        );
    }

    /// The whole field line, with its CRLF.
    pub fn field(&self) -> &[u8] {
        &self.field
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_an_imf_fixdate_and_follows_the_clock() {
        // RFC 9110's own example.
        let t = UNIX_EPOCH + Duration::from_secs(784_111_777);
        let mut date = HttpDate::new(t);
        assert_eq!(date.field(), b"Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n");
        date.update(t + Duration::from_millis(999));
        assert_eq!(date.field(), b"Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n");
        date.update(t + Duration::from_secs(86_400 * 365 + 3));
        assert_eq!(date.field(), b"Date: Mon, 06 Nov 1995 08:49:40 GMT\r\n");
    }
}
