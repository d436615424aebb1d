//! Jepsen-style partition tests. Not built yet: this crate only holds the workspace slot for
//! the chaos issue.
#![deny(clippy::all)]
