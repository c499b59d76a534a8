//! The persistent deletion queue's worker: objects the catalog no longer
//! points at (the old segment copies of a recombined recording) are deleted
//! from their store, then their queue entry goes. An entry is removed only
//! after its delete succeeded (or found nothing), so a crash or a store
//! outage only delays it; deleting twice is harmless.

use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path;
use reel_catalog::Batch;
use tracing::{debug, warn};

use crate::Inner;
use crate::copies::role_of;
use crate::error::Result;

/// How often the queue is looked at without being woken.
const INTERVAL: Duration = Duration::from_secs(5);

pub(crate) async fn run(inner: Arc<Inner>) {
    let mut last_shred = None;
    loop {
        if let Err(e) = drain(&inner).await {
            warn!(error = %e, "deletion queue: will retry");
        }
        // Purges cut short (a crash, a store down) go on from their mark.
        if let Err(e) = crate::purger::resume(&inner).await {
            warn!(error = %e, "purge: will retry");
        }
        if let Err(e) = crate::purger::shred_pass(&inner, &mut last_shred).await {
            warn!(error = %e, "purged keys: the catalog's rewrite will be retried");
        }
        tokio::select! {
            _ = tokio::time::sleep(INTERVAL) => {}
            _ = inner.deleter_wake.notified() => {}
            _ = inner.stopped() => return,
        }
    }
}

/// Deletes what the queue holds; a store that fails is left for later.
/// Returns how many objects were deleted.
pub(crate) async fn drain(inner: &Arc<Inner>) -> Result<u64> {
    let queue = inner.catalog(|c| c.deletion_queue()).await?;
    let mut failed = [false, false];
    let mut deleted = 0;
    for (location, key, why) in queue {
        let Some(role) = role_of(location as i32) else {
            continue;
        };
        let slot = role as usize;
        if failed[slot] || !inner.store(role).health().state().is_usable() {
            continue;
        }
        match inner.store(role).delete(&Path::from(key.as_str())).await {
            Ok(()) => {
                crashpoint!(inner, "delete-after-delete");
                let done_key = key.clone();
                inner
                    .catalog(move |c| {
                        let mut batch = Batch::new();
                        batch.dequeue_deletion(location, &done_key);
                        c.commit(batch)
                    })
                    .await?;
                deleted += 1;
                debug!(store = %role, key, why, "deleted");
            }
            Err(e) => {
                warn!(store = %role, key, error = %e, "delete failed; will retry");
                failed[slot] = true;
            }
        }
    }
    Ok(deleted)
}
