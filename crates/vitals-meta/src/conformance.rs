//! The contract of [`MetaStore`] as checks every implementation must pass (the embedded
//! SQLite store in this crate's tests, the PostgreSQL store of cluster mode in
//! `vitals-postgres`). Built with the `conformance` feature, for tests only.
//!
//! A [`Fixture`] opens handles onto one fresh, empty store (two handles are two nodes of a
//! cluster, or the server and a `vitals admin` command) and runs raw SQL on it, which the
//! audit checks use to play someone who edits the database behind Vitals' back. The SQL is
//! the portable subset both databases take.

use std::sync::Arc;

use crate::audit::{self, AuditEvent, AuditKey, ChainBreak};
use crate::model::{DeviceCert, Patient, Role, Session, Token, User};
use crate::{AuditFilter, MetaError, MetaStore, verify_audit};

/// One fresh store under test.
pub trait Fixture {
    /// A new handle onto the same store.
    fn open(&self) -> Arc<dyn MetaStore>;
    /// Runs one SQL statement on the store's database, bypassing the trait.
    fn raw(&self, sql: &str);
}

/// A check of the contract.
pub type Check = fn(&dyn Fixture);

/// Every check, by name: run each on a fresh fixture.
pub const CHECKS: &[(&str, Check)] = &[
    ("users_teams_and_tokens_round_trip_across_handles", users_teams_and_tokens),
    ("a_user_is_found_by_id_before_a_name_equal_to_it", id_before_name),
    ("failed_sign_ins_lock_then_the_lock_expires", lockout),
    ("sessions_are_found_and_ended", sessions),
    ("device_certificates_are_unique_and_revocable", device_certs),
    ("erasing_a_patient_removes_its_links_tokens_and_certificates", erase_patient),
    ("the_audit_log_filters_and_pages", audit_filters),
    ("the_audit_chain_detects_changed_inserted_and_removed_entries", audit_tamper),
    ("a_keyed_chain_rewritten_in_the_database_does_not_verify", audit_keyed),
    ("audit_appends_from_many_handles_at_once_form_one_chain", audit_concurrent),
];

/// Runs every check, each on a fixture of its own; panics naming the check that failed.
pub fn run_all(fresh: &dyn Fn() -> Box<dyn Fixture>) {
    for (name, check) in CHECKS {
        let fixture = fresh();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(fixture.as_ref())));
        if let Err(e) = outcome {
            let why = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("conformance check {name} failed: {why}");
        }
    }
}

fn user(name: &str, role: Role) -> User {
    User {
        id: format!("u-{name}"),
        name: name.into(),
        role,
        password_hash: Some("$argon2id$stub".into()),
        patient: None,
        disabled: false,
        failed_logins: 0,
        locked_until_ms: None,
        created_ms: 1,
    }
}

fn event(i: i64, patient: Option<&str>, action: &str) -> AuditEvent {
    AuditEvent {
        ts_ms: i,
        actor: "user:ann".into(),
        action: action.into(),
        patient: patient.map(str::to_owned),
        target: "/api/v1/x".into(),
        origin: "127.0.0.1".into(),
        outcome: "ok".into(),
    }
}

fn token(id: &str, sha: &str, patient: Option<&str>) -> Token {
    Token {
        id: id.into(),
        name: "watch".into(),
        role: Role::Device,
        user_id: None,
        device: Some("w1".into()),
        patient: patient.map(str::to_owned),
        sha256: sha.into(),
        api_secret_sha256: Some(format!("{sha}-ns")),
        created_ms: 1,
        expires_ms: Some(100),
        revoked_ms: None,
    }
}

