//! The Kubernetes REST API over the etcd v3 API.
//!
//! Layers, each depending only on the ones below it:
//! - `handlers/`: thin axum code: parse the URL and query, read the body, call the registry,
//!   write JSON (or a watch stream).
//! - `codec/`: request bodies in Kubernetes protobuf, decoded to JSON with a table generated
//!   from k8s-pb at build time.
//! - `registry/`: one generic registry (create/get/list/update/patch/delete/watch) driven by a
//!   table of kinds, each with a strategy (defaults, validation, status handling).
//! - `admission/`: mutating then validating plugins (NamespaceLifecycle, ...) run on create.
//! - `storage/`: the `Storage` trait, its implementation over the etcd v3 API (`etcd-client`,
//!   for the embedded store and for `--store-endpoints`), and the watch cache in front of it.
//! - `status.rs`: every `Error` becomes a Kubernetes `Status` there and nowhere else.
//! - `printers.rs`: the columns of `kubectl get` per kind (pure functions), for `as=Table`.
#![deny(clippy::all)]

pub mod admission;
pub mod auth;
pub mod codec;
pub mod error;
pub mod handlers;
pub mod metrics;
pub mod pki;
pub mod printers;
pub mod registry;
pub mod server;
pub mod status;
pub mod storage;
pub mod warning;

pub use error::{Cause, Error};
pub use server::{ApiServer, ApiServerConfig};

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The largest request body accepted (kube-apiserver's limit): bigger bodies get 413.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// The store's default request limit (etcd's `--max-request-bytes`): a bigger object passes the
/// body limit but is refused by the store, and answered 413 like kube-apiserver does.
pub const STORE_MAX_REQUEST_BYTES: usize = 1536 * 1024;
