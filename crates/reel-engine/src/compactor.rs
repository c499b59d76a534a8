//! Recombination: a closed recording whose segments are spread over the
//! stores (split by a failover, only on the secondary, or merely several
//! segment objects) becomes one object on the primary, with an index (see
//! reel-log's `combined` module).
//!
//! The protocol, for one recording:
//!
//! 1. Read each segment from a copy whose SHA-256 matches the catalog (the
//!    primary's, the secondary's, then copies left by ambiguous puts); a
//!    copy that does not match is reported and never used.
//! 2. Stream them, byte for byte, then the index, into
//!    `recordings/<id>/recording.reel` on the primary (a multipart upload:
//!    memory stays bounded).
//! 3. Verify: the stored size; with `verify_read_back`, the index and
//!    every byte read back and hashed. (The content is hashed while
//!    streaming, and S3 checks each part's signed payload hash on arrival.)
//! 4. Commit in one catalog batch: each segment now at its offset in the
//!    combined object, the recording's object size and digest, the end of
//!    its recombination mark, and the deletion of every old copy queued in
//!    the persistent deletion queue.
//! 5. The deleter (see `deleter`) deletes the old copies.
//!
//! In mirror mode the combined object is written to both stores (the same
//! bytes under the same key; the catalog marks the secondary's copy
//! `secondary_combined`), and a recording waits until every segment is on
//! both stores and both are usable.
//!
//! A crash before 4 leaves the mark, so the work is redone (the combined
//! key is overwritten; nothing points at it yet). A crash after 4 leaves
//! the deletions queued. The mark is the recombination's intent: a purge
//! leaves it, so that an object put by a recombination the purge raced
//! and a crash then cut before its commit is still known of; the next pass
//! finds the mark of a recording purged or gone and deletes the combined
//! key from both stores ([`forget_purged`]). The catalog never points at
//! bytes that are not there: old copies go only after the catalog points
//! at the new object.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reel_catalog::{Batch, RecordingId};
use reel_log::combined::CombinedBuilder;
use reel_proto::v1::{IndexEntry, Location, RecordingRow, RecordingState, SegmentRow};
use reel_storage::{ObjectWriter, PART_BYTES, Role, StorageError, keys};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio_util::task::AbortOnDropHandle;
use tracing::{info, warn};

use crate::Inner;
use crate::copies::{location_of, read_copy, stored_copy};
use crate::error::{EngineError, Result};

/// Pause of the background compactor after a failed recombination.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// How the compactor works; see the README's `[compactor]`.
#[derive(Debug, Clone, PartialEq)]
pub struct CompactorConfig {
    /// Recombine in the background (else only when asked).
    pub enabled: bool,
    /// How often the background compactor looks for work.
    pub interval: Duration,
    /// Pace: at most this many bytes a second are copied (0: no limit).
    pub max_bytes_per_second: u64,
    /// Read every byte of a new object back and hash it before trusting it
    /// (else its size and index are checked, and the content hashed while
    /// streaming).
    pub verify_read_back: bool,
}

impl Default for CompactorConfig {
    fn default() -> Self {
        CompactorConfig {
            enabled: true,
            interval: Duration::from_secs(5),
            max_bytes_per_second: 0,
            verify_read_back: false,
        }
    }
}

/// One recording the compactor has to do.
#[derive(Debug, Clone, Serialize)]
pub struct PlanItem {
    pub id: String,
    /// Why: `split`, `secondary` or `segmented`.
    pub reason: String,
    pub segments: u64,
    pub bytes: u64,
    /// Why it cannot be done now, if it cannot (still open, segments still
    /// local, primary unavailable).
    pub waiting: Option<String>,
}

/// What the compactor is doing and has done since the server started.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CompactorStatus {
    /// The recording being recombined: (id, bytes copied, bytes in all).
    pub current: Option<(String, u64, u64)>,
    /// Recordings marked and not yet done (including the current one).
    pub pending: u64,
    pub pending_bytes: u64,
    pub recombined: u64,
    pub recombined_bytes: u64,
    pub failures: u64,
    /// Segment copies whose hash did not match (reported, not used).
    pub bad_copies: Vec<String>,
    pub last_error: Option<String>,
}

/// The plan, the compactor's state and the deletions waiting: what
/// `GET /api/v1/compact` answers (its JSON is `reel_api::CompactStatus`).
#[derive(Debug, Clone, Serialize)]
pub struct CompactionState {
    pub plan: Vec<PlanItem>,
    #[serde(flatten)]
    pub status: CompactorStatus,
    /// Old copies waiting in the deletion queue.
    pub pending_deletions: u64,
}

