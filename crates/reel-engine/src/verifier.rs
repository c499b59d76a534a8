//! Verification: does the catalog agree with the stores? And repair of what
//! can be repaired safely.
//!
//! Both stores are listed once; the catalog is walked once. A copy the
//! catalog names that is not listed is *missing*; one whose size differs is
//! *corrupt*; a listed object no catalog row names (and that is neither a
//! known uncertain copy nor queued for deletion) is an *orphan*. With
//! `content`, every copy is read: its SHA-256 must match the catalog's and
//! its header must link to the previous segment (the hash chain).
//!
//! Repair never deletes data it cannot account for. A missing or corrupt
//! copy is put back from a good copy elsewhere (the spool, or the same key
//! on the other store, checked against the catalog's SHA-256; in mirror
//! mode a combined object from the other store's combined object); when no
//! good copy exists the catalog stops naming it and the recording is marked
//! damaged (reads show a gap there). An orphan that is a valid copy of a
//! known segment is adopted (the catalog names it); other orphans are
//! deleted only with `delete_orphans`, through the deletion queue.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use object_store::path::Path;
use reel_catalog::{Batch, RecordingId};
use reel_proto::v1::{Location, RecordingRow, SegmentRow};
use reel_storage::{Role, keys};
use serde::Serialize;
use tracing::{info, warn};

use crate::Inner;
use crate::copies::{
    in_combined, location_name, location_of, read_combined_index, read_copy, role_of, stored_copy,
};
use crate::error::{EngineError, Result};

/// What `verify` checks and may change.
#[derive(Debug, Clone, Copy, Default)]
pub struct VerifyOptions {
    /// Read every copy and check its SHA-256 and hash chain.
    pub content: bool,
    pub repair: bool,
    /// With `repair`: delete orphans that are not a copy of a known segment.
    pub delete_orphans: bool,
}

/// What is wrong with a copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProblemKind {
    /// The catalog names a copy the store does not hold.
    Missing,
    /// The copy's bytes do not check (size, hash, blocks).
    Corrupt,
    /// The copy checks alone but does not follow the previous segment.
    Chain,
    /// An object no catalog row, known uncertain copy or queued deletion
    /// accounts for.
    Orphan,
}

impl ProblemKind {
    /// `missing`, `corrupt`, `chain`, `orphan`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Missing => "missing",
            ProblemKind::Corrupt => "corrupt",
            ProblemKind::Chain => "chain",
            ProblemKind::Orphan => "orphan",
        }
    }
}

impl std::fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One disagreement between the catalog and the stores.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    pub kind: ProblemKind,
    /// Where the object is (written as `local`, `primary`, `secondary`).
    #[serde(serialize_with = "crate::copies::serialize_location")]
    pub store: Location,
    pub key: String,
    pub recording: Option<String>,
    pub sequence: Option<u64>,
    pub detail: String,
    /// What repair did about it, if it ran.
    pub repair: Option<String>,
}

/// The outcome of a verification.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    pub recordings: u64,
    pub segments: u64,
    /// Objects listed in both stores.
    pub objects: u64,
    /// Bytes read for content checks.
    pub bytes_read: u64,
    pub problems: Vec<Problem>,
    /// Recordings marked damaged by this run's repair.
    pub damaged: Vec<String>,
    /// With `content`: copies read that carry no signature (sealed before
    /// Reel signed segments). Signed copies whose signature does not check
    /// with this server's key are problems (`corrupt`).
    pub unsigned_segments: u64,
    /// With `content`: combined objects whose index carries no signature
    /// (recombined before Reel signed indexes). An index whose signature
    /// does not check is a problem (`corrupt`).
    pub unsigned_indexes: u64,
}

impl VerifyReport {
    /// Problems that are still there (found and not repaired).
    pub fn unresolved(&self) -> usize {
        self.problems.iter().filter(|p| p.repair.is_none()).count()
    }
}

/// Progress of a running verification (or catalog rebuild), for progress
/// bars.
#[derive(Debug, Default)]
pub struct VerifyProgress {
    pub phase: Mutex<String>,
    pub done: AtomicU64,
    pub total: AtomicU64,
}

