//! Request bodies in formats other than JSON, turned into the JSON the registry works on.
//!
//! - `protobuf`: Kubernetes protobuf (`application/vnd.kubernetes.protobuf`, what kubectl's
//!   imperative commands send), decoded with a field table that `build.rs` generates from the
//!   prost types of the `k8s-pb` crate (`table`).
//!
//! - `unknown`: the fields of a JSON object that its kind does not have (`fieldValidation`),
//!   with the same table.
//!
//! YAML needs no module: it is parsed straight into a `serde_json::Value` at the handler edge.

pub mod protobuf;
mod table;
pub mod unknown;
