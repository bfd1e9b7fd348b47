//! A zip archive of files Vitals reads (an Empatica E4 session as E4 connect downloads it,
//! an Apple Health `export.zip`, a Google Takeout, a Garmin Connect export): the files it
//! holds, found by name in any folder of the archive, each inflated on demand and with a
//! cap (or streamed), so a small archive cannot become a huge file in memory (a zip bomb).

use std::io::{Read, Seek};

use crate::file_kind::is_e4_session_file;

/// Why an archive or one of its files cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZipError {
    #[error("reading the zip archive: {0}")]
    Archive(String),
    #[error("{name} in the zip is larger than {max_mib} MiB; split it")]
    TooLarge { name: String, max_mib: u64 },
    #[error("{name} in the zip is not UTF-8 text")]
    NotText { name: String },
}

/// An open session archive.
pub struct SessionZip<R: Read + Seek> {
    archive: zip::ZipArchive<R>,
    /// (entry index, base name) of each session file, in archive order.
    files: Vec<(usize, String)>,
}

impl<R: Read + Seek> SessionZip<R> {
    /// Reads the archive's directory (not the files), keeping an E4 session's files.
    pub fn open(reader: R) -> Result<SessionZip<R>, ZipError> {
        Self::open_matching(reader, |_, base| is_e4_session_file(base))
    }

    /// Reads the archive's directory, keeping the files for which `pick(path in the
    /// archive, base name)` holds; [`names`](Self::names) then gives their base names.
    pub fn open_matching(reader: R, pick: impl Fn(&str, &str) -> bool) -> Result<SessionZip<R>, ZipError> {
        let mut archive = zip::ZipArchive::new(reader).map_err(|e| ZipError::Archive(e.to_string()))?;
        let mut files = Vec::new();
        for i in 0..archive.len() {
            let entry = archive.by_index_raw(i).map_err(|e| ZipError::Archive(e.to_string()))?;
            let Some(name) = entry.enclosed_name() else { continue };
            let base = name.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let path = name.to_string_lossy().replace('\\', "/");
            if entry.is_file() && pick(&path, &base) {
                files.push((i, base));
            }
        }
        Ok(SessionZip { archive, files })
    }

    /// The session files' base names, in archive order (a name may repeat in two folders).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.files.iter().map(|(_, n)| n.as_str())
    }

    /// Inflates the `n`th session file (of [`names`](Self::names)) as text of at most
    /// `max_bytes`.
    pub fn read(&mut self, n: usize, max_bytes: u64) -> Result<String, ZipError> {
        let out = self.read_bytes(n, max_bytes)?;
        String::from_utf8(out).map_err(|_| ZipError::NotText { name: self.files[n].1.clone() })
    }

    /// Inflates the `n`th file as bytes, at most `max_bytes`.
    pub fn read_bytes(&mut self, n: usize, max_bytes: u64) -> Result<Vec<u8>, ZipError> {
        let name = self.files.get(n).map(|f| f.1.clone()).unwrap_or_default();
        let entry = self.entry(n)?;
        let mut out = Vec::new();
        entry.take(max_bytes + 1).read_to_end(&mut out).map_err(|e| ZipError::Archive(format!("{name}: {e}")))?;
        if out.len() as u64 > max_bytes {
            return Err(ZipError::TooLarge { name, max_mib: max_bytes >> 20 });
        }
        Ok(out)
    }

    /// The `n`th file as a stream (an Apple Health `export.xml` of gigabytes is read so).
    pub fn entry(&mut self, n: usize) -> Result<impl Read + '_, ZipError> {
        let Some((index, name)) = self.files.get(n) else {
            return Err(ZipError::Archive(format!("no file {n} in the archive")));
        };
        self.archive.by_index(*index).map_err(|e| ZipError::Archive(format!("{name}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Write};

    use super::*;

    fn archive(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (name, bytes) in files {
            w.start_file(*name, opts).expect("start");
            w.write_all(bytes).expect("write");
        }
        w.finish().expect("finish").into_inner()
    }

    #[test]
    fn session_files_are_found_in_any_folder_and_read_with_a_cap() {
        let bomb = vec![b'1'; 2 << 20];
        let bytes = archive(&[
            ("1600000000_A01234/EDA.csv", b"1600000000.0\n4.0\n0.5\n"),
            ("1600000000_A01234/info.txt", b"not a session file"),
            ("tags.csv", b"1600000001.5\n"),
            ("deep/ACC.csv", &bomb),
            ("../HR.csv", b"1600000000.0\n1.0\n70\n"),
        ]);
        let mut zip = SessionZip::open(Cursor::new(bytes)).expect("opens");
        // `../HR.csv` would escape the archive's folder: not taken.
        assert_eq!(zip.names().collect::<Vec<_>>(), ["EDA.csv", "tags.csv", "ACC.csv"]);
        assert_eq!(zip.read(0, 1 << 20).expect("EDA"), "1600000000.0\n4.0\n0.5\n");
        assert_eq!(zip.read(2, 1 << 20), Err(ZipError::TooLarge { name: "ACC.csv".into(), max_mib: 1 }));
        assert_eq!(zip.read(2, 4 << 20).expect("ACC under a larger cap").len(), 2 << 20);
        assert!(matches!(zip.read(9, 1 << 20), Err(ZipError::Archive(_))));
    }

    #[test]
    fn what_is_not_a_zip_is_refused_not_a_panic() {
        for bytes in [&b""[..], b"PK\x03\x04", b"PK\x05\x06\0\0\0\0\xff\xff\xff\xff\0\0\0\0\0\0\0\0\0\0"] {
            assert!(matches!(SessionZip::open(Cursor::new(bytes.to_vec())), Err(ZipError::Archive(_))));
        }
    }
}
