//! Uploading: spooled segments go to the store the router picks (failover
//! mode, here), or to both stores (mirror mode, see `mirror`).
//!
//! For each queued segment: read the spool file and check it against the
//! catalog's SHA-256, ask the router for a store (the primary while it is
//! usable, else the secondary, else wait), put the segment under its
//! deterministic key, commit in one synced batch its new location and the
//! end of its queue entry, and only then delete the spool file.
//!
//! Before each put the store is recorded as `uncertain` on the segment (the
//! intent): a put that fails, times out, or is cut short by a crash may
//! still have stored the object, and the catalog must know every store a
//! copy may be on, or that copy would be an orphan nobody deletes. The
//! commit after a good put turns the intent into the location; intents left
//! behind are copies the compactor, purge and `verify` account for, and
//! delete once the segment is safely elsewhere. A crash anywhere repeats at
//! most the put, or leaves a spool file that recovery deletes.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reel_catalog::{Batch, RecordingId};
use reel_proto::v1::{Location, SegmentRow};
use reel_storage::{Role, keys};
use tokio::sync::{Semaphore, mpsc};
use tracing::{debug, info, warn};

use crate::Inner;
use crate::config::UploadMode;
use crate::copies::location_of;
use crate::error::{EngineError, Result};

/// Pause between attempts while no store can take uploads.
pub(crate) const NO_STORE_WAIT: Duration = Duration::from_millis(250);
/// Pause after a failed attempt before asking the router again.
pub(crate) const RETRY_WAIT: Duration = Duration::from_millis(50);
/// Pause after a failure that is not the store's (local disk, catalog).
pub(crate) const LOCAL_RETRY_WAIT: Duration = Duration::from_secs(1);

pub(crate) async fn run(inner: Arc<Inner>, mut queue: mpsc::UnboundedReceiver<(RecordingId, u64)>) {
    // `upload_concurrency` puts in flight; twice as many segments staged, so
    // that reading and checking the next segments and committing the last
    // ones overlap the puts instead of leaving the store idle.
    let puts = Arc::new(Semaphore::new(inner.config.upload_concurrency.max(1)));
    let permits = Arc::new(Semaphore::new(2 * inner.config.upload_concurrency.max(1)));
    let in_flight: Arc<Mutex<HashSet<(RecordingId, u64)>>> = Arc::default();
    let mut uploads = tokio::task::JoinSet::new();
    if inner.mirrored() {
        uploads.spawn(crate::mirror::catch_up(inner.clone()));
    }
    loop {
        while uploads.try_join_next().is_some() {}
        let item = tokio::select! {
            item = queue.recv() => match item { Some(item) => item, None => break },
            _ = inner.stopped() => break,
        };
        if !in_flight.lock().expect("in-flight lock").insert(item) {
            continue;
        }
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit { Ok(p) => p, Err(_) => break },
            _ = inner.stopped() => break,
        };
        let inner = inner.clone();
        let in_flight = in_flight.clone();
        let puts = puts.clone();
        uploads.spawn(async move {
            let _permit = permit;
            match inner.config.upload_mode {
                UploadMode::Failover => upload_until_done(&inner, &puts, item.0, item.1).await,
                UploadMode::Mirror { release_after } => {
                    crate::mirror::upload_until_mirrored(
                        &inner,
                        &puts,
                        item.0,
                        item.1,
                        release_after,
                    )
                    .await
                }
            }
            in_flight.lock().expect("in-flight lock").remove(&item);
        });
    }
    // An upload cut short is redone from the catalog's queue at the next open.
    uploads.shutdown().await;
}

