//! The combined recording object: what a recording becomes once the
//! compactor has recombined it onto the primary.
//!
//! ```text
//! segment 0 object | segment 1 object | ... | RecordingIndex | footer
//! footer (24 bytes) = magic "REELIDX1" | index length u64 LE | CRC32C of the index u32 LE | version u32 LE
//! ```
//!
//! The segments are copied byte for byte, so each still checks on its own
//! (its header, its SHA-256, the hash of the one before it) and the index
//! only says where each one is. A reader seeking by time reads the footer
//! and index (one range read of the object's tail, usually) and then the one
//! segment it needs. The index carries the SHA-256 of everything before it,
//! so a whole object is verified by streaming it once.

use prost::Message;
use reel_proto::v1::{IndexEntry, RecordingIndex};
use sha2::{Digest, Sha256};

use crate::error::SegmentError;
use crate::segment::Hash;

/// The magic of the footer.
pub const INDEX_MAGIC: &[u8; 8] = b"REELIDX1";
/// Bytes of the fixed footer at the very end of the object.
pub const FOOTER_LEN: usize = 24;
const VERSION: u32 = 1;

/// Builds a combined object as its segments stream through: hand every
/// segment object to [`add_segment`](Self::add_segment) in order, write the
/// same bytes out, then write [`finish`](Self::finish)'s tail.
pub struct CombinedBuilder {
    index: RecordingIndex,
    offset: u64,
    digest: Sha256,
}

impl CombinedBuilder {
    pub fn new(recording_id: Vec<u8>) -> Self {
        CombinedBuilder {
            index: RecordingIndex {
                recording_id,
                ..Default::default()
            },
            offset: 0,
            digest: Sha256::new(),
        }
    }

    /// Records the next segment (its catalog description in `entry`, whose
    /// offset and size are filled in here) and feeds its bytes to the digest.
    pub fn add_segment(&mut self, mut entry: IndexEntry, bytes: &[u8]) {
        entry.offset = self.offset;
        entry.size = bytes.len() as u64;
        self.digest.update(bytes);
        self.offset += bytes.len() as u64;
        self.index.event_count = self
            .index
            .event_count
            .max(entry.first_event_index + entry.event_count);
        self.index.duration_us = self.index.duration_us.max(entry.end_time_us);
        self.index.last_segment_hash = entry.sha256.clone();
        self.index.segments.push(entry);
    }

    /// The bytes of the segments so far.
    pub fn content_len(&self) -> u64 {
        self.offset
    }

    /// The index and footer to write after the segments, and the index.
    pub fn finish(mut self) -> (Vec<u8>, RecordingIndex) {
        let content: Hash = self.digest.finalize().into();
        self.index.content_sha256 = content.to_vec();
        let index = self.index.encode_to_vec();
        let mut tail = Vec::with_capacity(index.len() + FOOTER_LEN);
        tail.extend_from_slice(&index);
        tail.extend_from_slice(INDEX_MAGIC);
        tail.extend_from_slice(&(index.len() as u64).to_le_bytes());
        tail.extend_from_slice(&crc32c::crc32c(&index).to_le_bytes());
        tail.extend_from_slice(&VERSION.to_le_bytes());
        (tail, self.index)
    }
}

