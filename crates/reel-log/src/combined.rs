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
//! so a whole object is verified by streaming it once. The index is signed
//! (domain `index`, the signature in the index itself): a bucket writer can
//! neither reorder, drop nor re-point its entries unnoticed.

use prost::Message;
use reel_proto::v1::{IndexEntry, RecordingIndex};
use sha2::{Digest, Sha256};

use crate::error::{InvalidField, SegmentError};
use crate::limits::{MAX_INDEX_BYTES, MAX_SEGMENT_BYTES, MAX_SEGMENTS_PER_RECORDING};
use crate::segment::{Hash, Signer, check_signed};
use crate::wire;

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

    /// The index, signed by `keys`, and footer to write after the
    /// segments, and the index.
    pub fn finish(mut self, keys: &dyn reel_keys::KeyProvider) -> (Vec<u8>, RecordingIndex) {
        let content: Hash = self.digest.finalize().into();
        self.index.content_sha256 = content.to_vec();
        self.index.signing_key_id = keys.public_key().id().0.to_vec();
        let unsigned = self.index.encode_to_vec();
        self.index.signature = keys.sign(reel_keys::Domain::Index, &unsigned).to_vec();
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
/// length and CRC of the index before it. The length is at most
/// [`MAX_INDEX_BYTES`].
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
    if len > MAX_INDEX_BYTES {
        return Err(SegmentError::TooLarge {
            what: "combined object index",
            len,
            max: MAX_INDEX_BYTES,
        });
    }
    Ok((len, crc))
}

/// Decodes the index from the tail of an object: `tail` ends with the
/// footer and holds at least the index before it. The index is checked:
/// its segments in order, contiguous from offset 0, each of a size Reel
/// writes, so that `offset + size` of any entry can be used as a range.
pub fn decode_index(tail: &[u8]) -> Result<RecordingIndex, SegmentError> {
    if tail.len() < FOOTER_LEN {
        return Err(SegmentError::Truncated("combined object footer"));
    }
    let (len, crc) = decode_footer(&tail[tail.len() - FOOTER_LEN..])?;
    let body = &tail[..tail.len() - FOOTER_LEN];
    // At most MAX_INDEX_BYTES: fits in usize.
    let len = len as usize;
    if body.len() < len {
        return Err(SegmentError::Truncated("combined object index"));
    }
    let index = &body[body.len() - len..];
    if crc32c::crc32c(index) != crc {
        return Err(SegmentError::HeaderChecksum);
    }
    decode_index_message(index)
}

/// Decodes a `RecordingIndex` message (CRC already checked) and checks it;
/// its entries are counted on the wire first.
pub fn decode_index_message(index: &[u8]) -> Result<RecordingIndex, SegmentError> {
    let entries =
        wire::count(index, 2, false).map_err(|e| SegmentError::HeaderDecode(e.to_string()))?;
    if entries as u64 > MAX_SEGMENTS_PER_RECORDING {
        return Err(SegmentError::TooLarge {
            what: "combined object index's segment list",
            len: entries as u64,
            max: MAX_SEGMENTS_PER_RECORDING,
        });
    }
    let index =
        RecordingIndex::decode(index).map_err(|e| SegmentError::HeaderDecode(e.to_string()))?;
    check_index(&index).map_err(|e| e.within("index"))?;
    Ok(index)
}

