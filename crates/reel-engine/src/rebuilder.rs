//! Rebuilding the catalog from the stores alone, for the day the RocksDB
//! directory is lost: every object is self-describing.
//!
//! Both stores and the spool are read. A segment object gives its own row
//! (its header has the recording's metadata, its events, times and blocks;
//! its SHA-256 is computed from the bytes); a combined object gives, through
//! its index, where each of its segments is, and each segment is read from
//! its range. A recording's row is the sum of its segments: closed when its
//! final segment is there (with the duration it carries), otherwise closed
//! as `interrupted` (its journal tail is not in the stores). What the
//! catalog alone knew is lost: legal holds, audit entries not yet copied
//! to a store (the log comes back from the stores' copies), purges in
//! progress (their recordings come back) and copies a failed put may have
//! left (they are found again as stray copies by `verify`).
//!
//! With the catalog gone the stores are the only truth, and anyone with
//! write access to a bucket could have put objects there: a segment object
//! is adopted only when its header's signature checks with this server's
//! key. Unsigned segments (sealed before Reel signed them, or forged) are
//! named and left out unless the caller accepts them (`reel rebuild-catalog
//! --accept-unsigned`, for data older than signing).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use reel_catalog::{Batch, RecordingId};
use reel_proto::v1::{AuditEntry, Location, RecordingRow, RecordingState, SegmentRow};
use reel_storage::{Role, keys};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::Inner;
use crate::copies::location_of;
use crate::error::{EngineError, Result};
use crate::manifest::Manifest;
use crate::verifier::VerifyProgress;

/// Segment objects read at once.
const READS_IN_FLIGHT: usize = 16;

/// What a rebuild found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RebuildReport {
    pub recordings: u64,
    pub segments: u64,
    pub objects_read: u64,
    pub bytes_read: u64,
    /// Audit entries brought back from the stores' copies of the log.
    pub audit_entries: u64,
    /// Objects that are not valid Reel objects, whose signature does not
    /// check, or that contradict each other.
    pub skipped: Vec<String>,
    /// Unsigned segments adopted (only with `accept_unsigned`).
    pub unsigned_segments: u64,
    /// Recordings found without their final segment that the audit log's
    /// manifests say were closed: their tails were removed from the stores.
    pub tails_removed: Vec<String>,
}

/// The damage noted on a recording rebuilt without its final segment and
/// with no close in the audit log.
const NO_FINAL_SEGMENT: &str =
    "rebuilt from the stores without its last events (not uploaded when the catalog was lost)";

/// One segment as found, with every place it was found.
struct Found {
    row: SegmentRow,
    header: reel_proto::v1::SegmentHeader,
}