fn users_teams_and_tokens(f: &dyn Fixture) {
    let (a, b) = (f.open(), f.open());
    a.create_user(&user("ann", Role::Clinician)).expect("ann");
    assert!(matches!(a.create_user(&user("ann", Role::Admin)), Err(MetaError::Conflict(_))));
    assert_eq!(b.user("ann").expect("by name"), Some(user("ann", Role::Clinician)));
    assert_eq!(b.user("u-ann").expect("by id").map(|u| u.name), Some("ann".into()));
    let mut changed = user("ann", Role::Caregiver);
    changed.disabled = true;
    changed.password_hash = None;
    a.update_user(&changed).expect("update");
    assert_eq!(b.user("ann").expect("read"), Some(changed));
    assert!(matches!(a.update_user(&user("nobody", Role::Admin)), Err(MetaError::NotFound(_))));

    a.create_team("ward-3", 1).expect("team");
    assert!(matches!(a.create_team("ward-3", 2), Err(MetaError::Conflict(_))));
    a.set_member("ward-3", "u-ann", true).expect("member");
    a.set_member("ward-3", "u-ann", true).expect("member twice is one membership");
    assert!(matches!(a.set_member("ward-3", "u-nobody", true), Err(MetaError::NotFound(_))));
    assert!(matches!(a.set_member("ward-9", "u-ann", true), Err(MetaError::NotFound(_))));
    a.set_team_patient("ward-3", "p-1", true).expect("patient");
    a.set_team_patient("ward-3", "p-2", true).expect("patient");
    assert_eq!(b.patients_of_member("u-ann").expect("patients"), vec!["p-1", "p-2"]);
    a.set_team_patient("ward-3", "p-2", false).expect("unlink");
    assert_eq!(b.patients_of_member("u-ann").expect("patients"), vec!["p-1"]);
    let teams = b.teams().expect("teams");
    assert_eq!(
        (teams.len(), teams[0].members.clone(), teams[0].patients.clone()),
        (1, vec!["u-ann".into()], vec!["p-1".into()])
    );

    let t = token("tok-1", "aa", Some("p-1"));
    a.create_token(&t).expect("token");
    assert!(matches!(a.create_token(&t), Err(MetaError::Conflict(_))));
    assert_eq!(b.token_by_sha256("aa").expect("lookup"), Some(t.clone()));
    assert_eq!(b.token_by_api_secret("aa-ns").expect("lookup").map(|t| t.id), Some("tok-1".into()));
    assert!(b.token_by_sha256("zz").expect("lookup").is_none());
    assert!(b.revoke_token("tok-1", 5).expect("revoke"));
    assert!(!b.revoke_token("tok-1", 6).expect("revoke twice"));
    assert_eq!(a.token("tok-1").expect("lookup").and_then(|t| t.revoked_ms), Some(5));
    assert_eq!(a.tokens().expect("all").len(), 1);

    assert!(a.delete_user("u-ann").expect("delete"));
    assert!(!a.delete_user("u-ann").expect("delete twice"));
    assert!(a.teams().expect("teams")[0].members.is_empty(), "memberships go with the user");
    assert!(a.delete_team("ward-3").expect("delete team"));
    assert!(b.teams().expect("teams").is_empty());
}

fn id_before_name(f: &dyn Fixture) {
    let s = f.open();
    let mut first = user("bob", Role::Analyst);
    first.id = "carol".into();
    s.create_user(&first).expect("bob, id carol");
    s.create_user(&user("carol", Role::Admin)).expect("carol");
    assert_eq!(s.user("carol").expect("lookup").map(|u| u.name), Some("bob".into()));
    assert_eq!(s.users().expect("all").iter().map(|u| u.name.clone()).collect::<Vec<_>>(), vec!["bob", "carol"]);
}

