use super::*;

fn ann() -> Identity {
    Identity {
        name: Some("Annika Lindqvist".into()),
        date_of_birth: Some("1984-03-09".into()),
        contacts: vec![ContactPoint { kind: "phone".into(), value: "+46 70 555 0199".into(), label: None }],
        external_ids: [("mrn".to_string(), "H-884213".to_string())].into(),
        notes: None,
    }
}

/// All bytes of the vault's files (main database and write-ahead log).
fn files_bytes(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for e in std::fs::read_dir(dir).expect("dir") {
        let p = e.expect("entry").path();
        if p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("identity.sqlite")) {
            all.extend(std::fs::read(&p).expect("read"));
        }
    }
    all
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn identities_are_sealed_at_rest_and_read_back_with_the_key() {
    let dir = tempfile::tempdir().expect("tmp");
    let keys = Keyring::create_file(&dir.path().join("vault.key"), "k1").expect("key");
    let path = dir.path().join("identity.sqlite");
    let v = Vault::open(&path, keys.clone()).expect("open");
    v.put("p-1", &ann(), 1).expect("put");
    assert_eq!(v.get("p-1").expect("get"), Some(ann()));
    assert_eq!(v.get("p-2").expect("get"), None);
    let bytes = files_bytes(dir.path());
    assert!(contains(&bytes, "p-1"), "the pseudonym is the key");
    for plain in ["Annika", "Lindqvist", "1984-03-09", "555 0199", "H-884213", "mrn"] {
        assert!(!contains(&bytes, plain), "{plain:?} found in the vault's files");
    }
    drop(v);
    assert_eq!(Vault::open(&path, keys).expect("reopen").get("p-1").expect("get"), Some(ann()));
}

struct Sqlite(std::path::PathBuf);

impl conformance::Fixture for Sqlite {
    fn open(&self) -> Box<dyn Backend> {
        Box::new(SqliteBackend::open(&self.0).expect("open the file"))
    }
}

#[test]
fn the_sqlite_file_keeps_the_vault_contract() {
    let dir = tempfile::tempdir().expect("tmp");
    let n = std::sync::atomic::AtomicU32::new(0);
    conformance::run_all(&|| {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Box::new(Sqlite(dir.path().join(format!("identity-{i}.sqlite"))))
    });
}

const STANDARD_KEY_A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const STANDARD_KEY_B: &str = "HxwdHh8AAQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRo=";

#[test]
fn rotation_reseals_every_record_under_the_new_key_so_the_old_one_can_go() {
    let dir = tempfile::tempdir().expect("tmp");
    let key_file = dir.path().join("vault.key");
    let path = dir.path().join("identity.sqlite");
    let v = Vault::open(&path, Keyring::create_file(&key_file, "k1").expect("key")).expect("open");
    for i in 0..5 {
        v.put(&format!("p-{i}"), &ann(), 1).expect("put");
    }
    drop(v);
    let ring = Keyring::add_primary(&key_file, "k2").expect("add");
    assert_eq!(ring.ids(), vec!["k2", "k1"]);
    let v = Vault::open(&path, ring).expect("open with both");
    v.put("p-new", &ann(), 2).expect("put under k2");
    assert_eq!(v.key_usage().expect("usage"), [("k1".to_string(), 5), ("k2".to_string(), 1)].into());
    assert_eq!(v.rotate(3).expect("rotate"), 5);
    assert_eq!(v.key_usage().expect("usage"), [("k2".to_string(), 6)].into());
    assert_eq!(v.rotate(4).expect("again"), 0, "idempotent");
    drop(v);
    let ring = Keyring::remove_from_file(&key_file, "k1").expect("retire k1");
    assert_eq!(ring.ids(), vec!["k2"]);
    let v = Vault::open(&path, Keyring::load(&key_file).expect("load")).expect("open with k2 only");
    assert_eq!(v.get("p-3").expect("get"), Some(ann()));
    assert!(Keyring::remove_from_file(&key_file, "k2").is_err(), "the primary key stays");
}

