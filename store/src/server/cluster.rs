//! The etcd `Cluster` service and the membership changes behind it. Members are the nodes of
//! the raft membership; every change runs on the leader (a follower forwards it over the peer
//! service), one at a time, as an openraft `change_membership`:
//!
//! | etcd | openraft |
//! |---|---|
//! | MemberAdd (learner) | `AddNodes`: a learner, replicated to at once; the RPC returns once that is committed |
//! | MemberAdd (voter) | the same, then `AddVoterIds` by the leader as soon as the learner is in sync (below) |
//! | MemberPromote | `AddVoterIds` (joint consensus), only for a learner in sync |
//! | MemberRemove | `RemoveVoters` without retaining it (joint consensus), or `RemoveNodes` for a learner |
//! | MemberUpdate | `SetNodes` with the new peer URLs (name and client URLs kept) |
//! | a member's own name and client URLs (etcd's publish) | `SetNodes` with the peer URLs kept |
//!
//! etcd adds a voter directly, so a voter that has not started yet already counts towards the
//! quorum. Here it joins as a learner and the leader that added it promotes it once it is in
//! sync (etcd's rule: its log matches at least 90 % of the leader's). The membership records
//! that it was added as a voter ([`Member::promote_when_in_sync`]), so whichever member leads
//! when it catches up promotes it ([`promote_added_voters`]).
//!
//! `SetNodes` is only safe when the peer URLs still reach the same member (openraft's
//! "brain split" warning): publishing never changes peer URLs, and MemberUpdate is the
//! operator's statement that the member now listens there, as in etcd.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::{ChangeMembers, Membership, RaftMetrics, ServerState};
use tonic::{Request, Response, Status};

use super::forward;
use super::node::{Leader, StoreNode};
use crate::pb::etcdserverpb::cluster_server::Cluster;
use crate::pb::etcdserverpb::{
    Member as PbMember, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse, MemberUpdateRequest,
    MemberUpdateResponse, ResponseHeader,
};
use crate::pb::storepb::membership_change::Change;
use crate::pb::storepb::{MembershipChange, MembershipChangeReply};
use crate::raft::{decode, encode, Member, NodeId};
use crate::{Error, Result};

/// Serves `etcdserverpb.Cluster`.
#[derive(Debug, Clone)]
pub struct ClusterService {
    node: Arc<StoreNode>,
}

impl ClusterService {
    /// A cluster service on `node`.
    pub fn new(node: Arc<StoreNode>) -> Self {
        Self { node }
    }

    fn header(&self) -> Option<ResponseHeader> {
        Some(self.node.header(self.node.mvcc().current_revision()))
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(&self, request: Request<MemberAddRequest>) -> Result<Response<MemberAddResponse>, Status> {
        let done = change_membership(&self.node, Change::Add(request.into_inner())).await?;
        Ok(Response::new(MemberAddResponse { header: self.header(), member: done.member, members: done.members }))
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        let done = change_membership(&self.node, Change::Remove(request.into_inner())).await?;
        Ok(Response::new(MemberRemoveResponse { header: self.header(), members: done.members }))
    }

    async fn member_update(
        &self,
        request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        let done = change_membership(&self.node, Change::Update(request.into_inner())).await?;
        Ok(Response::new(MemberUpdateResponse { header: self.header(), members: done.members }))
    }

    async fn member_list(&self, request: Request<MemberListRequest>) -> Result<Response<MemberListResponse>, Status> {
        let req = request.into_inner();
        self.node.read_barrier(!req.linearizable).await?;
        let members = pb_members(self.node.state().membership().membership());
        Ok(Response::new(MemberListResponse { header: self.header(), members }))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let done = change_membership(&self.node, Change::Promote(request.into_inner())).await?;
        Ok(Response::new(MemberPromoteResponse { header: self.header(), members: done.members }))
    }
}

/// What a membership change answers: the member it concerned (MemberAdd's new member) and
/// every member after the change.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// The member added or changed, where the answer names one.
    pub member: Option<PbMember>,
    /// Every member once the change is applied.
    pub members: Vec<PbMember>,
}

