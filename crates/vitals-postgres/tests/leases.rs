//! Bucket ownership between nodes on a real PostgreSQL (started by scripts/test): fair
//! shares, a joining node, a node that dies, a clean shutdown, fencing by epoch.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vitals_postgres::{Leases, Pool};

fn leases(ttl: Duration) -> (Arc<Pool>, String, Leases) {
    let url = support::postgres_url();
    let schema = support::fresh_schema();
    let pool = Pool::connect(&url, &schema, 2).expect("connect");
    let l = Leases::open(Arc::clone(&pool), &schema, 64, ttl).expect("open");
    (pool, schema, l)
}

fn set(l: &Leases, node: &str) -> BTreeSet<u16> {
    l.heartbeat(node, "127.0.0.1:1").expect("heartbeat").owned.iter().map(|o| o.bucket).collect()
}

#[test]
fn a_lone_node_owns_every_bucket_and_a_joining_node_gets_half() {
    let (pool, schema, a) = leases(Duration::from_secs(30));
    let b = Leases::open(pool, &schema, 64, Duration::from_secs(30)).expect("second handle");
    let first = a.heartbeat("a", "10.0.0.1:8080").expect("heartbeat");
    assert_eq!((first.owned.len(), first.live_nodes), (64, 1));
    assert!(first.owned.iter().all(|o| o.epoch == 1), "a first tenure");
    // b joins: it sees two nodes, takes what is free (nothing yet); a gives back its excess;
    // b takes it at its next heartbeat.
    assert!(set(&b, "b").is_empty(), "nothing is free yet");
    assert_eq!(set(&a, "a").len(), 32, "a keeps its fair share");
    let of_b = set(&b, "b");
    let of_a = set(&a, "a");
    assert_eq!((of_a.len(), of_b.len()), (32, 32));
    assert!(of_a.is_disjoint(&of_b), "no bucket has two owners");
    let owners = a.owners().expect("owners");
    assert!(owners.iter().all(Option::is_some), "every bucket owned: {owners:?}");
}

#[test]
fn a_dead_nodes_buckets_move_to_the_survivor_with_a_new_epoch() {
    let ttl = Duration::from_millis(1500);
    let (pool, schema, a) = leases(ttl);
    let b = Leases::open(pool, &schema, 64, ttl).expect("second handle");
    set(&a, "a");
    set(&b, "b");
    set(&a, "a");
    let tenure_b = b.heartbeat("b", "x").expect("heartbeat");
    assert_eq!(tenure_b.owned.len(), 32);
    let victim = tenure_b.owned[0];
    assert!(b.is_current(victim.bucket, victim.epoch).expect("fence"));
    // b dies (no more heartbeats). a keeps beating, as it would every ttl/3.
    let died = Instant::now();
    let deadline = died + ttl * 6;
    loop {
        let owned = set(&a, "a");
        if owned.len() == 64 {
            break;
        }
        assert!(Instant::now() < deadline, "the survivor owns {} buckets after {:?}", owned.len(), died.elapsed());
        #[allow(clippy::disallowed_methods)] // reason: the heartbeat period of a live node
        std::thread::sleep(ttl / 3);
    }
    let took = died.elapsed();
    assert!(took >= ttl - ttl / 5, "a lease is never taken before it expires ({took:?})");
    assert!(!a.is_current(victim.bucket, victim.epoch).expect("fence"), "b's tenure is fenced off");
    let now = a.heartbeat("a", "x").expect("heartbeat");
    let moved = now.owned.iter().find(|o| o.bucket == victim.bucket).expect("moved");
    assert_eq!(moved.epoch, victim.epoch + 1);
}

#[test]
fn a_clean_shutdown_hands_buckets_over_at_once() {
    let (pool, schema, a) = leases(Duration::from_secs(60));
    let b = Leases::open(pool, &schema, 64, Duration::from_secs(60)).expect("second handle");
    set(&a, "a");
    set(&b, "b");
    set(&a, "a");
    assert_eq!(set(&b, "b").len(), 32);
    b.release_all("b").expect("release");
    assert_eq!(set(&a, "a").len(), 64, "without waiting for the 60 s time to live");
}

#[test]
fn a_write_fenced_by_a_lost_tenure_is_refused_and_leaves_nothing() {
    let ttl = Duration::from_millis(1200);
    let (pool, schema, a) = leases(ttl);
    let b = Leases::open(Arc::clone(&pool), &schema, 64, ttl).expect("second handle");
    let records = vitals_postgres::Records::open(Arc::clone(&pool), &schema).expect("records");
    let tenure = a.heartbeat("a", "x").expect("heartbeat");
    let held = tenure.owned[5];
    let fence = vitals_postgres::Fence { node: "a".into(), leases: vec![(held.bucket, held.epoch)] };
    records.append_fenced("alerts", &["one".into()], Some(&fence)).expect("a holds the bucket");
    // Another node's claim on the same bucket, or a stale epoch, is refused.
    let wrong = vitals_postgres::Fence { node: "b".into(), ..fence.clone() };
    assert!(matches!(
        records.append_fenced("alerts", &["x".into()], Some(&wrong)),
        Err(vitals_postgres::PgError::Fenced { ref buckets, .. }) if buckets == &[held.bucket]
    ));
    // a stops beating; b takes every bucket once a's leases expire.
    let deadline = Instant::now() + ttl * 6;
    while b.heartbeat("b", "y").expect("heartbeat").owned.len() < 64 {
        assert!(Instant::now() < deadline, "b never took a's buckets");
        #[allow(clippy::disallowed_methods)] // reason: the heartbeat period of a live node
        std::thread::sleep(ttl / 3);
    }
    // a's late write, with its old tenure, lands nowhere.
    let late = records.append_fenced("alerts", &["late".into()], Some(&fence));
    assert!(matches!(late, Err(vitals_postgres::PgError::Fenced { .. })), "{late:?}");
    let now_b = b.heartbeat("b", "y").expect("heartbeat");
    let moved = now_b.owned.iter().find(|o| o.bucket == held.bucket).expect("b holds it");
    let fence_b = vitals_postgres::Fence { node: "b".into(), leases: vec![(moved.bucket, moved.epoch)] };
    records.append_fenced("alerts", &["two".into()], Some(&fence_b)).expect("the new owner writes");
    let bodies: Vec<String> = records
        .since("alerts", 0, 100)
        .expect("read")
        .into_iter()
        .filter_map(|(_, e)| match e {
            vitals_postgres::records::Entry::Record(b) => Some(b),
            vitals_postgres::records::Entry::Reset => None,
        })
        .collect();
    assert_eq!(bodies, vec!["one".to_string(), "two".to_string()], "the refused writes left nothing");
}