fn lockout(f: &dyn Fixture) {
    let s = f.open();
    s.create_user(&user("ann", Role::Clinician)).expect("ann");
    assert_eq!(s.record_failed_login("u-ann", 1000, 3, 60_000).expect("1"), None);
    assert_eq!(s.record_failed_login("u-ann", 1001, 3, 60_000).expect("2"), None);
    assert_eq!(s.record_failed_login("u-ann", 1002, 3, 60_000).expect("3"), Some(61_002));
    let u = s.user("ann").expect("read").expect("ann");
    assert_eq!((u.failed_logins, u.locked_until_ms), (3, Some(61_002)));
    // After the lock ran out, a failure counts from one again.
    assert_eq!(s.record_failed_login("u-ann", 70_000, 3, 60_000).expect("after"), None);
    assert_eq!(s.user("ann").expect("read").map(|u| (u.failed_logins, u.locked_until_ms)), Some((1, None)));
    s.unlock_user("u-ann").expect("unlock");
    assert_eq!(s.user("ann").expect("read").map(|u| u.failed_logins), Some(0));
    assert!(matches!(s.record_failed_login("u-nobody", 1, 3, 1), Err(MetaError::NotFound(_))));
}

fn sessions(f: &dyn Fixture) {
    let (a, b) = (f.open(), f.open());
    a.create_user(&user("ann", Role::Clinician)).expect("ann");
    let session = |h: &str| Session {
        sha256: h.into(),
        user_id: "u-ann".into(),
        csrf: format!("csrf-{h}"),
        created_ms: 10,
        expires_ms: 20,
    };
    a.create_session(&session("s1")).expect("s1");
    a.create_session(&session("s2")).expect("s2");
    assert!(matches!(a.create_session(&session("s1")), Err(MetaError::Conflict(_))));
    assert_eq!(b.session("s1").expect("lookup"), Some(session("s1")));
    b.delete_session("s1").expect("end");
    assert!(a.session("s1").expect("lookup").is_none());
    a.delete_sessions_of("u-ann").expect("end all");
    assert!(b.session("s2").expect("lookup").is_none());
    a.create_session(&session("s3")).expect("s3");
    a.delete_user("u-ann").expect("delete");
    assert!(b.session("s3").expect("lookup").is_none(), "sessions go with their user");
}

fn cert(id: &str, sha: &str, patient: Option<&str>) -> DeviceCert {
    DeviceCert {
        sha256: sha.into(),
        id: id.into(),
        name: format!("{id} cert"),
        device: "w1".into(),
        patient: patient.map(str::to_owned),
        created_ms: 3,
        revoked_ms: None,
    }
}

fn device_certs(f: &dyn Fixture) {
    let (a, b) = (f.open(), f.open());
    a.create_device_cert(&cert("c1", "d1", Some("p-1"))).expect("c1");
    assert!(matches!(a.create_device_cert(&cert("c2", "d1", None)), Err(MetaError::Conflict(_))));
    a.create_device_cert(&cert("c2", "d2", None)).expect("c2");
    assert_eq!(b.device_cert("d1").expect("lookup"), Some(cert("c1", "d1", Some("p-1"))));
    assert!(b.device_cert("d9").expect("lookup").is_none());
    assert!(b.revoke_device_cert("c1", 9).expect("revoke"));
    assert!(!b.revoke_device_cert("c1", 10).expect("revoke twice"));
    assert_eq!(a.device_cert("d1").expect("lookup").and_then(|c| c.revoked_ms), Some(9));
    assert_eq!(a.device_certs().expect("all").iter().map(|c| c.id.clone()).collect::<Vec<_>>(), vec!["c1", "c2"]);
}

