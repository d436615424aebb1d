//! Every on-disk key encoding in one place: column families, fixed meta keys and big-endian
//! numbers, so that byte order equals numeric order in every iteration.

use crate::mvcc::Revision;

/// The column families (key spaces) of an [`crate::engine::Engine`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cf {
    /// MVCC history: [`Revision`] (16 bytes) → [`crate::mvcc::Record`].
    Kv,
    /// State-machine metadata: applied log id, membership, revisions (keys below).
    Meta,
    /// Leases: lease id (8 bytes BE) → lease record.
    Lease,
    /// Raft log: log index (8 bytes BE) → entry.
    RaftLog,
    /// Raft hard state: vote, committed, last purged (keys below).
    RaftMeta,
}

impl Cf {
    /// All column families, in a fixed order.
    pub const ALL: [Cf; 5] = [Cf::Kv, Cf::Meta, Cf::Lease, Cf::RaftLog, Cf::RaftMeta];

    /// The RocksDB column family name.
    pub fn name(self) -> &'static str {
        match self {
            Cf::Kv => "kv",
            Cf::Meta => "meta",
            Cf::Lease => "lease",
            Cf::RaftLog => "raft_log",
            Cf::RaftMeta => "raft_meta",
        }
    }

    /// Column families that make up the state machine (what a snapshot carries).
    pub const STATE_MACHINE: [Cf; 3] = [Cf::Kv, Cf::Meta, Cf::Lease];
}

/// `Meta`: apply progress: the last raft entry applied completely, and how far into a
/// partly applied entry (see `raft::state_machine::Progress`).
pub const META_LAST_APPLIED: &[u8] = b"last_applied";
/// `Meta`: the last membership config applied.
pub const META_MEMBERSHIP: &[u8] = b"membership";
/// `Meta`: the store's current revision (survives compaction of every key).
pub const META_CURRENT_REV: &[u8] = b"current_rev";
/// `Meta`: the revision history has been physically compacted up to.
pub const META_COMPACT_REV: &[u8] = b"compact_rev";
/// `RaftMeta`: the current vote.
pub const RAFT_VOTE: &[u8] = b"vote";
/// `RaftMeta`: the last known committed log id.
pub const RAFT_COMMITTED: &[u8] = b"committed";
/// `RaftMeta`: the last purged log id.
pub const RAFT_LAST_PURGED: &[u8] = b"last_purged";
/// `RaftMeta`: this member's (member id, cluster id), fixed on first start.
pub const RAFT_IDENTITY: &[u8] = b"identity";
/// `RaftMeta`: for a member that joined an existing cluster, the log index of the membership
/// that listed it when it joined. Older memberships are about a previous member with the same
/// id (same peer URL, removed and added again): replaying them must not make it leave.
pub const RAFT_JOINED_AT: &[u8] = b"joined_at";
/// `RaftMeta`: the current raft snapshot (meta + data).
pub const RAFT_SNAPSHOT: &[u8] = b"snapshot";

/// Big-endian bytes of a u64, for keys that must sort numerically.
pub fn u64_key(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

/// Inverse of [`u64_key`]; `None` if the slice is not 8 bytes.
pub fn parse_u64_key(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.try_into().ok()?))
}

/// A revision as a `Kv` key: 8-byte BE main then 8-byte BE sub.
///
/// Worked example: revision (5, 1) → `00 00 00 00 00 00 00 05 00 00 00 00 00 00 00 01`,
/// which sorts after (5, 0) and before (6, 0).
pub fn revision_key(rev: Revision) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&(rev.main as u64).to_be_bytes());
    k[8..].copy_from_slice(&(rev.sub as u64).to_be_bytes());
    k
}

/// Inverse of [`revision_key`]; `None` if the slice is not 16 bytes.
pub fn parse_revision_key(b: &[u8]) -> Option<Revision> {
    if b.len() != 16 {
        return None;
    }
    let main = u64::from_be_bytes(b[..8].try_into().ok()?) as i64;
    let sub = u64::from_be_bytes(b[8..].try_into().ok()?) as i64;
    Some(Revision { main, sub })
}

/// A lease id as a `Lease` key.
pub fn lease_key(id: i64) -> [u8; 8] {
    u64_key(id as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_keys_sort_numerically() {
        let revs = [
            Revision { main: 1, sub: 0 },
            Revision { main: 1, sub: 1 },
            Revision { main: 2, sub: 0 },
            Revision { main: 256, sub: 0 },
        ];
        for w in revs.windows(2) {
            assert!(revision_key(w[0]) < revision_key(w[1]));
        }
        for r in revs {
            assert_eq!(parse_revision_key(&revision_key(r)), Some(r));
        }
        assert_eq!(parse_revision_key(b"short"), None);
    }
}
