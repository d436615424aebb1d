use std::path::Path;

use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, Options, ReadOptions, WriteOptions, DB};

use super::{BatchOp, Durability, Engine, Scan, Visitor, WriteBatch};
use crate::keys::Cf;
use crate::{Error, Result};

/// The RocksDB [`Engine`]: one database, one column family per [`Cf`].
///
/// The raft log and the state machine share the database. State-machine writes skip the WAL
/// ([`Durability::Unlogged`]); `atomic_flush` writes every column family's memtable out at
/// one point, so after a crash the state machine on disk is whole as of some applied entry
/// (its `last_applied` flushed with its data), and raft re-applies the log after it. The log
/// is purged only behind a [`Engine::flush`], so the entries to re-apply are always there.
pub struct RocksEngine {
    db: DB,
    /// Dropped right after `db` (fields drop in declaration order), so receivers learn that
    /// the database is closed and its lock released, not merely that the last handle went.
    closed: tokio::sync::watch::Sender<()>,
}

impl std::fmt::Debug for RocksEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksEngine").field("path", &self.db.path()).finish()
    }
}

impl RocksEngine {
    /// Opens (creating if missing) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.increase_parallelism(2);
        opts.set_max_background_jobs(2);
        opts.set_atomic_flush(true);
        let cfs = Cf::ALL.iter().map(|cf| ColumnFamilyDescriptor::new(cf.name(), Options::default()));
        let db = DB::open_cf_descriptors(&opts, dir, cfs)
            .map_err(|e| Error::Storage(format!("cannot open database in {}: {e}", dir.display())))?;
        Ok(Self { db, closed: tokio::sync::watch::channel(()).0 })
    }

    /// Resolves once the database is closed (the engine dropped and RocksDB's lock released).
    pub fn on_close(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.closed.subscribe();
        async move {
            // `changed` errs exactly when the sender is dropped.
            while rx.changed().await.is_ok() {}
        }
    }

    fn handle(&self, cf: Cf) -> &ColumnFamily {
        // Every Cf is created at open, so a missing handle is a programming error.
        self.db.cf_handle(cf.name()).expect("column family created at open")
    }

    /// Writes a consistent point-in-time copy of the whole database into `dir` (hard links
    /// where possible), for backups and raft snapshots.
    pub fn checkpoint(&self, dir: &Path) -> Result<()> {
        let cp = rocksdb::checkpoint::Checkpoint::new(&self.db).map_err(Error::storage)?;
        cp.create_checkpoint(dir).map_err(Error::storage)
    }
}

impl Engine for RocksEngine {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db.get_cf(self.handle(cf), key).map_err(Error::storage)
    }

    fn scan(
        &self,
        cf: Cf,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> Scan,
    ) -> Result<()> {
        let mut ro = ReadOptions::default();
        if let Some(end) = end {
            if end <= start {
                return Ok(());
            }
            ro.set_iterate_upper_bound(end.to_vec());
        }
        let mut it = self.db.raw_iterator_cf_opt(self.handle(cf), ro);
        it.seek(start);
        while it.valid() {
            let (Some(k), Some(v)) = (it.key(), it.value()) else { break };
            if visit(k, v) == Scan::Stop {
                return Ok(());
            }
            it.next();
        }
        it.status().map_err(Error::storage)
    }

    fn last(&self, cf: Cf) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let mut it = self.db.raw_iterator_cf(self.handle(cf));
        it.seek_to_last();
        if it.valid() {
            if let (Some(k), Some(v)) = (it.key(), it.value()) {
                return Ok(Some((k.to_vec(), v.to_vec())));
            }
        }
        it.status().map_err(Error::storage)?;
        Ok(None)
    }

    fn write(&self, batch: WriteBatch, durability: Durability) -> Result<()> {
        let mut wb = rocksdb::WriteBatch::default();
        for op in batch.ops {
            match op {
                BatchOp::Put { cf, key, value } => wb.put_cf(self.handle(cf), key, value),
                BatchOp::Delete { cf, key } => wb.delete_cf(self.handle(cf), key),
                BatchOp::DeleteRange { cf, start, end } => wb.delete_range_cf(self.handle(cf), start, end),
            }
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(durability == Durability::Synced);
        wo.disable_wal(durability == Durability::Unlogged);
        self.db.write_opt(wb, &wo).map_err(Error::storage)
    }

    fn sync(&self) -> Result<()> {
        self.db.flush_wal(true).map_err(Error::storage)
    }

    fn flush(&self) -> Result<()> {
        let cfs: Vec<_> = Cf::ALL.iter().map(|cf| self.handle(*cf)).collect();
        let mut fo = rocksdb::FlushOptions::default();
        fo.set_wait(true);
        self.db.flush_cfs_opt(&cfs, &fo).map_err(Error::storage)
    }

    fn scan_consistent(&self, cfs: &[Cf], visit: &mut Visitor<'_>) -> Result<()> {
        let snapshot = self.db.snapshot();
        for cf in cfs {
            let mut it = snapshot.raw_iterator_cf_opt(self.handle(*cf), ReadOptions::default());
            it.seek_to_first();
            while it.valid() {
                let (Some(k), Some(v)) = (it.key(), it.value()) else { break };
                visit(*cf, k, v);
                it.next();
            }
            it.status().map_err(Error::storage)?;
        }
        Ok(())
    }

    fn size_bytes(&self) -> u64 {
        Cf::ALL
            .iter()
            .map(|cf| {
                let h = self.handle(*cf);
                let sst = self.db.property_int_value_cf(h, "rocksdb.total-sst-files-size").ok().flatten();
                let mem = self.db.property_int_value_cf(h, "rocksdb.cur-size-all-mem-tables").ok().flatten();
                sst.unwrap_or(0) + mem.unwrap_or(0)
            })
            .sum()
    }
}