fn erase_patient(f: &dyn Fixture) {
    let s = f.open();
    let p = Patient { id: "p-1".into(), created_ms: 1, created_by: "cli".into() };
    s.create_patient(&p).expect("patient");
    assert!(matches!(s.create_patient(&p), Err(MetaError::Conflict(_))));
    s.create_patient(&Patient { id: "p-2".into(), created_ms: 2, created_by: "u-ann".into() }).expect("p-2");
    assert_eq!(s.patient("p-1").expect("lookup"), Some(p));
    assert_eq!(s.patients().expect("all").len(), 2);
    let mut own = user("pat", Role::Patient);
    own.patient = Some("p-1".into());
    s.create_user(&own).expect("patient account");
    s.create_user(&user("ann", Role::Clinician)).expect("ann");
    s.create_team("ward", 1).expect("team");
    s.set_member("ward", "u-ann", true).expect("member");
    s.set_team_patient("ward", "p-1", true).expect("link");
    s.set_team_patient("ward", "p-2", true).expect("link");
    s.create_token(&token("tok-1", "aa", Some("p-1"))).expect("token");
    s.create_token(&token("tok-2", "bb", Some("p-2"))).expect("token");
    s.create_device_cert(&cert("c1", "d1", Some("p-1"))).expect("cert");

    assert!(s.delete_patient("p-1").expect("erase"));
    assert!(s.patient("p-1").expect("lookup").is_none());
    assert!(s.token("tok-1").expect("lookup").is_none());
    assert!(s.token("tok-2").expect("lookup").is_some(), "another patient's token stays");
    assert!(s.device_cert("d1").expect("lookup").is_none());
    assert_eq!(s.patients_of_member("u-ann").expect("patients"), vec!["p-2"]);
    let own = s.user("pat").expect("lookup").expect("kept, disabled");
    assert_eq!((own.patient, own.disabled), (None, true));
    assert!(!s.delete_patient("p-1").expect("erase twice"));
}

fn audit_filters(f: &dyn Fixture) {
    let s = f.open();
    for i in 1..=6 {
        let mut e = event(i * 10, Some(if i % 2 == 0 { "p-2" } else { "p-1" }), "patient.read");
        if i == 3 {
            e.actor = "user:bob".into();
            e.action = "loginX.ok".into();
        }
        s.append_audit(&e).expect("append");
    }
    let seqs = |filter: AuditFilter| s.audit(&filter).expect("query").iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(seqs(AuditFilter { limit: 100, ..Default::default() }), vec![6, 5, 4, 3, 2, 1]);
    assert_eq!(seqs(AuditFilter { patient: Some("p-2".into()), limit: 100, ..Default::default() }), vec![6, 4, 2]);
    assert_eq!(seqs(AuditFilter { actor: Some("user:bob".into()), limit: 100, ..Default::default() }), vec![3]);
    assert_eq!(seqs(AuditFilter { from_ms: Some(20), to_ms: Some(40), limit: 100, ..Default::default() }), vec![3, 2]);
    assert_eq!(seqs(AuditFilter { limit: 2, ..Default::default() }), vec![6, 5]);
    assert_eq!(seqs(AuditFilter { before_seq: Some(5), limit: 2, ..Default::default() }), vec![4, 3]);
    // A prefix matches literally: `_` and `%` in it are not wildcards.
    assert!(seqs(AuditFilter { action: Some("login_.".into()), limit: 100, ..Default::default() }).is_empty());
    assert!(seqs(AuditFilter { action: Some("login%.".into()), limit: 100, ..Default::default() }).is_empty());
    assert_eq!(
        seqs(AuditFilter { action: Some("patient.".into()), limit: 100, ..Default::default() }),
        vec![6, 5, 4, 2, 1]
    );
    let run = s.audit_run(2, 2).expect("run");
    assert_eq!(run.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3, 4]);
    assert_eq!(run[0].event.actor, "user:bob");
}

