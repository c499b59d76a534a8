//! Mirror mode: every sealed segment on both stores, so that either store
//! alone serves every recording.
//!
//! A segment stays in the catalog's upload queue until both stores hold it:
//! that queue entry is the durable promise of the missing copy. Each round
//! puts the segment (from the spool, or else from a good copy on the other
//! store) to every usable store that lacks it, at once, and commits the new
//! locations; a store that is down is skipped, and the segment is parked
//! (its task ends, the entry stays) until [`catch_up`] sees the store come
//! back and queues the entries again. The spool file goes once the first
//! store holds the segment (`release_after = "one"`) or both do (`"both"`).
//!
//! The same put protocol as failover mode keeps a crash harmless: the store
//! is recorded as `uncertain` before each put, a good put turns it into a
//! location, and a crash repeats at most the put.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reel_catalog::{Batch, RecordingId};
use reel_proto::v1::{Location, SegmentRow};
use reel_storage::{Role, keys};
use serde::Serialize;
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use crate::Inner;
use crate::config::ReleaseAfter;
use crate::copies::{location_of, role_of};
use crate::error::{EngineError, Result};
use crate::uploader::{
    LOCAL_RETRY_WAIT, NO_STORE_WAIT, RETRY_WAIT, dequeue, keep_key_in_spool, read_spooled,
    record_intent,
};

const ROLES: [Role; 2] = [Role::Primary, Role::Secondary];
/// How often the catch-up queues the parked segments again even when no
/// store came back: a safety net for a segment parked in the instant its
/// store returned.
const CATCH_UP_EVERY: Duration = Duration::from_secs(60);
/// Recordings read per catalog call by the scan for missing copies.
const SCAN_PAGE: usize = 500;

/// Segments waiting for a copy on each store (mirror mode's backlog).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MirrorBacklog {
    /// Segments the primary does not hold yet.
    pub primary_segments: u64,
    /// Segments the secondary does not hold yet.
    pub secondary_segments: u64,
    /// Whether this start's scan for the copies a store lacks (what
    /// failover mode or an outage before the restart left on one store)
    /// has finished. Until it has, the counts are of what was queued
    /// before it, and zero does not mean mirrored.
    pub scanned: bool,
}

/// The stores mirror mode still has to put `seg` on. Not the primary when
/// the segment was recombined: its primary copy can only be the combined
/// object, and one that was lost is copied back whole from the
/// secondary's (by `reel verify --repair`, or else by [`catch_up`]), not
/// replaced by segment objects.
fn lacking(seg: &SegmentRow) -> Vec<Role> {
    ROLES
        .into_iter()
        .filter(|&r| !seg.locations.contains(&(location_of(r) as i32)))
        .filter(|&r| !(r == Role::Primary && seg.combined_offset.is_some()))
        .collect()
}

/// What one round of a segment's mirroring left to do.
enum Round {
    /// Both stores hold it (or it is gone): its queue entry is done.
    Done,
    /// Something was stored; look again.
    Again,
    /// A store holds it and the other is not usable: the task ends, the
    /// queue entry stays for [`catch_up`].
    Parked,
    /// No store holds it and none is usable: wait here.
    Wait,
}

/// Mirrors one queued segment until both stores hold it, or until only a
/// store that is down lacks it.
pub(crate) async fn upload_until_mirrored(
    inner: &Arc<Inner>,
    puts: &Semaphore,
    id: RecordingId,
    seq: u64,
    release_after: ReleaseAfter,
) {
    let mut logged_wait = false;
    let mut key_kept = false;
    loop {
        let wait = match round(inner, puts, id, seq, release_after).await {
            Ok(Round::Done) => return,
            Ok(Round::Again) => continue,
            Ok(Round::Parked) => {
                if !key_kept {
                    keep_key_if_local(inner, id, seq).await;
                    key_kept = true;
                }
                // The store that lacks it may have come back since the
                // round looked (its catch-up would have found this task
                // still running and passed it over).
                if ROLES
                    .iter()
                    .all(|&r| inner.store(r).health().state().is_usable())
                {
                    continue;
                }
                return;
            }
            Ok(Round::Wait) => {
                if !key_kept {
                    key_kept = keep_key_in_spool(inner, id).await;
                }
                if !logged_wait {
                    info!(recording = %id, sequence = seq, "no store can take uploads; the segment waits in the local log");
                    logged_wait = true;
                }
                NO_STORE_WAIT
            }
            Err(e) => {
                if !key_kept {
                    key_kept = keep_key_in_spool(inner, id).await;
                }
                warn!(recording = %id, sequence = seq, error = %e, "segment mirroring failed");
                if matches!(e, EngineError::Storage(_)) {
                    RETRY_WAIT
                } else {
                    LOCAL_RETRY_WAIT
                }
            }
        };
        tokio::select! {
            _ = inner.route_changed.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = inner.stopped() => return,
        }
    }
}