impl VerifyProgress {
    pub(crate) fn set_phase(&self, name: &str, total: u64) {
        *self.phase.lock().expect("progress lock") = name.to_string();
        self.done.store(0, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
    }

    pub(crate) fn advance(&self) {
        self.done.fetch_add(1, Ordering::Relaxed);
    }
}

/// A copy of one segment the catalog names, where it should be.
struct Expected {
    id: RecordingId,
    location: Location,
    key: Path,
    size: u64,
}

pub(crate) async fn verify(
    inner: &Arc<Inner>,
    options: VerifyOptions,
    progress: &VerifyProgress,
) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    progress.set_phase("listing stores", 2);
    let mut listed: HashMap<(Location, String), u64> = HashMap::new();
    for role in [Role::Primary, Role::Secondary] {
        let prefix = Path::from("recordings");
        let objects = inner.store(role).list(Some(&prefix)).await.map_err(|e| {
            EngineError::Unavailable(format!(
                "cannot verify: listing the {role} store failed: {e}"
            ))
        })?;
        for (key, size) in objects {
            listed.insert((location_of(role), key.to_string()), size);
        }
        progress.advance();
    }
    report.objects = listed.len() as u64;

    progress.set_phase("reading the catalog", 0);
    let (rows, queued) = inner
        .catalog(|c| {
            let purging: HashSet<RecordingId> =
                c.purging()?.into_iter().map(|(id, _)| id).collect();
            let mut rows = Vec::new();
            for row in c.recordings(None, usize::MAX)? {
                let Ok(id) = RecordingId::from_slice(&row.id) else {
                    continue;
                };
                if !purging.contains(&id) {
                    rows.push((id, row, c.segments(id)?));
                }
            }
            let queued: HashSet<(Location, String)> = c
                .deletion_queue()?
                .into_iter()
                .map(|(l, k, _)| (l, k))
                .collect();
            Ok((rows, queued))
        })
        .await?;
    // Objects of recordings being purged are on their way out.
    let purging_prefixes: Vec<String> = inner
        .catalog(|c| c.purging())
        .await?
        .into_iter()
        .map(|(id, _)| format!("recordings/{id}/"))
        .collect();

    progress.set_phase("checking recordings", rows.len() as u64);
    let mut seen: HashSet<(Location, String)> = HashSet::new();
    for (id, row, segments) in &rows {
        report.recordings += 1;
        let mut prev_sha: Option<Vec<u8>> = None;
        for seg in segments {
            report.segments += 1;
            for e in expected_copies(*id, row, seg) {
                let lkey = (e.location, e.key.to_string());
                // The combined object is named by every segment in it:
                // its presence and size are checked once.
                let again = !seen.insert(lkey.clone());
                if again && !options.content {
                    continue;
                }
                if e.location == Location::Local {
                    if !inner.spool.contains(*id, seg.sequence) {
                        report.problems.push(problem(
                            ProblemKind::Missing,
                            &e,
                            Some(seg),
                            "not in the spool".into(),
                        ));
                    }
                    continue;
                }
                let whole = in_combined(*id, seg, e.location as i32);
                let named = (!whole).then_some(seg);
                match listed.get(&lkey) {
                    None if again => {}
                    None => report.problems.push(problem(
                        ProblemKind::Missing,
                        &e,
                        named,
                        "not in the store".into(),
                    )),
                    Some(&size) if size != e.size => {
                        if !again {
                            report.problems.push(problem(
                                ProblemKind::Corrupt,
                                &e,
                                named,
                                format!("{size} bytes, the catalog says {}", e.size),
                            ));
                        }
                    }
                    Some(_) if options.content => {
                        if whole
                            && !again
                            && let Some(p) = check_index(inner, &e, &mut report).await
                        {
                            report.problems.push(p);
                        }
                        if let Some(p) =
                            check_content(inner, &e, seg, prev_sha.as_deref(), &mut report).await
                        {
                            report.problems.push(p);
                        }
                    }
                    Some(_) => {}
                }
            }
            for &u in &seg.uncertain {
                if let Ok(loc) = Location::try_from(u) {
                    seen.insert((loc, keys::segment(*id, seg.sequence).to_string()));
                }
            }
            prev_sha = Some(seg.sha256.clone());
        }
        progress.advance();
    }
    let mut orphans: Vec<(Location, String, u64)> = listed
        .iter()
        .filter(|(k, _)| !seen.contains(*k) && !queued.contains(*k))
        .filter(|((_, key), _)| !purging_prefixes.iter().any(|p| key.starts_with(p.as_str())))
        .map(|((l, k), s)| (*l, k.clone(), *s))
        .collect();
    orphans.sort_by(|a, b| a.1.cmp(&b.1));
    for (location, key, size) in &orphans {
        report.problems.push(Problem {
            kind: ProblemKind::Orphan,
            store: *location,
            key: key.clone(),
            recording: None,
            sequence: None,
            detail: format!("{size} bytes that no catalog entry names"),
            repair: None,
        });
    }
    if options.repair {
        progress.set_phase("repairing", report.problems.len() as u64);
        repair(inner, &rows, &listed, options, &mut report, progress).await?;
    }
    info!(
        recordings = report.recordings,
        segments = report.segments,
        objects = report.objects,
        problems = report.problems.len(),
        unresolved = report.unresolved(),
        "verification done"
    );
    Ok(report)
}

