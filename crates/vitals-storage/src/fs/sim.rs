//! A simulated power cut over a real directory, for tests.
//!
//! [`SimFs`] performs every change on the real files (so reads see what a running process
//! sees: the page cache), and keeps a model of what is *durable*: each file's content as of
//! its last sync, and each directory's entries as of its last sync. At a power cut it
//! writes out, into another directory, only what a disk could hold afterwards:
//!
//! - a file's data as of its last sync, plus a torn tail: a random prefix of what was
//!   appended after it (never data that was synced and then lost, except below);
//! - a directory's entries as of its last sync, plus a random prefix, in order, of the
//!   creations, renames and removals made in it since (a rename is atomic);
//! - after a failed sync (EIO) the kernel may have dropped the unsynced pages while still
//!   showing them, so the bytes that were unsynced then read as zeros on disk even after a
//!   later sync succeeds, unless the file was cut below them first.
//!
//! Every change is one operation, numbered from 1; a test can cut the power just before
//! operation `n` ([`SimFs::crash_at`]) or fail operations `n..n + count` with ENOSPC
//! (writes, creations) or EIO (syncs) ([`SimFs::fail_ops`]). A failing write first lets
//! half of its bytes through, as a full disk does.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use super::{Fs, FsFile};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    Dir,
    File(u64),
}

#[derive(Debug, Clone)]
enum DirOp {
    Add(PathBuf, Node),
    Remove(PathBuf),
    Rename(PathBuf, PathBuf),
}

#[derive(Debug, Default)]
struct Inode {
    /// The content a power cut leaves (before a torn tail).
    durable: Vec<u8>,
    /// Where the file is now (None once removed).
    path: Option<PathBuf>,
    /// Bytes that were unsynced when a sync failed: lost for good.
    poisoned: Option<(u64, u64)>,
}

#[derive(Debug)]
struct Crash {
    at: u64,
    into: PathBuf,
}

#[derive(Debug, Default)]
struct State {
    next_ino: u64,
    inodes: HashMap<u64, Inode>,
    current: BTreeMap<PathBuf, Node>,
    durable: BTreeMap<PathBuf, Node>,
    /// Per directory, the entry changes since its last sync.
    pending: BTreeMap<PathBuf, Vec<DirOp>>,
    ops: u64,
    crash: Option<Crash>,
    crashed: bool,
    fail: Option<(u64, u64)>,
    /// The write after a half-done failing one fails outright.
    write_torn: bool,
    rng: u64,
}

/// See the module documentation.
#[derive(Debug)]
pub struct SimFs {
    root: PathBuf,
    /// `SIMFS_TRACE=1`: print every operation (number, kind, path, failing) to stderr.
    trace: bool,
    me: Weak<SimFs>,
    state: Mutex<State>,
}

fn no_space() -> io::Error {
    io::Error::new(io::ErrorKind::StorageFull, "simulated: no space left on device")
}

fn eio() -> io::Error {
    io::Error::other("simulated: input/output error")
}

impl State {
    fn random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.random() % n }
    }

    fn new_inode(&mut self, path: &Path, durable: Vec<u8>) -> u64 {
        self.next_ino += 1;
        self.inodes.insert(self.next_ino, Inode { durable, path: Some(path.to_owned()), poisoned: None });
        self.next_ino
    }
}

fn parent(path: &Path) -> PathBuf {
    path.parent().map(Path::to_owned).unwrap_or_default()
}

fn apply(tree: &mut BTreeMap<PathBuf, Node>, op: &DirOp) {
    match op {
        DirOp::Add(p, n) => {
            tree.insert(p.clone(), *n);
        }
        DirOp::Remove(p) => {
            tree.remove(p);
        }
        DirOp::Rename(a, b) => {
            if let Some(n) = tree.remove(a) {
                tree.insert(b.clone(), n);
            }
        }
    }
}

