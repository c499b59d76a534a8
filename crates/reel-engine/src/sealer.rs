//! Sealing: cutting a recording's durable journal records into segments.
//!
//! A seal reads the chunks back from the journal, encodes one segment,
//! writes it to the spool (fsynced), and commits in one synced catalog batch
//! the segment row, its upload-queue entry and the recording's new totals.
//! Only after that commit are the chunks dropped, which is what lets the
//! journal release its files. A crash before the commit leaves the chunks in
//! the journal (they are sealed again after recovery) and at most a spool
//! file that recovery deletes.

use std::sync::Arc;

use reel_catalog::{Batch, RecordingId};
use reel_log::{SegmentSpec, encode_sealed_segment, encode_signed_segment};
use reel_proto::v1::{Location, RecordingState, SegmentRow};
use tokio::sync::{Semaphore, mpsc};
use tracing::{error, info};

use crate::error::{EngineError, Result};
use crate::recording::{Chunk, Closed, LiveState, OpenRecording, SealState, read_chunks};
use crate::{EngineConfig, Inner};

/// Serves seal requests (by size, from the ingest path; by age, from
/// housekeeping) with at most `seal_concurrency` seals at once.
pub(crate) async fn run(inner: Arc<Inner>, mut requests: mpsc::UnboundedReceiver<RecordingId>) {
    let permits = Arc::new(Semaphore::new(inner.config.seal_concurrency.max(1)));
    let mut seals = tokio::task::JoinSet::new();
    loop {
        while seals.try_join_next().is_some() {}
        let id = tokio::select! {
            id = requests.recv() => match id { Some(id) => id, None => break },
            _ = inner.stopped() => break,
        };
        let Some(rec) = inner.open_recording(id) else {
            continue;
        };
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let inner = inner.clone();
        seals.spawn(async move {
            let _permit = permit;
            let result = seal_due(&inner, &rec).await;
            let mut live = rec.live();
            live.seal_requested = false;
            match result {
                // More arrived while sealing: go again.
                Ok(()) if is_due(&live, &inner.config) && !live.closing => {
                    rec.request_seal(&mut live);
                }
                Ok(()) => {}
                // Housekeeping asks again later; no tight retry loop.
                Err(e) => error!(recording = %id, error = %e, "sealing failed; will retry"),
            }
        });
    }
    // A seal cut short is crash-safe: its chunks are still in the journal.
    seals.shutdown().await;
}

pub(crate) fn is_due(live: &LiveState, config: &EngineConfig) -> bool {
    live.unsealed_bytes >= config.segment_target_bytes
        || live
            .unsealed_since
            .is_some_and(|t| config.clock.elapsed(t) >= config.segment_max_age)
}

/// Seals while the recording has a segment's worth of events, or events
/// older than the maximum age. A segment cut short by the content cap (a
/// run of tiny events, see [`pick`]) is followed at once by the next, so
/// that what was due is sealed whole.
async fn seal_due(inner: &Arc<Inner>, rec: &Arc<OpenRecording>) -> Result<()> {
    let mut seal = rec.seal.lock().await;
    let mut after_cap = false;
    loop {
        let (picked, capped) = {
            let live = rec.live();
            if live.closing || !(after_cap || is_due(&live, &inner.config)) {
                return Ok(());
            }
            pick(&live, inner.config.segment_target_bytes, after_cap)
        };
        if picked.is_empty() {
            return Ok(());
        }
        seal_one(inner, rec, &mut seal, picked, None).await?;
        after_cap = capped;
    }
}

/// How a recording ends.
pub(crate) struct Finish {
    pub duration_us: u64,
    pub reason: &'static str,
}

/// Seals everything left as the final segment(s) and closes the recording
/// in the catalog; the recording then leaves the set of open recordings.
pub(crate) async fn finish(
    inner: &Arc<Inner>,
    rec: &Arc<OpenRecording>,
    duration_us: u64,
    reason: &'static str,
) -> Result<Closed> {
    let mut seal = rec.seal.lock().await;
    loop {
        let (picked, rest) = {
            let live = rec.live();
            let (picked, _) = pick(&live, inner.config.segment_target_bytes, false);
            let rest = live.chunks.len() - picked.len();
            (picked, rest)
        };
        let finishing = (rest == 0).then_some(Finish {
            duration_us,
            reason,
        });
        seal_one(inner, rec, &mut seal, picked, finishing).await?;
        if rest == 0 {
            break;
        }
    }
    inner.open.write().expect("open map lock").remove(&rec.id);
    info!(recording = %rec.id, reason, events = seal.row.event_count, "recording closed");
    Ok(Closed {
        id: rec.id,
        event_count: seal.row.event_count,
        duration_us: seal.row.duration_us,
    })
}

/// The next run of contiguous chunks, up to about a segment's size: until
/// its events' data reaches `target`, or until what they take in the
/// content, framing included, could reach
/// [`SEGMENT_CUT_FACTOR`](reel_log::limits::SEGMENT_CUT_FACTOR) times
/// `target` (runs of tiny or empty events, which the data alone does not
/// measure). A segment's content is then less than that cap plus one
/// journal record, whatever its events: the bound every reader checks
/// segments against (`reel_log::limits::segment_object_bound`). After a
/// segment cut by the cap (`after_cap`), only the cap cuts, so that the rest
/// of what was due is sealed too. Also says whether the cap cut the run.
fn pick(live: &LiveState, target: u64, after_cap: bool) -> (Vec<Chunk>, bool) {
    use reel_log::limits::{EVENT_FRAMING_BYTES, SEGMENT_CUT_FACTOR};
    let cap = target.saturating_mul(SEGMENT_CUT_FACTOR);
    let mut picked: Vec<Chunk> = Vec::new();
    let (mut data, mut content) = (0u64, 0u64);
    for c in live.chunks.iter() {
        if let Some(last) = picked.last() {
            if content >= cap {
                return (picked, true);
            }
            if last.end() != c.first_index || (!after_cap && data >= target) {
                break;
            }
        }
        data += u64::from(c.data_bytes);
        content += u64::from(c.data_bytes) + u64::from(c.count) * EVENT_FRAMING_BYTES;
        picked.push(c);
    }
    (picked, false)
}

