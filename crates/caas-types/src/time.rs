//! [`Timestamp`]: an instant in UTC with nanosecond precision, parsed strictly from RFC 3339 and
//! printed as RFC 3339 in UTC with nine fractional digits (Docker's own log format).
//!
//! Log lines carry the engine's timestamps (nanoseconds), the logs API takes `since` from users,
//! and the store keeps nanoseconds since the Unix epoch, so one type converts between the three
//! without a date crate.

use crate::error::{Error, Result};
use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

const KIND: &str = "timestamp";
const NANOS_PER_SEC: i64 = 1_000_000_000;

/// An instant, nanoseconds since 1970-01-01T00:00:00Z (years 1970 to 2262).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The instant `nanos` nanoseconds after the Unix epoch (negative values are clamped to it).
    pub fn from_nanos(nanos: i64) -> Timestamp {
        Timestamp(nanos.max(0))
    }

    /// Nanoseconds since the Unix epoch.
    pub fn as_nanos(self) -> i64 {
        self.0
    }

    /// Whole seconds since the Unix epoch (rounded down).
    pub fn as_secs(self) -> i64 {
        self.0 / NANOS_PER_SEC
    }

    /// Now, by this machine's clock.
    pub fn now() -> Timestamp {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Timestamp(nanos)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.div_euclid(NANOS_PER_SEC);
        let nanos = self.0.rem_euclid(NANOS_PER_SEC);
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )
    }
}

impl FromStr for Timestamp {
    type Err = Error;

    /// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`: `T` or `t` (or a space) between date and
    /// time, up to nine fractional digits, and nothing else.
    fn from_str(s: &str) -> Result<Timestamp> {
        if s.is_empty() {
            return Err(Error::Empty { kind: KIND });
        }
        if s.len() > 40 {
            return Err(Error::TooLong {
                kind: KIND,
                len: s.len(),
                max: 40,
            });
        }
        let b = s.as_bytes();
        let bad = || Error::invalid(KIND, "expected RFC 3339, e.g. 2024-05-01T12:00:00Z");
        if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
            return Err(bad());
        }
        if !matches!(b[10], b'T' | b't' | b' ') {
            return Err(bad());
        }
        let num = |from: usize, to: usize| -> Result<i64> {
            let part = &b[from..to];
            if !part.iter().all(u8::is_ascii_digit) {
                return Err(bad());
            }
            Ok(part
                .iter()
                .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')))
        };
        let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
        let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
        if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
            return Err(Error::range(KIND, "no such date"));
        }
        // A leap second (60) is not representable as a Unix time; refuse it rather than guess.
        if hour > 23 || minute > 59 || second > 59 {
            return Err(Error::range(KIND, "no such time of day"));
        }
        let mut i = 19;
        let mut nanos = 0i64;
        if b[i] == b'.' {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let digits = i - start;
            if digits == 0 || digits > 9 {
                return Err(Error::invalid(KIND, "1 to 9 fractional digits"));
            }
            nanos = num(start, i)? * 10i64.pow(u32::try_from(9 - digits).map_err(|_| bad())?);
        }
        let offset = match &b[i..] {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
                let (h, m) = (num(i + 1, i + 3)?, num(i + 4, i + 6)?);
                if h > 23 || m > 59 {
                    return Err(Error::range(KIND, "no such offset"));
                }
                let off = h * 3600 + m * 60;
                if *sign == b'+' {
                    off
                } else {
                    -off
                }
            }
            _ => return Err(bad()),
        };
        let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
            - offset;
        if secs < 0 {
            return Err(Error::range(KIND, "before 1970-01-01T00:00:00Z"));
        }
        secs.checked_mul(NANOS_PER_SEC)
            .and_then(|n| n.checked_add(nanos))
            .map(Timestamp)
            .ok_or_else(|| Error::range(KIND, "after the year 2262"))
    }
}

impl TryFrom<String> for Timestamp {
    type Error = Error;
    fn try_from(s: String) -> Result<Timestamp> {
        s.parse()
    }
}

impl From<Timestamp> for String {
    fn from(t: Timestamp) -> String {
        t.to_string()
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Timestamp, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01 (the inverse of [`days_from_civil`]).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_and_prints_rfc3339() {
        let t: Timestamp = "2024-05-01T12:00:00Z".parse().unwrap();
        assert_eq!(t.as_secs(), 1_714_564_800);
        assert_eq!(t.to_string(), "2024-05-01T12:00:00.000000000Z");
        let t: Timestamp = "2026-12-02T08:09:26.123456789Z".parse().unwrap();
        assert_eq!(t.to_string(), "2026-12-02T08:09:26.123456789Z");
        assert_eq!(t.as_nanos() % NANOS_PER_SEC, 123_456_789);
        let short: Timestamp = "2026-12-02T08:09:26.5Z".parse().unwrap();
        assert_eq!(short.as_nanos() % NANOS_PER_SEC, 500_000_000);
        let offset: Timestamp = "2024-05-01T14:30:00+02:30".parse().unwrap();
        assert_eq!(offset.as_secs(), 1_714_564_800);
        let west: Timestamp = "2024-05-01t07:00:00-05:00".parse().unwrap();
        assert_eq!(west.as_secs(), 1_714_564_800);
        assert_eq!(
            "1970-01-01T00:00:00Z".parse::<Timestamp>().unwrap(),
            Timestamp::from_nanos(0)
        );
        assert_eq!(
            "2024-02-29T00:00:00Z"
                .parse::<Timestamp>()
                .unwrap()
                .to_string(),
            "2024-02-29T00:00:00.000000000Z"
        );
    }

    #[test]
    fn round_trips_across_dates() {
        for days in [0i64, 59, 365, 10_957, 11_016, 19_844, 20_000, 100_000] {
            let t = Timestamp::from_nanos(days * 86_400 * NANOS_PER_SEC + 3_723_000_000_042);
            assert_eq!(t.to_string().parse::<Timestamp>().unwrap(), t, "{t}");
        }
    }

    #[test]
    fn refuses_anything_else() {
        for bad in [
            "",
            "yesterday",
            "2024-05-01",
            "2024-05-01T12:00:00",
            "2024-05-01T12:00Z",
            "2024-05-01T12:00:00.Z",
            "2024-05-01T12:00:00.1234567890Z",
            "2024-13-01T12:00:00Z",
            "2023-02-29T12:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T12:00:60Z",
            "2024-05-01T12:00:00+0200",
            "2024-05-01T12:00:00+24:00",
            "2024-05-01T12:00:00Zjunk",
            "1969-12-31T23:59:59Z",
            "2024-05-01T12:00:00 Z",
            "+024-05-01T12:00:00Z",
            "2024-05-01X12:00:00Z",
            "9999-05-01T12:00:00Z",
            "2024-05-01T12:00:00.000000000000000000000000000000000Z",
        ] {
            assert!(bad.parse::<Timestamp>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn serde_is_the_string_form() {
        let t: Timestamp = "2024-05-01T12:00:00.25Z".parse().unwrap();
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"2024-05-01T12:00:00.250000000Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
        assert!(serde_json::from_str::<Timestamp>("\"nope\"").is_err());
    }
}
