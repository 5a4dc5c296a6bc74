//! Cron expressions of schedules: 5 fields (minute hour day-of-month month day-of-week), or 6
//! with seconds first, evaluated in UTC. Parsing and evaluation are `croner`'s; this module
//! fixes the accepted forms (no aliases such as `@hourly`, no year field) and names the field
//! at fault when an expression is refused.

use caas_types::Timestamp;
use chrono::{DateTime, TimeZone, Utc};
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

/// Field names of a 5-field expression, in order.
const FIVE: [&str; 5] = ["minute", "hour", "day-of-month", "month", "day-of-week"];
/// Field names of a 6-field expression, in order.
const SIX: [&str; 6] = [
    "second",
    "minute",
    "hour",
    "day-of-month",
    "month",
    "day-of-week",
];

/// A parsed cron expression.
#[derive(Debug, Clone)]
pub struct CronExpr {
    text: String,
    cron: Cron,
}

fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
}

impl CronExpr {
    /// Parses `text`; a refusal says which field is wrong (or that the count of fields is).
    pub fn parse(text: &str) -> Result<CronExpr, String> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let names: &[&str] = match fields.len() {
            5 => &FIVE,
            6 => &SIX,
            n => {
                return Err(format!(
                    "cron: expected 5 fields (minute hour day-of-month month day-of-week) or 6 \
                     with seconds first, got {n}"
                ))
            }
        };
        let p = parser();
        let normal = fields.join(" ");
        match p.parse(&normal) {
            Ok(cron) => Ok(CronExpr { text: normal, cron }),
            Err(whole) => {
                // The first field that is refused on its own, the others being `*`.
                for (i, name) in names.iter().enumerate() {
                    let alone: Vec<&str> = (0..fields.len())
                        .map(|j| if i == j { fields[j] } else { "*" })
                        .collect();
                    if p.parse(&alone.join(" ")).is_err() {
                        return Err(format!("cron: bad {name} field {:?}", fields[i]));
                    }
                }
                Err(format!("cron: {whole}"))
            }
        }
    }

    /// The expression as given, its fields separated by one space.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first due time strictly after `t`; `None` if there is none (an expression that
    /// can never match, such as February 30th).
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let next = self.cron.find_next_occurrence(&utc(t), false).ok()?;
        from_utc(next)
    }

    /// The last due time at or before `t`; `None` if there is none.
    pub fn last_at_or_before(&self, t: Timestamp) -> Option<Timestamp> {
        let prev = self.cron.find_previous_occurrence(&utc(t), true).ok()?;
        from_utc(prev)
    }

    /// The last due time strictly before `t`; `None` if there is none.
    pub fn last_before(&self, t: Timestamp) -> Option<Timestamp> {
        let prev = self.cron.find_previous_occurrence(&utc(t), false).ok()?;
        from_utc(prev)
    }
}

impl std::fmt::Display for CronExpr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

fn utc(t: Timestamp) -> DateTime<Utc> {
    Utc.timestamp_nanos(t.as_nanos())
}

fn from_utc(t: DateTime<Utc>) -> Option<Timestamp> {
    t.timestamp_nanos_opt().map(Timestamp::from_nanos)
}

#[cfg(test)]
pub(super) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// An RFC 3339 instant (the schedules' tests write due times so).
    pub(in crate::schedules) fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn five_fields_are_minutes_and_six_have_seconds_first() {
        let hourly = CronExpr::parse("0 * * * *").unwrap();
        assert_eq!(
            hourly.next_after(at("2026-12-02T10:30:00Z")),
            Some(at("2026-12-02T11:00:00Z"))
        );
        // Strictly after: a due time is not its own next.
        assert_eq!(
            hourly.next_after(at("2026-12-02T11:00:00Z")),
            Some(at("2026-12-02T12:00:00Z"))
        );
        let every_5s = CronExpr::parse("*/5 * * * * *").unwrap();
        assert_eq!(
            every_5s.next_after(at("2026-12-02T10:30:01.5Z")),
            Some(at("2026-12-02T10:30:05Z"))
        );
        assert_eq!(
            every_5s.last_at_or_before(at("2026-12-02T10:30:05Z")),
            Some(at("2026-12-02T10:30:05Z"))
        );
        assert_eq!(
            every_5s.last_before(at("2026-12-02T10:30:05Z")),
            Some(at("2026-12-02T10:30:00Z"))
        );
        // Weekdays by name, UTC; extra spaces are fine.
        let weekdays = CronExpr::parse(" 0  3 * * MON-FRI ").unwrap();
        assert_eq!(weekdays.as_str(), "0 3 * * MON-FRI");
        // 2026-12-04 is a Friday: the next is Monday the 7th.
        assert_eq!(
            weekdays.next_after(at("2026-12-04T04:00:00Z")),
            Some(at("2026-12-07T03:00:00Z"))
        );
    }

    #[test]
    fn a_refusal_names_the_field() {
        for (text, says) in [
            ("", "got 0"),
            ("* * * *", "got 4"),
            ("* * * * * * *", "got 7"),
            ("@hourly", "got 1"),
            ("61 * * * *", "minute"),
            ("* 24 * * *", "hour"),
            ("* * 32 * *", "day-of-month"),
            ("* * * 13 *", "month"),
            ("* * * * MOON", "day-of-week"),
            ("60 * * * * *", "second"),
            ("0 60 * * * *", "minute"),
            ("x * * * *", "minute"),
        ] {
            let err = CronExpr::parse(text).unwrap_err();
            assert!(err.contains(says), "{text:?}: {err}");
        }
    }
}