fn audit_tamper(f: &dyn Fixture) {
    let m = f.open();
    assert_eq!(verify_audit(m.as_ref(), None).expect("empty chain"), (0, audit::GENESIS.to_string()));
    for i in 1..=5 {
        m.append_audit(&event(i, Some("p-1"), if i % 2 == 0 { "login.failed" } else { "patient.read" }))
            .expect("append");
    }
    assert_eq!(verify_audit(m.as_ref(), None).expect("intact").0, 5);
    let batch = m.append_audit_batch(&[event(6, None, "a.b"), event(7, None, "a.c")]).expect("batch");
    assert_eq!(batch.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![6, 7]);
    assert_eq!(batch[1].prev, batch[0].hash, "a batch is chained entry by entry");
    assert_eq!(verify_audit(f.open().as_ref(), None).expect("intact after a batch, from another handle").0, 7);
    f.raw("DELETE FROM audit WHERE seq > 5");
    f.raw("UPDATE audit_head SET seq = 5, hash = (SELECT hash FROM audit WHERE seq = 5)");
    let logins = m.audit(&AuditFilter { action: Some("login.".into()), limit: 10, ..Default::default() });
    assert_eq!(logins.expect("query").iter().map(|e| e.seq).collect::<Vec<_>>(), vec![4, 2]);

    f.raw("UPDATE audit SET actor = 'user:eve' WHERE seq = 3");
    let err = verify_audit(m.as_ref(), None).expect_err("tampered");
    assert!(matches!(err, MetaError::Chain(ChainBreak::Altered { seq: 3 })), "{err}");
    f.raw("UPDATE audit SET actor = 'user:ann' WHERE seq = 3");
    f.raw("DELETE FROM audit WHERE seq = 5");
    let err = verify_audit(m.as_ref(), None).expect_err("truncated");
    assert!(matches!(err, MetaError::Chain(ChainBreak::Truncated { last: 4, .. })), "{err}");
    f.raw("DELETE FROM audit WHERE seq = 2");
    let err = verify_audit(m.as_ref(), None).expect_err("gap");
    assert!(matches!(err, MetaError::Chain(ChainBreak::Gap { seq: 3, prev_seq: 1 })), "{err}");
}

fn audit_keyed(f: &dyn Fixture) {
    let m = f.open();
    m.append_audit(&event(1, None, "login.ok")).expect("append");
    // The key arrives with the second entry (an existing installation upgraded).
    let key = AuditKey::generate(2).expect("key");
    m.set_audit_key(key.clone());
    for i in 2..=4 {
        m.append_audit(&event(i, Some("p-1"), "patient.read")).expect("append");
    }
    assert_eq!(verify_audit(m.as_ref(), Some(&key)).expect("intact").0, 4);
    assert!(verify_audit(m.as_ref(), None).is_err(), "keyed entries are not plain SHA-256");
    // Someone with the database but not the key hides who read entry 3's data and
    // recomputes the chain and its head with SHA-256.
    f.raw("UPDATE audit SET actor = 'user:nobody' WHERE seq = 3");
    let entries = m.audit_run(0, 10).expect("run");
    let mut prev = entries[1].hash.clone();
    for entry in &entries[2..] {
        let hash = audit::chain_hash(&prev, entry.seq, &entry.event);
        f.raw(&format!("UPDATE audit SET prev = '{prev}', hash = '{hash}' WHERE seq = {}", entry.seq));
        prev = hash;
    }
    f.raw(&format!("UPDATE audit_head SET hash = '{prev}'"));
    let err = verify_audit(m.as_ref(), Some(&key)).expect_err("forged");
    assert!(matches!(err, MetaError::Chain(ChainBreak::Altered { seq: 3 })), "{err}");
}

fn audit_concurrent(f: &dyn Fixture) {
    const HANDLES: usize = 3;
    const EACH: i64 = 20;
    let handles: Vec<_> = (0..HANDLES).map(|_| f.open()).collect();
    std::thread::scope(|scope| {
        for (n, h) in handles.iter().enumerate() {
            scope.spawn(move || {
                for i in 0..EACH {
                    let e = event(i, None, &format!("node{n}.write"));
                    if i % 5 == 0 {
                        h.append_audit_batch(&[e.clone(), e]).expect("batch");
                    } else {
                        h.append_audit(&e).expect("append");
                    }
                }
            });
        }
    });
    let (entries, _) = verify_audit(handles[0].as_ref(), None).expect("one unbroken chain");
    assert_eq!(entries, HANDLES as i64 * (EACH + EACH / 5));
}