/// Runs `change` on the leader: here if this member leads, else forwarded to it. A leader that
/// has just lost its role changed nothing, so the change is retried on the new one (within the
/// request timeout).
pub async fn change_membership(node: &Arc<StoreNode>, change: Change) -> Result<Outcome> {
    if node.is_removed() {
        return Err(Error::Stopped);
    }
    let deadline = tokio::time::Instant::now() + node.config().request_timeout;
    loop {
        let outcome = match node.leader().await? {
            Leader::Me => change_membership_local(node, change.clone()).await,
            Leader::Peer(leader_id, leader) => {
                let mut client = node.peer(leader_id, &leader).await?;
                let call = node.forwarded(MembershipChange { change: Some(change.clone()) });
                let reply = client.change_membership(call).await.map_err(forward::unreachable)?;
                from_reply(reply.into_inner())
            }
        };
        match outcome {
            Err(Error::NotLeader) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(node.config().heartbeat).await;
            }
            other => return other,
        }
    }
}

/// Runs `change` on this member, which must lead (else `NotLeader`): the forwarding target.
pub async fn change_membership_local(node: &Arc<StoreNode>, change: Change) -> Result<Outcome> {
    let _one_at_a_time = node.lock_membership().await?;
    let metrics = node.raft().metrics().borrow().clone();
    if metrics.state != ServerState::Leader {
        return Err(if metrics.current_leader.is_some() { Error::NotLeader } else { Error::NoLeader });
    }
    let current = metrics.membership_config.membership().clone();
    let member = match change {
        Change::Add(req) => Some(add(node, &current, req).await?),
        Change::Remove(req) => {
            remove(node, &current, req.id).await?;
            None
        }
        Change::Update(req) => {
            update(node, &current, req).await?;
            None
        }
        Change::Promote(req) => {
            promote(node, &current, &metrics, req.id).await?;
            None
        }
        Change::Publish(attributes) => Some(publish(node, &current, attributes).await?),
    };
    // The change is applied on the leader by the time openraft answers.
    Ok(Outcome { member, members: pb_members(node.state().membership().membership()) })
}

fn conflict(etcd_message: &str) -> Error {
    Error::MembershipConflict(etcd_message.into())
}

/// etcd's check of MemberAdd/MemberUpdate URLs: at least one, each `http(s)://host:port`.
fn check_peer_urls(urls: &[String]) -> Result<()> {
    let valid = |url: &str| {
        let Some(rest) = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")) else {
            return false;
        };
        let hostport = rest.strip_suffix('/').unwrap_or(rest);
        match hostport.rsplit_once(':') {
            Some((host, port)) => !host.is_empty() && !host.contains('/') && port.parse::<u16>().is_ok(),
            None => false,
        }
    };
    if urls.is_empty() || !urls.iter().all(|u| valid(u)) {
        return Err(Error::InvalidArgument("given member URLs are invalid".into()));
    }
    Ok(())
}

/// Whether a member other than `except` already uses one of `urls`.
fn peer_urls_taken(current: &Membership<NodeId, Member>, urls: &[String], except: Option<NodeId>) -> bool {
    current.nodes().any(|(id, m)| Some(*id) != except && m.peer_urls.iter().any(|u| urls.contains(u)))
}

async fn add(node: &Arc<StoreNode>, current: &Membership<NodeId, Member>, req: MemberAddRequest) -> Result<PbMember> {
    check_peer_urls(&req.peer_ur_ls)?;
    if peer_urls_taken(current, &req.peer_ur_ls, None) {
        return Err(conflict("Peer URLs already exists"));
    }
    // The id the new member computes at its start from its --initial-cluster entry.
    let id = super::config::member_id(&req.peer_ur_ls[0], &node.config().initial_cluster_token);
    if current.get_node(&id).is_some() {
        return Err(conflict("member ID already exist"));
    }
    if node.config().strict_reconfig_check && !req.is_learner && !enough_started_to_add_voter(&started_voters(current)) {
        return Err(conflict(NOT_ENOUGH_STARTED));
    }
    let member = Member {
        name: String::new(),
        peer_urls: req.peer_ur_ls.clone(),
        client_urls: vec![],
        promote_when_in_sync: !req.is_learner,
    };
    commit(node, ChangeMembers::AddNodes(BTreeMap::from([(id, member.clone())])), true).await?;
    tracing::info!(
        member_id = format_args!("{id:x}"),
        peer_urls = ?req.peer_ur_ls,
        as_learner = req.is_learner,
        "added member as a learner"
    );
    Ok(pb_member(id, &member, true))
}

