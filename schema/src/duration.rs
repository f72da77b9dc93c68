//! Durations as people write them, in desired-state files and on the command line alike: a
//! whole number and a unit, `ms`, `s`, `m` or `h` (`500ms`, `30s`, `2m`, `1h`), the rule
//! docs/desired-state.md states. One parser, so a value that works in a file works as a flag.
//!
//! A number without a unit is refused, since nothing says whether `30` means seconds or
//! milliseconds; `0` alone is the one exception (it is zero in every unit). Whether zero itself
//! is allowed is for the caller to say: the loader refuses it (on the wire 0 stands for "the
//! proxy's default"), while `weir watch --drift-interval 0` turns drift checks off.

use std::time::Duration;

/// The units, with their length in milliseconds.
const UNITS: [(&str, u64); 4] = [("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000)];

/// Why a text is not a duration. The messages quote the text, so they read well after a flag
/// name or a file position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// `30`: a number that needs a unit.
    #[error("`{0}` needs a unit: ms, s, m or h (for example `{0}s`)")]
    NoUnit(String),
    /// `30sec`, `2d`.
    #[error("`{text}` has an unknown unit `{unit}`: use ms, s, m or h")]
    UnknownUnit { text: String, unit: String },
    /// `fast`, `1.5s`, `-1s`, ``.
    #[error(
        "`{0}` is not a duration: write a whole number and a unit, such as 500ms, 30s, 2m or 1h"
    )]
    Malformed(String),
    /// More milliseconds than a `u64` holds.
    #[error("`{0}` is too long a duration")]
    TooLong(String),
}

/// Parses `500ms`, `30s`, `2m`, `1h` (space around the number and the unit is ignored), or
/// `0`. Zero is returned as such: see the module doc.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    let unit = unit.trim();
    if digits.is_empty() {
        return Err(DurationError::Malformed(trimmed.to_owned()));
    }
    // All digits, so parsing fails only on overflow.
    let n: u64 = digits
        .parse()
        .map_err(|_| DurationError::TooLong(trimmed.to_owned()))?;
    if unit.is_empty() {
        return if n == 0 {
            Ok(Duration::ZERO)
        } else {
            Err(DurationError::NoUnit(trimmed.to_owned()))
        };
    }
    let Some(&(_, ms_per_unit)) = UNITS.iter().find(|(name, _)| *name == unit) else {
        // `1.5s` or `1,5s` is a malformed number rather than a unit called `.5s`.
        return Err(if unit.starts_with(|c: char| c.is_ascii_alphabetic()) {
            DurationError::UnknownUnit {
                text: trimmed.to_owned(),
                unit: unit.to_owned(),
            }
        } else {
            DurationError::Malformed(trimmed.to_owned())
        });
    };
    n.checked_mul(ms_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| DurationError::TooLong(trimmed.to_owned()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn every_unit_and_zero() {
        let ok = [
            ("500ms", Duration::from_millis(500)),
            ("30s", Duration::from_secs(30)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            (" 10 s ", Duration::from_secs(10)),
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
        ];
        for (text, expected) in ok {
            assert_eq!(parse(text), Ok(expected), "{text:?}");
        }
    }

    #[test]
    fn a_number_without_a_unit_is_refused_naming_the_unit_it_needs() {
        let e = parse("30").unwrap_err();
        assert_eq!(e, DurationError::NoUnit("30".into()));
        assert!(e.to_string().contains("needs a unit"), "{e}");
        assert!(e.to_string().contains("`30s`"), "{e}");
    }

    #[test]
    fn other_spellings_are_refused_with_the_reason() {
        for text in ["fast", "s", "", "1.5s", "-1s", "1,5s"] {
            assert_eq!(
                parse(text),
                Err(DurationError::Malformed(text.trim().into())),
                "{text:?}"
            );
        }
        for (text, unit) in [
            ("10 days", "days"),
            ("3sec", "sec"),
            ("2d", "d"),
            ("1S", "S"),
        ] {
            assert_eq!(
                parse(text),
                Err(DurationError::UnknownUnit {
                    text: text.into(),
                    unit: unit.into()
                }),
                "{text:?}"
            );
        }
        for text in ["99999999999999999999s", "18446744073709551615h"] {
            assert_eq!(
                parse(text),
                Err(DurationError::TooLong(text.into())),
                "{text:?}"
            );
        }
    }
}