pub(crate) async fn rebuild(
    inner: &Arc<Inner>,
    progress: &VerifyProgress,
    accept_unsigned: bool,
) -> Result<RebuildReport> {
    let trust = Trust {
        keys: vec![inner.keys.public_key()],
        accept_unsigned,
    };
    let mirror = inner.mirrored();
    let empty = inner.catalog(|c| c.knows_no_recording()).await?;
    if !empty {
        return Err(EngineError::FailedPrecondition(
            "the catalog is not empty: rebuild-catalog only fills a new catalog (move the old one away first)".into(),
        ));
    }
    let mut report = RebuildReport::default();
    progress.set_phase("listing stores", 2);
    let mut objects: Vec<(Role, String, u64)> = Vec::new();
    for role in [Role::Primary, Role::Secondary] {
        let listed = inner
            .store(role)
            .list(Some(&object_store::path::Path::from("recordings")))
            .await
            .map_err(|e| {
                EngineError::Unavailable(format!(
                    "cannot rebuild: listing the {role} store failed: {e}"
                ))
            })?;
        objects.extend(listed.into_iter().map(|(k, s)| (role, k.to_string(), s)));
        progress.advance();
    }
    let spooled = inner.spool.list()?;
    progress.set_phase("reading objects", (objects.len() + spooled.len()) as u64);

    // recording -> sequence -> what was found
    let mut found: BTreeMap<RecordingId, BTreeMap<u64, Found>> = BTreeMap::new();
    let mut combined: BTreeMap<RecordingId, (u64, Vec<u8>)> = BTreeMap::new();
    // Combined objects one at a time (each is many range reads); segment
    // objects READS_IN_FLIGHT at a time, as a listing of 10^5 small objects
    // would otherwise wait on one round trip each.
    for (role, key, size) in objects
        .iter()
        .filter(|(_, k, _)| k.ends_with("/recording.reel"))
    {
        progress.advance();
        let path = object_store::path::Path::from(key.as_str());
        match read_combined(inner, *role, &path, *size, &trust, &mut report).await {
            Ok((id, sha, segs)) => {
                combined.insert(id, (*size, sha));
                for (bytes, mut row) in segs {
                    row.locations = vec![location_of(*role) as i32];
                    row.secondary_combined = *role == Role::Secondary;
                    add(&mut found, id, row, &bytes, mirror, &mut report);
                }
            }
            Err(e) => report.skipped.push(format!("{role} {key}: {e}")),
        }
    }
    // An object larger than any segment Reel writes is not read whole: it
    // is not a segment, and could be larger than memory.
    for (role, key, size) in objects.iter().filter(|(_, k, s)| {
        !k.ends_with("/recording.reel") && *s > reel_log::limits::MAX_SEGMENT_BYTES
    }) {
        progress.advance();
        report.skipped.push(format!(
            "{role} {key}: {size} bytes, larger than any segment ({} bytes)",
            reel_log::limits::MAX_SEGMENT_BYTES
        ));
    }
    let mut reads = futures::stream::iter(
        objects
            .iter()
            .filter(|(_, k, s)| {
                !k.ends_with("/recording.reel") && *s <= reel_log::limits::MAX_SEGMENT_BYTES
            })
            .map(|(role, key, size)| async move {
                let path = object_store::path::Path::from(key.as_str());
                let got = inner.store(*role).get(&path, Some(*size)).await;
                (*role, key, got)
            }),
    )
    .buffer_unordered(READS_IN_FLIGHT);
    while let Some((role, key, got)) = reads.next().await {
        progress.advance();
        let bytes = match got {
            Ok(b) => b,
            Err(e) => {
                report.skipped.push(format!("{role} {key}: {e}"));
                continue;
            }
        };
        report.objects_read += 1;
        report.bytes_read += bytes.len() as u64;
        match segment_row(&bytes, &trust, &mut report.unsigned_segments) {
            Ok((id, mut row)) => {
                row.locations = vec![location_of(role) as i32];
                add(&mut found, id, row, &bytes, mirror, &mut report);
            }
            Err(e) => report.skipped.push(format!("{role} {key}: {e}")),
        }
    }
    drop(reads);
    for (id, seq) in spooled {
        progress.advance();
        let Some(bytes) = inner.spool.read(id, seq)? else {
            continue;
        };
        match segment_row(&bytes, &trust, &mut report.unsigned_segments) {
            Ok((sid, mut row)) if sid == id => {
                row.locations = vec![Location::Local as i32];
                add(&mut found, id, row, &bytes, mirror, &mut report);
            }
            Ok(_) => report
                .skipped
                .push(format!("spool {id}-{seq}: names another recording")),
            Err(e) => report.skipped.push(format!("spool {id}-{seq}: {e}")),
        }
    }

    progress.set_phase("writing the catalog", found.len() as u64);
    let mut unfinished = Vec::new();
    for (id, segments) in found {
        progress.advance();
        let mut batch = Batch::new();
        let mut row = recording_row(id, &segments, combined.get(&id));
        if !row.damage.is_empty() && row.damage[0] == NO_FINAL_SEGMENT {
            unfinished.push(id);
        }
        // An encrypted recording is adopted with its data key or not at
        // all: without it, none of its bytes can ever be read.
        if segments.values().any(|f| f.header.encrypted) {
            match crate::key_objects::find(inner, id)
                .await
                .or_else(|| crate::key_objects::spooled(inner, id))
            {
                Some(wrapped) => row.wrapped_key = wrapped,
                None => {
                    report.skipped.push(format!(
                        "recording {id}: encrypted, and no key object in either store opens with this server's keys \
                         (purged, its data key destroyed; or its master key is not given); its {} segments are not adopted",
                        segments.len()
                    ));
                    continue;
                }
            }
        }
        let on = |l: Location| {
            segments
                .values()
                .any(|f| f.row.locations.contains(&(l as i32)) && f.row.combined_offset.is_none())
        };
        for f in segments.values() {
            batch.put_segment(id, &f.row);
            if f.row.locations.contains(&(Location::Local as i32)) {
                batch.enqueue_upload(id, f.row.sequence);
            }
            // Stray segment objects beside a combined object (a crash
            // between recombination and its deletions) go.
            if f.row.combined_offset.is_some() {
                for (role, loc) in [
                    (Role::Primary, Location::Primary),
                    (Role::Secondary, Location::Secondary),
                ] {
                    // Mirror mode's secondary copy, when it is a segment
                    // object, is named, not stray.
                    if loc == Location::Secondary
                        && f.row.locations.contains(&(loc as i32))
                        && !f.row.secondary_combined
                    {
                        continue;
                    }
                    let key = keys::segment(id, f.row.sequence).to_string();
                    if objects.iter().any(|(r, k, _)| *r == role && *k == key) {
                        batch.enqueue_deletion(loc, &key, "superseded by the combined object");
                    }
                }
            }
        }
        let reason = match (on(Location::Primary), on(Location::Secondary)) {
            (true, true) => Some("split"),
            (false, true) => Some("secondary"),
            (true, false) if segments.len() > 1 && row.combined_size == 0 => Some("segmented"),
            _ => None,
        };
        if let Some(reason) = reason {
            batch.mark_recombine(id, reason);
        }
        report.recordings += 1;
        report.segments += segments.len() as u64;
        batch.put_recording(&row);
        inner.catalog(move |c| c.commit(batch)).await?;
    }
    progress.set_phase("audit log", 1);
    report.audit_entries = crate::auditlog::restore(inner).await?;
    progress.advance();
    report.tails_removed = removed_tails(inner, unfinished).await?;
    let summary = format!(
        "catalog rebuilt from the stores: {} recordings, {} segments, {} audit entries",
        report.recordings, report.segments, report.audit_entries
    );
    let clock = inner.config.clock.clone();
    inner
        .catalog(move |c| {
            let mut batch = Batch::new();
            batch.append_audit(&AuditEntry {
                at_us: clock.now_us(),
                by: "rebuild-catalog".into(),
                action: "rebuild".into(),
                recordings: Vec::new(),
                reason: summary,
                ..Default::default()
            });
            c.commit(batch)
        })
        .await?;
    info!(
        recordings = report.recordings,
        segments = report.segments,
        skipped = report.skipped.len(),
        "catalog rebuilt"
    );
    for s in &report.skipped {
        warn!(object = %s, "not rebuilt");
    }
    inner.deleter_wake.notify_one();
    Ok(report)
}