#[test]
fn erased_identities_leave_no_sealed_bytes_behind() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("identity.sqlite");
    let v = Vault::open(&path, Keyring::parse_env(&format!("k1:{STANDARD_KEY_A}")).expect("ring")).expect("open");
    v.put("p-erase-me", &ann(), 1).expect("put");
    let sealed = SqliteBackend::open(&path).expect("raw").get("p-erase-me").expect("get").expect("there").sealed;
    assert!(v.delete("p-erase-me").expect("delete"));
    assert!(!v.delete("p-erase-me").expect("twice"));
    assert_eq!(v.get("p-erase-me").expect("get"), None);
    let bytes = files_bytes(dir.path());
    assert!(!contains(&bytes, "p-erase-me"));
    assert!(!bytes.windows(sealed.len()).any(|w| w == sealed.as_slice()), "ciphertext gone");
}

#[test]
fn key_material_and_identity_fields_are_validated() {
    assert!(Keyring::parse_env("k1:AAAA").is_err(), "short key");
    assert!(Keyring::parse_env("").is_err());
    assert!(Keyring::parse_file("k1 not-base64!\n", "f").is_err());
    assert!(Keyring::parse_file(&format!("k1 {STANDARD_KEY_A}\nk1 {STANDARD_KEY_B}\n"), "f").is_err(), "dup");
    let ring = Keyring::parse_file(&format!("# c\nk2 {STANDARD_KEY_B}\nk1 {STANDARD_KEY_A} # old\n"), "f").expect("ok");
    assert_eq!(ring.primary_id(), "k2");
    assert!(!format!("{ring:?}").contains(STANDARD_KEY_A), "Debug hides keys");
    let bad = Identity { date_of_birth: Some("09.03.1984".into()), ..Default::default() };
    assert!(matches!(bad.validate(), Err(VaultError::Invalid(_))));
    let dir = tempfile::tempdir().expect("tmp");
    let f = dir.path().join("k");
    std::fs::write(&f, format!("k1 {STANDARD_KEY_A}\n")).expect("write");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(Keyring::load(&f).expect_err("world-readable").to_string().contains("chmod 600"));
    }
}

proptest::proptest! {
    #[test]
    fn key_files_and_env_values_never_panic_and_errors_name_the_line(text in "\\PC{0,300}") {
        match Keyring::parse_file(&text, "k.key") {
            Ok(ring) => proptest::prop_assert!(ring.get(ring.primary_id()).is_some()),
            Err(e) => {
                let m = e.to_string();
                proptest::prop_assert!(m.contains("k.key") || m.contains("key id") || m.contains("key \""), "{}", m);
            }
        }
        let _ = Keyring::parse_env(&text);
    }

    #[test]
    fn valid_key_lines_round_trip_in_any_order(ids in proptest::collection::btree_set("[a-z0-9]{1,8}", 1..5)) {
        let ids: Vec<String> = ids.into_iter().collect();
        let text: String = ids.iter().map(|id| format!("{id} {STANDARD_KEY_A}\n")).collect();
        let ring = Keyring::parse_file(&text, "k").expect("valid");
        proptest::prop_assert_eq!(ring.ids(), ids.iter().map(String::as_str).collect::<Vec<_>>());
        proptest::prop_assert_eq!(ring.primary_id(), ids[0].as_str());
    }
}

#[test]
fn secrets_open_only_for_their_context_and_with_the_ring() {
    let dir = tempfile::tempdir().expect("tmp");
    let keys = Keyring::create_file(&dir.path().join("vault.key"), "k1").expect("key");
    let v = Vault::open(&dir.path().join("identity.sqlite"), keys).expect("open");
    let s = v.seal_secret("connection/p-1/dexcom-share", b"{\"password\":\"hunter2\"}").expect("seal");
    assert_eq!(s.key_id, "k1");
    assert!(!s.sealed.contains("hunter2"));
    assert_eq!(v.open_secret("connection/p-1/dexcom-share", &s).expect("open"), b"{\"password\":\"hunter2\"}");
    assert!(v.open_secret("connection/p-2/dexcom-share", &s).is_err(), "not for another patient");
    let mut altered = s.clone();
    altered.sealed.replace_range(0..1, if s.sealed.starts_with('A') { "B" } else { "A" });
    assert!(v.open_secret("connection/p-1/dexcom-share", &altered).is_err());
    let other = Keyring::create_file(&dir.path().join("other.key"), "k2").expect("key");
    let w = Vault::open(&dir.path().join("other.sqlite"), other).expect("open");
    assert!(matches!(w.open_secret("connection/p-1/dexcom-share", &s), Err(VaultError::MissingKey { .. })));
}
