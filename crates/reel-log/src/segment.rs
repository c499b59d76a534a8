//! The segment codec: a sealed, immutable, self-describing run of one
//! recording's events, as it travels to the stores.
//!
//! Layout of a segment object:
//!
//! ```text
//! magic "REELSEG\x01" | header_len: u32 LE | SegmentHeader (protobuf)
//!                     | crc32c(header): u32 LE | content
//! ```
//!
//! `content` is an `EventList` (protobuf). The header names the recording,
//! the sequence number, the event range and time range, the SHA-256 of the
//! content, and the SHA-256 of the previous segment object, so one object can
//! be checked alone and a recording's chain of segments verified.
//!
//! The header also cuts the content into blocks of about
//! [`BLOCK_TARGET_BYTES`] at event boundaries, each with its first event and
//! time and a CRC32C. An `EventList` is a plain run of length-delimited
//! events, so any block decodes on its own: a reader seeks to a time by
//! reading only the blocks it needs, and checks each against its CRC32C.

use prost::Message;
use std::ops::Range;

use reel_proto::v1::{ContentBlock, Event, EventList, RecordingMetadata, SegmentHeader};
use sha2::{Digest, Sha256};

use crate::error::SegmentError;

pub const SEGMENT_MAGIC: &[u8; 8] = b"REELSEG\x01";
pub const SEGMENT_FORMAT_VERSION: u32 = 1;
/// A header larger than this is treated as corruption.
pub const MAX_HEADER_LEN: usize = 1 << 20;
const PREFIX_LEN: usize = SEGMENT_MAGIC.len() + 4;
/// A content block is closed at the first event boundary past this size:
/// the most a seek reads before the first event it wants.
pub const BLOCK_TARGET_BYTES: usize = 64 << 10;

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> Hash {
    Sha256::digest(bytes).into()
}

/// Everything about a segment except its events.
#[derive(Debug, Clone)]
pub struct SegmentSpec {
    pub recording_id: [u8; 16],
    pub sequence: u64,
    pub first_event_index: u64,
    /// SHA-256 of the previous segment object; `None` for sequence 0.
    pub prev_hash: Option<Hash>,
    pub metadata: RecordingMetadata,
    /// The last segment of a closed recording.
    pub is_final: bool,
    /// The recording's duration; meaningful on the final segment.
    pub duration_us: u64,
    pub sealed_at_us: i64,
}

/// A segment object ready to store.
#[derive(Debug, Clone)]
pub struct EncodedSegment {
    pub bytes: Vec<u8>,
    /// SHA-256 of `bytes`: the link the next segment carries.
    pub sha256: Hash,
    pub header: SegmentHeader,
    /// Where the content starts within `bytes`.
    pub content_offset: u64,
}

/// A segment object read back and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedSegment {
    pub header: SegmentHeader,
    pub events: Vec<Event>,
}