async fn seal_one(
    inner: &Arc<Inner>,
    rec: &Arc<OpenRecording>,
    seal: &mut SealState,
    picked: Vec<Chunk>,
    finish: Option<Finish>,
) -> Result<()> {
    let id = rec.id;
    let seq = seal.row.segment_count;
    let now = inner.now_us();
    let spec = SegmentSpec {
        recording_id: id.to_bytes(),
        sequence: seq,
        first_event_index: picked
            .first()
            .map_or(seal.row.next_event_index, |c| c.first_index),
        prev_hash: seal.prev_hash,
        metadata: seal.row.metadata.clone().unwrap_or_default(),
        is_final: finish.is_some(),
        duration_us: 0,
        sealed_at_us: now,
    };
    let mut row = seal.row.clone();
    let task_inner = inner.clone();
    let task_picked = picked.clone();
    let task_key = rec.key.clone();
    // On the seal threads (`seal_pool`), below the ingest path. A seal
    // waiting there holds its recording's seal lock; no seal job waits for
    // one: no cycle.
    let (encoded, row) = inner
        .seal_pool
        .run(move || -> Result<_> {
            let inner = task_inner;
            let events = read_chunks(&inner.journal, id, task_key.as_ref(), &task_picked)?;
            let last_time = events
                .last()
                .map_or(row.last_time_us, |e| e.time_us.max(row.last_time_us));
            let mut spec = spec;
            if let Some(f) = &finish {
                spec.duration_us = f.duration_us.max(last_time);
            }
            let encoded = match &task_key {
                Some(key) => encode_sealed_segment(spec, &events, inner.keys.as_ref(), key)?,
                None => encode_signed_segment(spec, &events, inner.keys.as_ref()),
            };
            // Beside the segment, its recording's wrapped key (unsynced: the
            // segment's directory sync follows; the uploader syncs it if the
            // segment cannot leave at once).
            if task_key.is_some() {
                inner.spool.write_key(id, &row.wrapped_key, false)?;
            }
            inner.spool.write(id, seq, &encoded.bytes)?;

            let header = &encoded.header;
            let data_bytes: u64 = events.iter().map(|e| e.data.len() as u64).sum();
            let segment = SegmentRow {
                sequence: seq,
                first_event_index: header.first_event_index,
                event_count: header.event_count,
                start_time_us: header.start_time_us,
                end_time_us: header.end_time_us,
                data_bytes,
                size: encoded.bytes.len() as u64,
                sha256: encoded.sha256.to_vec(),
                locations: vec![Location::Local as i32],
                sealed_at_us: now,
                uploaded_at_us: 0,
                r#final: header.r#final,
                uncertain: Vec::new(),
                combined_offset: None,
                secondary_combined: false,
                content_offset: encoded.content_offset,
                blocks: header.blocks.clone(),
            };
            row.event_count += header.event_count;
            row.data_bytes += data_bytes;
            row.segment_count += 1;
            row.stored_bytes += segment.size;
            row.last_segment_hash = encoded.sha256.to_vec();
            row.last_time_us = last_time;
            row.next_event_index = header.first_event_index + header.event_count;
            if let Some(f) = &finish {
                row.state = RecordingState::Closed as i32;
                row.closed_at_us = now;
                row.duration_us = header.duration_us;
                row.close_reason = f.reason.to_string();
            }
            let mut batch = Batch::new();
            batch
                .put_segment(id, &segment)
                .enqueue_upload(id, seq)
                .put_recording(&row);
            // A closed recording of several segments is the compactor's work,
            // unless a failover already marked it (`split`, `secondary`).
            if finish.is_some() && inner.catalog.recombine_reason(id)?.is_none() {
                batch.mark_recombine(id, "segmented");
            }
            // The manifest, where a removed final segment cannot take it along.
            if finish.is_some() {
                batch.append_audit(
                    &crate::manifest::Manifest::of(&row, &encoded.sha256).audit_entry(id, now),
                );
            }
            crashpoint!(inner, "seal-before-commit");
            let purged = inner.catalog.commit_checked(|c| {
                if c.purge_mark(id)?.is_some() {
                    return Ok((true, Batch::new()));
                }
                Ok((false, batch))
            })?;
            crashpoint!(inner, "seal-after-commit");
            if purged {
                inner.spool.remove(id, seq)?;
                return Err(EngineError::FailedPrecondition(format!(
                    "recording {id} is being purged"
                )));
            }
            Ok((encoded, row))
        })
        .await??;

    {
        let mut live = rec.live();
        for expected in &picked {
            let got = live.chunks.pop_front();
            debug_assert_eq!(
                got.as_ref(),
                Some(expected),
                "chunks change only by sealing"
            );
            live.unsealed_bytes -= expected.data_bytes as u64;
        }
        live.chunks.shrink();
        live.unsealed_since = (!live.chunks.is_empty()).then(|| inner.instant());
    }
    info!(
        recording = %id,
        sequence = seq,
        events = encoded.header.event_count,
        bytes = encoded.bytes.len(),
        r#final = encoded.header.r#final,
        "segment sealed"
    );
    seal.row = row;
    seal.prev_hash = Some(encoded.sha256);
    let _ = inner.upload_tx.send((id, seq));
    Ok(())
}
