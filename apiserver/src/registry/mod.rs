//! One generic registry for every kind, driven by the table in `kinds.rs` and per-kind
//! strategies (kube-apiserver's `pkg/registry/generic/registry/store.go` in spirit).

mod generic;
mod kind;
mod kinds;
pub mod meta;
pub mod patch;
pub mod selector;
mod strategies;
mod strategy;
pub mod validation;
pub mod fields;
pub mod managed;
mod write;

pub use generic::{DeleteResult, Registry, ScaleChange, WatchRequest};
pub use kind::Kind;
pub use kinds::{kinds, lookup, lookup_kind};
pub use patch::PatchType;
pub use selector::Selector;
pub use strategy::Strategy;
pub use write::WriteOptions;