async fn round(
    inner: &Arc<Inner>,
    puts: &Semaphore,
    id: RecordingId,
    seq: u64,
    release_after: ReleaseAfter,
) -> Result<Round> {
    let Some(row) = inner.catalog(move |c| c.segment(id, seq)).await? else {
        dequeue(inner, id, seq).await?;
        return Ok(Round::Done);
    };
    let missing = lacking(&row);
    if missing.is_empty() {
        commit_copies(inner, id, seq, Vec::new(), release_after).await?;
        return Ok(Round::Done);
    }
    let targets: Vec<Role> = missing
        .into_iter()
        .filter(|&r| inner.store(r).health().state().is_usable())
        .collect();
    let stored_somewhere = row.locations.iter().any(|&l| role_of(l).is_some());
    if targets.is_empty() {
        if !stored_somewhere {
            return Ok(Round::Wait);
        }
        commit_copies(inner, id, seq, Vec::new(), release_after).await?;
        return Ok(Round::Parked);
    }
    let bytes = if row.locations.contains(&(Location::Local as i32)) {
        read_spooled(inner, id, seq, row.sha256.clone()).await?
    } else {
        let bytes = crate::copies::read_good_copy(inner, id, &row).await?;
        pace(inner, bytes.len() as u64).await;
        bytes
    };
    if record_intent(inner, id, row, &targets).await?.is_none() {
        // Purged meanwhile: nothing to put.
        commit_copies(inner, id, seq, Vec::new(), release_after).await?;
        return Ok(Round::Done);
    }
    for &role in &targets {
        crate::key_objects::ensure(inner, id, role).await?;
    }
    crashpoint!(inner, "upload-before-put");
    let results = futures::future::join_all(
        targets
            .iter()
            .map(|&role| put_one(inner, puts, id, seq, role, bytes.clone())),
    )
    .await;
    crashpoint!(inner, "upload-after-put");
    let mut stored = Vec::new();
    let mut failure = None;
    for (role, result) in targets.into_iter().zip(results) {
        match result {
            Ok(took) => stored.push((role, took)),
            Err(e) => {
                if let EngineError::Storage(s) = &e {
                    inner.metrics.upload_failed(role, s.kind());
                }
                warn!(recording = %id, sequence = seq, store = %role, error = %e, "segment upload failed");
                failure = Some(e);
            }
        }
    }
    let mut settled = Settled::default();
    if !stored.is_empty() {
        let roles = stored.iter().map(|&(r, _)| r).collect();
        settled = commit_copies(inner, id, seq, roles, release_after).await?;
        if settled.kept {
            for (role, took) in stored {
                inner.metrics.uploaded(role, bytes.len() as u64, took);
                debug!(recording = %id, sequence = seq, bytes = bytes.len(), store = %role, "segment uploaded");
            }
        }
    }
    match failure {
        Some(e) => Err(e),
        None if settled.done => Ok(Round::Done),
        None => Ok(Round::Again),
    }
}

/// Waits for this copy's share of `catch_up_bytes_per_second`: each copy
/// books the time its bytes take at that rate, after those booked before.
async fn pace(inner: &Inner, bytes: u64) {
    let rate = inner.config.catch_up_bytes_per_second;
    if rate == 0 {
        return;
    }
    let wait = {
        let mut next = inner.catch_up_pace.lock().expect("catch-up pace");
        let now = tokio::time::Instant::now();
        let start = next.map_or(now, |n| n.max(now));
        *next = Some(start + Duration::from_secs_f64(bytes as f64 / rate as f64));
        start - now
    };
    tokio::time::sleep(wait).await;
}

async fn put_one(
    inner: &Arc<Inner>,
    puts: &Semaphore,
    id: RecordingId,
    seq: u64,
    role: Role,
    bytes: Bytes,
) -> Result<Duration> {
    let _slot = puts
        .acquire()
        .await
        .map_err(|_| EngineError::Internal("the uploader is shutting down".into()))?;
    let started = tokio::time::Instant::now();
    inner
        .store(role)
        .put(&keys::segment(id, seq), bytes)
        .await?;
    Ok(started.elapsed())
}

/// What [`commit_copies`] left.
#[derive(Default)]
struct Settled {
    /// The segment is still wanted (false: purged meanwhile, what was
    /// stored is queued for deletion).
    kept: bool,
    /// Its queue entry is done: both stores hold it, or it is gone.
    done: bool,
}

