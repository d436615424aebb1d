//! Request bodies in formats other than JSON, turned into the JSON the registry works on.
//!
//! - `protobuf`: Kubernetes protobuf (`application/vnd.kubernetes.protobuf`, what kubectl's
//!   imperative commands send), decoded with a field table that `build.rs` generates from the
//!   prost types of the `k8s-pb` crate (`table`).
//!
//! - `unknown`: the fields of a JSON object that its kind does not have (`fieldValidation`),
//!   with the same table.
//!
//! - `strict`: JSON and YAML parsed into a `serde_json::Value` with the keys an object repeats,
//!   and the `fieldValidation` verdict on duplicate and unknown fields.

pub mod protobuf;
pub mod strict;
mod table;
pub mod unknown;
