//! Start-up recovery: bring back the state a crash (or a clean stop) left.
//!
//! 1. The catalog knows every recording; the open ones come back detached,
//!    with their sealed position (`next_event_index`) and chain head.
//! 2. The journal is replayed: each record of an open recording beyond its
//!    sealed position becomes a chunk again. A record that repeats indices
//!    supersedes the earlier one (a batch resent after a failed write); a
//!    jump in indices means records were destroyed (corruption) and is
//!    written to the recording's damage list.
//! 3. Spool files the catalog does not name as local (a crash between
//!    writing and committing a seal, or between an upload's commit and the
//!    delete) are removed.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use reel_catalog::{Catalog, RecordingId};
use reel_keys::KeyProvider;
use reel_log::{Journal, JournalOptions, Position, RecoveryReport};
use reel_proto::v1::{Location, RecordingRow, RecordingState};
use tracing::{error, info, warn};

use crate::EngineConfig;
use crate::error::{EngineError, Result};
use crate::recording::{AckContext, Chunk, Chunks, OpenRecording, recording_key};
use crate::spool::Spool;

pub(crate) struct Recovered {
    pub journal: Journal,
    pub catalog: Catalog,
    pub spool: Spool,
    pub open: HashMap<RecordingId, Arc<OpenRecording>>,
    pub report: RecoveryReport,
    pub upload_queue: Vec<(RecordingId, u64)>,
}

/// What replay rebuilds for one open recording.
struct Replay {
    row: RecordingRow,
    chunks: Chunks,
    last_time_us: u64,
    damage: Vec<String>,
}

/// Fails, naming the recording, when an open recording's data key does not
/// open with the keys held (a master key not given): its journal records
/// could neither be sealed nor read.
pub(crate) fn recover(
    config: &EngineConfig,
    keys: &dyn KeyProvider,
    acks: &Arc<AckContext>,
) -> Result<Recovered> {
    let catalog = Catalog::open(&config.catalog_dir())?;
    let mut replays: HashMap<RecordingId, Replay> = HashMap::new();
    for row in catalog.recordings_in_state(RecordingState::Open)? {
        let Ok(id) = RecordingId::from_slice(&row.id) else {
            continue;
        };
        if catalog.purge_mark(id)?.is_some() {
            // Being purged: its journal events are dropped with it.
            continue;
        }
        replays.insert(
            id,
            Replay {
                last_time_us: row.last_time_us,
                row,
                chunks: Chunks::default(),
                damage: Vec::new(),
            },
        );
    }

    let options = JournalOptions {
        file_size: config.journal_file_size,
        // A batch and its slack, never beyond what readers accept (reeld's
        // configuration is checked against it; an embedding is capped).
        max_record_bytes: (config.max_batch_bytes as u64)
            .saturating_add(reel_log::limits::RECORD_SLACK_BYTES)
            .min(reel_log::limits::MAX_RECORD_BYTES) as u32,
        ..JournalOptions::new(config.journal_dir())
    };
    let now_us = config.clock.now_us();
    let (journal, report) = Journal::open(options, |pos, payload| {
        replay_record(&mut replays, pos, &payload, now_us)
    })?;
    for d in &report.corrupt {
        error!(
            file = d.file,
            offset = d.offset,
            len = d.len,
            reason = %d.reason,
            "journal corruption: acknowledged events may be lost; affected recordings are marked damaged"
        );
    }

    let mut open = HashMap::new();
    for (id, replay) in replays {
        let mut row = replay.row;
        if !replay.damage.is_empty() {
            for d in &replay.damage {
                error!(recording = %id, damage = %d, "recording damaged");
            }
            row.damage.extend(replay.damage);
            catalog.put_recording(&row)?;
        }
        let key = recording_key(keys, id, &row)?;
        let rec = OpenRecording::new(id, row, false, config.clock.instant(), key, acks.clone());
        {
            let mut live = rec.live();
            if let Some(last) = replay.chunks.back() {
                live.durable = last.end();
                live.accepted = last.end();
                live.durable_time_us = replay.last_time_us;
                live.unsealed_bytes = replay.chunks.iter().map(|c| c.data_bytes as u64).sum();
                live.unsealed_since = Some(config.clock.instant());
            }
            live.chunks = replay.chunks;
            if live.unsealed_bytes >= config.segment_target_bytes {
                rec.request_seal(&mut live);
            }
            info!(recording = %id, durable = live.durable, unsealed = live.chunks.len(), "open recording recovered");
        }
        open.insert(id, rec);
    }
    let spool = Spool::open(config.spool_dir())?;
    reconcile_spool(&catalog, &spool)?;
    let upload_queue = catalog.upload_queue()?;
    info!(
        journal_records = report.records,
        open_recordings = open.len(),
        pending_uploads = upload_queue.len(),
        "recovery done"
    );
    Ok(Recovered {
        journal,
        catalog,
        spool,
        open,
        report,
        upload_queue,
    })
}

