//! Archives: recordings taken out of Reel with their catalog entries (see
//! reel-log's `archive` for the file), and brought back with their ids and
//! metadata.
//!
//! Export reads each closed recording's rows and segment objects (checked
//! against their SHA-256) from wherever they are. Import checks every
//! segment against its row and its own header, writes the segments to the
//! spool and commits the rows in one batch, so the uploader stores them on
//! the primary like freshly sealed segments (and, being several, the
//! compactor recombines them). An import cut short leaves nothing: its
//! spool files go, no row was committed.

use std::sync::Arc;

use bytes::Bytes;
use reel_catalog::{Batch, RecordingId};
use reel_proto::v1::{ArchiveRecording, AuditEntry, Location, RecordingState};

use crate::Inner;
use crate::config::EngineConfig;
use crate::copies::read_good_copy;
use crate::error::{EngineError, Result};

/// A closed recording's rows, for the archive.
pub(crate) async fn entry(inner: &Arc<Inner>, id: RecordingId) -> Result<ArchiveRecording> {
    let (row, segments) = inner
        .catalog(move |c| {
            let row = c.live_recording(id)?;
            Ok((row, c.segments(id)?))
        })
        .await?;
    let row = row.ok_or(EngineError::NotFound(id))?;
    if row.state != RecordingState::Closed as i32 {
        return Err(EngineError::FailedPrecondition(format!(
            "recording {id} is still open; only closed recordings are archived"
        )));
    }
    Ok(ArchiveRecording {
        row: Some(row),
        segments,
    })
}

/// One segment object of an archived recording, checked. A segment that
/// moved while it was read (its spool file removed once a store held it,
/// its copies folded into the combined object) is looked up once more.
pub(crate) async fn segment(inner: &Arc<Inner>, id: RecordingId, seq: u64) -> Result<Bytes> {
    let row = || async {
        inner
            .catalog(move |c| c.segment(id, seq))
            .await?
            .ok_or(EngineError::NotFound(id))
    };
    let seg = row().await?;
    match read_good_copy(inner, id, &seg).await {
        Ok(bytes) => Ok(bytes),
        Err(first) => {
            let again = row().await?;
            if again.locations == seg.locations && again.combined_offset == seg.combined_offset {
                return Err(first);
            }
            read_good_copy(inner, id, &again).await
        }
    }
}

/// An import in progress: one recording, its segments arriving in order.
pub struct Import {
    inner: Arc<Inner>,
    id: RecordingId,
    rec: ArchiveRecording,
    written: Vec<u64>,
    by: String,
}

pub(crate) async fn begin(inner: &Arc<Inner>, rec: ArchiveRecording, by: String) -> Result<Import> {
    // Rows are checked before anything: every range and sum a reader makes
    // from them stays inside its object and does not overflow.
    reel_log::validate::check_archive_recording(&rec)
        .map_err(|e| EngineError::InvalidArgument(format!("archived recording: {e}")))?;
    let row = rec.row.clone().ok_or_else(|| {
        EngineError::InvalidArgument("an archived recording without its row".into())
    })?;
    let id = RecordingId::from_slice(&row.id)?;
    let exists = inner
        .catalog(move |c| Ok(c.recording(id)?.is_some()))
        .await?;
    if exists {
        return Err(EngineError::FailedPrecondition(format!(
            "recording {id} is already in Reel; it was not imported again"
        )));
    }
    // An encrypted recording is read with its data key, wrapped by the
    // master key of the server that archived it: one this server does not
    // hold would import a recording nobody can read.
    if let Err(e) = crate::recording::recording_key(inner.keys.as_ref(), id, &row) {
        return Err(EngineError::FailedPrecondition(format!(
            "{e}: import it on a server given the master key it was archived under (REEL_MASTER_KEY)"
        )));
    }
    Ok(Import {
        inner: inner.clone(),
        id,
        rec,
        written: Vec::new(),
        by,
    })
}

