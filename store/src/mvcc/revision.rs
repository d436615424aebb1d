//! [`Revision`]: the logical clock of the store.
//!
//! `main` counts writes: it starts at 1 for an empty store and grows by exactly one per applied
//! write that changed something. `sub` numbers the changes inside that one write (a txn that puts
//! `a` and deletes `b` at main revision 7 writes (7, 0) and (7, 1)). On disk a revision is the
//! 16-byte big-endian key made by [`crate::keys::revision_key`], so byte order is revision order.

use serde::{Deserialize, Serialize};

/// A point in the store's history: the write (`main`) and the change within it (`sub`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Revision {
    /// The write's number; what clients see as `mod_revision`, `create_revision` and header revisions.
    pub main: i64,
    /// The position of the change within its write, from 0.
    pub sub: i64,
}

impl Revision {
    /// The revision `(main, sub)`.
    pub const fn new(main: i64, sub: i64) -> Self {
        Self { main, sub }
    }
}

impl std::fmt::Display for Revision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.main, self.sub)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_by_main_then_sub() {
        let mut revs = vec![Revision::new(2, 0), Revision::new(1, 1), Revision::new(1, 0), Revision::new(10, 0)];
        revs.sort();
        assert_eq!(revs, vec![Revision::new(1, 0), Revision::new(1, 1), Revision::new(2, 0), Revision::new(10, 0)]);
        assert_eq!(Revision::new(5, 1).to_string(), "5.1");
    }
}