async fn remove(node: &StoreNode, current: &Membership<NodeId, Member>, id: NodeId) -> Result<()> {
    if current.get_node(&id).is_none() {
        return Err(Error::MemberNotFound);
    }
    let ids = BTreeSet::from([id]);
    if current.voter_ids().any(|v| v == id) {
        if node.config().strict_reconfig_check {
            let voters: Vec<(NodeId, bool)> =
                current.voter_ids().map(|v| (v, current.get_node(&v).is_some_and(|m| !m.name.is_empty()))).collect();
            let reachable: Vec<NodeId> = voters.iter().map(|(v, _)| *v).filter(|v| node.reachable(*v)).collect();
            may_remove_voter(&voters, &reachable, id)?;
        }
        commit(node, ChangeMembers::RemoveVoters(ids), false).await?;
    } else {
        commit(node, ChangeMembers::RemoveNodes(ids), false).await?;
    }
    tracing::info!(member_id = format_args!("{id:x}"), "removed member");
    Ok(())
}

async fn update(node: &StoreNode, current: &Membership<NodeId, Member>, req: MemberUpdateRequest) -> Result<()> {
    let old = current.get_node(&req.id).ok_or(Error::MemberNotFound)?;
    check_peer_urls(&req.peer_ur_ls)?;
    if peer_urls_taken(current, &req.peer_ur_ls, Some(req.id)) {
        return Err(conflict("Peer URLs already exists"));
    }
    if old.peer_urls == req.peer_ur_ls {
        return Ok(());
    }
    let new = Member { peer_urls: req.peer_ur_ls.clone(), ..old.clone() };
    commit(node, ChangeMembers::SetNodes(BTreeMap::from([(req.id, new)])), true).await?;
    tracing::info!(member_id = format_args!("{:x}", req.id), peer_urls = ?req.peer_ur_ls, "updated member peer URLs");
    Ok(())
}

async fn promote(
    node: &StoreNode,
    current: &Membership<NodeId, Member>,
    metrics: &RaftMetrics<NodeId, Member>,
    id: NodeId,
) -> Result<()> {
    if current.get_node(&id).is_none() {
        return Err(Error::MemberNotFound);
    }
    if current.voter_ids().any(|v| v == id) {
        return Err(conflict("can only promote a learner member"));
    }
    if !learner_in_sync(metrics, id) {
        return Err(conflict("can only promote a learner member which is in sync with leader"));
    }
    if node.config().strict_reconfig_check && !enough_started_to_add_voter(&started_voters(current)) {
        return Err(conflict(NOT_ENOUGH_STARTED));
    }
    commit(node, ChangeMembers::AddVoterIds(BTreeSet::from([id])), true).await?;
    tracing::info!(member_id = format_args!("{id:x}"), "promoted learner to voter");
    Ok(())
}

/// etcd's refusal when a change would leave too few started voters for a quorum.
const NOT_ENOUGH_STARTED: &str = "re-configuration failed due to not enough started members";

/// The voters of `current`, each with whether it has started (published its name, as etcd
/// counts "started").
fn started_voters(current: &Membership<NodeId, Member>) -> Vec<bool> {
    current.voter_ids().map(|v| current.get_node(&v).is_some_and(|m| !m.name.is_empty())).collect()
}

/// `--strict-reconfig-check` for adding (or promoting) a voter, etcd's rule: the voters that
/// have started, plus the new one, must be a quorum of the voters plus the new one.
///
/// Worked example: three voters of which one never started: 2 started + 1 new = 3 of 4,
/// quorum 3: allowed. Two never started: 1 + 1 = 2 of 4: refused.
fn enough_started_to_add_voter(voters_started: &[bool]) -> bool {
    let members = voters_started.len() + 1;
    let started = voters_started.iter().filter(|s| **s).count() + 1;
    started > members / 2
}

/// `--strict-reconfig-check` for removing voter `id`, etcd's rules: the remaining voters that
/// have started must be a quorum of the remaining voters; and unless `id` is itself down
/// (removing a down member helps), the reachable voters other than `id` must be a quorum of
/// the remaining voters, or the change itself could not commit ("unhealthy cluster").
///
/// Worked example: voters a, b, c with c down. Removing c: allowed. Removing b: a alone is
/// reachable, but two voters need two: refused.
fn may_remove_voter(voters: &[(NodeId, bool)], reachable: &[NodeId], id: NodeId) -> Result<()> {
    let remaining: Vec<&(NodeId, bool)> = voters.iter().filter(|(v, _)| *v != id).collect();
    let quorum = remaining.len() / 2 + 1;
    if remaining.iter().filter(|(_, started)| *started).count() < quorum {
        return Err(conflict(NOT_ENOUGH_STARTED));
    }
    if !reachable.contains(&id) {
        return Ok(());
    }
    let reachable_remaining = remaining.iter().filter(|(v, _)| reachable.contains(v)).count();
    if reachable_remaining < quorum {
        return Err(Error::Unhealthy);
    }
    Ok(())
}

