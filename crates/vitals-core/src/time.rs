//! Time: millisecond timestamps, the injected clock, durations and day partitions.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Datelike, SecondsFormat, TimeZone, Utc};

pub const MS_PER_SECOND: i64 = 1_000;
pub const MS_PER_MINUTE: i64 = 60 * MS_PER_SECOND;
pub const MS_PER_HOUR: i64 = 60 * MS_PER_MINUTE;
pub const MS_PER_DAY: i64 = 24 * MS_PER_HOUR;

/// Latest time representable in the lake layout (9999-12-31T23:59:59.999Z).
pub const MAX_TIME_MS: i64 = 253_402_300_799_999;

/// The source of "now", injected everywhere so tests control time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The real wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // reason: the one place that reads the wall clock
    fn now_ms(&self) -> i64 {
        Utc::now().timestamp_millis()
    }
}

/// A clock that only moves when told to.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn new(now_ms: i64) -> Self {
        Self(Arc::new(AtomicI64::new(now_ms)))
    }
    pub fn set(&self, now_ms: i64) {
        self.0.store(now_ms, Ordering::SeqCst);
    }
    pub fn advance(&self, by_ms: i64) {
        self.0.fetch_add(by_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Why a time or duration could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("{0:?} is not an RFC 3339 time or integer milliseconds since the epoch")]
    BadTime(String),
    #[error("{0:?} is outside 1970-01-01..9999-12-31")]
    OutOfRange(String),
    #[error("{0:?} is not a duration such as 500ms, 10s, 5m, 1h, 7d or 2w")]
    BadDuration(String),
}

/// Parses RFC 3339 (any offset) or integer milliseconds since the epoch.
pub fn parse_time(s: &str) -> Result<i64, TimeError> {
    let s = s.trim();
    let ms = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        s.parse::<i64>().map_err(|_| TimeError::BadTime(s.to_owned()))?
    } else {
        DateTime::parse_from_rfc3339(s).map_err(|_| TimeError::BadTime(s.to_owned()))?.timestamp_millis()
    };
    if !(0..=MAX_TIME_MS).contains(&ms) {
        return Err(TimeError::OutOfRange(s.to_owned()));
    }
    Ok(ms)
}

/// Formats milliseconds as RFC 3339 UTC with millisecond precision.
pub fn format_time(ms: i64) -> String {
    match Utc.timestamp_millis_opt(ms).single() {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Millis, true),
        None => ms.to_string(),
    }
}

