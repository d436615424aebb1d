//! The Kubernetes-compatible REST server. Not built yet: this crate only holds the workspace
//! slot for the apiserver issue.
#![deny(clippy::all)]