/// A member's own name and client URLs; its peer URLs stay as the membership has them.
async fn publish(node: &StoreNode, current: &Membership<NodeId, Member>, attributes: PbMember) -> Result<PbMember> {
    let id = attributes.id;
    let old = current.get_node(&id).ok_or(Error::MemberNotFound)?;
    let new = Member { name: attributes.name, client_urls: attributes.client_ur_ls, ..old.clone() };
    if *old != new {
        commit(node, ChangeMembers::SetNodes(BTreeMap::from([(id, new.clone())])), true).await?;
        tracing::info!(member_id = format_args!("{id:x}"), member = %new, client_urls = ?new.client_urls, "published member attributes");
    }
    Ok(pb_member(id, &new, !current.voter_ids().any(|v| v == id)))
}

/// Proposes a membership change and waits until it is committed and applied (both steps of a
/// joint change). A change still uncommitted from an earlier term is waited out.
async fn commit(node: &StoreNode, changes: ChangeMembers<NodeId, Member>, retain: bool) -> Result<()> {
    let deadline = tokio::time::Instant::now() + node.config().request_timeout;
    loop {
        let attempt = tokio::time::timeout_at(deadline, node.raft().change_membership(changes.clone(), retain))
            .await
            .map_err(|_| Error::Timeout)?;
        match attempt {
            Ok(_) => return Ok(()),
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(ChangeMembershipError::InProgress(e)))) => {
                if tokio::time::Instant::now() >= deadline {
                    return Err(Error::Timeout);
                }
                tracing::debug!(error = %e, "an earlier membership change is not committed yet; retrying");
                tokio::time::sleep(node.config().heartbeat).await;
            }
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                return Err(Error::InvalidArgument(e.to_string()));
            }
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                return Err(if f.leader_id.is_some() { Error::NotLeader } else { Error::NoLeader });
            }
            Err(RaftError::Fatal(_)) => return Err(Error::Stopped),
        }
    }
}

/// etcd's readiness rule for promoting a learner: its log matches at least 90 % of the
/// leader's. Only the leader knows (`false` elsewhere).
///
/// Worked example: the leader's last index is 200; a learner matched up to 180 is in sync, one
/// at 179 (or one that has not answered yet) is not.
pub fn learner_in_sync(metrics: &RaftMetrics<NodeId, Member>, id: NodeId) -> bool {
    let last = metrics.last_log_index.unwrap_or(0);
    let matched = metrics.replication.as_ref().and_then(|r| r.get(&id).copied().flatten()).map(|l| l.index);
    matched.is_some_and(|m| m.saturating_mul(10) >= last.saturating_mul(9))
}