fn problem(kind: ProblemKind, e: &Expected, seg: Option<&SegmentRow>, detail: String) -> Problem {
    Problem {
        kind,
        store: e.location,
        key: e.key.to_string(),
        recording: Some(e.id.to_string()),
        sequence: seg.map(|s| s.sequence),
        detail,
        repair: None,
    }
}

/// The copies of `seg` the catalog names.
fn expected_copies(id: RecordingId, row: &RecordingRow, seg: &SegmentRow) -> Vec<Expected> {
    let mut out = Vec::new();
    for &l in &seg.locations {
        let Ok(location) = Location::try_from(l) else {
            continue;
        };
        // A store's copy is where `copies` says it is (a whole combined
        // object is checked at its own size); the spool's is named by the
        // segment key.
        let (key, size) = match stored_copy(id, seg, l) {
            Some(copy) if copy.combined_offset.is_some() => (copy.key, row.combined_size),
            Some(copy) => (copy.key, seg.size),
            None => (keys::segment(id, seg.sequence), seg.size),
        };
        out.push(Expected {
            id,
            location,
            key,
            size,
        });
    }
    out
}

/// A combined object's index: signed by this server's key, naming the
/// recording the object is stored under, ending where its segments end.
/// The segments' own bytes are checked one by one by [`check_content`].
async fn check_index(
    inner: &Arc<Inner>,
    e: &Expected,
    report: &mut VerifyReport,
) -> Option<Problem> {
    let corrupt = |detail: String| Some(problem(ProblemKind::Corrupt, e, None, detail));
    let Some(role) = role_of(e.location as i32) else {
        return corrupt("not a store".into());
    };
    let index = match read_combined_index(inner, role, &e.key, e.size).await {
        Ok((index, tail)) => {
            report.bytes_read += tail.len() as u64;
            index
        }
        Err(err) => return corrupt(format!("index: {err}")),
    };
    match reel_log::combined::verify_index_signature(&index, &[inner.keys.public_key()]) {
        Ok(reel_log::Signer::Key(_)) => {}
        Ok(reel_log::Signer::Unsigned) => report.unsigned_indexes += 1,
        Err(err) => return corrupt(format!("index: {err}")),
    }
    if index.recording_id[..] != e.id.to_bytes()[..] {
        return corrupt(format!(
            "its index names another recording ({})",
            RecordingId::from_slice(&index.recording_id)
                .map_or_else(|_| hex::encode(&index.recording_id), |id| id.to_string())
        ));
    }
    None
}

async fn check_content(
    inner: &Arc<Inner>,
    e: &Expected,
    seg: &SegmentRow,
    prev_sha: Option<&[u8]>,
    report: &mut VerifyReport,
) -> Option<Problem> {
    let bytes = match read_copy(inner, e.id, seg, e.location).await {
        Ok(Some(b)) => b,
        Ok(None) => {
            return Some(problem(
                ProblemKind::Missing,
                e,
                Some(seg),
                "gone while verifying".into(),
            ));
        }
        Err(err) => {
            return Some(problem(
                ProblemKind::Corrupt,
                e,
                Some(seg),
                format!("cannot be read: {err}"),
            ));
        }
    };
    report.bytes_read += bytes.len() as u64;
    if reel_log::sha256(&bytes)[..] != seg.sha256[..] {
        return Some(problem(
            ProblemKind::Corrupt,
            e,
            Some(seg),
            "content does not match its SHA-256".into(),
        ));
    }
    match reel_log::verify_signature(&bytes, &[inner.keys.public_key()]) {
        Ok(reel_log::Signer::Key(_)) => {}
        Ok(reel_log::Signer::Unsigned) => report.unsigned_segments += 1,
        Err(err) => {
            return Some(problem(
                ProblemKind::Corrupt,
                e,
                Some(seg),
                format!("signature: {err}"),
            ));
        }
    }
    match reel_log::decode_header(&bytes) {
        Ok((header, _)) => {
            let linked = match prev_sha {
                None => header.prev_hash.is_empty(),
                Some(prev) => header.prev_hash == prev,
            };
            (!linked).then(|| {
                problem(
                    ProblemKind::Chain,
                    e,
                    Some(seg),
                    "does not link to the previous segment".into(),
                )
            })
        }
        Err(err) => Some(problem(ProblemKind::Corrupt, e, Some(seg), err.to_string())),
    }
}

