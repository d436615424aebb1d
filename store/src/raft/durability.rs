//! How the leader's fsync overlaps its followers' (etcd's leader writes its log in parallel
//! with replication; openraft 0.9 waits for the leader's log to be "flushed" before it
//! replicates, so without this every write would wait for two fsyncs in a row).
//!
//! The leader's log store reports the leader's own new entries flushed as soon as they are in
//! the WAL, and fsyncs them in the background. Raft safety needs every *committed* entry on
//! stable storage on a majority, and openraft now counts the leader in that majority early, so
//! nothing may act on a commit beyond what the leader has on disk:
//! - the commit index the leader sends followers is held back to its durable log
//!   ([`LeaderLog::commit_bound`]), so a follower never applies an entry the leader could still
//!   lose (a heartbeat goes out as soon as the fsync completes);
//! - the leader applies an entry, and so answers its client, only once it is durable
//!   ([`LeaderLog::wait_durable`]);
//! - read indexes wait for apply, so they are bounded the same way.
//!
//! Worked example, three members: entry 8 is written to the leader's WAL and reported
//! flushed; replication starts while the leader's fsync runs. Follower A fsyncs 8 and acks:
//! openraft commits 8 (leader + A). If the leader's fsync has finished, followers are told
//! commit = 8 and the leader applies 8; if not, followers are told nothing new until it has.
//! Either way 8 is applied anywhere only when it is on disk at the leader and at A: a majority.
//! A follower's own appends are fsynced before they are reported, as before.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use openraft::{LeaderId, Vote};
use tokio::sync::watch;

use super::{Entry, LogId, NodeId};

/// Durability of this member's log as the leader sees it; see the module docs.
#[derive(Debug)]
pub struct LeaderLog {
    me: NodeId,
    /// This member's leadership (from its committed vote) while it leads.
    leading: Mutex<Option<LeaderId<NodeId>>>,
    /// The last entry reported flushed before its fsync.
    written_early: Mutex<Option<LogId>>,
    /// Every entry up to this one is on stable storage.
    durable: watch::Sender<Option<LogId>>,
    /// A commit index was held back since the last fsync: followers need a heartbeat.
    held_back: AtomicBool,
}

impl LeaderLog {
    /// The log of member `me`.
    pub fn new(me: NodeId) -> Self {
        Self {
            me,
            leading: Mutex::new(None),
            written_early: Mutex::new(None),
            durable: watch::channel(None).0,
            held_back: AtomicBool::new(false),
        }
    }

    /// Notes a vote this member saved: a committed vote for itself means it leads.
    pub fn voted(&self, vote: &Vote<NodeId>) {
        let leading = (vote.is_committed() && vote.leader_id().voted_for() == Some(self.me)).then(|| *vote.leader_id());
        *self.leading.lock().expect("leader log lock poisoned") = leading;
    }

    /// Whether `entries` are this leader's own new entries, which may be reported flushed
    /// before their fsync (see [`LeaderLog::written_early`]).
    pub fn may_report_early(&self, entries: &[Entry]) -> bool {
        let leading = *self.leading.lock().expect("leader log lock poisoned");
        leading.is_some_and(|l| !entries.is_empty() && entries.iter().all(|e| e.log_id.leader_id == l))
    }

    /// Entries up to `last` were reported flushed before their fsync.
    pub fn written_early(&self, last: LogId) {
        let mut w = self.written_early.lock().expect("leader log lock poisoned");
        if w.is_none_or(|w| w.index < last.index) {
            *w = Some(last);
        }
    }

    /// Every entry up to `last` is on stable storage.
    pub fn synced(&self, last: LogId) {
        self.durable.send_if_modified(|d| {
            let newer = d.is_none_or(|d| d.index < last.index);
            if newer {
                *d = Some(last);
            }
            newer
        });
    }