/// Promotes the learners that were added as voters once they are in sync (see the module
/// doc). Runs on every member for its whole life and acts while it leads.
pub async fn promote_added_voters(node: Weak<StoreNode>) {
    let Some(n) = node.upgrade() else { return };
    let mut metrics = n.raft().metrics();
    drop(n);
    let mut backoff = Duration::from_millis(100);
    loop {
        let ready: Vec<NodeId> = {
            let m = metrics.borrow_and_update();
            if m.running_state.is_err() {
                return;
            }
            let membership = m.membership_config.membership();
            let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
            if m.state != ServerState::Leader {
                vec![]
            } else {
                membership
                    .nodes()
                    .filter(|(id, member)| member.promote_when_in_sync && !voters.contains(id) && learner_in_sync(&m, **id))
                    .map(|(id, _)| *id)
                    .collect()
            }
        };
        for id in ready {
            let Some(n) = node.upgrade() else { return };
            // Holding the node keeps its database open: let go as soon as it stops.
            let promoted = tokio::select! {
                promoted = promote_if_leading(&n, id) => promoted,
                _ = n.stopped() => return,
            };
            drop(n);
            match promoted {
                Ok(()) => {
                    tracing::info!(member_id = format_args!("{id:x}"), "added member caught up: promoted to voter");
                    backoff = Duration::from_millis(100);
                }
                Err(e) => {
                    tracing::warn!(member_id = format_args!("{id:x}"), error = %e, "promoting the added member failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// [`change_membership_local`] for a promotion only (a separate path: going through `Change`
/// would make the future of [`add`] contain itself).
async fn promote_if_leading(node: &StoreNode, id: NodeId) -> Result<()> {
    let _one_at_a_time = node.lock_membership().await?;
    let metrics = node.raft().metrics().borrow().clone();
    if metrics.state != ServerState::Leader {
        return Err(Error::NotLeader);
    }
    promote(node, &metrics.membership_config.membership().clone(), &metrics, id).await
}

/// One member as etcd shows it.
pub fn pb_member(id: NodeId, m: &Member, is_learner: bool) -> PbMember {
    PbMember {
        id,
        name: m.name.clone(),
        peer_ur_ls: m.peer_urls.clone(),
        client_ur_ls: m.client_urls.clone(),
        is_learner,
    }
}

/// Every member of `membership`, learners marked.
pub fn pb_members(membership: &Membership<NodeId, Member>) -> Vec<PbMember> {
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    membership.nodes().map(|(id, m)| pb_member(*id, m, !voters.contains(id))).collect()
}

/// Encodes the outcome of a membership change for the follower that forwarded it.
pub fn to_reply(outcome: Result<Outcome>) -> MembershipChangeReply {
    match outcome {
        Ok(o) => MembershipChangeReply { member: o.member, members: o.members, error: vec![] },
        Err(e) => MembershipChangeReply { error: encode(&e), ..Default::default() },
    }
}

/// Decodes what [`to_reply`] encoded.
pub fn from_reply(reply: MembershipChangeReply) -> Result<Outcome> {
    if !reply.error.is_empty() {
        return Err(decode::<Error>(&reply.error)?);
    }
    Ok(Outcome { member: reply.member, members: reply.members })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_urls_are_checked_like_etcd() {
        assert!(check_peer_urls(&["http://127.0.0.1:2380".into(), "https://h.example:1/".into()]).is_ok());
        for bad in ["127.0.0.1:2380", "http://127.0.0.1", "http://:2380", "ftp://h:1", "http://h:99999", "http://h:1/x"]
        {
            let e = check_peer_urls(&[bad.into()]).unwrap_err();
            assert_eq!(e.to_string(), "etcdserver: given member URLs are invalid", "{bad}");
        }
        assert!(check_peer_urls(&[]).is_err());
    }

    #[test]
    fn learners_are_in_sync_at_ninety_percent_of_the_leader_log() {
        let mut m = RaftMetrics::<NodeId, Member>::new_initial(1);
        m.last_log_index = Some(200);
        let at = |i| Some(openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), i));
        m.replication = Some(BTreeMap::from([(2, at(180)), (3, at(179)), (4, None)]));
        assert!(learner_in_sync(&m, 2));
        assert!(!learner_in_sync(&m, 3));
        assert!(!learner_in_sync(&m, 4));
        assert!(!learner_in_sync(&m, 5));
    }

    #[test]
    fn replies_round_trip_outcomes_and_errors() {
        let o = Outcome { member: Some(pb_member(7, &Member::default(), true)), members: vec![] };
        assert_eq!(from_reply(to_reply(Ok(o.clone()))).unwrap(), o);
        let e = conflict("Peer URLs already exists");
        assert_eq!(from_reply(to_reply(Err(e.clone()))).unwrap_err(), e);
    }
}

#[cfg(test)]
mod strict_reconfig_tests {
    use super::*;

    #[test]
    fn adding_a_voter_needs_a_started_quorum() {
        assert!(enough_started_to_add_voter(&[true]), "one member adding a second");
        assert!(enough_started_to_add_voter(&[true, true, true]));
        assert!(enough_started_to_add_voter(&[true, true, false]));
        assert!(!enough_started_to_add_voter(&[true, false, false]));
    }

    #[test]
    fn removing_a_voter_keeps_a_reachable_quorum() {
        let voters = [(1, true), (2, true), (3, true)];
        // 3 is down: removing it is fine, removing 2 would leave 1 alone of two voters.
        assert_eq!(may_remove_voter(&voters, &[1, 2], 3), Ok(()));
        assert_eq!(may_remove_voter(&voters, &[1, 2], 2), Err(Error::Unhealthy));
        // Everyone up: any removal is fine.
        assert_eq!(may_remove_voter(&voters, &[1, 2, 3], 2), Ok(()));
        // Never-started voters do not count as started.
        let voters = [(1, true), (2, false), (3, false)];
        assert_eq!(may_remove_voter(&voters, &[1], 3), Err(conflict(NOT_ENOUGH_STARTED)));
    }
}