/// Encodes `events` (in order, times never decreasing) as a segment object.
pub fn encode_segment(spec: SegmentSpec, events: &[Event]) -> EncodedSegment {
    let mut content = Vec::with_capacity(events.iter().map(|e| e.data.len() + 16).sum());
    let mut blocks: Vec<ContentBlock> = Vec::new();
    let mut block_start = 0;
    for (i, e) in events.iter().enumerate() {
        if i == 0 || content.len() - block_start >= BLOCK_TARGET_BYTES {
            close_block(&mut blocks, &content, block_start);
            block_start = content.len();
            blocks.push(ContentBlock {
                offset: block_start as u64,
                first_event_index: spec.first_event_index + i as u64,
                start_time_us: e.time_us,
                ..Default::default()
            });
        }
        prost::encoding::message::encode(1, e, &mut content);
    }
    close_block(&mut blocks, &content, block_start);
    let header = SegmentHeader {
        format_version: SEGMENT_FORMAT_VERSION,
        recording_id: spec.recording_id.to_vec(),
        sequence: spec.sequence,
        first_event_index: spec.first_event_index,
        event_count: events.len() as u64,
        start_time_us: events.first().map_or(0, |e| e.time_us),
        end_time_us: events.last().map_or(0, |e| e.time_us),
        prev_hash: spec.prev_hash.map(|h| h.to_vec()).unwrap_or_default(),
        content_len: content.len() as u64,
        content_sha256: sha256(&content).to_vec(),
        metadata: Some(spec.metadata),
        r#final: spec.is_final,
        duration_us: spec.duration_us,
        sealed_at_us: spec.sealed_at_us,
        blocks,
    };
    let header_bytes = header.encode_to_vec();
    let mut bytes = Vec::with_capacity(PREFIX_LEN + header_bytes.len() + 4 + content.len());
    bytes.extend_from_slice(SEGMENT_MAGIC);
    bytes.extend_from_slice(&(header_bytes.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&header_bytes);
    bytes.extend_from_slice(&crc32c::crc32c(&header_bytes).to_le_bytes());
    bytes.extend_from_slice(&content);
    let sha256 = sha256(&bytes);
    EncodedSegment {
        content_offset: (bytes.len() - content.len()) as u64,
        bytes,
        sha256,
        header,
    }
}

fn close_block(blocks: &mut [ContentBlock], content: &[u8], start: usize) {
    if let Some(last) = blocks.last_mut() {
        last.len = (content.len() - start) as u64;
        last.crc32c = crc32c::crc32c(&content[start..]);
    }
}

/// The blocks of a segment's content as a reader uses them: the header's
/// blocks, or for a segment without any (written before blocks existed) the
/// whole content as one block without a CRC32C, to be checked by the
/// content's SHA-256 instead.
pub fn content_blocks(header: &SegmentHeader) -> Vec<ContentBlock> {
    if !header.blocks.is_empty() {
        return header.blocks.clone();
    }
    vec![ContentBlock {
        offset: 0,
        len: header.content_len,
        first_event_index: header.first_event_index,
        start_time_us: header.start_time_us,
        crc32c: 0,
    }]
}

/// The blocks (indices into `blocks`, which are in time order) that can hold
/// events with `from_us <= time < to_us`. A block's events lie between its
/// start time and the next block's, inclusive, as equal times can straddle a
/// boundary.
pub fn blocks_for_window(blocks: &[ContentBlock], from_us: u64, to_us: u64) -> Range<usize> {
    let before_from = blocks.partition_point(|b| b.start_time_us < from_us);
    let before_to = blocks.partition_point(|b| b.start_time_us < to_us);
    before_from.saturating_sub(1)..before_to
}

/// Checks one block's bytes against its CRC32C and decodes its events.
/// `check_crc` is false only for the whole-content block of a segment
/// without blocks, whose caller checks the content's SHA-256.
pub fn decode_block(
    block: &ContentBlock,
    bytes: &[u8],
    check_crc: bool,
) -> Result<Vec<Event>, SegmentError> {
    if bytes.len() as u64 != block.len {
        return Err(SegmentError::ContentLength {
            expected: block.len,
            actual: bytes.len() as u64,
        });
    }
    if check_crc && crc32c::crc32c(bytes) != block.crc32c {
        return Err(SegmentError::BlockChecksum {
            offset: block.offset,
        });
    }
    let events = EventList::decode(bytes)
        .map_err(|e| SegmentError::ContentDecode(e.to_string()))?
        .events;
    let first_ok = events
        .first()
        .is_none_or(|e| e.time_us == block.start_time_us);
    if events.is_empty() && block.len > 0 || !first_ok {
        return Err(SegmentError::Inconsistent(format!(
            "block at offset {} does not start at its time",
            block.offset
        )));
    }
    Ok(events)
}

/// Decodes and checks the header at the start of `bytes`; returns it and the
/// offset where the content starts. Needs only the header's bytes, so a
/// reader can fetch a prefix first.
pub fn decode_header(bytes: &[u8]) -> Result<(SegmentHeader, usize), SegmentError> {
    if bytes.len() < SEGMENT_MAGIC.len() {
        return Err(SegmentError::Truncated("magic"));
    }
    if &bytes[..SEGMENT_MAGIC.len()] != SEGMENT_MAGIC {
        return Err(SegmentError::BadMagic);
    }
    if bytes.len() < PREFIX_LEN {
        return Err(SegmentError::Truncated("header length"));
    }
    let header_len = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize;
    if header_len > MAX_HEADER_LEN {
        return Err(SegmentError::HeaderDecode(format!(
            "header length {header_len} exceeds {MAX_HEADER_LEN}"
        )));
    }
    let content_at = PREFIX_LEN + header_len + 4;
    if bytes.len() < content_at {
        return Err(SegmentError::Truncated("header"));
    }
    let header_bytes = &bytes[PREFIX_LEN..PREFIX_LEN + header_len];
    let stored = u32::from_le_bytes(
        bytes[content_at - 4..content_at]
            .try_into()
            .expect("4 bytes"),
    );
    if crc32c::crc32c(header_bytes) != stored {
        return Err(SegmentError::HeaderChecksum);
    }
    let header = SegmentHeader::decode(header_bytes)
        .map_err(|e| SegmentError::HeaderDecode(e.to_string()))?;
    if header.format_version != SEGMENT_FORMAT_VERSION {
        return Err(SegmentError::Version(header.format_version));
    }
    if header.recording_id.len() != 16 {
        return Err(SegmentError::Inconsistent(format!(
            "recording id is {} bytes, not 16",
            header.recording_id.len()
        )));
    }
    let chain_ok = match header.sequence {
        0 => header.prev_hash.is_empty(),
        _ => header.prev_hash.len() == 32,
    };
    if !chain_ok || header.content_sha256.len() != 32 {
        return Err(SegmentError::Inconsistent("malformed hash fields".into()));
    }
    Ok((header, content_at))
}

/// Decodes a whole segment object and checks everything it claims: header
/// checksum, content length and SHA-256, event count and time range.
pub fn decode_segment(bytes: &[u8]) -> Result<DecodedSegment, SegmentError> {
    let (header, content_at) = decode_header(bytes)?;
    let content = &bytes[content_at..];
    if content.len() as u64 != header.content_len {
        return Err(SegmentError::ContentLength {
            expected: header.content_len,
            actual: content.len() as u64,
        });
    }
    if sha256(content)[..] != header.content_sha256[..] {
        return Err(SegmentError::ContentHash);
    }
    let events = EventList::decode(content)
        .map_err(|e| SegmentError::ContentDecode(e.to_string()))?
        .events;
    check_events(&header, &events)?;
    check_blocks(&header, content)?;
    Ok(DecodedSegment { header, events })
}

fn check_blocks(header: &SegmentHeader, content: &[u8]) -> Result<(), SegmentError> {
    let mut offset = 0;
    let mut index = header.first_event_index;
    for block in &header.blocks {
        if block.offset != offset || block.first_event_index != index {
            return Err(SegmentError::Inconsistent(format!(
                "block at offset {} is out of place",
                block.offset
            )));
        }
        let end = offset.saturating_add(block.len);
        if end > content.len() as u64 {
            return Err(SegmentError::Inconsistent(
                "blocks run past the content".into(),
            ));
        }
        let events = decode_block(block, &content[offset as usize..end as usize], true)?;
        offset = end;
        index = block.first_event_index + events.len() as u64;
    }
    if !header.blocks.is_empty()
        && (offset != header.content_len || index != header.first_event_index + header.event_count)
    {
        return Err(SegmentError::Inconsistent(
            "blocks do not cover the content".into(),
        ));
    }
    Ok(())
}

fn check_events(header: &SegmentHeader, events: &[Event]) -> Result<(), SegmentError> {
    let bad = |what: String| Err(SegmentError::Inconsistent(what));
    if events.len() as u64 != header.event_count {
        return bad(format!(
            "{} events, header says {}",
            events.len(),
            header.event_count
        ));
    }
    if let (Some(first), Some(last)) = (events.first(), events.last())
        && (first.time_us != header.start_time_us || last.time_us != header.end_time_us)
    {
        return bad("time range differs from the header".into());
    }
    if events.windows(2).any(|w| w[1].time_us < w[0].time_us) {
        return bad("event times go backwards".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn spec(sequence: u64, prev: Option<Hash>) -> SegmentSpec {
        SegmentSpec {
            recording_id: *b"0123456789abcdef",
            sequence,
            first_event_index: sequence * 10,
            prev_hash: prev,
            metadata: RecordingMetadata {
                user: "alice".into(),
                target: "db-1".into(),
                ..Default::default()
            },
            is_final: false,
            duration_us: 0,
            sealed_at_us: 1,
        }
    }

    fn arb_events() -> impl Strategy<Value = Vec<Event>> {
        proptest::collection::vec(
            (
                0u64..5_000_000,
                0i32..6,
                proptest::collection::vec(any::<u8>(), 0..64),
            ),
            0..40,
        )
        .prop_map(|raw| {
            let mut t = 0;
            raw.into_iter()
                .map(|(dt, kind, data)| {
                    t += dt;
                    Event {
                        time_us: t,
                        kind,
                        data,
                    }
                })
                .collect()
        })
    }

    #[test]
    fn chain_links_to_the_previous_object() {
        let ev = |t| Event {
            time_us: t,
            kind: 1,
            data: b"x".to_vec(),
        };
        let a = encode_segment(spec(0, None), &[ev(1), ev(2)]);
        let b = encode_segment(spec(1, Some(a.sha256)), &[ev(3)]);
        let db = decode_segment(&b.bytes).unwrap();
        assert_eq!(db.header.prev_hash, sha256(&a.bytes).to_vec());
        assert_eq!(db.events, vec![ev(3)]);
    }

    #[test]
    fn tampered_content_is_detected() {
        let seg = encode_segment(
            spec(0, None),
            &[Event {
                time_us: 5,
                kind: 1,
                data: b"secret".to_vec(),
            }],
        );
        let mut bytes = seg.bytes.clone();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(decode_segment(&bytes), Err(SegmentError::ContentHash));
        bytes.truncate(last);
        assert!(matches!(
            decode_segment(&bytes),
            Err(SegmentError::ContentLength { .. })
        ));
        assert_eq!(
            decode_segment(b"not a segment"),
            Err(SegmentError::BadMagic)
        );
    }

    proptest! {
        #[test]
        fn events_round_trip(events in arb_events(), seq in 0u64..3) {
            let prev = (seq > 0).then_some([7u8; 32]);
            let seg = encode_segment(spec(seq, prev), &events);
            prop_assert_eq!(seg.sha256, sha256(&seg.bytes));
            let back = decode_segment(&seg.bytes).unwrap();
            prop_assert_eq!(back.events, events);
            prop_assert_eq!(back.header, seg.header);
        }

        #[test]
        fn blocks_cover_the_content_and_find_any_window(
            sizes in proptest::collection::vec(0usize..40_000, 1..60),
            gaps in proptest::collection::vec(0u64..3, 60),
            from in 0u64..80,
            len in 0u64..80,
        ) {
            // Big events and repeated times, so blocks are many and equal
            // times straddle block boundaries.
            let mut t = 0;
            let events: Vec<Event> = sizes.iter().zip(&gaps).map(|(&n, &dt)| {
                t += dt;
                Event { time_us: t, kind: 1, data: vec![n as u8; n] }
            }).collect();
            let seg = encode_segment(spec(1, Some([1; 32])), &events);
            let content = &seg.bytes[seg.content_offset as usize..];
            let blocks = content_blocks(&seg.header);
            let decoded: Vec<Vec<Event>> = blocks.iter().map(|b| {
                decode_block(b, &content[b.offset as usize..(b.offset + b.len) as usize], true).unwrap()
            }).collect();
            prop_assert_eq!(decoded.concat(), events.clone());
            let to = from + len;
            let picked = blocks_for_window(&blocks, from, to);
            let found: Vec<Event> = decoded[picked].concat().into_iter()
                .filter(|e| e.time_us >= from && e.time_us < to).collect();
            let want: Vec<Event> = events.into_iter()
                .filter(|e| e.time_us >= from && e.time_us < to).collect();
            prop_assert_eq!(found, want);
        }

        #[test]
        fn arbitrary_bytes_decode_or_fail_cleanly(mut bytes in proptest::collection::vec(any::<u8>(), 0..400), magic in any::<bool>()) {
            if magic && bytes.len() >= 8 {
                bytes[..8].copy_from_slice(SEGMENT_MAGIC);
            }
            let _ = decode_segment(&bytes);
        }

        #[test]
        fn any_flipped_byte_is_rejected(events in arb_events(), at in any::<prop::sample::Index>(), flip in 1u8..=255) {
            let seg = encode_segment(spec(0, None), &events);
            let mut bytes = seg.bytes.clone();
            let i = at.index(bytes.len());
            bytes[i] ^= flip;
            prop_assert!(decode_segment(&bytes).is_err());
        }
    }
}
