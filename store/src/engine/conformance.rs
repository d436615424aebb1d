//! One suite, run against every engine: what the rest of the store relies on.

use super::{Durability, Engine, MemoryEngine, RocksEngine, Scan, WriteBatch};
use crate::keys::Cf;

fn collect(e: &dyn Engine, cf: Cf, start: &[u8], end: Option<&[u8]>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    e.scan(cf, start, end, &mut |k, v| {
        out.push((k.to_vec(), v.to_vec()));
        Scan::Continue
    })
    .unwrap();
    out
}

fn suite(e: &dyn Engine) {
    assert_eq!(e.get(Cf::Kv, b"a").unwrap(), None);
    assert_eq!(e.last(Cf::Kv).unwrap(), None);

    let mut b = WriteBatch::default();
    for k in [b"b".as_slice(), b"a", b"d", b"c"] {
        b.put(Cf::Kv, k, [k, b"-v"].concat());
    }
    b.put(Cf::Meta, b"a", b"meta");
    e.write(b, Durability::Synced).unwrap();

    // Column families are separate spaces.
    assert_eq!(e.get(Cf::Kv, b"a").unwrap(), Some(b"a-v".to_vec()));
    assert_eq!(e.get(Cf::Meta, b"a").unwrap(), Some(b"meta".to_vec()));
    assert_eq!(e.get(Cf::Lease, b"a").unwrap(), None);

    // Ordered, half-open scans.
    let keys = |v: Vec<(Vec<u8>, Vec<u8>)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(keys(collect(e, Cf::Kv, b"", None)), vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec(), b"d".to_vec()]);
    assert_eq!(keys(collect(e, Cf::Kv, b"b", Some(b"d"))), vec![b"b".to_vec(), b"c".to_vec()]);
    assert!(collect(e, Cf::Kv, b"c", Some(b"b")).is_empty());
    assert_eq!(e.last(Cf::Kv).unwrap(), Some((b"d".to_vec(), b"d-v".to_vec())));

    // Early stop.
    let mut seen = 0;
    e.scan(Cf::Kv, b"", None, &mut |_, _| {
        seen += 1;
        if seen == 2 { Scan::Stop } else { Scan::Continue }
    })
    .unwrap();
    assert_eq!(seen, 2);

    // Deletes and range deletes, applied in order within one batch.
    let mut b = WriteBatch::default();
    b.delete(Cf::Kv, b"a");
    b.delete_range(Cf::Kv, b"b", b"d");
    b.put(Cf::Kv, b"c", b"again");
    e.write(b, Durability::Logged).unwrap();
    assert_eq!(
        collect(e, Cf::Kv, b"", None),
        vec![(b"c".to_vec(), b"again".to_vec()), (b"d".to_vec(), b"d-v".to_vec())]
    );
    assert_eq!(e.get(Cf::Meta, b"a").unwrap(), Some(b"meta".to_vec()));

    // A consistent scan sees every listed column family, in order, and nothing else.
    let mut seen = Vec::new();
    e.scan_consistent(&[Cf::Meta, Cf::Kv], &mut |cf, k, _| seen.push((cf, k.to_vec()))).unwrap();
    assert_eq!(seen, vec![(Cf::Meta, b"a".to_vec()), (Cf::Kv, b"c".to_vec()), (Cf::Kv, b"d".to_vec())]);
}

#[test]
fn memory_engine_conforms() {
    suite(&MemoryEngine::new());
}

#[test]
fn rocks_engine_conforms() {
    let dir = tempfile::tempdir().unwrap();
    suite(&RocksEngine::open(dir.path()).unwrap());
}

#[test]
fn rocks_engine_persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = RocksEngine::open(dir.path()).unwrap();
        let mut b = WriteBatch::default();
        b.put(Cf::RaftLog, 7u64.to_be_bytes(), b"entry");
        e.write(b, Durability::Synced).unwrap();
    }
    let e = RocksEngine::open(dir.path()).unwrap();
    assert_eq!(e.get(Cf::RaftLog, &7u64.to_be_bytes()).unwrap(), Some(b"entry".to_vec()));
}
