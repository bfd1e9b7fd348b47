//! `vitals admin user|team|patient|audit|vault` on a data directory (the real binary).

use std::io::Write;
use std::process::{Command, Stdio};

/// Runs the binary with env vars and stdin: (success, stdout, stderr).
fn run(data: &std::path::Path, args: &[&str], env: &[(&str, &str)], stdin: &str) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vitals"));
    cmd.arg("--data-dir").arg(data).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.env_remove("VITALS_VAULT_KEY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run vitals");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(data: &std::path::Path, args: &[&str]) -> String {
    let (success, out, err) = run(data, args, &[], "");
    assert!(success, "vitals {args:?}: {err}");
    out
}

#[test]
fn people_teams_and_patients_are_managed_from_the_command_line_and_the_audit_chain_detects_tampering() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path();
    let (success, _, err) = run(
        data,
        &["admin", "user", "add", "ann", "--role", "clinician", "--password-stdin"],
        &[],
        "a long enough secret\n",
    );
    assert!(success, "{err}");
    let generated = ok(data, &["admin", "user", "add", "bo", "--role", "caregiver"]);
    assert_eq!(generated.trim().len(), 20, "a generated password is printed once: {generated:?}");
    let id_file = dir.path().join("identity.json");
    std::fs::write(&id_file, r#"{"name": "Maja Berg", "date_of_birth": "2011-06-30"}"#).expect("write");
    ok(data, &["admin", "team", "add", "ward-3", "--member", "ann", "--member", "bo"]);
    let p = ok(data, &["admin", "patient", "create", "--team", "ward-3", "--identity", id_file.to_str().expect("p")]);
    let p = p.trim().to_owned();
    assert_eq!(p.len(), 36, "{p}");
    let teams = ok(data, &["admin", "team", "list"]);
    assert!(teams.contains("ward-3: members ann, bo; patients") && teams.contains(&p), "{teams}");
    let identity = ok(data, &["admin", "patient", "identity", &p]);
    assert!(identity.contains("Maja Berg"), "{identity}");
    ok(data, &["admin", "user", "set", "bo", "--disable"]);
    assert!(ok(data, &["admin", "user", "list"]).contains("disabled"));
    ok(data, &["admin", "team", "remove", "ward-3", "--member", "bo"]);
    assert!(!ok(data, &["admin", "team", "list"]).contains("bo"));
    let (success, _, err) = run(data, &["admin", "patient", "erase", &p], &[], "");
    assert!(!success && err.contains("--yes"), "erasure needs confirming: {err}");

    let verified = ok(data, &["admin", "audit", "verify"]);
    assert!(verified.contains("audit log intact"), "{verified}");
    let head = verified.split("head ").nth(1).expect("head").trim().to_owned();
    let list = ok(data, &["admin", "audit", "list", "--patient", &p]);
    assert!(list.contains("identity.read") && list.contains("patient.create"), "{list}");

    // Change one entry (as someone with file access would): verify names it and fails.
    let db = rusqlite::Connection::open(data.join("meta.sqlite")).expect("meta");
    db.execute("UPDATE audit SET actor = 'user:eve' WHERE action = 'identity.read'", []).expect("tamper");
    let (success, _, err) = run(data, &["admin", "audit", "verify"], &[], "");
    assert!(!success, "tampering is detected");
    assert!(err.contains("TAMPERED") && err.contains("was changed"), "{err}");
    db.execute("UPDATE audit SET actor = 'cli' WHERE action = 'identity.read'", []).expect("restore");
    assert!(ok(data, &["admin", "audit", "verify", "--head", &head]).contains("intact"));
    // Changed, and every hash and the head recomputed as SHA-256 (all that can be done
    // without the key file): the keyed entries no longer verify.
    let key = std::fs::read_to_string(data.join("keys").join("audit.key")).expect("an audit key next to the data");
    assert!(key.starts_with("vitals-audit-key-v1 1 "), "covers every entry of a new installation: {key}");
    {
        let meta = vitals_meta::SqliteMeta::open(&data.join("meta.sqlite")).expect("meta");
        let mut prev = vitals_meta::audit::GENESIS.to_string();
        for mut e in vitals_meta::MetaStore::audit_run(&meta, 0, usize::MAX).expect("entries") {
            if e.event.action == "identity.read" {
                e.event.actor = "user:eve".into();
            }
            let hash = vitals_meta::audit::chain_hash(&prev, e.seq, &e.event);
            db.execute(
                "UPDATE audit SET actor = ?1, prev = ?2, hash = ?3 WHERE seq = ?4",
                rusqlite::params![e.event.actor, prev, hash, e.seq],
            )
            .expect("rehash");
            prev = hash;
        }
        db.execute("UPDATE audit_head SET hash = ?1", [&prev]).expect("head");
    }
    let (success, _, err) = run(data, &["admin", "audit", "verify"], &[], "");
    assert!(!success && err.contains("TAMPERED") && err.contains("entry 1:"), "{err}");
    // A chain rewritten from the start (every hash recomputed) no longer holds the head
    // saved elsewhere.
    db.execute("DELETE FROM audit", []).expect("wipe");
    db.execute("DELETE FROM audit_head", []).expect("wipe head");
    let (success, _, err) = run(data, &["admin", "audit", "verify", "--head", &head], &[], "");
    assert!(!success && err.contains("rewritten"), "{err}");
}