async fn repair(
    inner: &Arc<Inner>,
    rows: &[(RecordingId, RecordingRow, Vec<SegmentRow>)],
    listed: &HashMap<(Location, String), u64>,
    options: VerifyOptions,
    report: &mut VerifyReport,
    progress: &VerifyProgress,
) -> Result<()> {
    let segments: HashMap<(RecordingId, u64), &SegmentRow> = rows
        .iter()
        .flat_map(|(id, _, segs)| segs.iter().map(move |s| ((*id, s.sequence), s)))
        .collect();
    let mut damaged: HashSet<RecordingId> = HashSet::new();
    let mut restored_combined = HashMap::new();
    for p in &mut report.problems {
        progress.advance();
        let location = p.store;
        if p.kind == ProblemKind::Orphan {
            p.repair = adopt_or_delete(inner, p, location, &segments, options).await?;
            continue;
        }
        let Some(id) = p
            .recording
            .as_deref()
            .and_then(|r| r.parse::<RecordingId>().ok())
        else {
            continue;
        };
        let combined_here = p.sequence.is_none_or(|seq| {
            segments
                .get(&(id, seq))
                .is_some_and(|s| in_combined(id, s, location as i32))
        });
        if combined_here
            && let Some(how) =
                restore_combined(inner, rows, id, location, &mut restored_combined).await
        {
            p.repair = Some(how);
            continue;
        }
        let Some(seq) = p.sequence else {
            // The combined object itself is missing or cut: this store's
            // copy of every segment in it is lost (the segment objects
            // were deleted when it was made). In mirror mode the other
            // store's combined object may still hold them.
            let inside: Vec<&SegmentRow> = rows
                .iter()
                .filter(|(rid, _, _)| *rid == id)
                .flat_map(|(_, _, segs)| segs.iter())
                .filter(|s| in_combined(id, s, location as i32))
                .collect();
            let elsewhere = inside.iter().all(|s| {
                s.locations
                    .iter()
                    .any(|&l| l != location as i32 && role_of(l).is_some())
            });
            for seg in &inside {
                forget_copy(inner, id, seg.sequence, location, &p.detail).await?;
            }
            p.repair = Some(if elsewhere {
                "the catalog no longer names it; the other store's copy remains".into()
            } else {
                damaged.insert(id);
                "no good copy: the catalog no longer names it; recording marked damaged".into()
            });
            continue;
        };
        let Some(seg) = segments.get(&(id, seq)) else {
            continue;
        };
        // A good copy elsewhere: the spool, or the same key on the other store.
        let mut restored = None;
        if let Some(role) = role_of(location as i32)
            && !in_combined(id, seg, location as i32)
        {
            for source in [Location::Local, Location::Primary, Location::Secondary] {
                if source == location {
                    continue;
                }
                let key = keys::segment(id, seq).to_string();
                if source != Location::Local && !listed.contains_key(&(source, key)) {
                    continue;
                }
                let mut probe = (*seg).clone();
                probe.combined_offset = None;
                let Ok(Some(bytes)) = read_copy(inner, id, &probe, source).await else {
                    continue;
                };
                if reel_log::sha256(&bytes)[..] != seg.sha256[..] {
                    continue;
                }
                if let Err(e) = crate::key_objects::ensure(inner, id, role).await {
                    warn!(recording = %id, sequence = seq, error = %e, "repair: key object put failed");
                    continue;
                }
                match inner.store(role).put(&keys::segment(id, seq), bytes).await {
                    Ok(()) => {
                        restored = Some(format!(
                            "restored from the {} copy",
                            location_name(source as i32)
                        ));
                        break;
                    }
                    Err(e) => {
                        warn!(recording = %id, sequence = seq, error = %e, "repair put failed")
                    }
                }
            }
        }
        p.repair = match restored {
            Some(how) => Some(how),
            None => {
                forget_copy(inner, id, seq, location, &p.detail).await?;
                damaged.insert(id);
                Some(
                    "no good copy: the catalog no longer names it; recording marked damaged".into(),
                )
            }
        };
    }
    report.damaged = damaged.iter().map(|id| id.to_string()).collect();
    report.damaged.sort();
    Ok(())
}

