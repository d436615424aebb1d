//! Follower → leader forwarding over the peer service: writes, read indexes and lease clock
//! operations that only the leader can serve for a client of a follower.
//!
//! Writes travel on one long-lived stream per leader ([`Forwarder`]), one message each, and
//! are answered by this member's own apply of them (see [`ForwardedWrites`]): a forwarded write
//! costs one message between members instead of a request and a reply.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Channel;

use crate::pb::storepb::raft_peer_client::RaftPeerClient;
use crate::pb::storepb::InternalRequest;
use crate::raft::{decode, ForwardedWrites, Member, NodeId, PeerClients, WriteOutcome};
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

/// This member's stream of forwarded writes to the current leader.
#[derive(Debug)]
pub struct Forwarder {
    link: Mutex<Option<Link>>,
    /// Request ids: a random start per process, so ids stay unique across restarts.
    next_id: AtomicU64,
    next_link: AtomicU64,
}

#[derive(Debug, Clone)]
struct Link {
    leader: NodeId,
    id: u64,
    sender: mpsc::UnboundedSender<InternalRequest>,
    /// Cleared when the stream ends, before its waiting writes are failed.
    open: Arc<AtomicBool>,
}

impl Default for Forwarder {
    fn default() -> Self {
        Self { link: Mutex::new(None), next_id: AtomicU64::new(random_start()), next_link: AtomicU64::new(1) }
    }
}

/// A process-unique starting point for request ids (0 means "not forwarded").
fn random_start() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    h.write_u32(std::process::id());
    // Leave room below u64::MAX so the counter never wraps to 0.
    (h.finish() >> 1).max(1)
}

impl Forwarder {
    /// Sends `request` to `leader` and waits for its outcome (from this member's apply, or a
    /// failure from the leader), at most `timeout`.
    pub async fn propose(
        &self,
        writes: &Arc<ForwardedWrites>,
        peers: &PeerClients,
        leader: (NodeId, &Member),
        mut request: InternalRequest,
        timeout: std::time::Duration,
    ) -> WriteOutcome {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        request.id = id;
        let link = self.link_to(writes, peers, leader)?;
        let outcome = writes.register(id, link.id);
        if link.sender.send(request).is_err() {
            // The stream ended before this write could go out: it was never proposed.
            writes.forget(id);
            return Err(Error::LeaderChanged);
        }
        if !link.open.load(Ordering::SeqCst) {
            // The stream broke around the send, perhaps after failing the writes it knew of.
            writes.resolve(id, || Err(Error::LeaderChanged));
        }
        match tokio::time::timeout(timeout, outcome).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(Error::Stopped),
            Err(_) => {
                writes.forget(id);
                Err(Error::Timeout)
            }
        }
    }

    /// The open stream to `leader`, opening one if there is none (or it broke, or it goes to
    /// a member that no longer leads).
    fn link_to(&self, writes: &Arc<ForwardedWrites>, peers: &PeerClients, leader: (NodeId, &Member)) -> Result<Link> {
        let mut current = self.link.lock().expect("forwarder lock poisoned");
        let usable = |l: &&Link| l.leader == leader.0 && l.open.load(Ordering::SeqCst) && !l.sender.is_closed();
        if let Some(link) = current.as_ref().filter(usable) {
            return Ok(link.clone());
        }
        let mut client = client(peers, leader.1)?;
        let id = self.next_link.fetch_add(1, Ordering::Relaxed);
        let (sender, outgoing) = mpsc::unbounded_channel();
        let writes = writes.clone();
        let open = Arc::new(AtomicBool::new(true));
        let still_open = open.clone();
        tokio::spawn(async move {
            let broke = match client.propose_stream(UnboundedReceiverStream::new(outgoing)).await {
                Err(status) => Some(unreachable(status)),
                Ok(replies) => {
                    let mut failures = replies.into_inner();
                    loop {
                        match failures.message().await {
                            Ok(Some(f)) => {
                                let error = decode::<Error>(&f.error).unwrap_or_else(|e| e);
                                writes.resolve(f.id, || Err(error));
                            }
                            // The leader closes its side once every write it received has
                            // either failed (answered above) or committed (answered by our
                            // apply): the writes still waiting are committed.
                            Ok(None) => break None,
                            Err(status) => break Some(unreachable(status)),
                        }
                    }
                }
            };
            still_open.store(false, Ordering::SeqCst);
            if let Some(error) = broke {
                writes.fail_link(Some(id), &error);
            }
        });
        let link = Link { leader: leader.0, id, sender, open };
        *current = Some(link.clone());
        Ok(link)
    }
}