async fn upload_until_done(inner: &Arc<Inner>, puts: &Semaphore, id: RecordingId, seq: u64) {
    let mut logged_wait = false;
    let mut key_kept = false;
    loop {
        let route = inner.router.pick();
        if route.is_none() && !key_kept {
            key_kept = keep_key_in_spool(inner, id).await;
        }
        let Some(role) = route else {
            if !logged_wait {
                info!(recording = %id, sequence = seq, "no store can take uploads; the segment waits in the local log");
                logged_wait = true;
            }
            tokio::select! {
                _ = inner.route_changed.notified() => {}
                _ = tokio::time::sleep(NO_STORE_WAIT) => {}
                _ = inner.stopped() => return,
            }
            continue;
        };
        let outcome = upload(inner, puts, id, seq, role).await;
        if outcome.is_err() && !key_kept {
            key_kept = keep_key_in_spool(inner, id).await;
        }
        let wait = match outcome {
            Ok(()) => return,
            Err(EngineError::Storage(e)) => {
                inner.metrics.upload_failed(role, e.kind());
                warn!(recording = %id, sequence = seq, store = %role, error = %e, "segment upload failed");
                RETRY_WAIT
            }
            Err(e) => {
                warn!(recording = %id, sequence = seq, error = %e, "segment upload failed");
                LOCAL_RETRY_WAIT
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = inner.stopped() => return,
        }
    }
}

async fn upload(
    inner: &Arc<Inner>,
    puts: &Semaphore,
    id: RecordingId,
    seq: u64,
    role: Role,
) -> Result<()> {
    let Some(segment) = inner.catalog(move |c| c.segment(id, seq)).await? else {
        // The recording is gone (never the case before purge exists).
        return dequeue(inner, id, seq).await;
    };
    if !segment.locations.contains(&(Location::Local as i32)) {
        return dequeue(inner, id, seq).await;
    }
    let bytes = read_spooled(inner, id, seq, segment.sha256.clone()).await?;
    let size = bytes.len() as u64;
    let Some(segment) = record_intent(inner, id, segment, &[role]).await? else {
        // Purged meanwhile: nothing to put.
        return dequeue(inner, id, seq).await;
    };
    crate::key_objects::ensure(inner, id, role).await?;
    crashpoint!(inner, "upload-before-put");
    let store = inner.store(role);
    let put_slot = puts
        .acquire()
        .await
        .map_err(|_| EngineError::Internal("the uploader is shutting down".into()))?;
    let started = tokio::time::Instant::now();
    let put = store.put(&keys::segment(id, seq), bytes).await;
    let took = started.elapsed();
    drop(put_slot);
    put?;
    crashpoint!(inner, "upload-after-put");

    let mut stored = segment;
    let location = location_of(role) as i32;
    stored.locations = vec![location];
    // A good copy is known to be here now; it is not uncertain any more.
    stored.uncertain.retain(|&l| l != location);
    stored.uploaded_at_us = inner.now_us();
    let kept = inner
        .catalog(move |c| {
            c.commit_checked(|c| {
                let mut batch = Batch::new();
                batch.dequeue_upload(id, seq);
                // Purged while this put was in flight (the purge may even
                // be over, its rows gone): what it stored goes the way of
                // the recording's other objects.
                if c.purge_mark(id)?.is_some() || c.segment(id, seq)?.is_none() {
                    let key = keys::segment(id, seq);
                    batch.enqueue_deletion(location_of(role), key.as_ref(), "purged");
                    return Ok((false, batch));
                }
                batch.put_segment(id, &stored);
                Ok((true, batch))
            })
        })
        .await?;
    crashpoint!(inner, "upload-after-commit");
    inner.let_go_of_spooled(id, seq, kept)?;
    if !kept {
        inner.deleter_wake.notify_one();
        return Ok(());
    }
    inner.metrics.uploaded(role, size, took);
    debug!(recording = %id, sequence = seq, bytes = size, store = %role, "segment uploaded");
    if role == Role::Secondary {
        mark_for_recombination(inner, id).await?;
    } else {
        // The primary took it; a recording with secondary segments (marked
        // `secondary` when they were uploaded) is split now. One point
        // lookup rather than a scan of every segment on each upload.
        let reason = inner.catalog(move |c| c.recombine_reason(id)).await?;
        if reason.as_deref() == Some("secondary") {
            mark_for_recombination(inner, id).await?;
        }
    }
    Ok(())
}

/// A segment that does not leave the spool at once (no store takes it, a
/// put failed) may stay there long: its recording's wrapped data key is
/// kept beside it (`spool/<id>.key`), so that a catalog lost meanwhile can
/// be rebuilt readable from the spool. Segments uploaded at once cost no
/// key file (and no fsync). Returns whether the key is kept (or there is
/// none to keep).
pub(crate) async fn keep_key_in_spool(inner: &Arc<Inner>, id: RecordingId) -> bool {
    let kept = async {
        let row = inner.catalog(move |c| c.recording(id)).await?;
        let Some(wrapped) = row.map(|r| r.wrapped_key).filter(|w| !w.is_empty()) else {
            return Ok(());
        };
        let keeper = inner.clone();
        tokio::task::spawn_blocking(move || keeper.spool.write_key(id, &wrapped, true))
            .await
            .map_err(|e| EngineError::Internal(format!("spool key task failed: {e}")))?
    };
    match kept.await {
        Ok(()) => true,
        Err(e) => {
            warn!(recording = %id, error = %e, "cannot keep the recording's key in the spool; will retry");
            false
        }
    }
}

/// The spooled segment, checked against the catalog's SHA-256 so that local
/// disk corruption is never shipped. Off the async threads: a segment is
/// megabytes of file read and hashing.
pub(crate) async fn read_spooled(
    inner: &Arc<Inner>,
    id: RecordingId,
    seq: u64,
    sha256: Vec<u8>,
) -> Result<bytes::Bytes> {
    let inner = inner.clone();
    tokio::task::spawn_blocking(move || {
        let bytes = inner.spool.read(id, seq)?.ok_or_else(|| {
            EngineError::Internal(format!(
                "segment {seq} of {id} is recorded as local but its spool file is missing"
            ))
        })?;
        if reel_log::sha256(&bytes)[..] != sha256[..] {
            return Err(EngineError::Internal(format!(
                "spool file of segment {seq} of {id} does not match its SHA-256: local disk corruption"
            )));
        }
        Ok(bytes)
    })
    .await
    .map_err(|e| EngineError::Internal(format!("spool read task failed: {e}")))?
}

/// Records, durably and before the puts, that `roles` may hold a copy of
/// the segment (one commit for all). Returns the row as it now is, or
/// `None` when the recording is being purged (nothing is put then).
pub(crate) async fn record_intent(
    inner: &Arc<Inner>,
    id: RecordingId,
    segment: SegmentRow,
    roles: &[Role],
) -> Result<Option<SegmentRow>> {
    let locations: Vec<i32> = roles.iter().map(|&r| location_of(r) as i32).collect();
    if locations.iter().all(|l| segment.uncertain.contains(l)) {
        return Ok(Some(segment));
    }
    let seq = segment.sequence;
    inner
        .catalog(move |c| {
            c.commit_checked(|c| {
                let mut batch = Batch::new();
                if c.purge_mark(id)?.is_some() {
                    return Ok((None, batch));
                }
                // Re-read: keep whatever is newest.
                let Some(mut row) = c.segment(id, seq)? else {
                    return Ok((None, batch));
                };
                let before = row.uncertain.len();
                for &location in &locations {
                    if !row.uncertain.contains(&location) {
                        row.uncertain.push(location);
                    }
                }
                if row.uncertain.len() != before {
                    batch.put_segment(id, &row);
                }
                Ok((Some(row), batch))
            })
        })
        .await
}

/// Marks the recording for recombination onto the primary: `split` when its
/// segments are on both stores, `secondary` when on the secondary only. Run
/// after the upload's own commit, so of two uploads racing to different
/// stores the later one sees both.
async fn mark_for_recombination(inner: &Arc<Inner>, id: RecordingId) -> Result<()> {
    let marked = inner
        .catalog(move |c| {
            let segments = c.segments(id)?;
            let on = |l: Location| segments.iter().any(|s| s.locations.contains(&(l as i32)));
            let reason = match (on(Location::Primary), on(Location::Secondary)) {
                (true, true) => "split",
                (false, true) => "secondary",
                _ => return Ok(None),
            };
            c.commit_checked(|c| {
                let mut batch = Batch::new();
                if c.recombine_reason(id)?.as_deref() == Some(reason) || c.purge_mark(id)?.is_some()
                {
                    return Ok((None, batch));
                }
                batch.mark_recombine(id, reason);
                Ok((Some(reason), batch))
            })
        })
        .await?;
    if let Some(reason) = marked {
        info!(recording = %id, reason, "recording marked for recombination");
    }
    Ok(())
}

pub(crate) async fn dequeue(inner: &Arc<Inner>, id: RecordingId, seq: u64) -> Result<()> {
    inner
        .catalog(move |c| {
            let mut batch = Batch::new();
            batch.dequeue_upload(id, seq);
            c.commit(batch)
        })
        .await
}
