//! `?follow=true&tail=100&since=<RFC 3339>` of `GET /v1/apps/{app}/logs`, parsed strictly: an
//! unknown or repeated parameter, a bad boolean, a `tail` above [`MAX_TAIL`] or a `since` that is
//! not RFC 3339 is refused with a message, never ignored.

use caas_types::Timestamp;

/// Lines of history sent when `tail` is not given.
pub const DEFAULT_TAIL: u32 = 100;
/// The most lines of history one request may ask for (the default ring size).
pub const MAX_TAIL: u32 = 10_000;

/// What a logs request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogQuery {
    /// Keep the answer open and stream new lines.
    pub follow: bool,
    /// How many of the newest stored lines to send first.
    pub tail: u32,
    /// Only lines at or after this instant (history and followed lines alike).
    pub since: Option<Timestamp>,
}

impl Default for LogQuery {
    fn default() -> LogQuery {
        LogQuery {
            follow: false,
            tail: DEFAULT_TAIL,
            since: None,
        }
    }
}

impl LogQuery {
    /// Parses a raw query string (without `?`; `None` or empty: the defaults). Values are
    /// percent-decoded; a `+` stays a `+` (so `since=...+02:00` works unencoded; no value here
    /// has a space).
    pub fn parse(raw: Option<&str>) -> Result<LogQuery, String> {
        let mut q = LogQuery::default();
        let mut seen: Vec<&str> = Vec::new();
        for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if seen.contains(&key) {
                return Err(format!("query parameter {key:?} given twice"));
            }
            seen.push(key);
            let value = decode(value).ok_or_else(|| format!("{key}: bad percent-encoding"))?;
            match key {
                "follow" => {
                    q.follow = match value.as_str() {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => return Err("follow: expected true or false".into()),
                    }
                }
                "tail" => {
                    let n: u32 = value
                        .parse()
                        .map_err(|_| format!("tail: expected a number from 0 to {MAX_TAIL}"))?;
                    if n > MAX_TAIL {
                        return Err(format!("tail: at most {MAX_TAIL}"));
                    }
                    q.tail = n;
                }
                "since" => {
                    q.since = Some(value.parse().map_err(|e| format!("since: {e}"))?);
                }
                other => {
                    return Err(format!(
                        "unknown query parameter {other:?} (follow, tail, since)"
                    ))
                }
            }
        }
        Ok(q)
    }
}

/// Percent-decodes `s` into UTF-8; `None` on a bad escape or bytes that are not UTF-8.
fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn defaults_and_every_parameter() {
        assert_eq!(LogQuery::parse(None).unwrap(), LogQuery::default());
        assert_eq!(LogQuery::parse(Some("")).unwrap().tail, 100);
        let q = LogQuery::parse(Some("follow=true&tail=5&since=2024-05-01T12:00:00Z")).unwrap();
        assert!(q.follow);
        assert_eq!(q.tail, 5);
        assert_eq!(q.since.unwrap().as_secs(), 1_714_564_800);
        let q = LogQuery::parse(Some("since=2024-05-01T14%3A00%3A00%2B02:00&follow=0")).unwrap();
        assert_eq!(q.since.unwrap().as_secs(), 1_714_564_800);
        assert!(!q.follow);
        let q = LogQuery::parse(Some("since=2024-05-01T14:00:00+02:00&tail=0")).unwrap();
        assert_eq!(q.since.unwrap().as_secs(), 1_714_564_800);
        assert_eq!(q.tail, 0);
        assert_eq!(LogQuery::parse(Some("tail=10000")).unwrap().tail, MAX_TAIL);
    }

    #[test]
    fn anything_else_is_refused_with_a_reason() {
        for (raw, says) in [
            ("since=yesterday", "since"),
            ("since=2024-05-01", "since"),
            ("since=", "since"),
            ("since=2024-05-01T12:00:00Z%", "percent"),
            ("since=%ff", "percent"),
            ("tail=10001", "at most"),
            ("tail=-1", "tail"),
            ("tail=ten", "tail"),
            ("follow=yes", "follow"),
            ("follow", "follow"),
            ("lines=5", "unknown"),
            ("tail=1&tail=2", "twice"),
        ] {
            let err = LogQuery::parse(Some(raw)).unwrap_err();
            assert!(err.contains(says), "{raw}: {err}");
        }
    }
}
