//! [`KeyRange`]: which keys a `(key, range_end)` pair selects, and the evaluation of a
//! `RangeRequest` over the entries a view yields (filters, sort, limit, count, keys_only).

use std::cmp::Ordering;

use crate::pb::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::pb::etcdserverpb::{RangeRequest, RangeResponse};
use crate::pb::mvccpb::KeyValue;
use crate::Result;

use super::Revision;

/// The keys selected by etcd's `(key, range_end)` convention.
///
/// - `range_end` empty: just `key`;
/// - `range_end == "\0"`: every key `>= key` (so `key = "\0", range_end = "\0"` is all keys);
/// - otherwise `[key, range_end)` (empty when `range_end <= key`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyRange {
    /// Exactly one key.
    Key(Vec<u8>),
    /// `[start, end)`; `end = None` means no upper bound.
    Span {
        /// First key included.
        start: Vec<u8>,
        /// First key excluded, if any.
        end: Option<Vec<u8>>,
    },
}

impl KeyRange {
    /// Interprets a request's `key` and `range_end` as etcd does.
    pub fn new(key: &[u8], range_end: &[u8]) -> Self {
        match range_end {
            [] => KeyRange::Key(key.to_vec()),
            [0] => KeyRange::Span { start: key.to_vec(), end: None },
            end => KeyRange::Span { start: key.to_vec(), end: Some(end.to_vec()) },
        }
    }

    /// True when `key` is selected (what a watcher on this range matches).
    pub fn contains(&self, key: &[u8]) -> bool {
        match self {
            KeyRange::Key(k) => k.as_slice() == key,
            KeyRange::Span { start, end } => start.as_slice() <= key && end.as_deref().is_none_or(|e| key < e),
        }
    }
}

/// One key a view yields for a range: a record on disk, or a value written earlier in the same
/// txn and not yet on disk.
#[derive(Debug, Clone)]
pub(super) enum Entry {
    /// The record at this revision in `Cf::Kv`.
    Stored(Revision),
    /// A value pending in the current txn.
    Pending(KeyValue),
}

/// Builds the response to `req` from the entries (one per live key, ascending by key) of the
/// view it reads; `fetch` loads a stored entry. Leaves `header` unset.
///
/// Mirrors etcd 3.4 `applierV3backend.Range`: `count` is the number of keys in the range before
/// the min/max revision filters and the limit; `more` says the limit cut something off.
pub(super) fn evaluate(
    req: &RangeRequest,
    entries: Vec<Entry>,
    mut fetch: impl FnMut(Revision) -> Result<KeyValue>,
) -> Result<RangeResponse> {
    let count = entries.len() as i64;
    if req.count_only {
        return Ok(RangeResponse { header: None, kvs: Vec::new(), more: false, count });
    }

    let order = SortOrder::try_from(req.sort_order).unwrap_or(SortOrder::None);
    let target = SortTarget::try_from(req.sort_target).unwrap_or(SortTarget::Key);
    let filtered = req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0;
    // Without sorting or filtering, keys come in key order and `limit + 1` of them decide `more`.
    let wanted = if order == SortOrder::None && !filtered && req.limit > 0 {
        entries.len().min(req.limit as usize + 1)
    } else {
        entries.len()
    };

    let mut kvs = Vec::with_capacity(wanted);
    for entry in entries.into_iter().take(wanted) {
        kvs.push(match entry {
            Entry::Stored(rev) => fetch(rev)?,
            Entry::Pending(kv) => kv,
        });
    }

    if filtered {
        kvs.retain(|kv| {
            (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
                && (req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
                && (req.max_create_revision == 0 || kv.create_revision <= req.max_create_revision)
                && (req.min_create_revision == 0 || kv.create_revision >= req.min_create_revision)
        });
    }

    // etcd: a non-KEY target with order NONE sorts ascending; KEY + NONE is already key order.
    let order = if target != SortTarget::Key && order == SortOrder::None { SortOrder::Ascend } else { order };
    if order != SortOrder::None {
        let by = |a: &KeyValue, b: &KeyValue| -> Ordering {
            match target {
                SortTarget::Key => a.key.cmp(&b.key),
                SortTarget::Version => a.version.cmp(&b.version),
                SortTarget::Create => a.create_revision.cmp(&b.create_revision),
                SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
                SortTarget::Value => a.value.cmp(&b.value),
            }
        };
        // Stable, so ties stay in key order (etcd's sort is unstable: tie order is unspecified).
        match order {
            SortOrder::Descend => kvs.sort_by(|a, b| by(b, a)),
            _ => kvs.sort_by(by),
        }
    }

    let mut more = false;
    if req.limit > 0 && kvs.len() > req.limit as usize {
        kvs.truncate(req.limit as usize);
        more = true;
    }
    if req.keys_only {
        for kv in &mut kvs {
            kv.value.clear();
        }
    }
    Ok(RangeResponse { header: None, kvs, more, count })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_range_follows_etcd_conventions() {
        let one = KeyRange::new(b"a", b"");
        assert!(one.contains(b"a") && !one.contains(b"ab"));
        let from = KeyRange::new(b"b", b"\0");
        assert!(from.contains(b"b") && from.contains(b"zzz") && !from.contains(b"a"));
        let all = KeyRange::new(b"\0", b"\0");
        assert!(all.contains(b"\0") && all.contains(b"\xff"));
        let span = KeyRange::new(b"a", b"c");
        assert!(span.contains(b"a") && span.contains(b"bzz") && !span.contains(b"c"));
        let inverted = KeyRange::new(b"c", b"a");
        assert!(!inverted.contains(b"b") && !inverted.contains(b"c"));
    }
}
