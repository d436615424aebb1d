//! The watch workload: watchers on [`PREFIX`] that record every session (start revision,
//! member, events) and, after an error — or every `reconnect_every`, to exercise resumption —
//! reconnect to the next member from their last revision + 1. After the run, [`truth`] reads
//! the prefix's whole history once, from revision 1, as the checker's ground truth
//! (format: [`crate::watch_check`]).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{EventType, WatchOptions};

use super::workload::{connect, Ctx, PREFIX};
use crate::schedule::Rng;
use crate::watch_check::{Event, EventKind, Session, Truth, Watcher};

/// Converts etcd-client's event into the checker's.
fn event(e: &etcd_client::Event) -> Option<Event> {
    let kv = e.kv()?;
    Some(Event {
        revision: kv.mod_revision(),
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        kind: match e.event_type() {
            EventType::Put => EventKind::Put,
            EventType::Delete => EventKind::Delete,
        },
        value: match e.event_type() {
            EventType::Put => String::from_utf8_lossy(kv.value()).into_owned(),
            EventType::Delete => String::new(),
        },
    })
}

/// One watcher. It runs until the workload has stopped and it has seen `final_revision`
/// (set by the harness after the final reads; 0 until then), or until `catch_up` has passed
/// since that revision was set (at most 4 × `catch_up` after the stop, if it never is).
pub async fn watcher(
    index: usize,
    ctx: Arc<Ctx>,
    final_revision: Arc<AtomicI64>,
    reconnect_every: Duration,
    catch_up: Duration,
    seed: u64,
) -> Watcher {
    let mut rng = Rng::new(seed ^ 0x5eed ^ index as u64);
    let name = format!("w{index}");
    let n = ctx.members.len();
    let mut member = index % n;
    let mut last: i64 = 0;
    let mut sessions = Vec::new();
    let mut stopped_at: Option<Instant> = None;
    let mut target_at: Option<Instant> = None;
    // Bounded: each session lasts at most `reconnect_every` (plus a connect timeout), and the
    // loop ends at most 4 × `catch_up` after the workload stops.
    loop {
        if ctx.stopped() {
            let stopped = *stopped_at.get_or_insert_with(Instant::now);
            let target = final_revision.load(Ordering::SeqCst);
            if target > 0 {
                let since = *target_at.get_or_insert_with(Instant::now);
                if last >= target || since.elapsed() > catch_up {
                    break;
                }
            }
            if stopped.elapsed() > catch_up * 4 {
                break;
            }
        }
        let (member_name, url) = ctx.members[member].clone();
        let start_revision = last + 1;
        let mut session = Session {
            start_revision,
            member: Some(member_name),
            events: Vec::new(),
        };
        let session_end = Instant::now() + reconnect_every.mul_f64(0.5 + rng.unit());
        let opened = async {
            let mut client = connect(&url).await?;
            let options = WatchOptions::new()
                .with_prefix()
                .with_start_revision(start_revision);
            client
                .watch(PREFIX, Some(options))
                .await
                .map_err(|e| e.to_string())
        };
        match tokio::time::timeout(Duration::from_secs(2), opened).await {
            Ok(Ok(mut stream)) => loop {
                let done = ctx.stopped() && {
                    let target = final_revision.load(Ordering::SeqCst);
                    target > 0 && last >= target
                };
                if done || Instant::now() >= session_end {
                    break;
                }
                let wait = Duration::from_millis(250);
                match tokio::time::timeout(wait, stream.message()).await {
                    Err(_) => continue, // quiet: re-check the end conditions
                    Ok(Ok(Some(resp))) => {
                        if resp.canceled() {
                            break;
                        }
                        for e in resp.events().iter().filter_map(event) {
                            last = last.max(e.revision);
                            session.events.push(e);
                        }
                    }
                    Ok(Ok(None)) | Ok(Err(_)) => break,
                }
            },
            _ => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        sessions.push(session);
        member = (member + 1) % n;
    }
    Watcher {
        watcher: name,
        prefix: PREFIX.to_owned(),
        sessions,
    }
}

/// The whole history of [`PREFIX`], through `current_revision`, read with a watch from
/// revision 1 on each member in turn until one delivers all of it within `timeout`.
pub async fn truth(ctx: &Ctx, current_revision: i64, timeout: Duration) -> Result<Truth, String> {
    if current_revision <= 1 {
        return Ok(Truth {
            first_revision: 1,
            current_revision: Some(current_revision),
            events: Vec::new(),
        });
    }
    let mut errors = Vec::new();
    for (name, url) in &ctx.members {
        let read = async {
            let mut client = connect(url).await?;
            let options = WatchOptions::new().with_prefix().with_start_revision(1);
            let mut stream = client
                .watch(PREFIX, Some(options))
                .await
                .map_err(|e| e.to_string())?;
            let mut events: Vec<Event> = Vec::new();
            loop {
                if events
                    .last()
                    .is_some_and(|e| e.revision >= current_revision)
                {
                    break;
                }
                match stream.message().await.map_err(|e| e.to_string())? {
                    Some(resp) if resp.canceled() => {
                        return Err(format!("watch cancelled: {}", resp.cancel_reason()))
                    }
                    Some(resp) => events.extend(resp.events().iter().filter_map(event)),
                    None => return Err("watch stream ended".to_owned()),
                }
            }
            events.retain(|e| e.revision <= current_revision);
            Ok::<_, String>(events)
        };
        match tokio::time::timeout(timeout, read).await {
            Ok(Ok(events)) => {
                return Ok(Truth {
                    first_revision: 1,
                    current_revision: Some(current_revision),
                    events,
                })
            }
            Ok(Err(e)) => errors.push(format!("{name}: {e}")),
            Err(_) => errors.push(format!("{name}: timed out")),
        }
    }
    Err(format!(
        "could not read the history up to revision {current_revision}: {}",
        errors.join("; ")
    ))
}

/// The store's current revision, from a linearizable read of the prefix on any member.
pub async fn current_revision(ctx: &Ctx, timeout: Duration) -> Result<i64, String> {
    let mut errors = Vec::new();
    for (name, url) in &ctx.members {
        let read = async {
            let mut client = connect(url).await?;
            let resp = client
                .get(
                    PREFIX,
                    Some(
                        etcd_client::GetOptions::new()
                            .with_prefix()
                            .with_count_only(),
                    ),
                )
                .await
                .map_err(|e| e.to_string())?;
            resp.header()
                .map(|h| h.revision())
                .ok_or_else(|| "no header".to_owned())
        };
        match tokio::time::timeout(timeout, read).await {
            Ok(Ok(r)) => return Ok(r),
            Ok(Err(e)) => errors.push(format!("{name}: {e}")),
            Err(_) => errors.push(format!("{name}: timed out")),
        }
    }
    Err(format!("no member answered: {}", errors.join("; ")))
}