impl SimFs {
    /// Watches `root` (created if missing); what it holds now counts as durable. `seed`
    /// makes the torn tails and kept directory changes of a power cut reproducible.
    pub fn new(root: &Path, seed: u64) -> io::Result<Arc<SimFs>> {
        std::fs::create_dir_all(root)?;
        let mut st = State { rng: seed | 1, ..State::default() };
        st.current.insert(root.to_owned(), Node::Dir);
        let mut stack = vec![root.to_owned()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d)? {
                let p = e?.path();
                if p.is_dir() {
                    st.current.insert(p.clone(), Node::Dir);
                    stack.push(p);
                } else {
                    let ino = st.new_inode(&p, std::fs::read(&p)?);
                    st.current.insert(p, Node::File(ino));
                }
            }
        }
        st.durable = st.current.clone();
        Ok(Arc::new_cyclic(|me| SimFs {
            root: root.to_owned(),
            trace: std::env::var_os("SIMFS_TRACE").is_some(),
            me: me.clone(),
            state: Mutex::new(st),
        }))
    }

    /// Cuts the power just before operation `op` (1-based), writing what survives into
    /// `into`; the directory under test carries on as if nothing happened.
    pub fn crash_at(&self, op: u64, into: &Path) {
        self.state.lock().crash = Some(Crash { at: op, into: into.to_owned() });
    }

    /// Fails operations `from..from + count`.
    pub fn fail_ops(&self, from: u64, count: u64) {
        self.state.lock().fail = Some((from, count));
    }

    /// Operations so far.
    pub fn ops(&self) -> u64 {
        self.state.lock().ops
    }

    /// Whether the armed power cut has happened.
    pub fn crashed(&self) -> bool {
        self.state.lock().crashed
    }

    /// Cuts the power now, writing what survives into `into`.
    pub fn power_cut(&self, into: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        self.materialize(&mut st, into)
    }

    /// Counts an operation: cuts the power if it is the armed one, and says whether it fails.
    fn tick(&self, st: &mut State, what: &str, path: Option<&Path>) -> io::Result<bool> {
        st.ops += 1;
        if let Some(c) = &st.crash
            && c.at == st.ops
            && !st.crashed
        {
            let into = c.into.clone();
            self.materialize(st, &into)?;
            st.crashed = true;
        }
        let failing = st.fail.is_some_and(|(from, count)| st.ops >= from && st.ops < from.saturating_add(count));
        if self.trace {
            let crashed = if st.crashed { " (after the cut)" } else { "" };
            let fails = if failing { " FAILS" } else { "" };
            eprintln!(
                "simfs {:>5} {what} {}{fails}{crashed}",
                st.ops,
                path.map(|p| p.display().to_string()).unwrap_or_default()
            );
        }
        Ok(failing)
    }

    fn inode_of(&self, st: &mut State, path: &Path) -> io::Result<u64> {
        match st.current.get(path) {
            Some(Node::File(ino)) => Ok(*ino),
            Some(Node::Dir) => Err(io::Error::other(format!("{} is a directory", path.display()))),
            // Made outside the simulation: durable as it is.
            None => {
                let ino = st.new_inode(path, std::fs::read(path)?);
                st.current.insert(path.to_owned(), Node::File(ino));
                st.durable.insert(path.to_owned(), Node::File(ino));
                Ok(ino)
            }
        }
    }

    fn handle(&self, file: File, ino: u64) -> FsFile {
        FsFile { file, sim: self.me.upgrade().map(|s| (s, ino)) }
    }

    pub(super) fn before_write(&self, ino: u64, len: usize) -> io::Result<usize> {
        let mut st = self.state.lock();
        if std::mem::take(&mut st.write_torn) {
            return Err(no_space());
        }
        let path = st.inodes.get(&ino).and_then(|i| i.path.clone());
        if self.tick(&mut st, "write", path.as_deref())? {
            if len >= 2 {
                st.write_torn = true;
                return Ok(len / 2);
            }
            return Err(no_space());
        }
        Ok(len)
    }

    pub(super) fn sync_file(&self, ino: u64, _file: &File) -> io::Result<()> {
        let mut st = self.state.lock();
        let path = st.inodes.get(&ino).and_then(|i| i.path.clone());
        let failing = self.tick(&mut st, "sync", path.as_deref())?;
        let Some(inode) = st.inodes.get_mut(&ino) else { return Ok(()) };
        let Some(path) = inode.path.clone() else { return Ok(()) };
        let now = std::fs::read(&path)?;
        if failing {
            let from = inode.durable.len() as u64;
            inode.poisoned = Some((from.min(now.len() as u64), now.len() as u64));
            return Err(eio());
        }
        let mut durable = now;
        if let Some((a, b)) = inode.poisoned {
            let end = (b as usize).min(durable.len());
            for byte in durable.iter_mut().take(end).skip(a as usize) {
                *byte = 0;
            }
        }
        inode.durable = durable;
        Ok(())
    }

    pub(super) fn set_len(&self, ino: u64, len: u64) -> io::Result<()> {
        let mut st = self.state.lock();
        let path = st.inodes.get(&ino).and_then(|i| i.path.clone());
        if self.tick(&mut st, "set_len", path.as_deref())? {
            return Err(eio());
        }
        if let Some(inode) = st.inodes.get_mut(&ino)
            && let Some((a, b)) = inode.poisoned
        {
            inode.poisoned = if len <= a { None } else { Some((a, b.min(len))) };
        }
        Ok(())
    }

    fn materialize(&self, st: &mut State, into: &Path) -> io::Result<()> {
        let mut tree = st.durable.clone();
        let pending: Vec<Vec<DirOp>> = st.pending.values().cloned().collect();
        for ops in pending {
            let keep = st.below(ops.len() as u64 + 1) as usize;
            for op in &ops[..keep] {
                apply(&mut tree, op);
            }
        }
        std::fs::create_dir_all(into)?;
        for (path, node) in &tree {
            let Ok(rel) = path.strip_prefix(&self.root) else { continue };
            // An entry survives only in a directory that survived.
            let reachable = path
                .ancestors()
                .skip(1)
                .take_while(|a| a.starts_with(&self.root))
                .all(|a| a == self.root || tree.get(a) == Some(&Node::Dir));
            if !reachable || rel.as_os_str().is_empty() {
                continue;
            }
            let out = into.join(rel);
            match node {
                Node::Dir => std::fs::create_dir_all(&out)?,
                Node::File(ino) => {
                    let (mut bytes, current) = match st.inodes.get(ino) {
                        Some(i) => (i.durable.clone(), i.path.as_ref().and_then(|p| std::fs::read(p).ok())),
                        None => (Vec::new(), None),
                    };
                    if let Some(now) = current
                        && now.len() > bytes.len()
                        && now.starts_with(&bytes)
                    {
                        let extra = st.below((now.len() - bytes.len()) as u64 + 1) as usize;
                        let from = bytes.len();
                        bytes.extend_from_slice(&now[from..from + extra]);
                    }
                    if let Some(p) = out.parent() {
                        std::fs::create_dir_all(p)?;
                    }
                    std::fs::File::create(&out)?.write_all(&bytes)?;
                }
            }
        }
        Ok(())
    }
}