/// The compactor's shared state: one recombination at a time.
#[derive(Default)]
pub(crate) struct Compactor {
    running: tokio::sync::Mutex<()>,
    status: Mutex<CompactorStatus>,
    pub(crate) wake: tokio::sync::Notify,
}

impl Compactor {
    pub(crate) fn status(&self) -> CompactorStatus {
        self.status.lock().expect("compactor status").clone()
    }

    fn update(&self, f: impl FnOnce(&mut CompactorStatus)) {
        f(&mut self.status.lock().expect("compactor status"));
    }
}

/// The background compactor.
pub(crate) async fn run(inner: Arc<Inner>) {
    loop {
        let pause = if inner.config.compactor.enabled {
            match compact_pending(&inner, None).await {
                Ok(_) => inner.config.compactor.interval,
                Err(e) => {
                    warn!(error = %e, "recombination failed; retrying later");
                    RETRY_AFTER.min(inner.config.compactor.interval * 4)
                }
            }
        } else {
            Duration::from_secs(3600)
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = inner.compactor.wake.notified() => {}
            _ = inner.stopped() => return,
        }
    }
}

/// What there is to do (all marked recordings, or just `only`).
pub(crate) async fn plan(inner: &Arc<Inner>, only: Option<RecordingId>) -> Result<Vec<PlanItem>> {
    let primary_usable = inner.router.primary.state().is_usable();
    let mirror = inner.mirrored();
    let secondary_usable = inner.router.secondary.state().is_usable();
    let items = inner
        .catalog(move |c| {
            let queue = c.recombine_queue()?;
            let mut items = Vec::new();
            for (id, reason) in queue {
                if only.is_some_and(|o| o != id) || c.purge_mark(id)?.is_some() {
                    continue;
                }
                let (Some(row), segments) = (c.recording(id)?, c.segments(id)?) else {
                    continue;
                };
                items.push((id, reason, row, segments));
            }
            Ok(items)
        })
        .await?;
    Ok(items
        .into_iter()
        .map(|(id, reason, row, segments)| PlanItem {
            id: id.to_string(),
            reason,
            segments: segments.len() as u64,
            bytes: segments.iter().map(|s| s.size).sum(),
            waiting: not_ready(&row, &segments, mirror)
                .or_else(|| (!primary_usable).then(|| "the primary is not available".to_string()))
                .or_else(|| {
                    (mirror && !secondary_usable)
                        .then(|| "the secondary is not available (mirror mode)".to_string())
                }),
        })
        .collect())
}

/// Why a recording cannot be recombined yet, if it cannot.
fn not_ready(row: &RecordingRow, segments: &[SegmentRow], mirror: bool) -> Option<String> {
    if row.state != RecordingState::Closed as i32 {
        return Some("still open".into());
    }
    if segments
        .iter()
        .any(|s| s.locations.contains(&(Location::Local as i32)))
    {
        return Some("segments still in the local log, waiting for upload".into());
    }
    // The mirror's copies come first: a commit here must not race the
    // uploader adding one.
    let on_both = |s: &SegmentRow| {
        [Location::Primary, Location::Secondary]
            .iter()
            .all(|&l| s.locations.contains(&(l as i32)))
    };
    if mirror && !segments.iter().all(on_both) {
        return Some("segments waiting for their copy on the other store (mirror mode)".into());
    }
    None
}

/// Recombines every marked recording that is ready (or only `only`), one at
/// a time. Returns how many were recombined. Stops at the first failure of
/// the primary (the rest waits for the next round); a recording that fails
/// for its own reasons is reported and skipped.
pub(crate) async fn compact_pending(inner: &Arc<Inner>, only: Option<RecordingId>) -> Result<u64> {
    let _one_at_a_time = inner.compactor.running.lock().await;
    forget_purged(inner).await?;
    let plan = plan(inner, only).await?;
    inner.compactor.update(|s| {
        s.pending = plan.len() as u64;
        s.pending_bytes = plan.iter().map(|p| p.bytes).sum();
    });
    let mut done = 0;
    let mut queue: VecDeque<PlanItem> = plan.into_iter().filter(|p| p.waiting.is_none()).collect();
    while let Some(item) = queue.pop_front() {
        if *inner.shutdown.borrow() {
            break;
        }
        let id: RecordingId = item.id.parse()?;
        match compact_one(inner, id).await {
            Ok(bytes) => {
                done += 1;
                inner.compactor.update(|s| {
                    s.recombined += 1;
                    s.recombined_bytes += bytes;
                    s.pending = s.pending.saturating_sub(1);
                    s.pending_bytes = s.pending_bytes.saturating_sub(item.bytes);
                });
            }
            Err(e) => {
                inner.compactor.update(|s| {
                    s.failures += 1;
                    s.last_error = Some(format!("{id}: {e}"));
                });
                if matches!(e, EngineError::Storage(_)) {
                    inner.compactor.update(|s| s.current = None);
                    return Err(e);
                }
                warn!(recording = %id, error = %e, "recording not recombined");
            }
        }
    }
    inner.compactor.update(|s| s.current = None);
    Ok(done)
}