/// Mirror mode: one store's combined object is lost or damaged and the
/// other store holds the recording as a combined object too: that object
/// is copied back, byte for byte, checked against the recording's SHA-256
/// (see `compactor::copy_combined`), and the catalog, which names both
/// copies, stays as it is. Tried once per object and run (`tried`); `None`
/// when it cannot be done, and the caller goes on as without mirror mode.
async fn restore_combined(
    inner: &Arc<Inner>,
    rows: &[(RecordingId, RecordingRow, Vec<SegmentRow>)],
    id: RecordingId,
    location: Location,
    tried: &mut HashMap<(RecordingId, Location), Option<String>>,
) -> Option<String> {
    if let Some(outcome) = tried.get(&(id, location)) {
        return outcome.clone();
    }
    let to = role_of(location as i32)?;
    let from = match to {
        Role::Primary => Role::Secondary,
        Role::Secondary => Role::Primary,
    };
    let (_, row, segs) = rows.iter().find(|(r, _, _)| *r == id)?;
    let whole_there = |s: &SegmentRow| in_combined(id, s, location_of(from) as i32);
    let outcome = if !segs.is_empty() && segs.iter().all(whole_there) {
        match crate::compactor::copy_combined(inner, row, from, to).await {
            Ok(()) => Some(format!("restored from the {from}'s combined object")),
            Err(e) => {
                warn!(recording = %id, store = %to, error = %e, "repair: copying the combined object from the other store failed");
                None
            }
        }
    } else {
        None
    };
    tried.insert((id, location), outcome.clone());
    outcome
}

/// The catalog stops naming a lost copy, and the recording records why.
async fn forget_copy(
    inner: &Arc<Inner>,
    id: RecordingId,
    seq: u64,
    location: Location,
    why: &str,
) -> Result<()> {
    let note = format!(
        "segment {seq}: {} copy lost ({why}), found by verify at {}",
        location_name(location as i32),
        inner.now_us()
    );
    inner
        .catalog(move |c| {
            c.commit_checked(|c| {
                let mut batch = Batch::new();
                if c.purge_mark(id)?.is_some() {
                    return Ok(((), batch));
                }
                if let Some(mut seg) = c.segment(id, seq)? {
                    seg.locations.retain(|&l| l != location as i32);
                    if location == Location::Secondary {
                        seg.secondary_combined = false;
                    }
                    // The offset stays while the secondary's combined
                    // object still holds the segment.
                    if location == Location::Primary && !seg.secondary_combined {
                        seg.combined_offset = None;
                    }
                    batch.put_segment(id, &seg);
                }
                if let Some(mut row) = c.recording(id)? {
                    row.damage.push(note);
                    batch.put_recording(&row);
                }
                Ok(((), batch))
            })
        })
        .await
}

/// An orphan that is a good copy of a known segment is adopted; another is
/// queued for deletion when asked.
async fn adopt_or_delete(
    inner: &Arc<Inner>,
    p: &Problem,
    location: Location,
    segments: &HashMap<(RecordingId, u64), &SegmentRow>,
    options: VerifyOptions,
) -> Result<Option<String>> {
    if let Some((id, seq)) = parse_segment_key(&p.key)
        && let Some(seg) = segments.get(&(id, seq))
        && seg.combined_offset.is_none()
    {
        let mut probe = (*seg).clone();
        probe.combined_offset = None;
        if let Ok(Some(bytes)) = read_copy(inner, id, &probe, location).await
            && reel_log::sha256(&bytes)[..] == seg.sha256[..]
        {
            inner
                .catalog(move |c| {
                    c.commit_checked(|c| {
                        let mut batch = Batch::new();
                        if let Some(mut seg) = c.segment(id, seq)?
                            && c.purge_mark(id)?.is_none()
                            && !seg.locations.contains(&(location as i32))
                        {
                            seg.locations.push(location as i32);
                            seg.uncertain.retain(|&l| l != location as i32);
                            batch.put_segment(id, &seg);
                        }
                        Ok(((), batch))
                    })
                })
                .await?;
            return Ok(Some("adopted: a good copy of a known segment".into()));
        }
    }
    if !options.delete_orphans {
        return Ok(None);
    }
    let key = p.key.clone();
    inner
        .catalog(move |c| {
            let mut batch = Batch::new();
            batch.enqueue_deletion(location, &key, "orphan");
            c.commit(batch)
        })
        .await?;
    inner.deleter_wake.notify_one();
    Ok(Some("queued for deletion".into()))
}

/// `recordings/<id>/segments/<seq>.seg` -> (id, seq).
fn parse_segment_key(key: &str) -> Option<(RecordingId, u64)> {
    let rest = key.strip_prefix("recordings/")?;
    let (id, rest) = rest.split_once('/')?;
    let seq = rest.strip_prefix("segments/")?.strip_suffix(".seg")?;
    Some((id.parse().ok()?, seq.parse().ok()?))
}
