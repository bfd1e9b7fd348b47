//! The checks every vault [`Backend`] passes (feature `conformance`): the SQLite file here,
//! PostgreSQL in `vitals-postgres`. Each check gets a fresh, empty backend from the
//! fixture and may open it again to see what a restart (or another node) sees.

use crate::{Backend, ContactPoint, Identity, Keyring, Vault, VaultError};

/// Opens one backend's storage (the same one at every call).
pub trait Fixture {
    fn open(&self) -> Box<dyn Backend>;
}

const KEY_A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const KEY_B: &str = "HxwdHh8AAQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRo=";

fn ring(spec: &str) -> Keyring {
    let value = spec
        .split(',')
        .map(|item| {
            let (id, which) = item.split_once('=').expect("id=A|B");
            format!("{id}:{}", if which == "A" { KEY_A } else { KEY_B })
        })
        .collect::<Vec<_>>()
        .join(",");
    Keyring::parse_env(&value).expect("a key ring")
}

/// Someone's identity.
pub fn ann() -> Identity {
    Identity {
        name: Some("Annika Lindqvist".into()),
        date_of_birth: Some("1984-03-09".into()),
        contacts: vec![ContactPoint { kind: "phone".into(), value: "+46 555 0199".into(), label: None }],
        external_ids: [("mrn".to_owned(), "H-884213".to_owned())].into(),
        notes: None,
    }
}

/// Runs every check, each on a fresh backend from `fresh`.
pub fn run_all(fresh: &dyn Fn() -> Box<dyn Fixture>) {
    round_trip(&*fresh());
    wrong_or_missing_keys(&*fresh());
    moved_records_do_not_open(&*fresh());
    rotation(&*fresh());
    erasure(&*fresh());
}

fn round_trip(f: &dyn Fixture) {
    let v = Vault::with_backend(f.open(), ring("k1=A")).expect("open");
    assert!(v.is_empty().expect("len"));
    v.put("p-1", &ann(), 1).expect("put");
    assert_eq!(v.get("p-1").expect("get"), Some(ann()));
    assert_eq!(v.get("p-2").expect("get"), None);
    let renamed = Identity { name: Some("Annika L.".into()), ..ann() };
    v.put("p-1", &renamed, 2).expect("replace");
    assert_eq!(v.len().expect("len"), 1);
    let stored = f.open().get("p-1").expect("raw").expect("there");
    assert_eq!((stored.key_id.as_str(), stored.updated_ms), ("k1", 2));
    assert!(!String::from_utf8_lossy(&stored.sealed).contains("Annika"), "sealed, not plain");
    // What another handle (a restart, another node) reads.
    let again = Vault::with_backend(f.open(), ring("k1=A")).expect("reopen");
    assert_eq!(again.get("p-1").expect("get"), Some(renamed));
}

fn wrong_or_missing_keys(f: &dyn Fixture) {
    Vault::with_backend(f.open(), ring("k1=A")).expect("open").put("p-1", &ann(), 1).expect("put");
    let err = Vault::with_backend(f.open(), ring("k1=B")).expect_err("wrong key");
    assert!(matches!(err, VaultError::WrongKey { ref id } if id == "k1"), "{err}");
    let err = Vault::with_backend(f.open(), ring("k2=A")).expect_err("missing key");
    assert!(matches!(err, VaultError::MissingKey { ref id } if id == "k1"), "{err}");
}

fn moved_records_do_not_open(f: &dyn Fixture) {
    let v = Vault::with_backend(f.open(), ring("k1=A")).expect("open");
    v.put("p-1", &ann(), 1).expect("put");
    v.put("p-2", &Identity { name: Some("Other".into()), ..Default::default() }, 2).expect("put");
    let backend = f.open();
    let p1 = backend.get("p-1").expect("raw").expect("there");
    let check = backend.key_checks().expect("checks").remove(0);
    backend.put(&check, &crate::SealedRecord { patient: "p-2".into(), ..p1 }).expect("moved");
    assert!(matches!(v.get("p-2"), Err(VaultError::Damaged { .. })), "a record moved to another patient");
    assert_eq!(v.get("p-1").expect("untouched"), Some(ann()));
}

fn rotation(f: &dyn Fixture) {
    let v = Vault::with_backend(f.open(), ring("k1=A")).expect("open");
    for i in 0..5 {
        v.put(&format!("p-{i}"), &ann(), 1).expect("put");
    }
    let v = Vault::with_backend(f.open(), ring("k2=B,k1=A")).expect("open with both");
    v.put("p-new", &ann(), 2).expect("put under k2");
    assert_eq!(v.key_usage().expect("usage"), [("k1".to_string(), 5), ("k2".to_string(), 1)].into());
    assert_eq!(v.rotate(3).expect("rotate"), 5);
    assert_eq!(v.key_usage().expect("usage"), [("k2".to_string(), 6)].into());
    assert_eq!(v.rotate(4).expect("again"), 0, "idempotent");
    let ids: Vec<String> = f.open().key_checks().expect("checks").into_iter().map(|c| c.id).collect();
    assert_eq!(ids, vec!["k2".to_string()], "the retired key's check is gone");
    let v = Vault::with_backend(f.open(), ring("k2=B")).expect("open with k2 only");
    assert_eq!(v.get("p-3").expect("get"), Some(ann()));
}

fn erasure(f: &dyn Fixture) {
    let v = Vault::with_backend(f.open(), ring("k1=A")).expect("open");
    v.put("p-erase-me", &ann(), 1).expect("put");
    v.put("p-stays", &ann(), 1).expect("put");
    assert!(v.delete("p-erase-me").expect("delete"));
    assert!(!v.delete("p-erase-me").expect("twice"));
    assert_eq!(v.get("p-erase-me").expect("get"), None);
    assert_eq!(f.open().get("p-erase-me").expect("raw"), None, "gone for every handle");
    assert_eq!(v.get("p-stays").expect("get"), Some(ann()));
    assert_eq!(v.len().expect("len"), 1);
}