/// The marks of recordings purged or gone: a recombination of one of them
/// may have put its object and been cut before its commit (a crash), so
/// the combined key is queued for deletion on both stores (deleting a
/// missing object is a no-op) and the mark goes, in one commit. Run with
/// the compactor's lock held, so that no recombination of this engine is
/// in flight.
async fn forget_purged(inner: &Arc<Inner>) -> Result<()> {
    let forgotten = inner
        .catalog(|c| {
            c.commit_checked(|c| {
                let mut batch = Batch::new();
                let mut n = 0;
                for (id, _) in c.recombine_queue()? {
                    if c.purge_mark(id)?.is_none() && c.recording(id)?.is_some() {
                        continue;
                    }
                    let key = keys::recording_object(id);
                    for store in [Location::Primary, Location::Secondary] {
                        batch.enqueue_deletion(store, key.as_ref(), "purged");
                    }
                    batch.unmark_recombine(id);
                    n += 1;
                }
                Ok((n, batch))
            })
        })
        .await?;
    if forgotten > 0 {
        info!(
            recordings = forgotten,
            "recombination marks of purged recordings forgotten; their combined keys queued for deletion"
        );
        inner.deleter_wake.notify_one();
    }
    Ok(())
}

/// Recombines one recording; returns the size of its new object.
async fn compact_one(inner: &Arc<Inner>, id: RecordingId) -> Result<u64> {
    let (row, segments) = inner
        .catalog(move |c| {
            let row = match c.purge_mark(id)? {
                Some(_) => None,
                None => c.recording(id)?,
            };
            Ok((row, c.segments(id)?))
        })
        .await?;
    let row = row.ok_or(EngineError::NotFound(id))?;
    let mirror = inner.mirrored();
    if let Some(why) = not_ready(&row, &segments, mirror) {
        return Err(EngineError::FailedPrecondition(format!(
            "recording {id}: {why}"
        )));
    }
    if already_one_object(&segments, mirror) {
        inner
            .catalog(move |c| {
                let mut batch = Batch::new();
                batch.unmark_recombine(id);
                c.commit(batch)
            })
            .await?;
        return Ok(if row.combined_size > 0 {
            row.combined_size
        } else {
            segments.first().map_or(0, |s| s.size)
        });
    }
    // Mirror mode writes the combined object to both stores (the same
    // bytes under the same key), so that either serves it alone.
    let targets: Vec<Role> = if mirror {
        vec![Role::Primary, Role::Secondary]
    } else {
        vec![Role::Primary]
    };
    for &role in &targets {
        if !inner.store(role).health().state().is_usable() {
            return Err(EngineError::FailedPrecondition(format!(
                "the {role} is not available"
            )));
        }
    }
    let started = tokio::time::Instant::now();
    let total: u64 = segments.iter().map(|s| s.size).sum();
    inner
        .compactor
        .update(|s| s.current = Some((id.to_string(), 0, total)));
    info!(recording = %id, segments = segments.len(), bytes = total, "recombining");

    // A store that holds a segment got the key object before it.
    for &role in &targets {
        if !segments
            .iter()
            .any(|s| s.locations.contains(&(location_of(role) as i32)))
        {
            crate::key_objects::ensure(inner, id, role).await?;
        }
    }
    let key = keys::recording_object(id);
    let mut builder = CombinedBuilder::new(id.to_bytes().to_vec());
    let mut whole = Sha256::new();
    // Small recordings go in one put; large ones stream as a multipart
    // upload to each store.
    let mut writers = Vec::new();
    if total > PART_BYTES as u64 {
        for &role in &targets {
            match inner.store(role).writer(&key).await {
                Ok(w) => writers.push(w),
                Err(e) => {
                    abort_all(writers).await;
                    return Err(e.into());
                }
            }
        }
    }
    let mut small = Vec::new();
    let mut copied = 0u64;
    // One segment is read (and its SHA-256 checked) ahead, on a task of its
    // own, while this one is hashed into the whole and written: done in
    // turn, the copy waited for each GET and each GET for the hashing.
    let mut ahead = segments.first().map(|seg| read_ahead(inner, id, seg));
    for (i, seg) in segments.iter().enumerate() {
        let reading = ahead.take().expect("each segment is read ahead");
        ahead = segments.get(i + 1).map(|next| read_ahead(inner, id, next));
        let bytes = match reading.await {
            Ok(b) => b,
            Err(e) => {
                abort_all(writers).await;
                return Err(e);
            }
        };
        builder.add_segment(index_entry(seg), &bytes);
        whole.update(&bytes);
        if writers.is_empty() {
            small.extend_from_slice(&bytes);
        } else if let Err(e) = write_all(&mut writers, &bytes).await {
            abort_all(writers).await;
            return Err(e);
        }
        copied += bytes.len() as u64;
        inner
            .compactor
            .update(|s| s.current = Some((id.to_string(), copied, total)));
        pace(inner, copied, started).await;
    }
    let content_len = builder.content_len();
    let (tail, index) = builder.finish(inner.keys.as_ref());
    whole.update(&tail);
    let size = content_len + tail.len() as u64;
    if writers.is_empty() {
        small.extend_from_slice(&tail);
        let small = bytes::Bytes::from(small);
        for &role in &targets {
            inner.store(role).put(&key, small.clone()).await?;
        }
    } else {
        if let Err(e) = write_all(&mut writers, &tail).await {
            abort_all(writers).await;
            return Err(e);
        }
        for w in writers {
            w.finish().await?;
        }
    }
    for &role in &targets {
        verify(
            inner,
            role,
            id,
            size,
            &tail,
            &index.content_sha256,
            content_len,
        )
        .await?;
    }

    let digest: [u8; 32] = whole.finalize().into();
    let mut new_row = row.clone();
    new_row.combined_size = size;
    new_row.combined_sha256 = digest.to_vec();
    let mut batch = Batch::new();
    for (seg, entry) in segments.iter().zip(&index.segments) {
        for store in [Location::Primary, Location::Secondary] {
            if seg.locations.contains(&(store as i32)) || seg.uncertain.contains(&(store as i32)) {
                batch.enqueue_deletion(
                    store,
                    keys::segment(id, seg.sequence).as_ref(),
                    "recombined",
                );
            }
        }
        let mut moved = seg.clone();
        moved.locations = targets.iter().map(|&r| location_of(r) as i32).collect();
        moved.secondary_combined = mirror;
        moved.uncertain.clear();
        moved.combined_offset = Some(entry.offset);
        batch.put_segment(id, &moved);
    }
    batch.put_recording(&new_row).unmark_recombine(id);
    fail_parallel::fail_point!(
        inner.config.failpoints.clone(),
        "compactor-commit",
        |_| Err(EngineError::Internal("failpoint compactor-commit".into()))
    );
    let stored_on = targets.clone();
    let purged = inner
        .catalog(move |c| {
            c.commit_checked(|c| {
                // Purged while it was copied (the purge may even be over,
                // the recording's row gone): the new object goes too.
                if c.purge_mark(id)?.is_some() || c.recording(id)?.is_none() {
                    let mut gone = Batch::new();
                    for &role in &stored_on {
                        gone.enqueue_deletion(
                            location_of(role),
                            keys::recording_object(id).as_ref(),
                            "purged",
                        );
                    }
                    gone.unmark_recombine(id);
                    return Ok((true, gone));
                }
                Ok((false, batch))
            })
        })
        .await?;
    crashpoint!(inner, "compactor-after-commit");
    inner.deleter_wake.notify_one();
    if purged {
        return Err(EngineError::NotFound(id));
    }
    inner.metrics.recombined(size);
    info!(
        recording = %id,
        bytes = size,
        segments = segments.len(),
        seconds = started.elapsed().as_secs_f64(),
        stores = targets.len(),
        "recording recombined into one object (on the primary, and in mirror mode on the secondary)"
    );
    Ok(size)
}