/// Commits that `stored` now hold the segment, then settles its queue entry
/// and spool file: the entry goes once both stores hold it, the spool file
/// once `release_after` is met.
async fn commit_copies(
    inner: &Arc<Inner>,
    id: RecordingId,
    seq: u64,
    stored: Vec<Role>,
    release_after: ReleaseAfter,
) -> Result<Settled> {
    let now = inner.now_us();
    let (settled, drop_spool) = inner
        .catalog(move |c| {
            c.commit_checked(|c| {
                let mut batch = Batch::new();
                let row = match c.purge_mark(id)? {
                    Some(_) => None,
                    None => c.segment(id, seq)?,
                };
                let Some(mut row) = row else {
                    // Purged while this was in flight (the purge may even
                    // be over, its rows gone): what was stored goes the
                    // way of the recording's other objects.
                    batch.dequeue_upload(id, seq);
                    for &role in &stored {
                        let key = keys::segment(id, seq);
                        batch.enqueue_deletion(location_of(role), key.as_ref(), "purged");
                    }
                    let gone = Settled {
                        kept: false,
                        done: true,
                    };
                    return Ok(((gone, true), batch));
                };
                let before = row.clone();
                for &role in &stored {
                    let location = location_of(role) as i32;
                    if !row.locations.contains(&location) {
                        row.locations.push(location);
                    }
                    row.uncertain.retain(|&l| l != location);
                }
                if !stored.is_empty() {
                    row.uploaded_at_us = now;
                }
                row.locations.sort_unstable();
                let on_stores = row
                    .locations
                    .iter()
                    .filter(|&&l| role_of(l).is_some())
                    .count();
                let complete = lacking(&row).is_empty();
                if complete {
                    batch.dequeue_upload(id, seq);
                }
                let release = complete || (on_stores > 0 && release_after == ReleaseAfter::One);
                let local = Location::Local as i32;
                let drop_spool = release && row.locations.contains(&local);
                if release {
                    row.locations.retain(|&l| l != local);
                }
                if row != before {
                    batch.put_segment(id, &row);
                }
                let settled = Settled {
                    kept: true,
                    done: complete,
                };
                Ok(((settled, drop_spool), batch))
            })
        })
        .await?;
    if drop_spool {
        inner.let_go_of_spooled(id, seq, settled.kept)?;
    }
    if !settled.kept {
        inner.deleter_wake.notify_one();
    }
    Ok(settled)
}

/// A parked segment still in the spool (`release_after = "both"`) may stay
/// there long: its recording's key is kept beside it.
async fn keep_key_if_local(inner: &Arc<Inner>, id: RecordingId, seq: u64) {
    let local = inner
        .catalog(move |c| c.segment(id, seq))
        .await
        .ok()
        .flatten()
        .is_some_and(|s: SegmentRow| s.locations.contains(&(Location::Local as i32)));
    if local {
        keep_key_in_spool(inner, id).await;
    }
}

/// Mirror mode's background half: first queues every segment that either
/// store lacks (what failover mode, or an outage before a restart, left on
/// one store), then queues the parked entries again whenever a store
/// becomes usable, and every [`CATCH_UP_EVERY`] in any case. Resumable: the
/// queue is in the catalog, and the scan is repeated at each start.
pub(crate) async fn catch_up(inner: Arc<Inner>) {
    let result = queue_missing_copies(&inner).await;
    if result.is_ok() {
        inner
            .mirror_scanned
            .store(true, std::sync::atomic::Ordering::Release);
    }
    match &result {
        Ok((0, _)) => {}
        Ok((n, _)) => info!(
            segments = n,
            "mirror mode: segments that one store lacks are queued to be copied"
        ),
        Err(e) => {
            warn!(error = %e, "mirror mode: the scan for missing copies failed; it runs again at the next start")
        }
    }
    if let Ok((_, lost)) = &result {
        for &id in lost {
            restore_primary_combined(&inner, id).await;
        }
    }
    let usable = |inner: &Inner| ROLES.map(|r| inner.store(r).health().state().is_usable());
    let mut was = usable(&inner);
    let mut last = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = inner.route_changed.notified() => {}
            _ = tokio::time::sleep(CATCH_UP_EVERY) => {}
            _ = inner.stopped() => return,
        }
        let now = usable(&inner);
        let came_back = now.iter().zip(was).any(|(&n, w)| n && !w);
        was = now;
        if !came_back && last.elapsed() < CATCH_UP_EVERY {
            continue;
        }
        last = tokio::time::Instant::now();
        match inner.catalog(|c| c.upload_queue()).await {
            Ok(queue) => {
                if came_back && !queue.is_empty() {
                    info!(segments = queue.len(), "a store is back: catching it up");
                }
                for item in queue {
                    let _ = inner.upload_tx.send(item);
                }
            }
            Err(e) => warn!(error = %e, "mirror mode: cannot read the upload queue"),
        }
    }
}