/// Which segment objects may be adopted.
struct Trust {
    /// The keys whose signatures are accepted: this server's.
    keys: Vec<reel_keys::PublicKey>,
    /// Adopt unsigned segments too (counted in `unsigned`).
    accept_unsigned: bool,
}

/// A segment object's recording and catalog row (locations left empty),
/// from the object checked whole (one event at a time) and its signature
/// checked against `trust`; an unsigned one adopted adds 1 to `unsigned`.
fn segment_row(
    bytes: &[u8],
    trust: &Trust,
    unsigned: &mut u64,
) -> std::result::Result<(RecordingId, SegmentRow), String> {
    match reel_log::verify_signature(bytes, &trust.keys) {
        Ok(reel_log::Signer::Key(_)) => {}
        Ok(reel_log::Signer::Unsigned) if trust.accept_unsigned => *unsigned += 1,
        Ok(reel_log::Signer::Unsigned) => {
            return Err(
                "unsigned segment, not adopted (sealed before Reel signed segments, or not by Reel; \
                 --accept-unsigned adopts such objects)"
                    .into(),
            );
        }
        Err(e) => return Err(e.to_string()),
    }
    let checked = reel_log::check_segment(bytes).map_err(|e| e.to_string())?;
    let h = checked.header;
    let content_offset = checked.content_offset;
    let id = RecordingId::from_slice(&h.recording_id).map_err(|e| e.to_string())?;
    let row = SegmentRow {
        sequence: h.sequence,
        first_event_index: h.first_event_index,
        event_count: h.event_count,
        start_time_us: h.start_time_us,
        end_time_us: h.end_time_us,
        data_bytes: checked.data_bytes,
        size: bytes.len() as u64,
        sha256: reel_log::sha256(bytes).to_vec(),
        locations: Vec::new(),
        sealed_at_us: h.sealed_at_us,
        uploaded_at_us: 0,
        r#final: h.r#final,
        uncertain: Vec::new(),
        combined_offset: None,
        secondary_combined: false,
        content_offset,
        blocks: h.blocks,
    };
    reel_log::validate::check_segment_row(&row).map_err(|e| format!("segment row {e}"))?;
    Ok((id, row))
}

