//! Keyframes: what a recording looked like at a moment (for a terminal, its
//! screen), computed by a player from the events and kept in the catalog so
//! that a later view starts there instead of replaying from the beginning.
//!
//! A keyframe holds what the recording shows, so it is sealed with the
//! recording's data key like its blocks (bound to the recording and the
//! moment: one moved elsewhere does not open), and a purge deletes them
//! with the recording's segment rows. They are a cache: one that does not
//! open is passed over (and computed again by whoever asks), and a catalog
//! rebuilt from the stores has none.

use std::sync::Arc;

use reel_catalog::{Batch, RecordingId};
use tracing::warn;

use crate::Inner;
use crate::error::{EngineError, Result};
use crate::recording::recording_key;

/// The largest keyframe kept: a screen of the largest size a player allows,
/// redrawn with a colour change in every cell, is well under it.
pub const MAX_KEYFRAME_BYTES: usize = 8 << 20;

/// Keeps `bytes` as recording `id`'s keyframe at `time_us`. Nothing is kept
/// for a recording purged meanwhile.
pub(crate) async fn put(
    inner: &Arc<Inner>,
    id: RecordingId,
    time_us: u64,
    bytes: Vec<u8>,
) -> Result<()> {
    if bytes.len() > MAX_KEYFRAME_BYTES {
        return Err(EngineError::InvalidArgument(format!(
            "a keyframe of {} bytes is over the limit of {MAX_KEYFRAME_BYTES}",
            bytes.len()
        )));
    }
    let row = inner
        .catalog(move |c| c.live_recording(id))
        .await?
        .ok_or(EngineError::NotFound(id))?;
    let sealed = match recording_key(inner.keys.as_ref(), id, &row)? {
        Some(key) => key.seal_keyframe(time_us, &bytes)?,
        None => bytes,
    };
    inner
        .catalog(move |c| {
            // Looked at under the commit lock: a purge's mark either
            // comes after this put (and its deletion of the segment rows
            // takes the keyframe too) or is seen here.
            c.commit_checked(|c| {
                let mut batch = Batch::new();
                if c.live_recording(id)?.is_some() {
                    batch.put_keyframe(id, time_us, sealed);
                }
                Ok(((), batch))
            })
        })
        .await
}

/// Recording `id`'s latest keyframe at or before `time_us`, opened, with
/// its time; `None` when there is none, or it does not open.
pub(crate) async fn at_or_before(
    inner: &Arc<Inner>,
    id: RecordingId,
    time_us: u64,
) -> Result<Option<(u64, Vec<u8>)>> {
    let (row, found) = inner
        .catalog(move |c| Ok((c.live_recording(id)?, c.keyframe_at_or_before(id, time_us)?)))
        .await?;
    let row = row.ok_or(EngineError::NotFound(id))?;
    let Some((at, bytes)) = found else {
        return Ok(None);
    };
    match recording_key(inner.keys.as_ref(), id, &row)? {
        None => Ok(Some((at, bytes))),
        Some(key) => match key.open_keyframe(at, &bytes) {
            Some(plain) => Ok(Some((at, plain))),
            None => {
                warn!(recording = %id, at_us = at, "a keyframe does not open: passed over");
                Ok(None)
            }
        },
    }
}
