//! Purge: deleting recordings everywhere (journal, spool, both stores,
//! catalog) as one crash-safe operation, and the legal holds that forbid it.
//!
//! A purge goes in three steps, each durable before the next:
//!
//! 1. **Mark.** One synced batch writes the recording's purge mark and the
//!    audit entry, removes its wrapped data key from its row and queues its
//!    key objects for deletion (crypto-shredding: from here no copy of it
//!    can be read, even one kept elsewhere). From here the recording is gone for listings, reads and
//!    recorders; every later writer (sealer, uploader, compactor) checks the
//!    mark in the same catalog commit as its own change
//!    ([`reel_catalog::Catalog::commit_checked`]), so none can bring a row
//!    back, and an object one of them stores meanwhile is queued for
//!    deletion.
//! 2. **Queue.** One batch queues every object the catalog knows of (each
//!    copy and uncertain copy of each segment, the combined object) in the
//!    persistent deletion queue and drops the segment rows and queued
//!    uploads; then the spool files go.
//! 3. **Finish.** Once the deleter has deleted the recording's objects, its
//!    row and its mark go, and an audit entry says the purge is complete.
//!
//! A crash between steps leaves the mark; [`resume`] (run by the deleter's
//! loop, so also at start) takes every marked recording through steps 2
//! and 3 again, which are idempotent.

use std::sync::Arc;

use reel_catalog::{Batch, RecordingId};
use reel_proto::v1::{AuditEntry, LegalHold, Location, PurgeMark};
use reel_storage::keys;
use tracing::{info, warn};

use crate::Inner;
use crate::copies::in_combined;
use crate::error::{EngineError, Result};

/// What a purge did with each recording it was given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PurgeOutcome {
    /// Marked (or already being purged); their objects are on their way out.
    pub purged: Vec<RecordingId>,
    /// Not purged, with why (legal hold, unknown id).
    pub refused: Vec<(RecordingId, String)>,
}

/// Who asks and why; written to the audit log.
#[derive(Debug, Clone)]
pub struct Actor {
    pub by: String,
    pub reason: String,
}

pub(crate) async fn purge(
    inner: &Arc<Inner>,
    ids: Vec<RecordingId>,
    actor: Actor,
    dry_run: bool,
) -> Result<PurgeOutcome> {
    let mark_actor = actor.clone();
    let clock = inner.config.clock.clone();
    let outcome = inner
        .catalog(move |c| {
            c.commit_checked(|c| {
                let mut outcome = PurgeOutcome::default();
                let mut batch = Batch::new();
                let mark = PurgeMark {
                    at_us: clock.now_us(),
                    by: mark_actor.by.clone(),
                    reason: mark_actor.reason.clone(),
                };
                for id in ids {
                    if outcome.purged.contains(&id) {
                        continue;
                    }
                    if c.recording(id)?.is_none() {
                        outcome.refused.push((id, "no such recording".into()));
                    } else if let Some(hold) = c.hold(id)? {
                        outcome.refused.push((id, held(&hold)));
                    } else {
                        if c.purge_mark(id)?.is_none() {
                            batch.mark_purging(id, &mark);
                            shred(c, &mut batch, id)?;
                        }
                        outcome.purged.push(id);
                    }
                }
                if dry_run || outcome.purged.is_empty() {
                    return Ok((outcome, Batch::new()));
                }
                batch.append_audit(&AuditEntry {
                    at_us: mark.at_us,
                    by: mark.by.clone(),
                    action: "purge".into(),
                    recordings: outcome.purged.iter().map(|id| id.to_string()).collect(),
                    reason: mark.reason.clone(),
                    ..Default::default()
                });
                Ok((outcome, batch))
            })
        })
        .await?;
    if dry_run {
        return Ok(outcome);
    }
    crashpoint!(inner, "purge-after-mark");
    for &id in &outcome.purged {
        crate::key_objects::forget(inner, id);
        // The row's earlier versions, which hold the wrapped key, go from
        // the catalog's files too (batched: `shred_pass`).
        inner.shred_pending.lock().expect("shred lock").push(id);
        info!(recording = %id, by = %actor.by, reason = %actor.reason, "recording purged");
        stop_open(inner, id).await;
        queue_objects(inner, id).await?;
    }
    inner.deleter_wake.notify_one();
    Ok(outcome)
}