/// The checks of a decoded index, each naming the field at fault.
pub fn check_index(index: &RecordingIndex) -> Result<(), InvalidField> {
    if index.recording_id.len() != 16 {
        return Err(InvalidField::new(
            "recording_id",
            format!("{} bytes, not 16", index.recording_id.len()),
        ));
    }
    if index.content_sha256.len() != 32 {
        return Err(InvalidField::new(
            "content_sha256",
            format!("{} bytes, not 32", index.content_sha256.len()),
        ));
    }
    let signed = !index.signature.is_empty();
    if index.signing_key_id.len() != if signed { 8 } else { 0 } {
        return Err(InvalidField::new(
            "signing_key_id",
            format!(
                "{} bytes for {} index",
                index.signing_key_id.len(),
                if signed { "a signed" } else { "an unsigned" }
            ),
        ));
    }
    if signed && index.signature.len() != reel_keys::SIGNATURE_LEN {
        return Err(InvalidField::new(
            "signature",
            format!(
                "{} bytes, not {}",
                index.signature.len(),
                reel_keys::SIGNATURE_LEN
            ),
        ));
    }
    let mut end = 0u64;
    for (i, s) in index.segments.iter().enumerate() {
        let bad = |field: &str, problem: String| {
            Err(InvalidField::new(format!("segments[{i}].{field}"), problem))
        };
        if s.offset != end {
            return bad(
                "offset",
                format!(
                    "segment {} at offset {}, expected {end}",
                    s.sequence, s.offset
                ),
            );
        }
        if s.size == 0 || s.size > MAX_SEGMENT_BYTES {
            return bad(
                "size",
                format!("{} bytes (a segment is 1 to {MAX_SEGMENT_BYTES})", s.size),
            );
        }
        if i > 0 && s.sequence <= index.segments[i - 1].sequence {
            return bad("sequence", format!("{} out of order", s.sequence));
        }
        if s.sha256.len() != 32 {
            return bad("sha256", format!("{} bytes, not 32", s.sha256.len()));
        }
        if s.first_event_index.checked_add(s.event_count).is_none() {
            return bad(
                "event_count",
                format!(
                    "{} events from {} overflow",
                    s.event_count, s.first_event_index
                ),
            );
        }
        if s.start_time_us > s.end_time_us {
            return bad(
                "start_time_us",
                format!("{} is after end_time_us {}", s.start_time_us, s.end_time_us),
            );
        }
        end = s
            .offset
            .checked_add(s.size)
            .ok_or_else(|| InvalidField::new(format!("segments[{i}].size"), "overflows"))?;
    }
    Ok(())
}

/// Checks the signature of a combined object's index against the
/// `trusted` keys: [`Signer::Unsigned`] for an index recombined before
/// indexes were signed, an error for one signed by another key or whose
/// bytes changed.
pub fn verify_index_signature(
    index: &RecordingIndex,
    trusted: &[reel_keys::PublicKey],
) -> Result<Signer, SegmentError> {
    if index.signature.is_empty() {
        return Ok(Signer::Unsigned);
    }
    // check_index made the id 8 bytes whenever there is a signature.
    let mut unsigned = index.clone();
    unsigned.signature.clear();
    check_signed(
        trusted,
        &index.signing_key_id,
        reel_keys::Domain::Index,
        &unsigned.encode_to_vec(),
        &index.signature,
        |key_id| SegmentError::IndexSignature { key_id },
    )
}

