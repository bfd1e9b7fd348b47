//! The file-drop ledger's checks (feature `conformance`), run on [`FileLedger`] here and on
//! PostgreSQL's ledger in `vitals-postgres`' tests: a processed content is a duplicate
//! after a restart, a failed one may be dropped again, the newest entries come first,
//! an erasure leaves nothing of what it picked, and (on a ledger shared by several nodes)
//! a content one node claimed is busy for the others until it is recorded.
//!
//! [`FileLedger`]: super::FileLedger

use super::{Begin, Ledger, LedgerEntry};

/// One installation under test.
pub trait Fixture {
    /// A handle on the fixture's ledger; called again after the previous handle was
    /// dropped, it must see everything recorded (a restart). On a shared ledger, two live
    /// handles are two nodes.
    fn open(&self) -> Box<dyn Ledger>;
    /// Whether several nodes share the ledger (claims are checked then).
    fn shared(&self) -> bool;
}

/// A check of the ledger's contract.
pub type Check = fn(&dyn Fixture);

/// Every check, by name.
pub const CHECKS: &[(&str, Check)] = &[
    ("a_processed_content_is_a_duplicate_after_a_restart", processed_survives),
    ("the_newest_entries_come_first", newest_first),
    ("an_erasure_leaves_nothing_it_picked", erasure),
    ("a_content_claimed_by_one_node_is_busy_for_the_others", claims),
];

/// Runs every check on a fixture of its own; panics naming the check that failed.
pub fn run_all(fresh: &dyn Fn() -> Box<dyn Fixture>) {
    crate::checks::run("ledger", CHECKS, fresh);
}

fn entry(sha: &str, name: &str, status: &str, time_ms: i64) -> LedgerEntry {
    LedgerEntry {
        sha256: sha.into(),
        name: name.into(),
        time_ms,
        status: status.into(),
        accepted: 3,
        rejected: 1,
        moved_to: format!("processed/{name}"),
        error: if status == "failed" { "no header line".into() } else { String::new() },
    }
}

fn processed_survives(f: &dyn Fixture) {
    {
        let l = f.open();
        assert_eq!(l.begin("aa").expect("begin"), Begin::Claimed);
        l.record(entry("aa", "p-1/a.csv", "processed", 10)).expect("record");
        assert_eq!(l.begin("bb").expect("begin"), Begin::Claimed);
        l.record(entry("bb", "b.csv", "failed", 11)).expect("record");
    }
    let l = f.open();
    assert_eq!(l.begin("aa").expect("begin"), Begin::Processed(entry("aa", "p-1/a.csv", "processed", 10)));
    assert_eq!(l.begin("bb").expect("begin"), Begin::Claimed, "a failed file may be dropped again");
    l.record(entry("bb", "b.csv", "processed", 12)).expect("record");
    assert!(matches!(l.begin("bb").expect("begin"), Begin::Processed(e) if e.time_ms == 12));
}

fn newest_first(f: &dyn Fixture) {
    let l = f.open();
    for i in 0..5 {
        l.record(entry(&format!("h{i}"), &format!("f{i}.csv"), "processed", 100 + i)).expect("record");
    }
    let recent = l.recent(3).expect("recent");
    let names: Vec<&str> = recent.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["f4.csv", "f3.csv", "f2.csv"]);
    assert_eq!(recent[0], entry("h4", "f4.csv", "processed", 104), "every field kept");
    assert_eq!(l.recent(100).expect("recent").len(), 5);
}

fn erasure(f: &dyn Fixture) {
    {
        let l = f.open();
        l.record(entry("aa", "p-1/a.csv", "processed", 1)).expect("record");
        l.record(entry("bb", "p-2/b.csv", "processed", 2)).expect("record");
        l.record(entry("cc", "p-1/c.csv", "failed", 3)).expect("record");
        assert_eq!(l.erase_matching(&|e: &LedgerEntry| e.name.starts_with("p-1/")).expect("erase"), 2);
        assert_eq!(l.erase_matching(&|e: &LedgerEntry| e.name.starts_with("p-1/")).expect("again"), 0);
    }
    let l = f.open();
    let names: Vec<String> = l.recent(100).expect("recent").into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["p-2/b.csv"]);
    assert_eq!(l.begin("aa").expect("begin"), Begin::Claimed, "the erased entry is no longer a duplicate's original");
}

fn claims(f: &dyn Fixture) {
    if !f.shared() {
        return;
    }
    let (a, b) = (f.open(), f.open());
    assert_eq!(a.begin("aa").expect("begin"), Begin::Claimed);
    assert_eq!(b.begin("aa").expect("begin"), Begin::Busy, "one node at a time");
    a.record(entry("aa", "a.csv", "processed", 1)).expect("record");
    assert!(matches!(b.begin("aa").expect("begin"), Begin::Processed(_)));
    // A failure lets go of the claim: the content may be dropped again, on any node.
    assert_eq!(a.begin("bb").expect("begin"), Begin::Claimed);
    a.record(entry("bb", "b.csv", "failed", 2)).expect("record");
    assert_eq!(b.begin("bb").expect("begin"), Begin::Claimed);
    // A claim let go of unrecorded (the store was overloaded) is free again at once.
    assert_eq!(b.begin("cc").expect("begin"), Begin::Claimed);
    assert_eq!(a.begin("cc").expect("begin"), Begin::Busy);
    b.release("cc").expect("release");
    assert_eq!(a.begin("cc").expect("begin"), Begin::Claimed);
}
