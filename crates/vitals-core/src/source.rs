//! Which adapter a sample came in through: stored with every sample (the `source` column of
//! the lake and of SQL's `samples`), so an analyst can tell an Apple Watch reading forwarded
//! by Health Auto Export from the same metric sent by a CGM uploader.

use std::fmt;

/// The adapter that decoded a sample. The names are part of the lake's contract: add
/// variants, never rename or renumber one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(u8)]
pub enum Source {
    /// Written before Vitals recorded sources (read back as SQL `NULL`).
    #[default]
    Unknown = 0,
    /// Vitals' own JSON, NDJSON or CSV (HTTP, MQTT, a dropped file or `vitals ingest`).
    Native = 1,
    /// InfluxDB line protocol (`POST /write`).
    LineProtocol = 2,
    /// The Health Auto Export iPhone app (its REST automation, JSON or CSV exports).
    HealthAutoExport = 3,
    /// A Nightscout uploader (xDrip+, AAPS, Loop, Spike...).
    Nightscout = 4,
    /// An Empatica E4 session (zip or signal files).
    EmpaticaE4 = 5,
    /// An Apple Health `export.xml`.
    AppleHealth = 6,
    /// A Garmin/ANT FIT file (Garmin, Polar, Suunto, Wahoo, Coros...).
    Fit = 7,
    /// A Gadgetbridge database export (Xiaomi, Amazfit, Huawei, Pebble... bands on Android).
    Gadgetbridge = 8,
    /// A Google Takeout export of a Fitbit account.
    FitbitTakeout = 9,
    /// Dexcom Share, pulled from the vendor's cloud.
    DexcomShare = 10,
    /// Abbott's LibreLinkUp, pulled from the vendor's cloud.
    LibreLinkUp = 11,
    /// The Oura ring, pulled from Oura's cloud (API v2, OAuth 2.0).
    Oura = 12,
    /// Withings (scales, blood-pressure monitors, thermometers), pulled from its cloud.
    Withings = 13,
}

impl Source {
    /// Every source, in code order.
    pub const ALL: [Source; 14] = [
        Source::Unknown,
        Source::Native,
        Source::LineProtocol,
        Source::HealthAutoExport,
        Source::Nightscout,
        Source::EmpaticaE4,
        Source::AppleHealth,
        Source::Fit,
        Source::Gadgetbridge,
        Source::FitbitTakeout,
        Source::DexcomShare,
        Source::LibreLinkUp,
        Source::Oura,
        Source::Withings,
    ];

    /// The stable name (the lake's `source` column); `None` for [`Source::Unknown`].
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Source::Unknown => return None,
            Source::Native => "native",
            Source::LineProtocol => "line_protocol",
            Source::HealthAutoExport => "health_auto_export",
            Source::Nightscout => "nightscout",
            Source::EmpaticaE4 => "empatica_e4",
            Source::AppleHealth => "apple_health",
            Source::Fit => "fit",
            Source::Gadgetbridge => "gadgetbridge",
            Source::FitbitTakeout => "fitbit_takeout",
            Source::DexcomShare => "dexcom_share",
            Source::LibreLinkUp => "librelinkup",
            Source::Oura => "oura",
            Source::Withings => "withings",
        })
    }

    /// The one-byte code of the write-ahead log.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The source of a code; an unknown code (a newer build's log) reads as `Unknown`.
    pub fn from_code(code: u8) -> Source {
        Source::ALL.get(usize::from(code)).copied().unwrap_or(Source::Unknown)
    }

    /// The source of a stored name; an unknown name reads as `Unknown`.
    pub fn from_name(name: &str) -> Source {
        Source::ALL.iter().copied().find(|s| s.name() == Some(name)).unwrap_or(Source::Unknown)
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name().unwrap_or("unknown"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names_round_trip() {
        for (i, s) in Source::ALL.iter().enumerate() {
            assert_eq!(usize::from(s.code()), i);
            assert_eq!(Source::from_code(s.code()), *s);
            if let Some(n) = s.name() {
                assert_eq!(Source::from_name(n), *s);
            }
        }
        assert_eq!(Source::from_code(200), Source::Unknown);
        assert_eq!(Source::from_name("carrier pigeon"), Source::Unknown);
        assert_eq!(Source::Unknown.name(), None);
    }
}