/// Adds a found copy: a second copy of the same segment (same SHA-256)
/// adds a location; a combined copy wins over segment objects.
fn add(
    found: &mut BTreeMap<RecordingId, BTreeMap<u64, Found>>,
    id: RecordingId,
    row: SegmentRow,
    bytes: &[u8],
    mirror: bool,
    report: &mut RebuildReport,
) {
    let header = match reel_log::decode_header(bytes) {
        Ok((h, _)) => h,
        Err(e) => {
            report
                .skipped
                .push(format!("{id} segment {}: {e}", row.sequence));
            return;
        }
    };
    let segs = found.entry(id).or_default();
    match segs.get_mut(&row.sequence) {
        None => {
            segs.insert(row.sequence, Found { row, header });
        }
        Some(have) if have.row.sha256 != row.sha256 => report.skipped.push(format!(
            "{id} segment {}: two copies differ; kept the first found",
            row.sequence
        )),
        Some(have) => {
            // Combined objects are read first. A segment object beside one
            // is a stray (see below), except in mirror mode the
            // secondary's, when the secondary has no combined object of its
            // own: that is its copy.
            let secondary = Location::Secondary as i32;
            let union = |have: &mut Vec<i32>, more: &[i32]| {
                for l in more {
                    if !have.contains(l) {
                        have.push(*l);
                    }
                }
            };
            match (
                have.row.combined_offset.is_some(),
                row.combined_offset.is_some(),
            ) {
                (true, true) => {
                    union(&mut have.row.locations, &row.locations);
                    have.row.secondary_combined |= row.secondary_combined;
                }
                (false, true) => {
                    let kept_secondary = mirror
                        && have.row.locations.contains(&secondary)
                        && !row.secondary_combined;
                    have.row.combined_offset = row.combined_offset;
                    have.row.secondary_combined = row.secondary_combined;
                    have.row.locations = row.locations;
                    if kept_secondary {
                        have.row.locations.push(secondary);
                    }
                }
                (true, false) => {
                    if mirror && row.locations.contains(&secondary) && !have.row.secondary_combined
                    {
                        union(&mut have.row.locations, &[secondary]);
                    }
                }
                (false, false) => union(&mut have.row.locations, &row.locations),
            }
            have.row.locations.sort_unstable();
        }
    }
}

/// Reads a combined object: its index, then each segment's range (checked
/// against the index's SHA-256), hashing the whole object on the way.
async fn read_combined(
    inner: &Arc<Inner>,
    role: Role,
    key: &object_store::path::Path,
    size: u64,
    trust: &Trust,
    report: &mut RebuildReport,
) -> std::result::Result<(RecordingId, Vec<u8>, Vec<(Bytes, SegmentRow)>), String> {
    let (index, tail) = crate::copies::read_combined_index(inner, role, key, size).await?;
    let store = inner.store(role);
    match reel_log::combined::verify_index_signature(&index, &trust.keys) {
        Ok(reel_log::Signer::Key(_)) => {}
        Ok(reel_log::Signer::Unsigned) if trust.accept_unsigned => {}
        Ok(reel_log::Signer::Unsigned) => {
            return Err(
                "unsigned index, not adopted (recombined before Reel signed indexes, or not by Reel; \
                 --accept-unsigned adopts such objects)"
                    .into(),
            );
        }
        Err(e) => return Err(format!("index: {e}")),
    }
    let id = RecordingId::from_slice(&index.recording_id).map_err(|e| e.to_string())?;
    let mut whole = Sha256::new();
    let mut out = Vec::new();
    for entry in &index.segments {
        let bytes = store
            .get_range(key, entry.offset..entry.offset + entry.size)
            .await
            .map_err(|e| e.to_string())?;
        report.bytes_read += bytes.len() as u64;
        whole.update(&bytes);
        if reel_log::sha256(&bytes)[..] != entry.sha256[..] {
            return Err(format!(
                "segment {} does not match the index's SHA-256",
                entry.sequence
            ));
        }
        let (sid, mut row) = segment_row(&bytes, trust, &mut report.unsigned_segments)?;
        if sid != id {
            return Err(format!(
                "segment {} names another recording",
                entry.sequence
            ));
        }
        row.combined_offset = Some(entry.offset);
        out.push((bytes, row));
    }
    whole.update(&tail[..]);
    report.objects_read += 1;
    Ok((id, whole.finalize().to_vec(), out))
}