/// One segment object on the primary and nothing anywhere else (but the
/// secondary's copy in mirror mode), or a recombined recording: already one
/// contiguous object.
fn already_one_object(segments: &[SegmentRow], mirror: bool) -> bool {
    // Recombined already (a late mark from an upload that raced the
    // compactor must not make it copy the object onto itself).
    if !segments.is_empty() && segments.iter().all(|s| s.combined_offset.is_some()) {
        return true;
    }
    match segments {
        [only] => {
            let primary = Location::Primary as i32;
            let mirrored = [primary, Location::Secondary as i32];
            only.uncertain.is_empty()
                && (only.locations == [primary] || (mirror && only.locations == mirrored))
        }
        _ => false,
    }
}

fn index_entry(seg: &SegmentRow) -> IndexEntry {
    IndexEntry {
        sequence: seg.sequence,
        sha256: seg.sha256.clone(),
        first_event_index: seg.first_event_index,
        event_count: seg.event_count,
        start_time_us: seg.start_time_us,
        end_time_us: seg.end_time_us,
        ..Default::default()
    }
}

/// [`read_good_copy`] on a task of its own, aborted if the recombination
/// is given up before it is awaited.
fn read_ahead(
    inner: &Arc<Inner>,
    id: RecordingId,
    seg: &SegmentRow,
) -> impl std::future::Future<Output = Result<bytes::Bytes>> + use<> {
    let (inner, seg) = (inner.clone(), seg.clone());
    let task = AbortOnDropHandle::new(tokio::spawn(async move {
        read_good_copy(&inner, id, &seg).await
    }));
    async move {
        task.await.unwrap_or_else(|e| {
            Err(EngineError::Internal(format!(
                "reading a segment failed: {e}"
            )))
        })
    }
}

