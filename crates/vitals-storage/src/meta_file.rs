//! Small metadata documents in the data directory (tokens until the metadata store lands),
//! written atomically: temp file, fsync, rename, fsync directory.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::wal::sync_dir;

#[derive(Debug, thiserror::Error)]
pub enum MetaFileError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {reason}")]
    Format { path: PathBuf, reason: String },
}

/// Reads a JSON document; `Ok(None)` when it does not exist.
pub fn read<T: DeserializeOwned>(dir: &Path, name: &str) -> Result<Option<T>, MetaFileError> {
    let path = dir.join(name);
    match fs::read(&path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map(Some).map_err(|e| MetaFileError::Format { path, reason: e.to_string() })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(MetaFileError::Io { path, source }),
    }
}

/// Identity of a document's current version (inode, change time, size), to notice
/// replacements made by another process even within one timestamp tick.
pub fn version(dir: &Path, name: &str) -> Option<(u64, i64, i64, u64)> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(dir.join(name)).ok().map(|m| (m.ino(), m.ctime(), m.ctime_nsec(), m.size()))
}

/// Replaces a JSON document atomically and durably.
pub fn write<T: Serialize>(dir: &Path, name: &str, value: &T) -> Result<(), MetaFileError> {
    let path = dir.join(name);
    let io = |source| MetaFileError::Io { path: path.clone(), source };
    fs::create_dir_all(dir).map_err(io)?;
    let bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| MetaFileError::Format { path: path.clone(), reason: e.to_string() })?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = File::create(&tmp).map_err(io)?;
    f.write_all(&bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    fs::rename(&tmp, &path).map_err(io)?;
    sync_dir(dir).map_err(io)?;
    Ok(())
}
