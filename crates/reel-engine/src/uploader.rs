//! Uploading: spooled segments go to the primary store.
//!
//! For each queued segment: read the spool file and check it against the
//! catalog's SHA-256, put it under its deterministic key, commit in one
//! synced batch the new location and the end of its queue entry, and only
//! then delete the spool file. A crash anywhere repeats at most the put
//! (same key, same bytes: idempotent) or leaves a spool file that recovery
//! deletes.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reel_catalog::{Batch, RecordingId};
use reel_proto::v1::Location;
use reel_storage::{Role, keys};
use tokio::sync::{Semaphore, mpsc};
use tracing::{debug, warn};

use crate::error::{EngineError, Result};
use crate::{Inner, now_us};

const FIRST_RETRY: Duration = Duration::from_millis(200);
const MAX_RETRY: Duration = Duration::from_secs(10);

pub(crate) async fn run(inner: Arc<Inner>, mut queue: mpsc::UnboundedReceiver<(RecordingId, u64)>) {
    let permits = Arc::new(Semaphore::new(inner.config.upload_concurrency.max(1)));
    let in_flight: Arc<Mutex<HashSet<(RecordingId, u64)>>> = Arc::default();
    let mut shutdown = inner.shutdown.subscribe();
    let mut uploads = tokio::task::JoinSet::new();
    loop {
        while uploads.try_join_next().is_some() {}
        let item = tokio::select! {
            item = queue.recv() => match item { Some(item) => item, None => break },
            _ = shutdown.changed() => break,
        };
        if !in_flight.lock().expect("in-flight lock").insert(item) {
            continue;
        }
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let inner = inner.clone();
        let in_flight = in_flight.clone();
        uploads.spawn(async move {
            let _permit = permit;
            upload_until_done(&inner, item.0, item.1).await;
            in_flight.lock().expect("in-flight lock").remove(&item);
        });
    }
    // An upload cut short is redone from the catalog's queue at the next open.
    uploads.shutdown().await;
}

async fn upload_until_done(inner: &Arc<Inner>, id: RecordingId, seq: u64) {
    let mut shutdown = inner.shutdown.subscribe();
    let mut wait = FIRST_RETRY;
    loop {
        match upload(inner, id, seq).await {
            Ok(()) => return,
            Err(e) => {
                warn!(recording = %id, sequence = seq, error = %e, retry_in = ?wait, "segment upload failed");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => return,
                }
                wait = (wait * 2).min(MAX_RETRY);
            }
        }
    }
}

async fn upload(inner: &Arc<Inner>, id: RecordingId, seq: u64) -> Result<()> {
    let Some(segment) = inner.catalog(move |c| c.segment(id, seq)).await? else {
        // The recording is gone (never the case before purge exists).
        return dequeue(inner, id, seq).await;
    };
    if !segment.locations.contains(&(Location::Local as i32)) {
        return dequeue(inner, id, seq).await;
    }
    let bytes = inner.spool.read(id, seq)?.ok_or_else(|| {
        EngineError::Internal(format!(
            "segment {seq} of {id} is recorded as local but its spool file is missing"
        ))
    })?;
    if reel_log::sha256(&bytes)[..] != segment.sha256[..] {
        return Err(EngineError::Internal(format!(
            "spool file of segment {seq} of {id} does not match its SHA-256: local disk corruption"
        )));
    }
    let size = bytes.len();
    let store = inner.store(Role::Primary);
    store.put(&keys::segment(id, seq), bytes).await?;

    let mut stored = segment;
    stored.locations = vec![Location::Primary as i32];
    stored.uploaded_at_us = now_us();
    inner
        .catalog(move |c| {
            let mut batch = Batch::new();
            batch.put_segment(id, &stored).dequeue_upload(id, seq);
            c.commit(batch)
        })
        .await?;
    inner.spool.remove(id, seq)?;
    debug!(recording = %id, sequence = seq, bytes = size, store = %store.role(), "segment uploaded");
    Ok(())
}

async fn dequeue(inner: &Arc<Inner>, id: RecordingId, seq: u64) -> Result<()> {
    inner
        .catalog(move |c| {
            let mut batch = Batch::new();
            batch.dequeue_upload(id, seq);
            c.commit(batch)
        })
        .await
}