#[test]
fn the_vault_key_rotates_and_a_wrong_or_missing_key_fails_clearly() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path();
    let id_file = dir.path().join("identity.json");
    std::fs::write(&id_file, r#"{"name": "Noor Haddad", "external_ids": {"nhs": "943 476 5919"}}"#).expect("write");
    let p = ok(data, &["admin", "patient", "create", "--identity", id_file.to_str().expect("p")]).trim().to_owned();
    let key_file = data.join("keys").join("vault.key");
    let vault_bytes = || -> Vec<u8> {
        let mut all = Vec::new();
        for e in std::fs::read_dir(data.join("vault")).expect("vault").flatten() {
            all.extend(std::fs::read(e.path()).expect("read"));
        }
        all
    };
    assert!(!vault_bytes().windows(4).any(|w| w == b"Noor"), "no plaintext name in the vault files");
    let k1 = std::fs::read_to_string(&key_file).expect("key file");
    assert!(k1.contains("k1 "), "{k1}");

    assert!(ok(data, &["admin", "vault", "new-key", "k2"]).contains("primary k2"));
    assert!(ok(data, &["admin", "vault", "status"]).contains("k1: seals 1 records"));
    let (success, _, err) = run(data, &["admin", "vault", "retire-key", "k1"], &[], "");
    assert!(!success && err.contains("rotate"), "k1 still seals a record: {err}");
    assert!(ok(data, &["admin", "vault", "rotate"]).contains("re-sealed 1 records"));
    ok(data, &["admin", "vault", "retire-key", "k1"]);
    let now = std::fs::read_to_string(&key_file).expect("key file");
    assert!(now.contains("k2 ") && !now.contains("k1 "), "{now}");
    assert!(ok(data, &["admin", "patient", "identity", &p]).contains("Noor Haddad"), "readable with k2 alone");

    // The old key (now absent) and a wrong key for k2 are both refused with a clear reason.
    let old = k1.lines().find(|l| l.starts_with("k1 ")).expect("k1 line").split(' ').nth(1).expect("key");
    let (success, _, err) =
        run(data, &["admin", "patient", "identity", &p], &[("VITALS_VAULT_KEY", &format!("k1:{old}"))], "");
    assert!(!success && err.contains("sealed with key \"k2\", which is not in the key ring"), "{err}");
    let (success, _, err) =
        run(data, &["admin", "patient", "identity", &p], &[("VITALS_VAULT_KEY", &format!("k2:{old}"))], "");
    assert!(!success && err.contains("wrong key for key id \"k2\""), "{err}");
    let (success, _, err) = run(data, &["admin", "patient", "identity", &p], &[("VITALS_VAULT_KEY", "k2:AAAA")], "");
    assert!(!success && err.contains("32"), "{err}");

    // Export and erase on the data directory (no server running).
    let zip_path = dir.path().join("export.zip");
    let (success, _, err) =
        run(data, &["admin", "patient", "export", &p, "--out", zip_path.to_str().expect("p")], &[], "");
    assert!(success, "{err}");
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&zip_path).expect("zip")).expect("a zip archive");
    let mut identity = String::new();
    std::io::Read::read_to_string(&mut zip.by_name("identity.json").expect("identity.json"), &mut identity)
        .expect("read");
    assert!(identity.contains("Noor Haddad") && identity.contains("943 476 5919"), "{identity}");
    let (success, _, err) = run(data, &["admin", "patient", "erase", &p, "--yes"], &[], "");
    assert!(success && err.contains("identity erased"), "{err}");
    let (success, _, err) = run(data, &["admin", "patient", "identity", &p], &[], "");
    assert!(!success && err.contains("no identity recorded"), "{err}");
    assert!(!ok(data, &["admin", "patient", "list"]).contains(&p));
    assert!(ok(data, &["admin", "audit", "list", "--patient", &p]).contains("patient.erase"));
}
