//! What a dropped or imported file holds, told from its name and first bytes (the file
//! drop and `vitals ingest` read no further before choosing a decoder).

use crate::empatica;
use crate::native::Format;

/// How many leading bytes [`detect`] looks at.
pub const HEAD_BYTES: usize = 512;

/// The kinds of file Vitals takes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A zip archive: an Empatica E4 session as downloaded from E4 connect.
    E4Zip,
    /// One E4 signal file (`EDA.csv`, `IBI.csv`, ...), named as the device names it.
    E4Signal,
    /// An Apple Health `export.xml`.
    AppleHealthXml,
    /// A Health Auto Export JSON export (`{"data": {...}}`).
    HealthAutoExport,
    /// A Health Auto Export CSV export (`Date/Time,Active Energy (kcal),...`).
    HealthAutoExportCsv,
    /// Vitals' own JSON, NDJSON or CSV.
    Native(Format),
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
        return FileKind::E4Zip;
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
        assert_eq!(detect("s.zip", b"PK\x03\x04rest"), FileKind::E4Zip);
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
        assert!(FileKind::E4Zip.needs_patient() && !FileKind::Native(Format::Csv).needs_patient());
    }
}
