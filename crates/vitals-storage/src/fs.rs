//! The storage crate's changes to the file system, behind one small trait: creating,
//! appending, syncing, truncating, renaming and removing files, and syncing directories.
//! Reads go straight to `std::fs` (what a process reads is what it wrote, crash or not).
//!
//! [`RealFs`] is the operating system. [`SimFs`](sim::SimFs) runs on a real directory too,
//! but keeps apart what has been synced: at a crash point it writes out only what a power
//! cut would have left (file data up to its last sync, with a torn tail of what followed;
//! directory entries as of the directory's last sync, with some later changes kept in
//! order), and it can fail any operation with ENOSPC or EIO. The power-loss property tests
//! (`tests/power_loss.rs`) run the stores on it.

pub mod sim;

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;

/// A handle on the file system the stores change.
pub type FsRef = Arc<dyn Fs>;

/// What the stores do to the file system, besides reading.
pub trait Fs: Send + Sync + fmt::Debug {
    /// Creates a file (or truncates an existing one) for writing.
    fn create(&self, path: &Path) -> io::Result<FsFile>;
    /// Opens an existing file for writing at its end.
    fn append(&self, path: &Path) -> io::Result<FsFile>;
    /// Creates a directory and its missing parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Renames a file within its directory, replacing any file of the new name.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes an empty directory.
    fn remove_dir(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (files created, renamed or removed in it) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
}

/// The operating system's file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

/// The operating system's file system, shared.
pub fn real() -> FsRef {
    Arc::new(RealFs)
}

impl Fs for RealFs {
    fn create(&self, path: &Path) -> io::Result<FsFile> {
        let file = OpenOptions::new().create(true).truncate(true).write(true).open(path)?;
        Ok(FsFile { file, sim: None })
    }

    fn append(&self, path: &Path) -> io::Result<FsFile> {
        let mut file = OpenOptions::new().write(true).open(path)?;
        file.seek(SeekFrom::End(0))?;
        Ok(FsFile { file, sim: None })
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }
}

/// A file open for writing (at its end, or where [`set_len`](FsFile::set_len) left it).
pub struct FsFile {
    file: File,
    /// The simulation that watches this file, and its inode there.
    sim: Option<(Arc<sim::SimFs>, u64)>,
}

impl fmt::Debug for FsFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FsFile").field("simulated", &self.sim.is_some()).finish()
    }
}

impl FsFile {
    /// Makes the file's data durable.
    pub fn sync_data(&mut self) -> io::Result<()> {
        match &self.sim {
            None => self.file.sync_data(),
            Some((sim, ino)) => sim.sync_file(*ino, &self.file),
        }
    }

    /// Makes the file's data and metadata durable.
    pub fn sync_all(&mut self) -> io::Result<()> {
        match &self.sim {
            None => self.file.sync_all(),
            Some((sim, ino)) => sim.sync_file(*ino, &self.file),
        }
    }

    /// Cuts (or extends) the file to `len` bytes and moves the write position to its end.
    pub fn set_len(&mut self, len: u64) -> io::Result<()> {
        if let Some((sim, ino)) = &self.sim {
            sim.set_len(*ino, len)?;
        }
        self.file.set_len(len)?;
        self.file.seek(SeekFrom::Start(len)).map(drop)
    }

    /// The file's length now.
    pub fn len(&self) -> io::Result<u64> {
        self.file.metadata().map(|m| m.len())
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> io::Result<bool> {
        self.len().map(|n| n == 0)
    }
}

impl Write for FsFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &self.sim {
            None => self.file.write(buf),
            Some((sim, ino)) => {
                // The simulation may let only part of the bytes through, then fail.
                let allowed = sim.before_write(*ino, buf.len())?;
                self.file.write(&buf[..allowed])
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Creates a directory and its missing parents durably: each directory created is synced
/// into its parent, so that it (and what is later synced into it) survives a power cut.
pub fn create_dir_all_synced(fs: &dyn Fs, dir: &Path) -> io::Result<()> {
    let missing: Vec<&Path> = dir.ancestors().take_while(|a| !a.as_os_str().is_empty() && !a.is_dir()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    fs.create_dir_all(dir)?;
    for d in missing.iter().rev() {
        if let Some(parent) = d.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs.sync_dir(parent)?;
        }
    }
    Ok(())
}

/// Removes a directory and everything in it.
pub fn remove_dir_all(fs: &dyn Fs, dir: &Path) -> io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            remove_dir_all(fs, &e.path())?;
        } else {
            fs.remove_file(&e.path())?;
        }
    }
    fs.remove_dir(dir)
}

/// Cuts a record file back to `len` after a torn tail, durably; a file torn inside its
/// header (a crash right after it was created) gets its header written again, so that it
/// does not become a file of zeros.
pub fn cut_record_file(fs: &dyn Fs, path: &Path, len: u64, magic: [u8; 4], version: u32) -> io::Result<()> {
    if len >= crate::record::HEADER_LEN as u64 {
        return truncate(fs, path, len);
    }
    let mut f = fs.create(path)?;
    f.write_all(&crate::record::header(magic, version))?;
    f.sync_all()
}

/// Creates a file holding `bytes`, synced; if that fails, the file is removed again (its
/// content may never reach the disk, and must not be taken for a good file later).
pub fn create_synced(fs: &dyn Fs, path: &Path, bytes: &[u8]) -> io::Result<FsFile> {
    // If it cannot even be created, nothing of ours is there to remove.
    let mut f = fs.create(path)?;
    match f.write_all(bytes).and_then(|()| f.sync_all()) {
        Ok(()) => Ok(f),
        Err(e) => {
            drop(f);
            let _ = fs.remove_file(path);
            Err(e)
        }
    }
}

/// Opens a file for writing and cuts it to `len`, durably (repairs at start-up).
pub fn truncate(fs: &dyn Fs, path: &Path, len: u64) -> io::Result<()> {
    let mut f = fs.append(path)?;
    f.set_len(len)?;
    f.sync_all()
}

/// Writes a whole file under a temporary name, syncs it, renames it over `path` and syncs
/// the directory: after a crash the file holds either all of the old or all of the new
/// content.
pub fn replace(fs: &dyn Fs, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    drop(create_synced(fs, &tmp, bytes)?);
    fs.rename(&tmp, path)?;
    fs.sync_dir(path.parent().unwrap_or(Path::new(".")))
}
