//! A segment's copies: where each one is (the local spool, a store's segment
//! object, or a range of the primary's combined object), which one to try
//! first, and reading one whole. Every part of the engine that touches a copy
//! (reader, verifier, archiver, uploader, compactor, deleter, purger,
//! rebuilder) asks here, so that a location means the same object everywhere
//! and copies are ranked by one rule.

use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use reel_catalog::RecordingId;
use reel_proto::v1::{Location, RecordingIndex, SegmentRow};
use reel_storage::{Role, StorageError, StoreState, keys};

use crate::Inner;
use crate::error::{EngineError, Result};

/// The catalog location of a store's copies.
pub(crate) fn location_of(role: Role) -> Location {
    match role {
        Role::Primary => Location::Primary,
        Role::Secondary => Location::Secondary,
    }
}

/// The store a catalog location names: none for the spool, or for a value
/// this build does not know.
pub(crate) fn role_of(location: i32) -> Option<Role> {
    match Location::try_from(location) {
        Ok(Location::Primary) => Some(Role::Primary),
        Ok(Location::Secondary) => Some(Role::Secondary),
        _ => None,
    }
}

/// A location as users read it in listings, reports and errors: `local`,
/// `primary`, `secondary` (or `unknown`).
pub fn location_name(location: i32) -> &'static str {
    match Location::try_from(location) {
        Ok(Location::Local) => "local",
        Ok(Location::Primary) => "primary",
        Ok(Location::Secondary) => "secondary",
        _ => "unknown",
    }
}

/// Serializes a location by its [`location_name`].
pub(crate) fn serialize_location<S: serde::Serializer>(
    location: &Location,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(location_name(*location as i32))
}

/// Where a store's copy of a segment is: an object, and the segment's bytes
/// in it (all of a segment object; a range of the combined object).
pub(crate) struct StoredCopy {
    pub role: Role,
    pub key: Path,
    /// The offset of the segment's first byte in the combined object;
    /// `None` for a segment object.
    pub combined_offset: Option<u64>,
}

impl StoredCopy {
    /// The offset of the segment's first byte in the object.
    pub fn base(&self) -> u64 {
        self.combined_offset.unwrap_or(0)
    }
}

/// `offset + size`, or the error naming the catalog's overflowing row.
pub(crate) fn end_of(id: RecordingId, seg: &SegmentRow, offset: u64) -> Result<u64> {
    offset
        .checked_add(seg.size)
        .ok_or_else(|| EngineError::Segment {
            recording: id,
            sequence: seg.sequence,
            source: reel_log::SegmentError::Invalid {
                field: "combined_offset".into(),
                problem: format!("{offset} + size {} overflows", seg.size),
            },
        })
}

/// Where `location`'s copy of `seg` is, if a store holds it: the primary's
/// copy of a recombined segment is its range of the combined object, and
/// so is the secondary's when mirror mode recombined it there too
/// (`secondary_combined`).
pub(crate) fn stored_copy(id: RecordingId, seg: &SegmentRow, location: i32) -> Option<StoredCopy> {
    let role = role_of(location)?;
    let combined = match role {
        Role::Primary => seg.combined_offset,
        Role::Secondary => seg.combined_offset.filter(|_| seg.secondary_combined),
    };
    Some(match combined {
        Some(offset) => StoredCopy {
            role,
            key: keys::recording_object(id),
            combined_offset: Some(offset),
        },
        None => StoredCopy {
            role,
            key: keys::segment(id, seg.sequence),
            combined_offset: None,
        },
    })
}

/// Whether `location`'s copy of `seg` is a range of a combined object.
pub(crate) fn in_combined(id: RecordingId, seg: &SegmentRow, location: i32) -> bool {
    stored_copy(id, seg, location).is_some_and(|c| c.combined_offset.is_some())
}

/// `locations` best first, the one order every reader of copies uses: the
/// spool (local, never down), then the stores by health (healthy, suspect,
/// probing, down); a store that is down is tried last, not skipped, since
/// a store marked down for failed writes may still serve reads.
pub(crate) fn ranked(inner: &Inner, locations: &[i32]) -> Vec<i32> {
    let rank = |l: i32| match role_of(l) {
        None => 0,
        Some(role) => match inner.store(role).health().state() {
            StoreState::Healthy => 1,
            StoreState::Suspect => 2,
            StoreState::Probing => 3,
            StoreState::Down => 4,
        },
    };
    let mut out = locations.to_vec();
    out.sort_by_key(|&l| rank(l));
    out
}