    /// The commit index to send a follower: the leader's commit, or nothing new while the
    /// leader's own copy of it may still be lost.
    pub fn commit_bound(&self, leader_commit: Option<LogId>) -> Option<LogId> {
        let commit = leader_commit?;
        let early = self.written_early.lock().expect("leader log lock poisoned").is_some_and(|w| w.index >= commit.index);
        let durable = self.durable.borrow().is_some_and(|d| d.index >= commit.index);
        if early && !durable {
            // A follower keeps the commit it has; the next heartbeat carries this one.
            self.held_back.store(true, Ordering::SeqCst);
            return None;
        }
        Some(commit)
    }

    /// Waits until every entry up to `index` that was reported flushed early is on disk.
    pub async fn wait_durable(&self, index: u64) {
        let early = self.written_early.lock().expect("leader log lock poisoned").map_or(0, |w| w.index);
        let needed = index.min(early);
        if needed == 0 {
            return;
        }
        let mut durable = self.durable.subscribe();
        // The sender lives as long as `self`: an error cannot happen while we hold it.
        let _ = durable.wait_for(|d| d.is_some_and(|d| d.index >= needed)).await;
    }

    /// Changes whenever more of the log is durable.
    pub fn durable(&self) -> watch::Receiver<Option<LogId>> {
        self.durable.subscribe()
    }

    /// Whether a commit index was held back since the last call.
    pub fn take_held_back(&self) -> bool {
        self.held_back.swap(false, Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(term: u64, leader: NodeId, index: u64) -> LogId {
        LogId::new(LeaderId::new(term, leader), index)
    }

    fn entry(term: u64, leader: NodeId, index: u64) -> Entry {
        Entry { log_id: id(term, leader, index), payload: openraft::EntryPayload::Blank }
    }

    #[tokio::test]
    async fn commits_wait_for_the_leaders_fsync_and_followers_entries_never_go_early() {
        let log = LeaderLog::new(1);
        // Not leading: nothing is reported early.
        assert!(!log.may_report_early(&[entry(2, 1, 5)]));
        log.voted(&Vote::new(2, 1)); // a candidate's vote, not yet committed
        assert!(!log.may_report_early(&[entry(2, 1, 5)]));
        log.voted(&Vote::new_committed(2, 1));
        assert!(log.may_report_early(&[entry(2, 1, 5)]));
        // Entries of another leader (as a follower would append) are never early.
        assert!(!log.may_report_early(&[entry(2, 2, 5)]));
        assert!(!log.may_report_early(&[entry(1, 1, 4), entry(2, 1, 5)]));

        log.synced(id(1, 1, 4));
        log.written_early(id(2, 1, 5));
        // Up to the durable entry the commit passes; beyond it, followers hear nothing new.
        assert_eq!(log.commit_bound(Some(id(1, 1, 4))), Some(id(1, 1, 4)));
        assert!(!log.take_held_back());
        assert_eq!(log.commit_bound(Some(id(2, 1, 5))), None);
        assert!(log.take_held_back());
        assert_eq!(log.commit_bound(None), None);

        // Applying entry 5 waits for its fsync; entry 4 does not wait.
        log.wait_durable(4).await;
        let waiting = tokio::spawn({
            let mut durable = log.durable();
            async move { durable.wait_for(|d| d.is_some_and(|d| d.index >= 5)).await.map(|_| ()) }
        });
        let applied = tokio::time::timeout(std::time::Duration::from_millis(50), log.wait_durable(5)).await;
        assert!(applied.is_err(), "entry 5 was applied before it was on disk");
        log.synced(id(2, 1, 5));
        log.wait_durable(5).await;
        waiting.await.unwrap().unwrap();
        assert_eq!(log.commit_bound(Some(id(2, 1, 5))), Some(id(2, 1, 5)));

        // Stepping down stops early reports.
        log.voted(&Vote::new(3, 2));
        assert!(!log.may_report_early(&[entry(2, 1, 6)]));
    }
}