/// The bytes of an index's segments: where the index starts in the object.
pub fn index_content_len(index: &RecordingIndex) -> u64 {
    index
        .segments
        .last()
        .map_or(0, |s| s.offset.saturating_add(s.size))
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
        build_with(segments, &reel_keys::FileKeys::ephemeral().unwrap())
    }

    fn build_with(
        segments: &[&[u8]],
        keys: &dyn reel_keys::KeyProvider,
    ) -> (Vec<u8>, RecordingIndex) {
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
        let (tail, index) = b.finish(keys);
        object.extend_from_slice(&tail);
        (object, index)
    }

    #[test]
    fn the_index_is_signed_and_a_changed_or_moved_index_is_refused() {
        use reel_keys::KeyProvider;
        let keys = reel_keys::FileKeys::ephemeral().unwrap();
        let other = reel_keys::FileKeys::ephemeral().unwrap();
        let trusted = [keys.public_key()];
        let (object, _) = build_with(&[b"abc", b"def", b"ghi"], &keys);
        let index = decode_index(&object).unwrap();
        assert_eq!(
            verify_index_signature(&index, &trusted).unwrap(),
            Signer::Key(keys.public_key().id())
        );
        // A bucket writer drops the last entry, or points one elsewhere,
        // and mends the CRC (`tail_of`): the signature no longer checks.
        let mut dropped = index.clone();
        dropped.segments.pop();
        let decoded = decode_index(&tail_of(&dropped)).unwrap();
        assert!(matches!(
            verify_index_signature(&decoded, &trusted),
            Err(SegmentError::IndexSignature { .. })
        ));
        let mut moved = index.clone();
        moved.recording_id = vec![8; 16];
        assert!(verify_index_signature(&moved, &trusted).is_err());
        // Signed by another server: not trusted here.
        let (foreign, _) = build_with(&[b"abc"], &other);
        assert!(matches!(
            verify_index_signature(&decode_index(&foreign).unwrap(), &trusted),
            Err(SegmentError::UnknownSigner { .. })
        ));
        // Stripped of its signature, it reads as unsigned (what the caller
        // refuses unless told to accept it); a half-stripped one is invalid.
        let mut stripped = index.clone();
        stripped.signature.clear();
        stripped.signing_key_id.clear();
        assert_eq!(
            verify_index_signature(&decode_index(&tail_of(&stripped)).unwrap(), &trusted).unwrap(),
            Signer::Unsigned
        );
        let mut half = index;
        half.signing_key_id.clear();
        assert!(decode_index(&tail_of(&half)).is_err());
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

    /// An index message in a tail with its CRC and footer right.
    fn tail_of(index: &RecordingIndex) -> Vec<u8> {
        let bytes = index.encode_to_vec();
        let mut tail = bytes.clone();
        tail.extend_from_slice(INDEX_MAGIC);
        tail.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        tail.extend_from_slice(&crc32c::crc32c(&bytes).to_le_bytes());
        tail.extend_from_slice(&VERSION.to_le_bytes());
        tail
    }

    #[test]
    fn entries_whose_ranges_overflow_are_refused_by_field() {
        let (_, good) = build(&[b"abc", b"def"]);
        let mut index = good.clone();
        // Before: contiguous, so accepted, and `offset + size` overflowed.
        index.segments[0].size = u64::MAX - 1;
        index.segments[1].offset = u64::MAX - 1;
        let err = decode_index(&tail_of(&index)).unwrap_err();
        assert!(
            matches!(&err, SegmentError::Invalid { field, .. } if field == "index.segments[0].size"),
            "{err}"
        );
        let mut index = good.clone();
        index.segments[1].first_event_index = u64::MAX;
        let err = decode_index(&tail_of(&index)).unwrap_err();
        assert!(
            err.to_string().contains("index.segments[1].event_count"),
            "{err}"
        );
        let mut index = good;
        index.segments.swap(0, 1);
        assert!(decode_index(&tail_of(&index)).is_err());
    }

    #[test]
    fn a_footer_naming_a_huge_index_is_refused() {
        // Before: accepted, and the reader of the tail added the footer's
        // length to it.
        let mut footer = INDEX_MAGIC.to_vec();
        footer.extend_from_slice(&(u64::MAX - 3).to_le_bytes());
        footer.extend_from_slice(&0u32.to_le_bytes());
        footer.extend_from_slice(&VERSION.to_le_bytes());
        assert!(matches!(
            decode_footer(&footer),
            Err(SegmentError::TooLarge { len, .. }) if len == u64::MAX - 3
        ));
        // Entries counted before they are decoded.
        let mut many = Vec::new();
        for _ in 0..=MAX_SEGMENTS_PER_RECORDING {
            many.extend_from_slice(&[0x12, 0x00]);
        }
        assert!(matches!(
            decode_index_message(&many),
            Err(SegmentError::TooLarge { .. })
        ));
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
