//! Follower → leader forwarding over the peer service: writes, read indexes and lease clock
//! operations that only the leader can serve for a client of a follower.

use tonic::transport::Channel;

use crate::mvcc::ApplyResponse;
use crate::pb::storepb::propose_reply::Response as Reply;
use crate::pb::storepb::raft_peer_client::RaftPeerClient;
use crate::pb::storepb::ProposeReply;
use crate::raft::{decode, encode, Member, PeerClients};
use crate::{Error, Result};

/// A client for `member`'s peer service.
pub fn client(peers: &PeerClients, member: &Member) -> Result<RaftPeerClient<Channel>> {
    let url = member.peer_urls.first().ok_or(Error::NoLeader)?;
    peers.get(url).ok_or_else(|| Error::InvalidArgument(format!("bad peer url {url:?}")))
}

/// A transport failure talking to the leader: the outcome of a write is unknown, a read can be
/// retried by the client.
pub fn unreachable(status: tonic::Status) -> Error {
    match status.code() {
        tonic::Code::DeadlineExceeded => Error::Timeout,
        _ => Error::LeaderChanged,
    }
}

/// Encodes the outcome of a write for the follower that forwarded it.
pub fn to_reply(outcome: Result<(ApplyResponse, i64)>) -> ProposeReply {
    match outcome {
        Ok((response, revision)) => {
            let response = match response {
                ApplyResponse::Put(r) => Reply::Put(r),
                ApplyResponse::DeleteRange(r) => Reply::DeleteRange(r),
                ApplyResponse::Txn(r) => Reply::Txn(r),
                ApplyResponse::Compaction(r) => Reply::Compaction(r),
                ApplyResponse::LeaseGrant(r) => Reply::LeaseGrant(r),
                ApplyResponse::LeaseRevoke(r) => Reply::LeaseRevoke(r),
            };
            ProposeReply { response: Some(response), revision, error: vec![] }
        }
        Err(e) => ProposeReply { response: None, revision: 0, error: encode(&e) },
    }
}

/// Decodes what [`to_reply`] encoded.
pub fn from_reply(reply: ProposeReply) -> Result<(ApplyResponse, i64)> {
    if !reply.error.is_empty() {
        return Err(decode::<Error>(&reply.error)?);
    }
    let response = match reply.response.ok_or_else(|| Error::corrupt("forwarded write answered with nothing"))? {
        Reply::Put(r) => ApplyResponse::Put(r),
        Reply::DeleteRange(r) => ApplyResponse::DeleteRange(r),
        Reply::Txn(r) => ApplyResponse::Txn(r),
        Reply::Compaction(r) => ApplyResponse::Compaction(r),
        Reply::LeaseGrant(r) => ApplyResponse::LeaseGrant(r),
        Reply::LeaseRevoke(r) => ApplyResponse::LeaseRevoke(r),
    };
    Ok((response, reply.revision))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::etcdserverpb::PutResponse;

    #[test]
    fn replies_round_trip_outcomes_and_errors() {
        let ok = from_reply(to_reply(Ok((ApplyResponse::Put(PutResponse::default()), 7)))).unwrap();
        assert_eq!(ok, (ApplyResponse::Put(PutResponse::default()), 7));
        let err = from_reply(to_reply(Err(Error::Compacted { compact_revision: 3 }))).unwrap_err();
        assert_eq!(err, Error::Compacted { compact_revision: 3 });
    }
}
