//! [`LeaseTable`]: granted leases and the keys attached to them.
//!
//! Only the grant (id → TTL) is persisted, in `Cf::Lease`; which keys a lease holds is derived
//! from the live key-values' `lease` field when the store opens, so it can never disagree with
//! the data. Expiry is not decided here: the leader proposes a `LeaseRevoke` when a lease runs
//! out, and revoking deletes the attached keys in one revision.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::{Error, Result};

/// A lease and the keys attached to it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaseInfo {
    /// Lease id (never 0).
    pub id: i64,
    /// Granted time-to-live in seconds.
    pub ttl: i64,
    /// Attached keys, ascending.
    pub keys: Vec<Vec<u8>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Lease {
    ttl: i64,
    keys: BTreeSet<Vec<u8>>,
}

/// Every granted lease, with the reverse map key → lease.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseTable {
    leases: BTreeMap<i64, Lease>,
    by_key: HashMap<Vec<u8>, i64>,
}

impl LeaseTable {
    /// True when lease `id` is granted.
    pub fn contains(&self, id: i64) -> bool {
        self.leases.contains_key(&id)
    }

    /// Grants lease `id` (replacing nothing: callers check [`LeaseTable::contains`] first).
    pub fn grant(&mut self, id: i64, ttl: i64) {
        self.leases.entry(id).or_insert_with(|| Lease { ttl, keys: BTreeSet::new() }).ttl = ttl;
    }

    /// Forgets lease `id` and detaches its keys.
    pub fn remove(&mut self, id: i64) {
        if let Some(lease) = self.leases.remove(&id) {
            for key in lease.keys {
                self.by_key.remove(&key);
            }
        }
    }

    /// Attaches `key` to lease `id`, detaching it from any other; unknown leases are ignored
    /// (as etcd does when restoring a key whose lease is gone).
    pub fn attach(&mut self, key: &[u8], id: i64) {
        self.detach(key);
        if let Some(lease) = self.leases.get_mut(&id) {
            lease.keys.insert(key.to_vec());
            self.by_key.insert(key.to_vec(), id);
        }
    }

    /// Detaches `key` from its lease, if any.
    pub fn detach(&mut self, key: &[u8]) {
        if let Some(id) = self.by_key.remove(key) {
            if let Some(lease) = self.leases.get_mut(&id) {
                lease.keys.remove(key);
            }
        }
    }

    /// The keys attached to lease `id`, ascending (the order revoke deletes them in).
    pub fn keys(&self, id: i64) -> Vec<Vec<u8>> {
        self.leases.get(&id).map(|l| l.keys.iter().cloned().collect()).unwrap_or_default()
    }

    /// Lease `id` with its keys.
    pub fn info(&self, id: i64) -> Option<LeaseInfo> {
        let l = self.leases.get(&id)?;
        Some(LeaseInfo { id, ttl: l.ttl, keys: l.keys.iter().cloned().collect() })
    }

    /// Every lease with its keys, by id.
    pub fn all(&self) -> Vec<LeaseInfo> {
        self.leases
            .iter()
            .map(|(&id, l)| LeaseInfo { id, ttl: l.ttl, keys: l.keys.iter().cloned().collect() })
            .collect()
    }
}

/// The `Cf::Lease` value of a grant: the TTL as 8 big-endian bytes. Longer values are accepted
/// on read so that later versions can append fields (e.g. a checkpointed remaining TTL).
pub fn encode_lease(ttl: i64) -> Vec<u8> {
    ttl.to_be_bytes().to_vec()
}

/// Inverse of [`encode_lease`].
pub fn decode_lease(bytes: &[u8]) -> Result<i64> {
    let ttl: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| Error::corrupt(format!("lease record of {} bytes", bytes.len())))?;
    Ok(i64::from_be_bytes(ttl))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attach_moves_keys_between_leases() {
        let mut t = LeaseTable::default();
        t.grant(1, 10);
        t.grant(2, 20);
        t.attach(b"b", 1);
        t.attach(b"a", 1);
        assert_eq!(t.keys(1), vec![b"a".to_vec(), b"b".to_vec()]);
        t.attach(b"a", 2);
        assert_eq!(t.keys(1), vec![b"b".to_vec()]);
        assert_eq!(t.info(2), Some(LeaseInfo { id: 2, ttl: 20, keys: vec![b"a".to_vec()] }));
        t.attach(b"b", 99);
        assert!(t.keys(1).is_empty(), "attaching to an unknown lease still detaches");
        t.remove(2);
        assert!(!t.contains(2));
        t.detach(b"a");
        assert_eq!(t.all(), vec![LeaseInfo { id: 1, ttl: 10, keys: vec![] }]);
        assert_eq!(decode_lease(&encode_lease(42)).unwrap(), 42);
        assert!(decode_lease(b"short").is_err());
    }
}
