//! What a dropped or imported file holds, told from its name and first bytes (the file
//! drop and `vitals ingest` read no further before choosing a decoder).

use crate::native::Format;
use crate::{empatica, fit, fitbit_takeout, gadgetbridge};

/// How many leading bytes [`detect`] looks at.
pub const HEAD_BYTES: usize = 512;

/// The kinds of file Vitals takes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A zip archive: what it holds is told by [`zip_content`].
    Zip,
    /// One E4 signal file (`EDA.csv`, `IBI.csv`, ...), named as the device names it.
    E4Signal,
    /// An Apple Health `export.xml`.
    AppleHealthXml,
    /// A Health Auto Export JSON export (`{"data": {...}}`).
    HealthAutoExport,
    /// A Health Auto Export CSV export (`Date/Time,Active Energy (kcal),...`).
    HealthAutoExportCsv,
    /// A Garmin/ANT FIT file.
    Fit,
    /// An SQLite database: a Gadgetbridge export.
    Gadgetbridge,
    /// One per-day file of a Fitbit Google Takeout (`heart_rate-2024-01-15.json`).
    FitbitDay,
    /// Vitals' own JSON, NDJSON or CSV.
    Native(Format),
}

/// What a zip archive holds, told from the names of its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZipContent {
    /// An Apple Health `export.zip` (its `export.xml`).
    AppleHealth,
    /// A Google Takeout with Fitbit per-day files.
    FitbitTakeout,
    /// FIT files (a Garmin Connect export).
    Fit,
    /// An Empatica E4 session.
    E4Session,
    Unknown,
}

/// Whether a file in an archive is a FIT file, by its name.
pub fn is_fit_name(name: &str) -> bool {
    name.len() > 4 && name[name.len() - 4..].eq_ignore_ascii_case(".fit")
}

/// What an archive holds, from the paths of its files (checked in this order: an Apple
/// Health export also holds other files; a Takeout holds many products).
pub fn zip_content<'a>(paths: impl Iterator<Item = &'a str> + Clone) -> ZipContent {
    let base = |p: &'a str| p.rsplit('/').next().unwrap_or(p);
    if paths.clone().any(|p| base(p) == "export.xml") {
        ZipContent::AppleHealth
    } else if paths.clone().any(|p| fitbit_takeout::kind_of(p).is_some()) {
        ZipContent::FitbitTakeout
    } else if paths.clone().any(|p| is_fit_name(base(p))) {
        ZipContent::Fit
    } else if paths.clone().any(|p| is_e4_session_file(base(p))) {
        ZipContent::E4Session
    } else {
        ZipContent::Unknown
    }
}

impl FileKind {
    /// Kinds whose samples carry no patient: the file must say whose it is (its folder).
    pub fn needs_patient(self) -> bool {
        !matches!(self, FileKind::Native(_))
    }
}

/// Whether `name` is a file of an E4 session (a signal file or `tags.csv`).
pub fn is_e4_session_file(name: &str) -> bool {
    is_e4_signal(name) || name.eq_ignore_ascii_case("tags.csv")
}

/// Whether `name` is one of the E4's signal files.
pub fn is_e4_signal(name: &str) -> bool {
    empatica::SIGNAL_FILES.iter().any(|f| f.eq_ignore_ascii_case(name))
}

/// Tells a file's kind from its base name and its first [`HEAD_BYTES`] bytes (fewer if it
/// is shorter). Never fails: what is nothing else is tried as native CSV, whose decoder
/// then refuses it line by line.
pub fn detect(name: &str, head: &[u8]) -> FileKind {
    if head.starts_with(b"PK\x03\x04") {
        return FileKind::Zip;
    }
    if fit::is_fit(head) {
        return FileKind::Fit;
    }
    if gadgetbridge::is_sqlite(head) {
        return FileKind::Gadgetbridge;
    }
    if fitbit_takeout::kind_of(name).is_some() {
        return FileKind::FitbitDay;
    }
    if is_e4_signal(name) {
        return FileKind::E4Signal;
    }
    let head = &head[..head.len().min(HEAD_BYTES)];
    let compact: Vec<u8> = head.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
    if compact.starts_with(b"<?xml")
        || compact.starts_with(b"<HealthData")
        || compact.starts_with(b"<!DOCTYPEHealthData")
    {
        return FileKind::AppleHealthXml;
    }
    if compact.starts_with(b"{\"data\":") {
        return FileKind::HealthAutoExport;
    }
    if compact.len() > 4 && compact[..4].eq_ignore_ascii_case(b"date") && compact.contains(&b'(') {
        return FileKind::HealthAutoExportCsv;
    }
    FileKind::Native(Format::sniff(head))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_come_from_names_and_first_bytes() {
        assert_eq!(detect("s.zip", b"PK\x03\x04rest"), FileKind::Zip);
        assert_eq!(detect("a.fit", b"\x0e\x20\x8b\x08\x10\x00\x00\x00.FIT\x00\x00"), FileKind::Fit);
        assert_eq!(detect("Gadgetbridge", b"SQLite format 3\0\x10\0"), FileKind::Gadgetbridge);
        assert_eq!(detect("steps-2024-01-15.json", b"[{\"dateTime\""), FileKind::FitbitDay);
        assert_eq!(detect("EDA.csv", b"1600000000.0\n4.0\n"), FileKind::E4Signal);
        assert_eq!(detect("ibi.CSV", b""), FileKind::E4Signal);
        assert_eq!(detect("export.xml", b"<?xml version=\"1.0\"?>\n<HealthData>"), FileKind::AppleHealthXml);
        assert_eq!(detect("export.xml", b"  <!DOCTYPE HealthData [\n"), FileKind::AppleHealthXml);
        assert_eq!(detect("x.json", b"{ \"data\" : {\"metrics\": []}}"), FileKind::HealthAutoExport);
        assert_eq!(detect("x.csv", b"Date/Time,Active Energy (kcal)\n"), FileKind::HealthAutoExportCsv);
        assert_eq!(detect("x.csv", b"patient,metric,time,value\n"), FileKind::Native(Format::Csv));
        assert_eq!(detect("x.json", b"[{\"patient\":\"p\"}]"), FileKind::Native(Format::Json));
        assert_eq!(detect("x.ndjson", b"{\"patient\":\"p\"}\n"), FileKind::Native(Format::Ndjson));
        assert_eq!(detect("x", b"\xff\xfe\0"), FileKind::Native(Format::Csv));
        let names = |n: &'static [&'static str]| zip_content(n.iter().copied());
        assert_eq!(
            names(&["apple_health_export/export.xml", "apple_health_export/export_cda.xml"]),
            ZipContent::AppleHealth
        );
        assert_eq!(names(&["Takeout/Fitbit/Global Export Data/steps-2024-01-15.json"]), ZipContent::FitbitTakeout);
        assert_eq!(names(&["123_ACTIVITY.FIT"]), ZipContent::Fit);
        assert_eq!(names(&["s/EDA.csv", "s/tags.csv"]), ZipContent::E4Session);
        assert_eq!(names(&["readme.txt"]), ZipContent::Unknown);
        assert!(FileKind::Zip.needs_patient() && !FileKind::Native(Format::Csv).needs_patient());
    }
}
