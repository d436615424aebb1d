//! Generated etcd v3 wire types (our own .proto files with etcd's names and field numbers).
//!
//! prost emits cross-package references as `super::<pkg>::...`, so every
//! package lives in a sibling module here.
#![allow(clippy::all, missing_docs)]

/// `mvccpb`: `KeyValue` and `Event`.
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

/// `authpb`: stored auth users, roles and permissions.
pub mod authpb {
    tonic::include_proto!("authpb");
}

/// `etcdserverpb`: the etcd v3 gRPC services and their messages.
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

/// `storepb`: ferrokube-internal raft commands.
pub mod storepb {
    tonic::include_proto!("storepb");
}
