use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::RwLock;

use super::{BatchOp, Durability, Engine, Scan, Visitor, WriteBatch};
use crate::keys::Cf;
use crate::Result;

type Space = BTreeMap<Vec<u8>, Vec<u8>>;

/// An in-memory [`Engine`] for tests of pure logic; `sync` is meaningless here.
#[derive(Debug, Default)]
pub struct MemoryEngine {
    spaces: RwLock<BTreeMap<Cf, Space>>,
}

impl MemoryEngine {
    /// An empty engine.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Engine for MemoryEngine {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let spaces = self.spaces.read().expect("memory engine lock poisoned");
        Ok(spaces.get(&cf).and_then(|s| s.get(key).cloned()))
    }

    fn scan(
        &self,
        cf: Cf,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> Scan,
    ) -> Result<()> {
        let spaces = self.spaces.read().expect("memory engine lock poisoned");
        let Some(space) = spaces.get(&cf) else { return Ok(()) };
        let upper = match end {
            Some(e) if e <= start => return Ok(()),
            Some(e) => Bound::Excluded(e.to_vec()),
            None => Bound::Unbounded,
        };
        for (k, v) in space.range((Bound::Included(start.to_vec()), upper)) {
            if visit(k, v) == Scan::Stop {
                break;
            }
        }
        Ok(())
    }

    fn last(&self, cf: Cf) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let spaces = self.spaces.read().expect("memory engine lock poisoned");
        Ok(spaces.get(&cf).and_then(|s| s.last_key_value()).map(|(k, v)| (k.clone(), v.clone())))
    }

    fn write(&self, batch: WriteBatch, _durability: Durability) -> Result<()> {
        let mut spaces = self.spaces.write().expect("memory engine lock poisoned");
        for op in batch.ops {
            match op {
                BatchOp::Put { cf, key, value } => {
                    spaces.entry(cf).or_default().insert(key, value);
                }
                BatchOp::Delete { cf, key } => {
                    spaces.entry(cf).or_default().remove(&key);
                }
                BatchOp::DeleteRange { cf, start, end } => {
                    let space = spaces.entry(cf).or_default();
                    if start < end {
                        let doomed: Vec<Vec<u8>> = space.range(start..end).map(|(k, _)| k.clone()).collect();
                        for k in doomed {
                            space.remove(&k);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn scan_consistent(&self, cfs: &[Cf], visit: &mut Visitor<'_>) -> Result<()> {
        // Holding the read lock across all column families is the point-in-time view.
        let spaces = self.spaces.read().expect("memory engine lock poisoned");
        for cf in cfs {
            for (k, v) in spaces.get(cf).into_iter().flatten() {
                visit(*cf, k, v);
            }
        }
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn size_bytes(&self) -> u64 {
        let spaces = self.spaces.read().expect("memory engine lock poisoned");
        spaces.values().flat_map(|s| s.iter()).map(|(k, v)| (k.len() + v.len()) as u64).sum()
    }
}
