//! A full disk for real: the server's data directory on a small tmpfs (mounted here; the
//! test suite runs as root, as `.ci/run` does), filled until writes fail with ENOSPC.
//! Writes are refused with 507 and a clear message, nothing acknowledged is lost, and the
//! server takes writes again by itself once space returns.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use crate::harness::{ADMIN, NOW, TestServer};

/// A tmpfs of `kib` KiB mounted on a temporary directory, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(kib: usize) -> Tmpfs {
        let dir = tempfile::tempdir().expect("tmp");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount runs");
        assert!(status.success(), "mounting a tmpfs needs root (scripts/test runs as root, as .ci/run does)");
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the file system with a file, returning its path.
    fn fill(&self) -> PathBuf {
        let filler = self.path().join("filler");
        let mut f = std::fs::File::create(&filler).expect("filler");
        let chunk = vec![0u8; 4096];
        while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.path()).status();
    }
}

fn samples(from: i64, n: i64) -> serde_json::Value {
    let rows: Vec<_> = (0..n)
        .map(|i| json!({"patient": "p-1", "metric": "heart_rate", "time": from + i * 200, "value": 60 + i % 40}))
        .collect();
    json!(rows)
}

fn stored(server: &TestServer) -> usize {
    let r = server.get_accept(
        &format!("/api/v1/patients/p-1/series/heart_rate?from={}&to={}", NOW - 86_400_000, NOW + 1),
        Some(ADMIN),
        "text/csv",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    r.body.lines().count() - 1
}

#[test]
fn a_full_disk_refuses_writes_with_507_and_the_server_takes_them_again_when_space_returns() {
    let fs = Tmpfs::mount(16 << 10);
    let data = fs.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let server = TestServer::in_dir(tempfile::tempdir().expect("tmp"), &data, |_| {});

    let r = server.ingest(&samples(NOW - 3_600_000, 500));
    assert_eq!(r.status, 200, "{}", r.body);
    let mut acknowledged = 500;
    assert_eq!(stored(&server), acknowledged);

    let filler = fs.fill();
    for round in 0..3 {
        let r = server.ingest(&samples(NOW - 1_800_000, 5_000));
        assert_eq!(r.status, 507, "round {round}: {}", r.body);
        let body = r.json();
        assert_eq!(body["code"], "insufficient_storage");
        assert!(body["message"].as_str().unwrap_or("").contains("disk is full"), "{body}");
        assert_eq!(r.retry_after.as_deref(), Some("30"));
    }
    assert_eq!(server.get("/healthz", None).status, 503, "health says storage fails");
    // Reads of patient data are audited: with no room for the entry, none is served.
    let r =
        server.get(&format!("/api/v1/patients/p-1/series/heart_rate?from={}&to={NOW}", NOW - 86_400_000), Some(ADMIN));
    assert_eq!(r.status, 507, "{}", r.body);
    assert_eq!(r.json()["code"], "insufficient_storage");

    std::fs::remove_file(filler).expect("space returns");
    // No restart, no operator: the next write goes through.
    let r = server.ingest(&samples(NOW - 1_800_000, 5_000));
    assert_eq!(r.status, 200, "{}", r.body);
    acknowledged += 5_000;
    assert_eq!(server.get("/healthz", None).status, 200);
    assert_eq!(stored(&server), acknowledged, "none of the refused writes, all of the acknowledged ones");

    // And all of it is on disk: a restart on the same directory finds every sample.
    drop(server);
    let server = TestServer::in_dir(tempfile::tempdir().expect("tmp"), &data, |_| {});
    assert_eq!(stored(&server), acknowledged);
}
