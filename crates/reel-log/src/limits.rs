//! The bounds of what Reel writes, so that everything it reads back (from
//! its journal, the stores, an archive) is checked against them before
//! anything is allocated from a length it names.
//!
//! A segment is cut at the first journal record boundary where its events'
//! data reaches its target size, or where what they take in the content
//! (data and framing) could reach [`SEGMENT_CUT_FACTOR`] times the target
//! (runs of tiny or empty events); its content is therefore less than that
//! cap plus one record. Its object adds the prefix, the header (at most
//! [`MAX_HEADER_LEN`]) and the header's CRC. `reeld` refuses a
//! configuration beyond these maxima.

use crate::segment::{BLOCK_TARGET_BYTES, MAX_HEADER_LEN, PREFIX_LEN, SIGNATURE_LEN};

/// The largest audit entry: the catalog clips its text fields (to
/// [`MAX_AUDIT_TEXT_BYTES`], a recording id to [`MAX_AUDIT_ID_BYTES`]) and
/// writes an act on more than [`MAX_AUDIT_RECORDINGS`] recordings as
/// several entries.
pub const MAX_AUDIT_ENTRY_BYTES: u64 = 2 << 20;
/// Recordings one audit entry names.
pub const MAX_AUDIT_RECORDINGS: usize = 10_000;
/// Bytes of one free-text field of an audit entry (who, what, why).
pub const MAX_AUDIT_TEXT_BYTES: usize = 4096;
/// Bytes of one recording id in an audit entry.
pub const MAX_AUDIT_ID_BYTES: usize = 128;
/// An audit copy object is cut once its entries reach this size.
pub const AUDIT_COPY_TARGET_BYTES: u64 = 4 << 20;
/// The largest audit copy object: its target plus one entry.
pub const MAX_AUDIT_COPY_BYTES: u64 = AUDIT_COPY_TARGET_BYTES + MAX_AUDIT_ENTRY_BYTES + 10;

/// The largest journal record: one batch of events
/// (`ingest.max_batch_bytes`) plus [`RECORD_SLACK_BYTES`].
pub const MAX_RECORD_BYTES: u64 = 64 << 20;
/// What a journal record may hold beyond its batch's budget (the recording
/// id, indices, field framing).
pub const RECORD_SLACK_BYTES: u64 = 1 << 20;
/// The largest `ingest.max_batch_bytes`.
pub const MAX_BATCH_BYTES: u64 = MAX_RECORD_BYTES - RECORD_SLACK_BYTES;
/// The largest `segments.target_bytes`.
pub const MAX_SEGMENT_TARGET_BYTES: u64 = 32 << 20;
/// A segment's content is cut before it could reach this many times its
/// target, whatever its events' sizes.
pub const SEGMENT_CUT_FACTOR: u64 = 2;
/// The most an event takes in a segment's content beyond its data: field
/// tag and length, time, kind, and the data's tag and length.
pub const EVENT_FRAMING_BYTES: u64 = 32;
/// The largest content of any segment.
pub const MAX_SEGMENT_CONTENT_BYTES: u64 =
    SEGMENT_CUT_FACTOR * MAX_SEGMENT_TARGET_BYTES + MAX_RECORD_BYTES;
/// The largest segment object any configuration writes.
pub const MAX_SEGMENT_BYTES: u64 = segment_object_bound(MAX_SEGMENT_TARGET_BYTES, MAX_RECORD_BYTES);
/// Content blocks of one segment: each block but the last holds at least
/// [`BLOCK_TARGET_BYTES`].
pub const MAX_BLOCKS_PER_SEGMENT: u64 = MAX_SEGMENT_CONTENT_BYTES / BLOCK_TARGET_BYTES as u64 + 1;
/// Segments of one recording that an archive or a combined object may
/// name (at one segment a minute, half a year of one session).
pub const MAX_SEGMENTS_PER_RECORDING: u64 = 1 << 18;
/// Content blocks of one archived recording, all segments together (64 GiB
/// of content in full blocks).
pub const MAX_BLOCKS_PER_RECORDING: u64 = 1 << 20;
/// The encoded catalog row of a recording: its metadata is bounded at
/// ingest to well under a segment header's maximum.
pub const MAX_RECORDING_ROW_BYTES: u64 = 2 * MAX_HEADER_LEN as u64;
/// The encoded catalog row of one segment: its fields and its blocks.
pub const MAX_SEGMENT_ROW_BYTES: u64 = 1024 + 48 * MAX_BLOCKS_PER_SEGMENT;
/// Labels and damage notes of one recording row, as decoded.
pub const MAX_ROW_STRINGS: u64 = 1024;
/// The index of a combined object: one entry a segment.
pub const MAX_INDEX_BYTES: u64 = 1024 + 160 * MAX_SEGMENTS_PER_RECORDING;
/// A journal record's events: ingest counts every event as at least 16
/// bytes of its batch's budget.
pub const MAX_EVENTS_PER_RECORD: u64 = MAX_RECORD_BYTES / 16;
/// The smallest event in a segment's content or a journal record: its
/// field tag and a zero length.
pub const MIN_EVENT_BYTES: u64 = 2;

/// The largest segment object written with segments cut at `target_bytes`
/// from journal records of at most `record_bytes`.
pub const fn segment_object_bound(target_bytes: u64, record_bytes: u64) -> u64 {
    (PREFIX_LEN + MAX_HEADER_LEN + 4 + SIGNATURE_LEN) as u64
        + SEGMENT_CUT_FACTOR.saturating_mul(target_bytes)
        + record_bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_audit_entry_of_clipped_fields_fits_its_bound() {
        let fields = 5 * (MAX_AUDIT_TEXT_BYTES as u64 + 3);
        let ids = MAX_AUDIT_RECORDINGS as u64 * (MAX_AUDIT_ID_BYTES as u64 + 3);
        let chain = 11 + 11 + 34;
        assert!(fields + ids + chain < MAX_AUDIT_ENTRY_BYTES);
    }

    #[test]
    fn bounds_are_what_a_segment_can_be_and_no_more() {
        // The framing (magic, header length, header, CRC, signature) is
        // 1 MiB + 80 bytes at most.
        assert_eq!(MAX_SEGMENT_BYTES, (129 << 20) + 16 + 64);
        assert_eq!(MAX_BLOCKS_PER_SEGMENT, 2049);
        // With the default configuration (8 MiB segments, 4 MiB batches).
        assert_eq!(
            segment_object_bound(8 << 20, (4 << 20) + RECORD_SLACK_BYTES),
            (22 << 20) + 16 + 64
        );
    }
}
