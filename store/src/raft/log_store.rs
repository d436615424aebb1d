//! The raft log in the engine's `RaftLog` column family, hard state in `RaftMeta`.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader, StorageIOError, Vote};

use super::{decode, encode, Entry, LeaderLog, LogId, NodeId, StorageError, TypeConfig};
use crate::engine::{Durability, Engine, Scan, WriteBatch};
use crate::keys::{self, Cf};

/// Raft log storage over an [`Engine`]. Cheap to clone: clones share the engine.
#[derive(Debug)]
pub struct LogStore<E: Engine> {
    engine: Arc<E>,
    leader_log: Arc<LeaderLog>,
}

impl<E: Engine> Clone for LogStore<E> {
    fn clone(&self) -> Self {
        Self { engine: self.engine.clone(), leader_log: self.leader_log.clone() }
    }
}

fn io_read(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::read_logs(openraft::AnyError::error(e)).into()
}

fn io_write(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::write_logs(openraft::AnyError::error(e)).into()
}

impl<E: Engine> LogStore<E> {
    /// A log store over `engine`, reporting durability to `leader_log`.
    pub fn new(engine: Arc<E>, leader_log: Arc<LeaderLog>) -> Self {
        Self { engine, leader_log }
    }

    fn meta<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageError> {
        match self.engine.get(Cf::RaftMeta, key).map_err(io_read)? {
            Some(b) => Ok(Some(decode(&b).map_err(io_read)?)),
            None => Ok(None),
        }
    }

    fn put_meta<T: serde::Serialize>(&self, key: &[u8], v: &T, durability: Durability) -> Result<(), StorageError> {
        let mut b = WriteBatch::default();
        b.put(Cf::RaftMeta, key, encode(v));
        self.engine.write(b, durability).map_err(io_write)
    }
}

impl<E: Engine> RaftLogReader<TypeConfig> for LogStore<E> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => x.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(x) => x.checked_add(1),
            Bound::Excluded(x) => Some(*x),
            Bound::Unbounded => None,
        };
        let end_key = end.map(keys::u64_key);
        let mut out = Vec::new();
        let mut failure = None;
        self.engine
            .scan(Cf::RaftLog, &keys::u64_key(start), end_key.as_ref().map(|k| k.as_slice()), &mut |_, v| {
                match decode::<Entry>(v) {
                    Ok(e) => {
                        out.push(e);
                        Scan::Continue
                    }
                    Err(e) => {
                        failure = Some(e);
                        Scan::Stop
                    }
                }
            })
            .map_err(io_read)?;
        match failure {
            Some(e) => Err(io_read(e)),
            None => Ok(out),
        }
    }
}

impl<E: Engine> RaftLogStorage<TypeConfig> for LogStore<E> {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self.meta(keys::RAFT_LAST_PURGED)?;
        let last = match self.engine.last(Cf::RaftLog).map_err(io_read)? {
            Some((_, v)) => Some(decode::<Entry>(&v).map_err(io_read)?.log_id),
            None => None,
        };
        Ok(LogState { last_purged_log_id, last_log_id: last.or(last_purged_log_id) })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        // A vote must be durable before it is granted: fsync.
        self.put_meta(keys::RAFT_VOTE, vote, Durability::Synced)?;
        self.leader_log.voted(vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.meta(keys::RAFT_VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Only lets a restart re-apply committed entries sooner; losing it is harmless, so it
        // costs no WAL write (it changes with every replicated entry).
        self.put_meta(keys::RAFT_COMMITTED, &committed, Durability::Unlogged)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.meta::<Option<LogId>>(keys::RAFT_COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let Some(last) = entries.last().map(|e| e.log_id) else {
            callback.log_io_completed(Ok(()));
            return Ok(());
        };
        let early = self.leader_log.may_report_early(&entries);
        let mut b = WriteBatch::default();
        for e in &entries {
            b.put(Cf::RaftLog, keys::u64_key(e.log_id.index), encode(e));
        }
        let engine = self.engine.clone();
        let leader_log = self.leader_log.clone();
        if early {
            // The leader's own entries: in the WAL now, reported flushed at once so that
            // replication starts, fsynced in the background (see `durability`). Nothing acts on
            // their commit before that fsync.
            self.engine.write(b, Durability::Logged).map_err(io_write)?;
            leader_log.written_early(last);
            callback.log_io_completed(Ok(()));
            tokio::task::spawn_blocking(move || match engine.sync() {
                Ok(()) => leader_log.synced(last),
                // Not durable: never applied here nor committed at followers; writes time out.
                Err(e) => tracing::error!(error = %e, index = last.index, "fsync of the raft log failed"),
            });
            return Ok(());
        }
        // Entries from another leader: fsynced before they are reported flushed, which is
        // what the leader counts on. The fsync runs on a blocking thread so that it does not
        // hold a runtime worker. Log writes stay in order: openraft 0.9's core waits for this
        // callback before any other log IO.
        tokio::task::spawn_blocking(move || {
            let res = engine.write(b, Durability::Synced).map_err(|e| std::io::Error::other(e.to_string()));
            if res.is_ok() {
                leader_log.synced(last);
            }
            callback.log_io_completed(res);
        });
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut b = WriteBatch::default();
        b.delete_range(Cf::RaftLog, keys::u64_key(log_id.index), keys::u64_key(u64::MAX));
        b.delete(Cf::RaftLog, keys::u64_key(u64::MAX));
        self.engine.write(b, Durability::Synced).map_err(io_write)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // The state machine's writes skip the WAL: after a crash it is re-applied from the log
        // from its last flushed entry, so those entries must stay until it is on disk past them.
        // openraft purges only applied entries, so flushing now is enough.
        self.engine.flush().map_err(io_write)?;
        let mut b = WriteBatch::default();
        b.put(Cf::RaftMeta, keys::RAFT_LAST_PURGED, encode(&log_id));
        b.delete_range(Cf::RaftLog, keys::u64_key(0), keys::u64_key(log_id.index + 1));
        self.engine.write(b, Durability::Logged).map_err(io_write)
    }
}