/// Fails early, with the path, when the data directory cannot be used.
pub(crate) fn prepare_data_dir(dir: &Path) -> Result<()> {
    let bad = |e: std::io::Error| EngineError::Io {
        path: dir.display().to_string(),
        source: std::io::Error::new(e.kind(), format!("data directory is not writable: {e}")),
    };
    std::fs::create_dir_all(dir).map_err(bad)?;
    let probe = dir.join(".write-probe");
    std::fs::write(&probe, b"probe").map_err(bad)?;
    std::fs::remove_file(&probe).map_err(bad)?;
    Ok(())
}

/// `now_us`: when this recovery runs, for the damage notes.
fn replay_record(
    replays: &mut HashMap<RecordingId, Replay>,
    pos: Position,
    payload: &[u8],
    now_us: i64,
) {
    // Decoded and checked (id, event range, times): a record that passes
    // its checksum but not this is skipped, never trusted.
    let entry = match reel_log::validate::decode_journal_entry(payload) {
        Ok(e) => e,
        Err(e) => {
            error!(file = pos.file, offset = pos.offset, error = %e, "journal record passes its checksum but is not a valid entry; skipped");
            return;
        }
    };
    let Ok(id) = RecordingId::from_slice(&entry.recording_id) else {
        error!(
            file = pos.file,
            offset = pos.offset,
            "journal record with a malformed recording id"
        );
        return;
    };
    // Closed recordings are fully sealed; their records are history.
    let Some(replay) = replays.get_mut(&id) else {
        return;
    };
    // What a sealed record states in the clear is enough here; its events
    // are opened (and checked against it) when they are sealed or read.
    let summary = reel_log::validate::entry_summary(&entry);
    if summary.count == 0 {
        return;
    }
    let first = entry.first_index;
    let count = summary.count;
    let end = first + count as u64;
    let sealed = replay.row.next_event_index;
    if end <= sealed {
        return;
    }
    if first < sealed {
        warn!(recording = %id, first, end, sealed, "journal record straddles the sealed position; skipped");
        return;
    }
    // A later record for the same indices supersedes an earlier one.
    while replay.chunks.back().is_some_and(|c| c.first_index >= first) {
        replay.chunks.pop_back();
    }
    if replay.chunks.back().is_some_and(|c| c.end() > first) {
        warn!(recording = %id, first, "journal record overlaps part of an earlier one; skipped");
        return;
    }
    let expected = replay.chunks.back().map_or(sealed, |c| c.end());
    if first > expected {
        replay.damage.push(format!(
            "events {expected}..{first} were lost to local journal corruption (recovered at {now_us})"
        ));
    }
    replay.last_time_us = summary.last_time_us;
    replay
        .chunks
        .push_back(Chunk::new(pos, first, count, summary.data_bytes as u32));
}

/// Removes the spool files the catalog does not need (a seal cut before its
/// commit, an upload cut after it, an import never committed). A catalog
/// without any recording is a new or a lost one: then the spool may hold
/// the only copy of segments never uploaded, which `reel rebuild-catalog`
/// reads, and nothing is removed.
fn reconcile_spool(catalog: &Catalog, spool: &Spool) -> Result<()> {
    if catalog.knows_no_recording()? {
        let kept = spool.list()?.len();
        if kept > 0 {
            warn!(
                files = kept,
                "the catalog holds no recording: spool files kept for reel rebuild-catalog"
            );
        }
        return Ok(());
    }
    for (id, seq) in spool.list()? {
        let keep = catalog
            .segment(id, seq)?
            .is_some_and(|s| s.locations.contains(&(Location::Local as i32)));
        if !keep {
            info!(recording = %id, sequence = seq, "removing a spool file the catalog does not need");
            spool.remove(id, seq)?;
        }
    }
    for (id, seq) in catalog.upload_queue()? {
        if let Some(s) = catalog.segment(id, seq)?
            && s.locations == [Location::Local as i32]
            && !spool.contains(id, seq)
        {
            error!(recording = %id, sequence = seq, "segment recorded as local has no spool file");
        }
    }
    Ok(())
}