/// The recording's row, summed from its segments.
/// Of the recordings rebuilt without a final segment, those the audit
/// log's manifests say were closed: their rows say so (closed, the
/// duration and reason of the close) and name what was removed, rather
/// than calling them interrupted.
async fn removed_tails(inner: &Arc<Inner>, unfinished: Vec<RecordingId>) -> Result<Vec<String>> {
    if unfinished.is_empty() {
        return Ok(Vec::new());
    }
    inner
        .catalog(move |c| {
            let manifests: std::collections::HashMap<RecordingId, Manifest> = c
                .audit(0, usize::MAX)?
                .iter()
                .filter_map(Manifest::from_audit)
                .collect();
            let mut named = Vec::new();
            let mut batch = Batch::new();
            for id in unfinished {
                let (Some(m), Some(mut row)) = (manifests.get(&id), c.recording(id)?) else {
                    continue;
                };
                let what = format!(
                    "its last segments were removed from the stores: the audit log's manifest says it was closed with {} events in {} segments; the stores hold {} events in {} segments",
                    m.events, m.segments, row.event_count, row.segment_count
                );
                row.damage.retain(|d| d != NO_FINAL_SEGMENT);
                row.damage.push(what.clone());
                row.close_reason = m.reason.clone();
                row.duration_us = m.duration_us;
                batch.put_recording(&row);
                named.push(format!("recording {id}: {what}"));
            }
            c.commit(batch)?;
            Ok(named)
        })
        .await
}

fn recording_row(
    id: RecordingId,
    segments: &BTreeMap<u64, Found>,
    combined: Option<&(u64, Vec<u8>)>,
) -> RecordingRow {
    let first = segments.values().next().expect("at least one segment");
    let last = segments.values().next_back().expect("at least one segment");
    // Each row was checked (check_segment_row); the sums are saturating
    // all the same, so that no set of objects can overflow them.
    let sum = |f: fn(&Found) -> u64| segments.values().map(f).fold(0u64, u64::saturating_add);
    let mut row = RecordingRow {
        id: id.to_bytes().to_vec(),
        metadata: first.header.metadata.clone(),
        created_at_us: id.timestamp_ms().saturating_mul(1000) as i64,
        event_count: sum(|f| f.row.event_count),
        data_bytes: sum(|f| f.row.data_bytes),
        segment_count: segments.len() as u64,
        stored_bytes: sum(|f| f.row.size),
        last_segment_hash: last.row.sha256.clone(),
        last_time_us: segments
            .values()
            .map(|f| f.row.end_time_us)
            .max()
            .unwrap_or(0),
        next_event_index: last
            .row
            .first_event_index
            .saturating_add(last.row.event_count),
        state: RecordingState::Closed as i32,
        closed_at_us: last.header.sealed_at_us,
        ..Default::default()
    };
    if last.header.r#final {
        row.duration_us = last.header.duration_us;
        row.close_reason = "closed".into();
    } else {
        row.duration_us = row.last_time_us;
        row.close_reason = "interrupted".into();
        row.damage.push(NO_FINAL_SEGMENT.into());
    }
    // Gaps in the sequence or a broken chain are noted, not hidden.
    let mut prev: Option<&Found> = None;
    for f in segments.values() {
        let expected_seq = prev.map_or(0, |p| p.row.sequence.saturating_add(1));
        if f.row.sequence != expected_seq {
            row.damage.push(format!(
                "segments {expected_seq}..{} not found in any store",
                f.row.sequence
            ));
        } else if let Some(p) = prev
            && f.header.prev_hash != p.row.sha256
        {
            row.damage.push(format!(
                "segment {} does not link to segment {}",
                f.row.sequence, p.row.sequence
            ));
        }
        prev = Some(f);
    }
    if let Some((size, sha)) = combined {
        row.combined_size = *size;
        row.combined_sha256 = sha.clone();
    }
    row
}