/// A copy of `seg` whose SHA-256 is the catalog's: from the stores the
/// catalog names, then from those that may hold a copy. Bad copies are
/// reported and skipped.
async fn read_good_copy(
    inner: &Arc<Inner>,
    id: RecordingId,
    seg: &SegmentRow,
) -> Result<bytes::Bytes> {
    // The stores the catalog names first, then those that may hold a copy.
    let roles = [Role::Primary, Role::Secondary];
    let named = |role: Role| seg.locations.contains(&(location_of(role) as i32));
    let maybe = |role: Role| seg.uncertain.contains(&(location_of(role) as i32));
    let sources = roles
        .into_iter()
        .filter(|&r| named(r))
        .chain(roles.into_iter().filter(|&r| !named(r) && maybe(r)));
    let mut last_error = None;
    for role in sources {
        // An uncertain copy is a segment object whatever the row says.
        let mut probe = seg.clone();
        if !named(role) {
            probe.combined_offset = None;
        }
        let bytes = match read_copy(inner, id, &probe, location_of(role)).await {
            Ok(Some(b)) => b,
            Ok(None) => {
                // A copy that is not there: nothing to use.
                let key = stored_copy(id, &probe, location_of(role) as i32)
                    .map_or_else(String::new, |c| c.key.to_string());
                let gone = StorageError::NotFound { role, key };
                if named(role) {
                    last_error = Some(EngineError::Storage(gone));
                } else {
                    last_error.get_or_insert(EngineError::Storage(gone));
                }
                continue;
            }
            Err(e) => {
                last_error = Some(e);
                continue;
            }
        };
        if reel_log::sha256(&bytes)[..] == seg.sha256[..] {
            return Ok(bytes);
        }
        let report = format!(
            "{role} copy of segment {} of {id} does not match its SHA-256 ({} bytes, {} expected)",
            seg.sequence,
            bytes.len(),
            seg.size
        );
        warn!(recording = %id, sequence = seg.sequence, store = %role, "bad segment copy: {report}; not used");
        inner.metrics.bad_copy(role);
        inner.compactor.update(|s| {
            s.bad_copies.push(report.clone());
            if s.bad_copies.len() > 100 {
                s.bad_copies.remove(0);
            }
        });
        last_error = Some(EngineError::Segment {
            recording: id,
            sequence: seg.sequence,
            source: reel_log::SegmentError::ContentHash,
        });
    }
    Err(last_error.unwrap_or_else(|| {
        EngineError::Internal(format!(
            "segment {} of {id} has no copy on any store",
            seg.sequence
        ))
    }))
}

