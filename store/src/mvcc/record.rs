//! [`Record`]: the value stored in `Cf::Kv` under a revision key.
//!
//! Layout: one kind byte ([`RecordKind`]) followed by a prost-encoded
//! [`KeyValue`](crate::pb::mvccpb::KeyValue). A put stores the whole key-value as of that revision
//! (create/mod revision, version, lease, value), so any revision can be served from its record
//! alone. A tombstone stores only `{key, mod_revision}`, which is exactly the `kv` of a DELETE event.

use prost::Message;

use crate::pb::mvccpb::KeyValue;
use crate::{Error, Result};

/// What a [`Record`] says happened to its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// The key was set to `kv`.
    Put,
    /// The key was deleted; `kv` holds only the key and the deletion revision.
    Tombstone,
}

impl RecordKind {
    fn byte(self) -> u8 {
        match self {
            RecordKind::Put => b'p',
            RecordKind::Tombstone => b't',
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        match b {
            b'p' => Some(RecordKind::Put),
            b't' => Some(RecordKind::Tombstone),
            _ => None,
        }
    }
}

/// One change of one key, as stored in `Cf::Kv`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Record {
    /// Put or tombstone.
    pub kind: RecordKind,
    /// The key-value after the change (for a tombstone: `{key, mod_revision}` only).
    pub kv: KeyValue,
}

impl Record {
    /// A put of `kv`.
    pub fn put(kv: KeyValue) -> Self {
        Self { kind: RecordKind::Put, kv }
    }

    /// A tombstone of `key` at main revision `mod_revision`.
    pub fn tombstone(key: Vec<u8>, mod_revision: i64) -> Self {
        Self { kind: RecordKind::Tombstone, kv: KeyValue { key, mod_revision, ..Default::default() } }
    }

    /// True for a tombstone.
    pub fn is_tombstone(&self) -> bool {
        self.kind == RecordKind::Tombstone
    }

    /// The bytes stored in `Cf::Kv`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + self.kv.encoded_len());
        out.push(self.kind.byte());
        // Encoding into a Vec cannot run out of space.
        self.kv.encode(&mut out).expect("encoding into a Vec cannot fail");
        out
    }

    /// Parses bytes written by [`Record::encode`]; `Error::Corrupt` otherwise.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let (&kind, rest) = bytes.split_first().ok_or_else(|| Error::corrupt("empty mvcc record"))?;
        let kind = RecordKind::from_byte(kind)
            .ok_or_else(|| Error::corrupt(format!("unknown mvcc record kind {kind:#04x}")))?;
        let kv = KeyValue::decode(rest).map_err(|e| Error::corrupt(format!("mvcc record: {e}")))?;
        Ok(Self { kind, kv })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let put = Record::put(KeyValue {
            key: b"k".to_vec(),
            create_revision: 2,
            mod_revision: 3,
            version: 2,
            value: b"v".to_vec(),
            lease: 7,
        });
        let tomb = Record::tombstone(b"k".to_vec(), 4);
        for r in [put, tomb] {
            assert_eq!(Record::decode(&r.encode()).unwrap(), r);
        }
        assert!(matches!(Record::decode(b""), Err(Error::Corrupt(_))));
        assert!(matches!(Record::decode(b"x"), Err(Error::Corrupt(_))));
        assert!(matches!(Record::decode(b"p\xff\xff"), Err(Error::Corrupt(_))));
    }
}
