//! Periodic work: the free-space check that protects acknowledged data,
//! sealing by age, closing recordings whose recorder never came back,
//! releasing journal files nothing needs any more, and the read cache's
//! eviction by age.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use reel_log::disk::free_bytes;
use tracing::{error, info, warn};

use crate::{Inner, sealer};

const TICK: Duration = Duration::from_millis(250);
/// Spool key files are pruned every this many ticks (10 s).
const KEY_PRUNE_TICKS: u64 = 40;
/// The read cache evicts by age every this many ticks (10 s).
const CACHE_EVICT_TICKS: u64 = 40;

pub(crate) async fn run(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(TICK);
    let mut closes = tokio::task::JoinSet::new();
    let mut ticks = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = inner.stopped() => break,
        }
        while closes.try_join_next().is_some() {}
        check_disk(&inner);
        request_age_seals(&inner);
        close_abandoned(&inner, &mut closes);
        release_journal(&inner).await;
        ticks += 1;
        if ticks.is_multiple_of(CACHE_EVICT_TICKS) && inner.cache.enabled() {
            let cache = inner.clone();
            let now_us = inner.now_us();
            let _ = tokio::task::spawn_blocking(move || cache.cache.evict(now_us)).await;
        }
        if ticks.is_multiple_of(KEY_PRUNE_TICKS) {
            let pruning = inner.clone();
            let pruned =
                tokio::task::spawn_blocking(move || crate::key_objects::prune_spooled(&pruning))
                    .await;
            if let Ok(Err(e)) = pruned {
                tracing::warn!(error = %e, "spool key files: pruning failed; will retry");
            }
        }
    }
    closes.shutdown().await;
}

pub(crate) fn check_disk(inner: &Inner) {
    let min = inner.config.min_free_disk_bytes;
    let Some(free) = free_bytes(&inner.config.data_dir) else {
        return;
    };
    let low = free < min;
    if low && inner.cache.enabled() {
        // The cache holds only copies: it goes before any ingest is refused.
        inner.cache.clear();
    }
    let was = inner.low_disk_flag.swap(low, Ordering::Relaxed);
    let mut why = inner.low_disk.lock().expect("low disk lock");
    if low {
        *why = Some(format!(
            "local disk almost full: {} free in {}, below the reserve of {}; new events are refused until space \
             returns (every acknowledged event is safe)",
            human_bytes(free),
            inner.config.data_dir.display(),
            human_bytes(min)
        ));
        if !was {
            warn!(
                free,
                reserve = min,
                "local disk below its reserve: refusing ingest"
            );
        }
    } else {
        *why = None;
        if was {
            info!(
                free,
                "local disk space back above its reserve: ingest resumes"
            );
        }
    }
}

fn human_bytes(n: u64) -> String {
    const MIB: f64 = (1u64 << 20) as f64;
    format!("{:.1} MiB", n as f64 / MIB)
}

fn request_age_seals(inner: &Inner) {
    for rec in inner.open_recordings() {
        let mut live = rec.live();
        if !live.closing && sealer::is_due(&live, &inner.config) {
            rec.request_seal(&mut live);
        }
    }
}

fn close_abandoned(inner: &Arc<Inner>, closes: &mut tokio::task::JoinSet<()>) {
    let timeout = inner.config.detached_timeout;
    for rec in inner.open_recordings() {
        {
            let mut live = rec.live();
            let settled = live.durable >= live.accepted || live.poisoned.is_some();
            let abandoned = !live.attached
                && live
                    .detached_since
                    .is_some_and(|t| inner.config.clock.elapsed(t) >= timeout);
            if live.closing || !abandoned || !settled {
                continue;
            }
            live.closing = true;
        }
        let inner = inner.clone();
        closes.spawn(async move {
            info!(recording = %rec.id, "closing a recording whose recorder did not come back");
            if let Err(e) = sealer::finish(&inner, &rec, 0, "interrupted").await {
                error!(recording = %rec.id, error = %e, "closing an abandoned recording failed; will retry");
                rec.live().closing = false;
            }
        });
    }
}

/// Deletes journal files older than every chunk still unsealed.
async fn release_journal(inner: &Arc<Inner>) {
    // Read the current file first: whatever is appended from now on lands in
    // it or a later one.
    let mut keep_from = inner.journal.current_file();
    for rec in inner.open_recordings() {
        if let Some(c) = rec.live().chunks.front() {
            keep_from = keep_from.min(c.file as u64);
        }
    }
    let task = inner.clone();
    match tokio::task::spawn_blocking(move || task.journal.release_before(keep_from)).await {
        Ok(Ok(0)) => {}
        Ok(Ok(freed)) => tracing::debug!(freed, "journal files released"),
        Ok(Err(e)) => error!(error = %e, "releasing journal files failed"),
        Err(e) => error!(error = %e, "journal release task failed"),
    }
}