/// Crypto-shredding, in the purge mark's commit: the recording's wrapped
/// data key leaves its row, and its key objects are queued for deletion
/// (the deletion queue is in key order, so `keys/` goes before
/// `recordings/` on each store). From the mark on, no copy of the
/// recording, wherever it was kept, can be read.
fn shred(
    c: &reel_catalog::Catalog,
    batch: &mut Batch,
    id: RecordingId,
) -> reel_catalog::Result<()> {
    if let Some(mut row) = c.recording(id)?
        && !row.wrapped_key.is_empty()
    {
        row.wrapped_key.clear();
        batch.put_recording(&row);
        let key = keys::data_key(id);
        for store in [Location::Primary, Location::Secondary] {
            batch.enqueue_deletion(store, key.as_ref(), "purged: its data key is destroyed");
        }
    }
    Ok(())
}

/// Why a hold refuses a purge.
fn held(hold: &LegalHold) -> String {
    format!(
        "under legal hold ({}, by {}): release it first",
        hold.reason, hold.by
    )
}

/// Ends an open recording without sealing it: its recorder gets an error
/// at its next append, its unsealed events are dropped with it (the journal
/// releases their files once no open recording needs them).
async fn stop_open(inner: &Arc<Inner>, id: RecordingId) {
    let Some(rec) = inner.open_recording(id) else {
        return;
    };
    // Waits out a seal in progress; the sealer's commit sees the mark.
    let _seal = rec.seal.lock().await;
    {
        let mut live = rec.live();
        live.closing = true;
        live.poisoned = Some(format!("recording {id} was purged"));
        live.chunks.clear();
        live.unsealed_bytes = 0;
        live.unsealed_since = None;
        rec.changed(live);
    }
    inner.open.write().expect("open map lock").remove(&id);
}

/// Step 2: every object of the recording into the deletion queue, its
/// segment rows, keyframes and queued uploads out, then its spool files.
async fn queue_objects(inner: &Arc<Inner>, id: RecordingId) -> Result<()> {
    let mirrored = inner.mirrored();
    let sequences = inner
        .catalog(move |c| {
            c.commit_checked(|c| {
                let mut batch = Batch::new();
                let segments = c.segments(id)?;
                let row = c.recording(id)?;
                let mut combined = row.as_ref().is_some_and(|r| r.combined_size > 0);
                let mut secondary_combined = false;
                for seg in &segments {
                    let key = keys::segment(id, seg.sequence);
                    for store in [Location::Primary, Location::Secondary] {
                        let named = seg.locations.contains(&(store as i32));
                        let here = named || seg.uncertain.contains(&(store as i32));
                        // A named copy inside a combined object goes with it.
                        if here && !(named && in_combined(id, seg, store as i32)) {
                            batch.enqueue_deletion(store, key.as_ref(), "purged");
                        }
                    }
                    combined |= seg.combined_offset.is_some();
                    secondary_combined |= seg.secondary_combined;
                    batch.delete_segment(id, seg.sequence);
                }
                // Mirror mode recombines onto the secondary too (and may
                // have been cut there before its commit, as below).
                if secondary_combined || (mirrored && !segments.is_empty()) {
                    let key = keys::recording_object(id);
                    batch.enqueue_deletion(Location::Secondary, key.as_ref(), "purged");
                }
                // The combined object goes too, also when the row does not
                // name it: a recombination cut by a crash after its put and
                // before its commit left one the catalog never heard of.
                // Queued on the first pass only (the segments' rows go in
                // this batch); deleting a missing object is a no-op.
                if combined || !segments.is_empty() {
                    let key = keys::recording_object(id);
                    batch.enqueue_deletion(Location::Primary, key.as_ref(), "purged");
                }
                if combined {
                    // The row no longer names the object.
                    if let Some(mut row) = row {
                        row.combined_size = 0;
                        row.combined_sha256.clear();
                        batch.put_recording(&row);
                    }
                }
                for seq in c.queued_uploads_of(id)? {
                    batch.dequeue_upload(id, seq);
                }
                for time_us in c.keyframe_times(id)? {
                    batch.delete_keyframe(id, time_us);
                }
                // The recombination mark stays: a recombination in flight
                // may still put its object, and a crash may cut it before
                // its commit; the compactor deletes that key when it meets
                // the mark of a purged recording.
                let sequences: Vec<u64> = segments.iter().map(|s| s.sequence).collect();
                Ok((sequences, batch))
            })
        })
        .await?;
    for seq in sequences {
        inner.spool.remove(id, seq)?;
    }
    // Spool files of segments whose rows never committed (a seal cut by
    // the purge) are found by name.
    for (rid, seq) in inner.spool.list()? {
        if rid == id {
            inner.spool.remove(id, seq)?;
        }
    }
    inner.spool.remove_key(id)?;
    inner.cache.remove_recording(id)?;
    Ok(())
}