/// Appends `ms` as RFC 3339 UTC with milliseconds (`2025-11-22T03:00:00.123Z`) without
/// allocating; the hot path of query responses. Times outside 0..=9999 years fall back to
/// [`format_time`].
pub fn write_time(out: &mut String, ms: i64) {
    if !(0..=MAX_TIME_MS).contains(&ms) {
        out.push_str(&format_time(ms));
        return;
    }
    let days = ms.div_euclid(MS_PER_DAY);
    let rem = ms.rem_euclid(MS_PER_DAY);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let (h, mi, sec, milli) = (rem / MS_PER_HOUR, rem / MS_PER_MINUTE % 60, rem / 1000 % 60, rem % 1000);
    let mut buf = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, v: i64, width: usize| {
        let mut v = v;
        for i in (0..width).rev() {
            buf[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, y, 4);
    put(5, m, 2);
    put(8, d, 2);
    put(11, h, 2);
    put(14, mi, 2);
    put(17, sec, 2);
    put(20, milli, 3);
    out.push_str(std::str::from_utf8(&buf).unwrap_or("0000-00-00T00:00:00.000Z"));
}

/// The UTC calendar day of a timestamp, as (year, month, day).
pub fn civil_day(ms: i64) -> (i32, u32, u32) {
    let t = Utc.timestamp_millis_opt(ms.div_euclid(MS_PER_DAY) * MS_PER_DAY).single().unwrap_or_default();
    (t.year(), t.month(), t.day())
}

/// Start of the UTC day containing `ms`.
pub fn day_start(ms: i64) -> i64 {
    ms.div_euclid(MS_PER_DAY) * MS_PER_DAY
}

/// `HH:MM` (00:00 to 23:59) as minutes since midnight.
pub fn minute_of_day(s: &str) -> Option<i64> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
    ((0..24).contains(&h) && (0..60).contains(&m)).then_some(h * 60 + m)
}

/// An offset from UTC written `+01:00` or `-05:30` (at most 14 hours either way) as
/// minutes east of UTC: the local time of quiet hours and of nights.
pub fn utc_offset_minutes(s: &str) -> Option<i64> {
    let s = s.trim();
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let m = minute_of_day(rest)?;
    (m <= 14 * 60).then_some(sign * m)
}

/// A length of time in milliseconds, written like `10m` in config and queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DurationMs(pub i64);

impl DurationMs {
    pub fn as_ms(self) -> i64 {
        self.0
    }
}

impl std::str::FromStr for DurationMs {
    type Err = TimeError;
    fn from_str(s: &str) -> Result<Self, TimeError> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: i64 = num.parse().map_err(|_| TimeError::BadDuration(s.to_owned()))?;
        let per = match unit {
            "ms" => 1,
            "s" => MS_PER_SECOND,
            "m" | "min" => MS_PER_MINUTE,
            "h" => MS_PER_HOUR,
            "d" => MS_PER_DAY,
            "w" => 7 * MS_PER_DAY,
            _ => return Err(TimeError::BadDuration(s.to_owned())),
        };
        n.checked_mul(per).filter(|ms| *ms > 0).map(DurationMs).ok_or_else(|| TimeError::BadDuration(s.to_owned()))
    }
}

impl fmt::Display for DurationMs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let units =
            [(7 * MS_PER_DAY, "w"), (MS_PER_DAY, "d"), (MS_PER_HOUR, "h"), (MS_PER_MINUTE, "m"), (MS_PER_SECOND, "s")];
        for (per, name) in units {
            if self.0 % per == 0 {
                return write!(f, "{}{name}", self.0 / per);
            }
        }
        write!(f, "{}ms", self.0)
    }
}

impl serde::Serialize for DurationMs {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for DurationMs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_rfc3339_or_ms() {
        let cases: &[(&str, Option<i64>)] = &[
            ("1763780400000", Some(1_763_780_400_000)),
            ("2025-11-22T03:00:00Z", Some(1_763_780_400_000)),
            ("2025-11-22T04:00:00+01:00", Some(1_763_780_400_000)),
            ("2025-11-22T03:00:00.123Z", Some(1_763_780_400_123)),
            ("-5", None),
            ("yesterday", None),
            ("", None),
            ("2025-13-01T00:00:00Z", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_time(s).ok(), *want, "{s}");
        }
    }

    #[test]
    fn durations_round_trip() {
        for (s, ms) in [
            ("500ms", 500),
            ("10s", 10_000),
            ("5m", 300_000),
            ("1h", 3_600_000),
            ("7d", 604_800_000),
            ("2w", 1_209_600_000),
        ] {
            let d: DurationMs = s.parse().expect("valid");
            assert_eq!(d.0, ms);
            assert_eq!(d.to_string().parse::<DurationMs>().expect("round trip"), d);
        }
        for bad in ["", "5", "m", "0s", "5 parsecs", "-1h"] {
            assert!(bad.parse::<DurationMs>().is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn write_time_matches_chrono(ms in 0i64..=MAX_TIME_MS) {
            let mut s = String::new();
            write_time(&mut s, ms);
            proptest::prop_assert_eq!(s, format_time(ms));
        }
    }

    #[test]
    fn civil_day_is_utc() {
        assert_eq!(civil_day(1_763_780_400_000), (2025, 11, 22));
        assert_eq!(civil_day(0), (1970, 1, 1));
        assert_eq!(format_time(1_763_780_400_123), "2025-11-22T03:00:00.123Z");
    }
}
