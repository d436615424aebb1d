//! The one table that turns store errors into gRPC statuses, with etcd's codes and messages
//! (etcd clients match on the message text, e.g. to detect compaction).

use tonic::{Code, Status};

use crate::Error;

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        let code = match &e {
            Error::EmptyKey
            | Error::KeyNotFound
            | Error::ValueProvided
            | Error::LeaseProvided
            | Error::TooManyOps
            | Error::DuplicateKey
            | Error::RequestTooLarge
            | Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::Compacted { .. } | Error::FutureRevision | Error::LeaseTtlTooLarge => Code::OutOfRange,
            Error::LeaseNotFound | Error::MemberNotFound => Code::NotFound,
            Error::LeaseExists | Error::NotLeader | Error::MembershipConflict(_) => Code::FailedPrecondition,
            Error::NoLeader | Error::LeaderChanged | Error::Timeout | Error::Stopped | Error::Unhealthy => Code::Unavailable,
            Error::Unsupported(_) => Code::Unimplemented,
            Error::Storage(_) | Error::Corrupt(_) => Code::Internal,
        };
        let message = match &e {
            // etcd prefixes mvcc errors with "etcdserver: " on the wire; clients match the whole text.
            Error::Compacted { .. } | Error::FutureRevision => format!("etcdserver: {e}"),
            _ => e.to_string(),
        };
        if code == Code::Internal {
            tracing::error!(error = %e, "internal error reached a client");
        }
        Status::new(code, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_messages_clients_match_on() {
        let s = Status::from(Error::Compacted { compact_revision: 5 });
        assert_eq!(s.code(), Code::OutOfRange);
        assert_eq!(s.message(), "etcdserver: mvcc: required revision has been compacted");
        let s = Status::from(Error::FutureRevision);
        assert_eq!(s.message(), "etcdserver: mvcc: required revision is a future revision");
        assert_eq!(Status::from(Error::RequestTooLarge).message(), "etcdserver: request is too large");
        assert_eq!(Status::from(Error::EmptyKey).message(), "etcdserver: key is not provided");
        assert_eq!(Status::from(Error::LeaseNotFound).code(), Code::NotFound);
        assert_eq!(Status::from(Error::NoLeader).code(), Code::Unavailable);
        let s = Status::from(Error::MembershipConflict("Peer URLs already exists".into()));
        assert_eq!((s.code(), s.message()), (Code::FailedPrecondition, "etcdserver: Peer URLs already exists"));
    }
}