/// Checks the new object as stored: its size (one HEAD); with
/// `verify_read_back`, its index and every byte read back and hashed. The
/// content was hashed here while streaming, and S3 servers check each
/// part's signed payload hash as it arrives, so the size check is what the
/// default pays for.
async fn verify(
    inner: &Arc<Inner>,
    role: Role,
    id: RecordingId,
    size: u64,
    tail: &[u8],
    content_sha256: &[u8],
    content_len: u64,
) -> Result<()> {
    let primary = inner.store(role);
    let key = keys::recording_object(id);
    let bad = |what: String| {
        EngineError::Storage(StorageError::Backend {
            role,
            op: "verify",
            key: key.to_string(),
            source: object_store::Error::Generic {
                store: "reel",
                source: what.into(),
            },
        })
    };
    let stored = primary.head(&key).await?;
    if stored != size {
        return Err(bad(format!("stored {stored} bytes, wrote {size}")));
    }
    if inner.config.compactor.verify_read_back {
        let (back, _) = primary.get_tail(&key, tail.len() as u64).await?;
        if back != tail {
            return Err(bad("the stored index differs from the one written".into()));
        }
        let mut digest = Sha256::new();
        let mut at = 0;
        while at < content_len {
            let end = (at + PART_BYTES as u64).min(content_len);
            digest.update(primary.get_range(&key, at..end).await?);
            at = end;
        }
        let got: [u8; 32] = digest.finalize().into();
        if got[..] != content_sha256[..] {
            return Err(bad("the stored content does not match its SHA-256".into()));
        }
    }
    Ok(())
}

/// Writes `bytes` to each of the combined object's writers.
async fn write_all(writers: &mut [ObjectWriter<'_>], bytes: &[u8]) -> Result<()> {
    for w in writers.iter_mut() {
        w.write(bytes).await?;
    }
    Ok(())
}

/// Abandons the combined object's multipart uploads.
async fn abort_all(writers: Vec<ObjectWriter<'_>>) {
    for w in writers {
        w.abort().await;
    }
}

/// Sleeps as long as the configured pace asks.
async fn pace(inner: &Arc<Inner>, copied: u64, started: tokio::time::Instant) {
    let limit = inner.config.compactor.max_bytes_per_second;
    if limit == 0 {
        return;
    }
    let due = Duration::from_secs_f64(copied as f64 / limit as f64);
    if let Some(wait) = due.checked_sub(started.elapsed()) {
        tokio::time::sleep(wait).await;
    }
}

/// Copies recording `row`'s combined object from the `from` store to the
/// `to` store, byte for byte: mirror mode's repair of one store's copy that
/// was lost or damaged, from the other's. The bytes are hashed as they
/// stream and must match the recording's `combined_sha256` before the
/// object is completed; on a mismatch (the source is damaged too) or any
/// failure the upload is abandoned, so whatever was under the key on `to`
/// stays as it was. The catalog is not touched: it already names the copy.
pub(crate) async fn copy_combined(
    inner: &Arc<Inner>,
    row: &RecordingRow,
    from: Role,
    to: Role,
) -> Result<()> {
    let id = RecordingId::from_slice(&row.id)?;
    let key = keys::recording_object(id);
    let size = row.combined_size;
    let mismatch = || {
        EngineError::FailedPrecondition(format!(
            "recording {id}: the {from}'s combined object does not match its SHA-256"
        ))
    };
    crate::key_objects::ensure(inner, id, to).await?;
    let source = inner.store(from);
    let target = inner.store(to);
    if size <= PART_BYTES as u64 {
        let bytes = source.get(&key, Some(size)).await?;
        if Sha256::digest(&bytes)[..] != row.combined_sha256[..] {
            return Err(mismatch());
        }
        target.put(&key, bytes).await?;
        return Ok(());
    }
    let started = tokio::time::Instant::now();
    let mut body = source.get_range_stream(&key, 0..size).await?;
    let mut writer = target.writer(&key).await?;
    let mut whole = Sha256::new();
    let outcome = async {
        while let Some(chunk) = futures::StreamExt::next(&mut body).await {
            let chunk = chunk?;
            whole.update(&chunk);
            writer.write(&chunk).await?;
            pace(inner, writer.written(), started).await;
        }
        if writer.written() != size || whole.finalize()[..] != row.combined_sha256[..] {
            return Err(mismatch());
        }
        Ok(())
    }
    .await;
    match outcome {
        Ok(()) => Ok(writer.finish().await?),
        Err(e) => {
            writer.abort().await;
            Err(e)
        }
    }
}