/// How often, at most, the catalog's files are rewritten for purged rows.
const SHRED_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Makes the catalog forget the earlier versions of the rows purged since
/// the last pass (their wrapped data keys), at most every [`SHRED_EVERY`]:
/// a flush and a compaction per purge would, under retention, keep the
/// catalog busy and its table files multiplying. A crash before the pass
/// leaves those versions to RocksDB's own compactions.
pub(crate) async fn shred_pass(
    inner: &Arc<Inner>,
    last: &mut Option<tokio::time::Instant>,
) -> Result<()> {
    if last.is_some_and(|t| t.elapsed() < SHRED_EVERY) {
        return Ok(());
    }
    let ids = std::mem::take(&mut *inner.shred_pending.lock().expect("shred lock"));
    if ids.is_empty() {
        return Ok(());
    }
    *last = Some(tokio::time::Instant::now());
    let count = ids.len();
    let kept = ids.clone();
    if let Err(e) = inner.catalog(move |c| c.forget_old_versions(&ids)).await {
        // Kept for the next pass.
        inner.shred_pending.lock().expect("shred lock").extend(kept);
        return Err(e);
    }
    info!(
        recordings = count,
        "catalog rewritten without the purged recordings' keys"
    );
    Ok(())
}

/// Steps 2 and 3 for every marked recording: run after each drain of the
/// deletion queue, so a purge cut by a crash completes after the restart.
pub(crate) async fn resume(inner: &Arc<Inner>) -> Result<()> {
    let marked = inner.catalog(|c| c.purging()).await?;
    for (id, mark) in marked {
        if inner.open_recording(id).is_some() {
            stop_open(inner, id).await;
        }
        queue_objects(inner, id).await?;
        let clock = inner.config.clock.clone();
        let done = inner
            .catalog(move |c| {
                c.commit_checked(|c| {
                    let mut batch = Batch::new();
                    // Another pass may have finished it meanwhile.
                    if c.purge_mark(id)?.is_none()
                        || c.pending_deletions_of(id)? > 0
                        || !c.segments(id)?.is_empty()
                    {
                        return Ok((false, batch));
                    }
                    batch
                        .delete_recording(id)
                        .unmark_purging(id)
                        .append_audit(&AuditEntry {
                            at_us: clock.now_us(),
                            by: mark.by.clone(),
                            action: "purged".into(),
                            recordings: vec![id.to_string()],
                            reason: "every copy deleted".into(),
                            ..Default::default()
                        });
                    Ok((true, batch))
                })
            })
            .await?;
        if done {
            info!(recording = %id, "purge complete: every copy deleted");
        }
    }
    Ok(())
}

pub(crate) async fn hold(inner: &Arc<Inner>, id: RecordingId, actor: Actor) -> Result<LegalHold> {
    let clock = inner.config.clock.clone();
    inner
        .catalog(move |c| {
            c.commit_checked(|c| {
                let mut batch = Batch::new();
                if c.live_recording(id)?.is_none() {
                    return Ok((None, batch));
                }
                let hold = LegalHold {
                    at_us: clock.now_us(),
                    by: actor.by.clone(),
                    reason: actor.reason.clone(),
                };
                batch.put_hold(id, &hold).append_audit(&AuditEntry {
                    at_us: hold.at_us,
                    by: actor.by,
                    action: "hold".into(),
                    recordings: vec![id.to_string()],
                    reason: actor.reason,
                    ..Default::default()
                });
                Ok((Some(hold), batch))
            })
        })
        .await?
        .ok_or(EngineError::NotFound(id))
}

pub(crate) async fn release(inner: &Arc<Inner>, id: RecordingId, actor: Actor) -> Result<()> {
    let clock = inner.config.clock.clone();
    let released = inner
        .catalog(move |c| {
            c.commit_checked(|c| {
                let mut batch = Batch::new();
                if c.hold(id)?.is_none() {
                    return Ok((false, batch));
                }
                batch.remove_hold(id).append_audit(&AuditEntry {
                    at_us: clock.now_us(),
                    by: actor.by,
                    action: "release".into(),
                    recordings: vec![id.to_string()],
                    reason: actor.reason,
                    ..Default::default()
                });
                Ok((true, batch))
            })
        })
        .await?;
    if !released {
        warn!(recording = %id, "release of a recording that is not held");
        return Err(EngineError::FailedPrecondition(format!(
            "recording {id} is not under legal hold"
        )));
    }
    Ok(())
}