impl Fs for SimFs {
    fn create(&self, path: &Path) -> io::Result<FsFile> {
        let mut st = self.state.lock();
        if self.tick(&mut st, "create", Some(path))? {
            return Err(no_space());
        }
        let file = std::fs::OpenOptions::new().create(true).truncate(true).write(true).open(path)?;
        let ino = match st.current.get(path) {
            Some(Node::File(ino)) => {
                // Truncated: whatever was lost of its old pages no longer matters.
                let ino = *ino;
                if let Some(i) = st.inodes.get_mut(&ino) {
                    i.poisoned = None;
                }
                ino
            }
            _ => {
                let ino = st.new_inode(path, Vec::new());
                st.current.insert(path.to_owned(), Node::File(ino));
                st.pending.entry(parent(path)).or_default().push(DirOp::Add(path.to_owned(), Node::File(ino)));
                ino
            }
        };
        Ok(self.handle(file, ino))
    }

    fn append(&self, path: &Path) -> io::Result<FsFile> {
        let mut st = self.state.lock();
        if self.tick(&mut st, "open", Some(path))? {
            return Err(eio());
        }
        let mut file = std::fs::OpenOptions::new().write(true).open(path)?;
        std::io::Seek::seek(&mut file, std::io::SeekFrom::End(0))?;
        let ino = self.inode_of(&mut st, path)?;
        Ok(self.handle(file, ino))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        let mut missing: Vec<PathBuf> =
            path.ancestors().take_while(|a| !a.is_dir()).map(Path::to_owned).collect::<Vec<_>>();
        missing.reverse();
        for dir in missing {
            if self.tick(&mut st, "mkdir", Some(&dir))? {
                return Err(no_space());
            }
            std::fs::create_dir(&dir)?;
            st.current.insert(dir.clone(), Node::Dir);
            st.pending.entry(parent(&dir)).or_default().push(DirOp::Add(dir, Node::Dir));
        }
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        if self.tick(&mut st, "rename", Some(to))? {
            return Err(no_space());
        }
        if parent(from) != parent(to) {
            return Err(io::Error::other("simulated renames stay within a directory"));
        }
        let ino = self.inode_of(&mut st, from)?;
        std::fs::rename(from, to)?;
        if let Some(Node::File(old)) = st.current.remove(to)
            && let Some(i) = st.inodes.get_mut(&old)
        {
            i.path = None;
        }
        st.current.remove(from);
        st.current.insert(to.to_owned(), Node::File(ino));
        if let Some(i) = st.inodes.get_mut(&ino) {
            i.path = Some(to.to_owned());
        }
        st.pending.entry(parent(to)).or_default().push(DirOp::Rename(from.to_owned(), to.to_owned()));
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        if self.tick(&mut st, "remove", Some(path))? {
            return Err(eio());
        }
        let ino = self.inode_of(&mut st, path)?;
        std::fs::remove_file(path)?;
        st.current.remove(path);
        if let Some(i) = st.inodes.get_mut(&ino) {
            i.path = None;
        }
        st.pending.entry(parent(path)).or_default().push(DirOp::Remove(path.to_owned()));
        Ok(())
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        if self.tick(&mut st, "rmdir", Some(path))? {
            return Err(eio());
        }
        std::fs::remove_dir(path)?;
        st.current.remove(path);
        st.pending.entry(parent(path)).or_default().push(DirOp::Remove(path.to_owned()));
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        if self.tick(&mut st, "sync_dir", Some(path))? {
            return Err(eio());
        }
        if !path.is_dir() {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("{} is not a directory", path.display())));
        }
        for op in st.pending.remove(path).unwrap_or_default() {
            apply(&mut st.durable, &op);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn a_power_cut_keeps_synced_data_and_entries_only() {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path().join("root");
        let sim = SimFs::new(&root, 7).expect("sim");
        let cut = dir.path().join("cut");
        // Synced file in a synced directory: survives whole.
        let mut a = sim.create(&root.join("a")).expect("create");
        a.write_all(b"hello").expect("write");
        a.sync_all().expect("sync");
        sim.sync_dir(&root).expect("sync dir");
        // Appended after the sync: at most a torn prefix of it survives.
        a.write_all(b" world").expect("write");
        // Synced data, but its directory entry never synced: may vanish.
        sim.create_dir_all(&root.join("sub")).expect("mkdir");
        let mut b = sim.create(&root.join("sub/b")).expect("create");
        b.write_all(b"bbb").expect("write");
        b.sync_all().expect("sync");
        sim.power_cut(&cut).expect("cut");
        let a_after = std::fs::read(cut.join("a")).expect("a survives");
        assert!(a_after.starts_with(b"hello") && b"hello world".starts_with(&a_after[..]), "{a_after:?}");
        if let Ok(b_after) = std::fs::read(cut.join("sub/b")) {
            assert_eq!(b_after, b"bbb", "synced data, if its entry survived");
        }
        // The running directory is untouched.
        assert_eq!(std::fs::read(root.join("a")).expect("a"), b"hello world");
    }

    #[test]
    fn unsynced_entries_vanish_in_some_cuts_and_renames_are_atomic() {
        let mut vanished = 0;
        let mut renamed = 0;
        for seed in 1..40u64 {
            let dir = tempfile::tempdir().expect("tmp");
            let root = dir.path().join("root");
            let sim = SimFs::new(&root, seed).expect("sim");
            let mut f = sim.create(&root.join("x.tmp")).expect("create");
            f.write_all(b"new").expect("write");
            f.sync_all().expect("sync");
            sim.rename(&root.join("x.tmp"), &root.join("x")).expect("rename");
            let cut = dir.path().join("cut");
            sim.power_cut(&cut).expect("cut");
            let names: Vec<String> = std::fs::read_dir(&cut)
                .expect("ls")
                .map(|e| e.expect("e").file_name().to_string_lossy().into_owned())
                .collect();
            match names.as_slice() {
                [] => vanished += 1,
                [n] if n == "x" => renamed += 1,
                [n] if n == "x.tmp" => {}
                other => panic!("not a state a crash leaves: {other:?}"),
            }
        }
        assert!(vanished > 0 && renamed > 0, "{vanished} {renamed}");
    }

    #[test]
    fn a_failed_sync_loses_the_unsynced_bytes_for_good() {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path().join("root");
        let sim = SimFs::new(&root, 3).expect("sim");
        let mut f = sim.create(&root.join("log")).expect("create");
        sim.sync_dir(&root).expect("sync dir");
        f.write_all(b"good").expect("write");
        f.sync_data().expect("sync");
        f.write_all(b"lost").expect("write");
        let next = sim.ops() + 1;
        sim.fail_ops(next, 1);
        assert!(f.sync_data().is_err(), "EIO");
        // Retrying the sync "succeeds", but the pages are gone.
        f.sync_data().expect("sync again");
        let cut = dir.path().join("cut");
        sim.power_cut(&cut).expect("cut");
        assert_eq!(std::fs::read(cut.join("log")).expect("log"), b"good\0\0\0\0");
        // Cutting the file back first, as the WAL does, then writing again is safe.
        f.set_len(4).expect("cut back");
        f.write_all(b"more").expect("write");
        f.sync_data().expect("sync");
        let cut = dir.path().join("cut2");
        sim.power_cut(&cut).expect("cut");
        assert_eq!(std::fs::read(cut.join("log")).expect("log"), b"goodmore");
    }

    #[test]
    fn a_failing_write_lets_half_through_then_fails() {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path().join("root");
        let sim = SimFs::new(&root, 3).expect("sim");
        let mut f = sim.create(&root.join("log")).expect("create");
        let next = sim.ops() + 1;
        sim.fail_ops(next, 1);
        let e = f.write_all(b"12345678").expect_err("no space");
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
        assert_eq!(std::fs::read(root.join("log")).expect("log"), b"1234");
    }
}