/// Reads the footer (the last [`FOOTER_LEN`] bytes of an object): the
/// length and CRC of the index before it.
pub fn decode_footer(footer: &[u8]) -> Result<(u64, u32), SegmentError> {
    if footer.len() != FOOTER_LEN {
        return Err(SegmentError::Truncated("combined object footer"));
    }
    if &footer[..8] != INDEX_MAGIC {
        return Err(SegmentError::BadMagic);
    }
    let version = u32::from_le_bytes(footer[20..24].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(SegmentError::Version(version));
    }
    let len = u64::from_le_bytes(footer[8..16].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(footer[16..20].try_into().expect("4 bytes"));
    Ok((len, crc))
}

/// Decodes the index from the tail of an object: `tail` ends with the
/// footer and holds at least the index before it.
pub fn decode_index(tail: &[u8]) -> Result<RecordingIndex, SegmentError> {
    if tail.len() < FOOTER_LEN {
        return Err(SegmentError::Truncated("combined object footer"));
    }
    let (len, crc) = decode_footer(&tail[tail.len() - FOOTER_LEN..])?;
    let body = &tail[..tail.len() - FOOTER_LEN];
    let len = usize::try_from(len).map_err(|_| SegmentError::Truncated("combined object index"))?;
    if body.len() < len {
        return Err(SegmentError::Truncated("combined object index"));
    }
    let index = &body[body.len() - len..];
    if crc32c::crc32c(index) != crc {
        return Err(SegmentError::HeaderChecksum);
    }
    let index =
        RecordingIndex::decode(index).map_err(|e| SegmentError::HeaderDecode(e.to_string()))?;
    let mut end = 0;
    for s in &index.segments {
        if s.offset != end {
            return Err(SegmentError::Inconsistent(format!(
                "segment {} at offset {}, expected {end}",
                s.sequence, s.offset
            )));
        }
        end = s.offset + s.size;
    }
    Ok(index)
}

/// The index's segments that hold events at or after `time_us` up to
/// `until_us`: what a reader of that window must fetch.
pub fn segments_for_window(
    index: &RecordingIndex,
    time_us: u64,
    until_us: u64,
) -> Vec<&IndexEntry> {
    index
        .segments
        .iter()
        .filter(|s| s.event_count > 0 && s.end_time_us >= time_us && s.start_time_us <= until_us)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(segments: &[&[u8]]) -> (Vec<u8>, RecordingIndex) {
        let mut b = CombinedBuilder::new(vec![7; 16]);
        let mut object = Vec::new();
        for (i, s) in segments.iter().enumerate() {
            b.add_segment(
                IndexEntry {
                    sequence: i as u64,
                    sha256: crate::sha256(s).to_vec(),
                    first_event_index: i as u64 * 10,
                    event_count: 10,
                    start_time_us: i as u64 * 1000,
                    end_time_us: i as u64 * 1000 + 999,
                    ..Default::default()
                },
                s,
            );
            object.extend_from_slice(s);
        }
        let (tail, index) = b.finish();
        object.extend_from_slice(&tail);
        (object, index)
    }

    #[test]
    fn the_index_finds_every_segment_and_the_digest_covers_them() {
        let segs: [&[u8]; 3] = [b"first segment", b"second", b"the third one"];
        let (object, index) = build(&segs);
        let decoded = decode_index(&object).unwrap();
        assert_eq!(decoded, index);
        for (entry, seg) in decoded.segments.iter().zip(segs) {
            assert_eq!(
                &object[entry.offset as usize..(entry.offset + entry.size) as usize],
                seg
            );
        }
        let content_len = decoded.segments.iter().map(|s| s.size).sum::<u64>() as usize;
        assert_eq!(
            crate::sha256(&object[..content_len]).to_vec(),
            decoded.content_sha256
        );
        assert_eq!(decoded.event_count, 30);
        assert_eq!(segments_for_window(&decoded, 1500, 2100).len(), 2);
    }

    #[test]
    fn a_damaged_tail_is_a_clear_error() {
        let (object, _) = build(&[b"abc", b"def"]);
        let mut bad = object.clone();
        let n = bad.len();
        bad[n - FOOTER_LEN - 2] ^= 1;
        assert!(matches!(
            decode_index(&bad),
            Err(SegmentError::HeaderChecksum)
        ));
        bad = object.clone();
        bad[n - FOOTER_LEN] = b'X';
        assert!(matches!(decode_index(&bad), Err(SegmentError::BadMagic)));
        assert!(decode_index(&object[..10]).is_err());
        assert!(decode_index(&object[n - FOOTER_LEN..]).is_err());
    }
}