impl Import {
    /// The largest segment object an engine with `config` writes
    /// (`reel_log::limits::segment_object_bound` of its segment target and
    /// its largest journal record, a batch and its slack). An archive's
    /// segment frames are bounded by it.
    pub fn max_segment_bytes(config: &EngineConfig) -> u64 {
        reel_log::limits::segment_object_bound(
            config.segment_target_bytes,
            (config.max_batch_bytes as u64).saturating_add(reel_log::limits::RECORD_SLACK_BYTES),
        )
        .min(reel_log::limits::MAX_SEGMENT_BYTES)
    }

    pub fn id(&self) -> RecordingId {
        self.id
    }

    /// The next segment object, checked whole (header, every block, every
    /// event) and against its row, field by field, into the spool.
    pub fn segment(&mut self, bytes: &[u8]) -> Result<()> {
        let i = self.written.len();
        let Some(seg) = self.rec.segments.get(i) else {
            return Err(EngineError::InvalidArgument(format!(
                "recording {}: more segments than its rows name",
                self.id
            )));
        };
        let bad =
            |what: String| EngineError::InvalidArgument(format!("recording {}: {what}", self.id));
        if reel_log::sha256(bytes)[..] != seg.sha256[..] {
            return Err(bad(format!(
                "segment {} does not match its SHA-256",
                seg.sequence
            )));
        }
        let checked = reel_log::check_segment(bytes)
            .map_err(|e| bad(format!("segment {}: {e}", seg.sequence)))?;
        if checked.header.recording_id != self.id.to_bytes() {
            return Err(bad(format!("segment {} belongs elsewhere", seg.sequence)));
        }
        reel_log::validate::check_row_matches_segment(seg, &checked, bytes.len() as u64)
            .map_err(|e| bad(format!("segments[{i}].{e}")))?;
        self.inner.spool.write(self.id, seg.sequence, bytes)?;
        self.written.push(seg.sequence);
        Ok(())
    }

    /// Commits the recording once every segment is in; it lists and plays
    /// from here, and uploads follow.
    pub async fn finish(mut self) -> Result<RecordingId> {
        if self.written.len() != self.rec.segments.len() {
            let e = EngineError::InvalidArgument(format!(
                "recording {}: {} of {} segments in the archive",
                self.id,
                self.written.len(),
                self.rec.segments.len()
            ));
            self.abort();
            return Err(e);
        }
        let id = self.id;
        let mut row = self.rec.row.take().expect("checked at begin");
        row.combined_size = 0;
        row.combined_sha256.clear();
        let segments = std::mem::take(&mut self.rec.segments);
        let by = self.by.clone();
        let sequences: Vec<u64> = segments.iter().map(|s| s.sequence).collect();
        let clock = self.inner.config.clock.clone();
        let committed = self
            .inner
            .catalog(move |c| {
                c.commit_checked(|c| {
                    let mut batch = Batch::new();
                    if c.recording(id)?.is_some() {
                        return Ok((false, batch));
                    }
                    for mut seg in segments {
                        seg.locations = vec![Location::Local as i32];
                        seg.uncertain.clear();
                        seg.combined_offset = None;
                        seg.secondary_combined = false;
                        seg.uploaded_at_us = 0;
                        batch.put_segment(id, &seg).enqueue_upload(id, seg.sequence);
                    }
                    if sequences.len() > 1 {
                        batch.mark_recombine(id, "segmented");
                    }
                    batch.put_recording(&row).append_audit(&AuditEntry {
                        at_us: clock.now_us(),
                        by,
                        action: "import".into(),
                        recordings: vec![id.to_string()],
                        reason: "imported from an archive".into(),
                        ..Default::default()
                    });
                    Ok((true, batch))
                })
            })
            .await;
        match committed {
            Ok(true) => {
                for seq in std::mem::take(&mut self.written) {
                    let _ = self.inner.upload_tx.send((id, seq));
                }
                Ok(id)
            }
            Ok(false) => {
                self.abort();
                Err(EngineError::FailedPrecondition(format!(
                    "recording {id} is already in Reel; it was not imported again"
                )))
            }
            Err(e) => {
                self.abort();
                Err(e)
            }
        }
    }

    /// Drops what an unfinished import wrote.
    pub fn abort(&mut self) {
        for seq in self.written.drain(..) {
            let _ = self.inner.spool.remove(self.id, seq);
        }
    }
}

impl Drop for Import {
    fn drop(&mut self) {
        self.abort();
    }
}