/// The copies of `seg` to read, best first: the read cache's (as `local`)
/// when it holds the segment, then `seg.locations` in [`ranked`] order.
pub(crate) fn candidates(inner: &Inner, id: RecordingId, seg: &SegmentRow) -> Vec<i32> {
    let mut out = ranked(inner, &seg.locations);
    let local = Location::Local as i32;
    if !out.contains(&local) && inner.cache.contains(id, seg.sequence) {
        out.insert(0, local);
    }
    out
}

/// Reads the local copy of a segment: the spool's, else the read cache's.
pub(crate) fn read_local(inner: &Inner, id: RecordingId, seq: u64) -> Result<Option<Bytes>> {
    match inner.spool.read(id, seq)? {
        Some(bytes) => Ok(Some(bytes)),
        None => Ok(inner.cache.read(id, seq)),
    }
}

/// Reads `location`'s copy of `seg`, whole; `None` when that copy is not
/// there. Not checked: compare it with `seg.sha256`.
pub(crate) async fn read_copy(
    inner: &Arc<Inner>,
    id: RecordingId,
    seg: &SegmentRow,
    location: Location,
) -> Result<Option<Bytes>> {
    if location == Location::Local {
        return read_local(inner, id, seg.sequence);
    }
    let Some(copy) = stored_copy(id, seg, location as i32) else {
        return Ok(None);
    };
    let store = inner.store(copy.role);
    let fetched = match copy.combined_offset {
        None => store.get(&copy.key, Some(seg.size)).await,
        Some(offset) => {
            let end = end_of(id, seg, offset)?;
            store.get_range(&copy.key, offset..end).await
        }
    };
    match fetched {
        Ok(b) => Ok(Some(b)),
        Err(StorageError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The first copy of `seg` that checks against its SHA-256, tried in
/// [`ranked`] order; the error names what each copy did.
pub(crate) async fn read_good_copy(
    inner: &Arc<Inner>,
    id: RecordingId,
    seg: &SegmentRow,
) -> Result<Bytes> {
    let mut failures = Vec::new();
    for l in candidates(inner, id, seg) {
        let Ok(location) = Location::try_from(l) else {
            continue;
        };
        match read_copy(inner, id, seg, location).await {
            Ok(Some(bytes)) if reel_log::sha256(&bytes)[..] == seg.sha256[..] => return Ok(bytes),
            Ok(Some(_)) => failures.push(format!("{}: SHA-256 mismatch", location_name(l))),
            Ok(None) => failures.push(format!("{}: not there", location_name(l))),
            Err(e) => failures.push(format!("{}: {e}", location_name(l))),
        }
    }
    Err(EngineError::Unavailable(format!(
        "recording {id}: segment {} cannot be read: {}",
        seg.sequence,
        if failures.is_empty() {
            "no copy is recorded".into()
        } else {
            failures.join("; ")
        }
    )))
}

/// The index of the combined object `key` (`size` bytes) on `role`'s store,
/// and the object's tail it was read from (index and footer). The footer is
/// read first, and must name an index no longer than [`reel_log::limits`]
/// allow and inside the object. The index is checked for shape (contiguous
/// entries, no overflow, ending where the index starts), not for its
/// signature: the caller says which keys it trusts.
pub(crate) async fn read_combined_index(
    inner: &Inner,
    role: Role,
    key: &Path,
    size: u64,
) -> std::result::Result<(RecordingIndex, Bytes), String> {
    use reel_log::combined::{FOOTER_LEN, decode_footer, decode_index};
    let store = inner.store(role);
    let footer = store
        .get_range(key, size.saturating_sub(FOOTER_LEN as u64)..size)
        .await
        .map_err(|e| e.to_string())?;
    // The index length is bounded (MAX_INDEX_BYTES): no sum here overflows.
    let (index_len, _) = decode_footer(&footer).map_err(|e| e.to_string())?;
    let tail_len = FOOTER_LEN as u64 + index_len;
    if tail_len > size {
        return Err(format!(
            "its footer names an index of {index_len} bytes in an object of {size}"
        ));
    }
    let tail_start = size - tail_len;
    let tail = store
        .get_range(key, tail_start..size)
        .await
        .map_err(|e| e.to_string())?;
    let index = decode_index(&tail).map_err(|e| e.to_string())?;
    // decode_index checked that the entries are contiguous from 0 without
    // overflow; they must also end where the index starts.
    let segments_len = reel_log::combined::index_content_len(&index);
    if segments_len != tail_start {
        return Err(format!(
            "its index names {segments_len} bytes of segments, but the index starts at {tail_start}"
        ));
    }
    Ok((index, tail))
}