/// Queues (durably) every segment one store lacks; returns how many, and
/// the recordings held whole only by the secondary's combined object (the
/// primary's was lost): those are copied back whole, not segment by
/// segment.
async fn queue_missing_copies(inner: &Arc<Inner>) -> Result<(u64, Vec<RecordingId>)> {
    let mut after = None;
    let mut queued = 0;
    let mut lost_combined = Vec::new();
    loop {
        let page = inner
            .catalog(move |c| c.recordings(after, SCAN_PAGE))
            .await?;
        let Some(last) = page.last() else {
            return Ok((queued, lost_combined));
        };
        after = Some(RecordingId::from_slice(&last.id)?);
        let ids = page
            .iter()
            .map(|r| RecordingId::from_slice(&r.id))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let (items, lost) = inner
            .catalog(move |c| {
                let mut batch = Batch::new();
                let mut items = Vec::new();
                let mut lost = Vec::new();
                for id in ids {
                    if c.purge_mark(id)?.is_some() {
                        continue;
                    }
                    let segments = c.segments(id)?;
                    if !segments.is_empty() && segments.iter().all(primary_combined_lost) {
                        lost.push(id);
                    }
                    for seg in segments {
                        if !lacking(&seg).is_empty() && !c.upload_queued(id, seg.sequence)? {
                            batch.enqueue_upload(id, seg.sequence);
                            items.push((id, seg.sequence));
                        }
                    }
                }
                if !batch.is_empty() {
                    c.commit(batch)?;
                }
                Ok((items, lost))
            })
            .await?;
        lost_combined.extend(lost);
        queued += items.len() as u64;
        for item in items {
            let _ = inner.upload_tx.send(item);
        }
    }
}

/// The segment is in the secondary's combined object and the primary no
/// longer holds it (`reel verify --repair` stopped naming a lost primary
/// combined object it could not copy back).
fn primary_combined_lost(seg: &SegmentRow) -> bool {
    seg.secondary_combined
        && seg.combined_offset.is_some()
        && !seg.locations.contains(&(Location::Primary as i32))
}

/// Copies recording `id`'s combined object back onto the primary from the
/// secondary's (checked against the recording's SHA-256 as it streams),
/// then names the primary's copy again. A failure is logged and left for
/// the next start.
async fn restore_primary_combined(inner: &Arc<Inner>, id: RecordingId) {
    if !ROLES
        .iter()
        .all(|&r| inner.store(r).health().state().is_usable())
    {
        return;
    }
    let copied = async {
        let row = inner
            .catalog(move |c| c.recording(id))
            .await?
            .ok_or(EngineError::NotFound(id))?;
        crate::compactor::copy_combined(inner, &row, Role::Secondary, Role::Primary).await?;
        inner
            .catalog(move |c| {
                c.commit_checked(|c| {
                    let mut batch = Batch::new();
                    if c.purge_mark(id)?.is_some() || c.recording(id)?.is_none() {
                        let key = keys::recording_object(id);
                        batch.enqueue_deletion(Location::Primary, key.as_ref(), "purged");
                        return Ok(((), batch));
                    }
                    for mut seg in c.segments(id)? {
                        if primary_combined_lost(&seg) {
                            seg.locations.push(Location::Primary as i32);
                            seg.locations.sort_unstable();
                            batch.put_segment(id, &seg);
                        }
                    }
                    Ok(((), batch))
                })
            })
            .await
    }
    .await;
    match copied {
        Ok(()) => {
            inner.deleter_wake.notify_one();
            info!(recording = %id, "mirror mode: the primary's lost combined object was copied back from the secondary's");
        }
        Err(e) => {
            warn!(recording = %id, error = %e, "mirror mode: copying the combined object back to the primary failed; tried again at the next start")
        }
    }
}

/// How many queued segments each store still lacks.
pub(crate) fn backlog(inner: &Inner) -> Result<MirrorBacklog> {
    let mut out = MirrorBacklog {
        scanned: inner
            .mirror_scanned
            .load(std::sync::atomic::Ordering::Acquire),
        ..Default::default()
    };
    for (id, seq) in inner.catalog.upload_queue()? {
        let Some(seg) = inner.catalog.segment(id, seq)? else {
            continue;
        };
        let lacks = lacking(&seg);
        out.primary_segments += u64::from(lacks.contains(&Role::Primary));
        out.secondary_segments += u64::from(lacks.contains(&Role::Secondary));
    }
    Ok(out)
}
