//! The segment codec: a sealed, immutable, self-describing run of one
//! recording's events, as it travels to the stores.
//!
//! Layout of a segment object:
//!
//! ```text
//! magic "REELSEG\x01" | header_len: u32 LE | SegmentHeader (protobuf)
//!                     | crc32c(header): u32 LE | content
//! magic "REELSEG\x02" | header_len: u32 LE | SegmentHeader (protobuf)
//!                     | crc32c(header): u32 LE | Ed25519 signature (64 bytes) | content
//! ```
//!
//! A signed segment (the second form) carries a signature of its header's
//! bytes as stored (`reel_keys::Domain::Segment`) by the key the header
//! names; the header lists the SHA-256 of the content and of each block,
//! the recording, the sequence, the event range and the previous segment's
//! SHA-256, so the signature binds all of them. [`verify_signature`]
//! checks it against the keys a reader trusts.
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

use reel_proto::v1::{ContentBlock, Event, RecordingMetadata, SegmentHeader};
use sha2::{Digest, Sha256};

use crate::error::{InvalidField, SegmentError};
use crate::limits::{MAX_BLOCKS_PER_SEGMENT, MAX_SEGMENT_CONTENT_BYTES, MIN_EVENT_BYTES};
use crate::sealed::RecordingKey;
use crate::wire;

pub const SEGMENT_MAGIC: &[u8; 8] = b"REELSEG\x01";
/// The magic of a signed segment.
pub const SIGNED_SEGMENT_MAGIC: &[u8; 8] = b"REELSEG\x02";
/// What a signature adds between the header and the content.
pub const SIGNATURE_LEN: usize = reel_keys::SIGNATURE_LEN;
pub const SEGMENT_FORMAT_VERSION: u32 = 1;
/// A header larger than this is treated as corruption.
pub const MAX_HEADER_LEN: usize = 1 << 20;
pub(crate) const PREFIX_LEN: usize = SEGMENT_MAGIC.len() + 4;
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

/// A segment object checked whole without keeping its events.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedSegment {
    pub header: SegmentHeader,
    /// Where the content starts within the object.
    pub content_offset: u64,
    /// The bytes of its events' data.
    pub data_bytes: u64,
}

/// Encodes `events` (in order, times never decreasing) as an unsigned
/// segment object (format 1; what Reel wrote before it signed).
pub fn encode_segment(spec: SegmentSpec, events: &[Event]) -> EncodedSegment {
    encode(spec, events, None, None).expect("nothing to seal")
}

/// Encodes `events` as a segment object whose header `keys` signs.
pub fn encode_signed_segment(
    spec: SegmentSpec,
    events: &[Event],
    keys: &dyn reel_keys::KeyProvider,
) -> EncodedSegment {
    encode(spec, events, Some(keys), None).expect("nothing to seal")
}

/// Encodes `events` as a signed segment object whose blocks are sealed with
/// the recording's data key (`key`, which must be `spec`'s recording's).
pub fn encode_sealed_segment(
    spec: SegmentSpec,
    events: &[Event],
    keys: &dyn reel_keys::KeyProvider,
    key: &RecordingKey,
) -> Result<EncodedSegment, reel_keys::KeyError> {
    debug_assert_eq!(key.recording_id(), &spec.recording_id);
    encode(spec, events, Some(keys), Some(key))
}

fn encode(
    spec: SegmentSpec,
    events: &[Event],
    keys: Option<&dyn reel_keys::KeyProvider>,
    key: Option<&RecordingKey>,
) -> Result<EncodedSegment, reel_keys::KeyError> {
    let mut content = Vec::with_capacity(events.iter().map(|e| e.data.len() + 16).sum());
    let mut blocks: Vec<ContentBlock> = Vec::new();
    let mut plain = Vec::new();
    for (i, e) in events.iter().enumerate() {
        if i == 0 || plain.len() >= BLOCK_TARGET_BYTES {
            close_block(&mut blocks, &mut content, &mut plain, key)?;
            blocks.push(ContentBlock {
                offset: content.len() as u64,
                first_event_index: spec.first_event_index + i as u64,
                start_time_us: e.time_us,
                ..Default::default()
            });
        }
        prost::encoding::message::encode(1, e, &mut plain);
    }
    close_block(&mut blocks, &mut content, &mut plain, key)?;
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
        signing_key_id: keys.map_or_else(Vec::new, |k| k.public_key().id().0.to_vec()),
        encrypted: key.is_some(),
        data_bytes: events.iter().map(|e| e.data.len() as u64).sum(),
    };
    let header_bytes = header.encode_to_vec();
    let mut bytes =
        Vec::with_capacity(PREFIX_LEN + header_bytes.len() + 4 + SIGNATURE_LEN + content.len());
    bytes.extend_from_slice(if keys.is_some() {
        SIGNED_SEGMENT_MAGIC
    } else {
        SEGMENT_MAGIC
    });
    bytes.extend_from_slice(&(header_bytes.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&header_bytes);
    bytes.extend_from_slice(&crc32c::crc32c(&header_bytes).to_le_bytes());
    if let Some(keys) = keys {
        bytes.extend_from_slice(&keys.sign(reel_keys::Domain::Segment, &header_bytes));
    }
    bytes.extend_from_slice(&content);
    let sha256 = sha256(&bytes);
    Ok(EncodedSegment {
        content_offset: (bytes.len() - content.len()) as u64,
        bytes,
        sha256,
        header,
    })
}

/// Ends the last block of `blocks` with the events in `plain`: sealed with
/// `key` when there is one, appended to `content`, its length, CRC32C and
/// SHA-256 (of the bytes as stored) set.
fn close_block(
    blocks: &mut [ContentBlock],
    content: &mut Vec<u8>,
    plain: &mut Vec<u8>,
    key: Option<&RecordingKey>,
) -> Result<(), reel_keys::KeyError> {
    let Some(last) = blocks.last_mut() else {
        return Ok(());
    };
    let stored = match key {
        Some(key) => key.seal_block(last.first_event_index, last.start_time_us, plain)?,
        None => std::mem::take(plain),
    };
    plain.clear();
    last.len = stored.len() as u64;
    last.crc32c = crc32c::crc32c(&stored);
    last.sha256 = sha256(&stored).to_vec();
    content.extend_from_slice(&stored);
    Ok(())
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
        sha256: Vec::new(),
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

/// Checks one block's bytes against its CRC32C and, for a block stored in
/// the clear, its SHA-256 (when the block has one: segments sealed before it
/// existed have only the CRC), opens it with `key` when the recording is
/// encrypted, and decodes its events. `check_crc` is false only for the
/// whole-content block of a segment without blocks, whose caller checks the
/// content's SHA-256. A CRC32C can be kept by whoever changes the bytes;
/// the SHA-256 and the seal cannot. A sealed block's SHA-256 is not
/// computed here: opening it checks its Poly1305 tag under the recording's
/// data key, with the recording and the block's place in it as associated
/// data, which authenticates the same bytes against anyone without that
/// key (a bucket writer) at least as strongly; hashing them as well would
/// more than double what checking a sealed block costs a read. The signed
/// SHA-256 of sealed blocks is for those who hold only the public key:
/// `reel verify --content`, archives, rebuilds.
pub fn decode_block(
    block: &ContentBlock,
    bytes: &[u8],
    check_crc: bool,
    key: Option<&RecordingKey>,
) -> Result<Vec<Event>, SegmentError> {
    if bytes.len() as u64 != block.len {
        return Err(SegmentError::ContentLength {
            expected: block.len,
            actual: bytes.len() as u64,
        });
    }
    // Without a CRC (the whole content of a segment without blocks) there
    // is no SHA-256 either: the caller checks the content's.
    if check_crc {
        check_block_bytes(block, bytes, key.is_none())?;
    }
    let opened = open_block(block, bytes, key)?;
    let bytes = &opened[..];
    let mut events = Vec::new();
    for_each_event(bytes, block.offset, |offset, e| {
        if events.is_empty() && e.time_us != block.start_time_us {
            return Err(SegmentError::Event {
                offset,
                reason: format!(
                    "the block's first event is at {} us, the block says {}",
                    e.time_us, block.start_time_us
                ),
            });
        }
        events.push(e);
        Ok(())
    })?;
    if events.is_empty() && block.len > 0 {
        return Err(SegmentError::Event {
            offset: block.offset,
            reason: "a block without events".into(),
        });
    }
    Ok(events)
}

/// Calls `each` with every event of a run of length-delimited events (an
/// `EventList`'s bytes) and its offset, `base` being the offset of `buf`
/// in the content. Only field 1 (an event) is accepted, as Reel writes
/// nothing else there; each event is decoded on its own, so memory follows
/// the events kept, not the run.
pub fn for_each_event(
    buf: &[u8],
    base: u64,
    mut each: impl FnMut(u64, Event) -> Result<(), SegmentError>,
) -> Result<(), SegmentError> {
    for field in wire::fields(buf) {
        let field = field.map_err(|e| SegmentError::Event {
            offset: base + e.offset as u64,
            reason: e.reason.into(),
        })?;
        let offset = base + field.offset as u64;
        let (1, Some(bytes)) = (field.number, field.bytes) else {
            return Err(SegmentError::Event {
                offset,
                reason: format!("field {} where an event was expected", field.number),
            });
        };
        let event = Event::decode(bytes).map_err(|e| SegmentError::Event {
            offset,
            reason: format!("event does not decode: {e}"),
        })?;
        each(offset, event)?;
    }
    Ok(())
}

/// Checks the layout of content blocks (from a segment header or a catalog
/// row) against the segment they cut: contiguous from offset 0 to the end
/// of the content, each holding at least one event, events and times in
/// order and inside the segment's. Every sum is checked, so the blocks can
/// be used as byte ranges of the content afterwards.
pub fn check_block_layout(
    blocks: &[ContentBlock],
    content_len: u64,
    first_event_index: u64,
    event_count: u64,
    start_time_us: u64,
    end_time_us: u64,
) -> Result<(), InvalidField> {
    if blocks.is_empty() {
        return Ok(());
    }
    if event_count == 0 {
        return Err(InvalidField::new(
            "blocks",
            format!("{} blocks in a segment without events", blocks.len()),
        ));
    }
    let most = content_len / BLOCK_TARGET_BYTES as u64 + 1;
    if blocks.len() as u64 > most {
        return Err(InvalidField::new(
            "blocks",
            format!(
                "{} blocks cut {content_len} content bytes (at most {most})",
                blocks.len()
            ),
        ));
    }
    // Checked by the caller, but kept safe on its own.
    let end_index = first_event_index.checked_add(event_count).ok_or_else(|| {
        InvalidField::new("event_count", "first_event_index + event_count overflows")
    })?;
    let mut offset = 0u64;
    for (i, b) in blocks.iter().enumerate() {
        let bad = |field: &str, problem: String| {
            Err(InvalidField::new(format!("blocks[{i}].{field}"), problem))
        };
        if b.offset != offset {
            return bad(
                "offset",
                format!("{} where the previous block ends at {offset}", b.offset),
            );
        }
        if b.len < MIN_EVENT_BYTES {
            return bad("len", format!("{} bytes cannot hold an event", b.len));
        }
        if !matches!(b.sha256.len(), 0 | 32) {
            return bad("sha256", format!("{} bytes, not 32", b.sha256.len()));
        }
        offset = match b.offset.checked_add(b.len) {
            Some(end) if end <= content_len => end,
            _ => {
                return bad(
                    "len",
                    format!(
                        "{} bytes at {} run past the content ({content_len} bytes)",
                        b.len, b.offset
                    ),
                );
            }
        };
        let (index_ok, time_ok) = match i.checked_sub(1).map(|p| &blocks[p]) {
            None => (
                b.first_event_index == first_event_index,
                b.start_time_us == start_time_us,
            ),
            Some(prev) => (
                b.first_event_index > prev.first_event_index && b.first_event_index < end_index,
                b.start_time_us >= prev.start_time_us && b.start_time_us <= end_time_us,
            ),
        };
        if !index_ok {
            return bad(
                "first_event_index",
                format!(
                    "{} is out of order in events {first_event_index}..{end_index}",
                    b.first_event_index
                ),
            );
        }
        if !time_ok {
            return bad(
                "start_time_us",
                format!(
                    "{} is out of order in times {start_time_us}..={end_time_us}",
                    b.start_time_us
                ),
            );
        }
    }
    if offset != content_len {
        return Err(InvalidField::new(
            "blocks",
            format!("cover {offset} of {content_len} content bytes"),
        ));
    }
    Ok(())
}

/// The checks of a header that need no content: bounds, hash fields, the
/// event range, and the layout of its blocks.
pub fn check_header(header: &SegmentHeader) -> Result<(), SegmentError> {
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
    if !matches!(header.signing_key_id.len(), 0 | 8) {
        return Err(SegmentError::Inconsistent(format!(
            "signing key id is {} bytes, not 8",
            header.signing_key_id.len()
        )));
    }
    if header.content_len > MAX_SEGMENT_CONTENT_BYTES {
        return Err(SegmentError::TooLarge {
            what: "segment content_len",
            len: header.content_len,
            max: MAX_SEGMENT_CONTENT_BYTES,
        });
    }
    let bad = |field: &str, problem: String| {
        Err(SegmentError::Invalid {
            field: format!("header.{field}"),
            problem,
        })
    };
    if header
        .first_event_index
        .checked_add(header.event_count)
        .is_none()
    {
        return bad(
            "event_count",
            format!(
                "{} events from index {} overflow",
                header.event_count, header.first_event_index
            ),
        );
    }
    if header.event_count > header.content_len / MIN_EVENT_BYTES {
        return bad(
            "event_count",
            format!(
                "{} events cannot fit in {} content bytes",
                header.event_count, header.content_len
            ),
        );
    }
    if header.start_time_us > header.end_time_us {
        return bad(
            "start_time_us",
            format!(
                "{} is after end_time_us {}",
                header.start_time_us, header.end_time_us
            ),
        );
    }
    // (A final segment of no events has no blocks.)
    let unhashed = header.event_count > 0 && header.blocks.is_empty()
        || header.blocks.iter().any(|b| b.sha256.is_empty());
    if header.encrypted && unhashed {
        return Err(SegmentError::Inconsistent(
            "an encrypted segment without a SHA-256 for every block".into(),
        ));
    }
    check_block_layout(
        &header.blocks,
        header.content_len,
        header.first_event_index,
        header.event_count,
        header.start_time_us,
        header.end_time_us,
    )
    .map_err(|e| e.within("header"))?;
    Ok(())
}

/// Decodes and checks the header at the start of `bytes`; returns it and the
/// offset where the content starts. Needs only the header's bytes, so a
/// reader can fetch a prefix first.
pub fn decode_header(bytes: &[u8]) -> Result<(SegmentHeader, usize), SegmentError> {
    let framed = frame(bytes)?;
    Ok((framed.header, framed.content_at))
}

/// A segment object's header as framed: the header, where its bytes are,
/// its signature if the object is signed, and where the content starts.
struct Framed {
    header: SegmentHeader,
    header_bytes: Range<usize>,
    signature: Option<[u8; SIGNATURE_LEN]>,
    content_at: usize,
}

fn frame(bytes: &[u8]) -> Result<Framed, SegmentError> {
    if bytes.len() < SEGMENT_MAGIC.len() {
        return Err(SegmentError::Truncated("magic"));
    }
    let signed = match &bytes[..SEGMENT_MAGIC.len()] {
        m if m == SEGMENT_MAGIC => false,
        m if m == SIGNED_SEGMENT_MAGIC => true,
        _ => return Err(SegmentError::BadMagic),
    };
    if bytes.len() < PREFIX_LEN {
        return Err(SegmentError::Truncated("header length"));
    }
    let header_len = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize;
    if header_len > MAX_HEADER_LEN {
        return Err(SegmentError::TooLarge {
            what: "segment header",
            len: header_len as u64,
            max: MAX_HEADER_LEN as u64,
        });
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
    let header = decode_header_message(header_bytes)?;
    // The header says whether a signature follows; the magic must agree,
    // so that neither can be stripped alone.
    if header.signing_key_id.is_empty() == signed {
        return Err(SegmentError::Inconsistent(
            "the magic and the header disagree on whether the segment is signed".into(),
        ));
    }
    let (signature, content_at) = if signed {
        let end = content_at + SIGNATURE_LEN;
        if bytes.len() < end {
            return Err(SegmentError::Truncated("signature"));
        }
        let sig: [u8; SIGNATURE_LEN] = bytes[content_at..end].try_into().expect("64 bytes");
        (Some(sig), end)
    } else {
        (None, content_at)
    };
    Ok(Framed {
        header,
        header_bytes: PREFIX_LEN..PREFIX_LEN + header_len,
        signature,
        content_at,
    })
}

/// Who signed a segment object, as [`verify_signature`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signer {
    /// Written before Reel signed segments (format 1): nothing vouches for
    /// it but the catalog that names its SHA-256.
    Unsigned,
    /// Signed by this key, and the signature checks.
    Key(reel_keys::KeyId),
}

/// Checks the signature of the segment object at the start of `bytes` (its
/// header and signature suffice; the content is bound through the hashes
/// the header lists, which [`check_segment`] and [`decode_block`] check)
/// against `trusted` keys. A signed segment whose key is not trusted, or
/// whose signature does not check, is an error; an unsigned one is
/// [`Signer::Unsigned`], for the caller to judge.
pub fn verify_signature(
    bytes: &[u8],
    trusted: &[reel_keys::PublicKey],
) -> Result<Signer, SegmentError> {
    let framed = frame(bytes)?;
    let Some(signature) = framed.signature else {
        return Ok(Signer::Unsigned);
    };
    check_signed(
        trusted,
        &framed.header.signing_key_id,
        reel_keys::Domain::Segment,
        &bytes[framed.header_bytes],
        &signature,
        |key_id| SegmentError::BadSignature { key_id },
    )
}

/// Checks `signature` of `message` for `domain` by the key `key_id` names
/// (8 bytes, checked by the caller's decoder) among `trusted`: a key not
/// trusted is [`SegmentError::UnknownSigner`], a signature that does not
/// check what `bad` makes of the key's id.
pub(crate) fn check_signed(
    trusted: &[reel_keys::PublicKey],
    key_id: &[u8],
    domain: reel_keys::Domain,
    message: &[u8],
    signature: &[u8],
    bad: fn(String) -> SegmentError,
) -> Result<Signer, SegmentError> {
    let key_id = reel_keys::KeyId(key_id.try_into().expect("checked to be 8 bytes"));
    let key =
        trusted
            .iter()
            .find(|k| k.id() == key_id)
            .ok_or_else(|| SegmentError::UnknownSigner {
                key_id: key_id.to_string(),
            })?;
    key.verify(domain, message, signature)
        .map_err(|_| bad(key_id.to_string()))?;
    Ok(Signer::Key(key_id))
}

/// Decodes a `SegmentHeader` message (the header's bytes, CRC already
/// checked) and checks it. Its blocks are counted on the wire first: an
/// empty one is 2 bytes there and 40 decoded.
pub fn decode_header_message(header_bytes: &[u8]) -> Result<SegmentHeader, SegmentError> {
    let blocks = wire::count(header_bytes, 15, false)
        .map_err(|e| SegmentError::HeaderDecode(e.to_string()))?;
    if blocks as u64 > MAX_BLOCKS_PER_SEGMENT {
        return Err(SegmentError::TooLarge {
            what: "segment header's block list",
            len: blocks as u64,
            max: MAX_BLOCKS_PER_SEGMENT,
        });
    }
    let header = SegmentHeader::decode(header_bytes)
        .map_err(|e| SegmentError::HeaderDecode(e.to_string()))?;
    check_header(&header)?;
    Ok(header)
}

/// Decodes a whole segment object and checks everything it claims: header
/// checksum, content length and SHA-256, every block's CRC32C and SHA-256,
/// event count and time range. An encrypted segment needs its recording's
/// `key` ([`SegmentError::KeyNeeded`] without it); a plain one ignores it.
pub fn decode_segment(
    bytes: &[u8],
    key: Option<&RecordingKey>,
) -> Result<DecodedSegment, SegmentError> {
    let mut events = Vec::new();
    let checked = walk_segment(bytes, Some(key), |e| events.push(e))?;
    Ok(DecodedSegment {
        header: checked.header,
        events,
    })
}

/// Checks a whole segment object as [`decode_segment`] does, one event at a
/// time, without keeping the events. An encrypted segment is checked
/// without its key as far as its sealed bytes go: header, content hash,
/// every block's CRC32C and SHA-256, and its data size as its (signed)
/// header states it.
pub fn check_segment(bytes: &[u8]) -> Result<CheckedSegment, SegmentError> {
    walk_segment(bytes, None, |_| {})
}

/// `key`: `None` when the events need not be read (a check), `Some(key)`
/// when they must be.
fn walk_segment(
    bytes: &[u8],
    key: Option<Option<&RecordingKey>>,
    mut keep: impl FnMut(Event),
) -> Result<CheckedSegment, SegmentError> {
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
    let key = match (header.encrypted, key) {
        (false, _) => None,
        (true, None | Some(None)) => {
            for block in &header.blocks {
                // check_block_layout made these ranges safe.
                let range = block.offset as usize..(block.offset + block.len) as usize;
                check_block_bytes(block, &content[range], true)?;
            }
            if key.is_some() {
                return Err(SegmentError::KeyNeeded);
            }
            return Ok(CheckedSegment {
                data_bytes: header.data_bytes,
                header,
                content_offset: content_at as u64,
            });
        }
        (true, Some(Some(key))) if key.recording_id()[..] != header.recording_id[..] => {
            return Err(SegmentError::Inconsistent(
                "the key given is another recording's".into(),
            ));
        }
        (true, Some(Some(key))) => Some(key),
    };
    let mut tally = Tally::default();
    if header.blocks.is_empty() {
        for_each_event(content, 0, |offset, e| {
            tally.add(offset, &e)?;
            keep(e);
            Ok(())
        })?;
    } else {
        for block in &header.blocks {
            // check_block_layout made these ranges safe.
            let range = block.offset as usize..(block.offset + block.len) as usize;
            let stored = &content[range];
            check_block_bytes(block, stored, true)?;
            let opened = open_block(block, stored, key)?;
            let bytes = &opened[..];
            let before = tally.count;
            for_each_event(bytes, block.offset, |offset, e| {
                if tally.count == before {
                    let index = header.first_event_index + before;
                    if index != block.first_event_index || e.time_us != block.start_time_us {
                        return Err(SegmentError::Event {
                            offset,
                            reason: format!(
                                "event {index} at {} us starts a block that names event {} at {} us",
                                e.time_us, block.first_event_index, block.start_time_us
                            ),
                        });
                    }
                }
                tally.add(offset, &e)?;
                keep(e);
                Ok(())
            })?;
            if tally.count == before {
                return Err(SegmentError::Event {
                    offset: block.offset,
                    reason: "a block without events".into(),
                });
            }
        }
    }
    tally.finish(&header)?;
    Ok(CheckedSegment {
        header,
        content_offset: content_at as u64,
        data_bytes: tally.data_bytes,
    })
}

/// A block's events as stored (a plain block) or opened with `key` (a
/// sealed one).
fn open_block<'a>(
    block: &ContentBlock,
    stored: &'a [u8],
    key: Option<&RecordingKey>,
) -> Result<std::borrow::Cow<'a, [u8]>, SegmentError> {
    match key {
        None => Ok(std::borrow::Cow::Borrowed(stored)),
        Some(key) => key
            .open_block(block.first_event_index, block.start_time_us, stored)
            .map(std::borrow::Cow::Owned)
            .ok_or(SegmentError::BlockSeal {
                offset: block.offset,
            }),
    }
}

/// A block's stored bytes against its CRC32C and (with `hash`) its SHA-256.
fn check_block_bytes(block: &ContentBlock, bytes: &[u8], hash: bool) -> Result<(), SegmentError> {
    if crc32c::crc32c(bytes) != block.crc32c {
        return Err(SegmentError::BlockChecksum {
            offset: block.offset,
        });
    }
    if hash && !block.sha256.is_empty() && sha256(bytes)[..] != block.sha256[..] {
        return Err(SegmentError::BlockIntegrity {
            offset: block.offset,
        });
    }
    Ok(())
}

/// What the events of a segment add up to, as they are read.
#[derive(Default)]
struct Tally {
    count: u64,
    first_time: Option<u64>,
    last_time: u64,
    data_bytes: u64,
}

impl Tally {
    fn add(&mut self, offset: u64, e: &Event) -> Result<(), SegmentError> {
        if self.first_time.is_some() && e.time_us < self.last_time {
            return Err(SegmentError::Event {
                offset,
                reason: format!(
                    "event time goes backwards ({} us after {} us)",
                    e.time_us, self.last_time
                ),
            });
        }
        self.first_time.get_or_insert(e.time_us);
        self.last_time = e.time_us;
        self.count += 1;
        self.data_bytes += e.data.len() as u64;
        Ok(())
    }

    fn finish(&self, header: &SegmentHeader) -> Result<(), SegmentError> {
        if self.count != header.event_count {
            return Err(SegmentError::Inconsistent(format!(
                "{} events, header says {}",
                self.count, header.event_count
            )));
        }
        if let Some(first) = self.first_time
            && (first != header.start_time_us || self.last_time != header.end_time_us)
        {
            return Err(SegmentError::Inconsistent(
                "time range differs from the header".into(),
            ));
        }
        if header.data_bytes != 0 && self.data_bytes != header.data_bytes {
            return Err(SegmentError::Inconsistent(format!(
                "{} bytes of event data, header says {}",
                self.data_bytes, header.data_bytes
            )));
        }
        Ok(())
    }
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
        let db = decode_segment(&b.bytes, None).unwrap();
        assert_eq!(db.header.prev_hash, sha256(&a.bytes).to_vec());
        assert_eq!(db.events, vec![ev(3)]);
    }

    /// A segment object put together by hand, as a bucket writer could.
    fn reframe(
        magic: &[u8; 8],
        header: &SegmentHeader,
        signature: Option<&[u8]>,
        content: &[u8],
    ) -> Vec<u8> {
        let h = header.encode_to_vec();
        let mut out = magic.to_vec();
        out.extend_from_slice(&(h.len() as u32).to_le_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(&crc32c::crc32c(&h).to_le_bytes());
        out.extend_from_slice(signature.unwrap_or_default());
        out.extend_from_slice(content);
        out
    }

    #[test]
    fn a_sealed_segment_holds_no_plaintext_and_opens_only_with_its_key() {
        let keys = reel_keys::FileKeys::ephemeral().unwrap();
        let id = *b"0123456789abcdef";
        let key = RecordingKey::new(id, reel_keys::DataKey::generate().unwrap());
        // Enough events for several blocks, a secret in one of them.
        let events: Vec<Event> = (0..400u64)
            .map(|i| Event {
                time_us: i * 1000,
                kind: 1,
                data: if i == 250 {
                    b"password: hunter2-secret".to_vec()
                } else {
                    vec![b'a' + (i % 26) as u8; 400]
                },
            })
            .collect();
        let seg = encode_sealed_segment(spec(0, None), &events, &keys, &key).unwrap();
        assert!(seg.header.encrypted);
        assert!(
            seg.header.blocks.len() > 1,
            "{} blocks",
            seg.header.blocks.len()
        );
        assert!(!seg.bytes.windows(14).any(|w| w == b"hunter2-secret"));
        assert!(!seg.bytes.windows(20).any(|w| w == [b'a'; 20]));

        assert_eq!(
            decode_segment(&seg.bytes, Some(&key)).unwrap().events,
            events
        );
        assert_eq!(
            decode_segment(&seg.bytes, None),
            Err(SegmentError::KeyNeeded)
        );
        // Checked without the key as far as the sealed bytes go.
        let checked = check_segment(&seg.bytes).unwrap();
        let data: u64 = events.iter().map(|e| e.data.len() as u64).sum();
        assert_eq!(checked.data_bytes, data);
        // Another data key (a recording's key moved over, or guessed).
        let other = RecordingKey::new(id, reel_keys::DataKey::generate().unwrap());
        assert!(matches!(
            decode_segment(&seg.bytes, Some(&other)),
            Err(SegmentError::BlockSeal { .. })
        ));
        // Block by block, as a reader reads them.
        let content = &seg.bytes[seg.content_offset as usize..];
        let mut again = Vec::new();
        for b in &seg.header.blocks {
            let bytes = &content[b.offset as usize..(b.offset + b.len) as usize];
            again.extend(decode_block(b, bytes, true, Some(&key)).unwrap());
            assert!(decode_block(b, bytes, true, Some(&other)).is_err());
        }
        assert_eq!(again, events);
        // Two blocks swapped, with the header's block list rewritten to
        // match (CRCs, hashes and all): the seal binds each block to its
        // place.
        let (mut header, _) = decode_header(&seg.bytes).unwrap();
        let (b0, b1) = (header.blocks[0].clone(), header.blocks[1].clone());
        let (c0, c1) = (
            &content[b0.offset as usize..(b0.offset + b0.len) as usize],
            &content[b1.offset as usize..(b1.offset + b1.len) as usize],
        );
        let mut swapped = c1.to_vec();
        swapped.extend_from_slice(c0);
        swapped.extend_from_slice(&content[(b1.offset + b1.len) as usize..]);
        header.blocks[0] = ContentBlock {
            offset: 0,
            len: b1.len,
            crc32c: b1.crc32c,
            sha256: b1.sha256.clone(),
            ..b0.clone()
        };
        header.blocks[1] = ContentBlock {
            offset: b1.len,
            len: b0.len,
            crc32c: b0.crc32c,
            sha256: b0.sha256.clone(),
            ..b1.clone()
        };
        header.content_sha256 = sha256(&swapped).to_vec();
        header.signing_key_id.clear();
        let forged = reframe(SEGMENT_MAGIC, &header, None, &swapped);
        assert!(matches!(
            decode_segment(&forged, Some(&key)),
            Err(SegmentError::BlockSeal { .. })
        ));
    }

    #[test]
    fn a_signed_segment_checks_with_its_key_and_no_other() {
        let keys = reel_keys::FileKeys::ephemeral().unwrap();
        let public = reel_keys::KeyProvider::public_key(&keys);
        let ev = |t, text: &str| Event {
            time_us: t,
            kind: 1,
            data: text.as_bytes().to_vec(),
        };
        let events = [ev(1, "ls -la"), ev(2, "exit")];
        let seg = encode_signed_segment(spec(0, None), &events, &keys);
        assert_eq!(&seg.bytes[..8], SIGNED_SEGMENT_MAGIC);
        assert_eq!(
            verify_signature(&seg.bytes, std::slice::from_ref(&public)),
            Ok(Signer::Key(public.id()))
        );
        // It reads like any segment; its content starts after the signature.
        assert_eq!(decode_segment(&seg.bytes, None).unwrap().events, events);
        let checked = check_segment(&seg.bytes).unwrap();
        assert_eq!(checked.content_offset, seg.content_offset);
        let (header, content_at) = decode_header(&seg.bytes).unwrap();
        assert_eq!(content_at as u64, seg.content_offset);
        let sig_at = content_at - SIGNATURE_LEN;
        let signature = &seg.bytes[sig_at..content_at];
        let content = &seg.bytes[content_at..];

        // Another server's key is not trusted.
        let other = reel_keys::FileKeys::ephemeral().unwrap();
        let other_public = reel_keys::KeyProvider::public_key(&other);
        assert!(matches!(
            verify_signature(&seg.bytes, &[other_public]),
            Err(SegmentError::UnknownSigner { .. })
        ));
        // A header changed, its CRC mended, the old signature kept.
        let mut changed = header.clone();
        changed.metadata.as_mut().unwrap().user = "mallo".into();
        let forged = reframe(SIGNED_SEGMENT_MAGIC, &changed, Some(signature), content);
        assert!(decode_segment(&forged, None).is_ok(), "self-consistent");
        assert!(matches!(
            verify_signature(&forged, std::slice::from_ref(&public)),
            Err(SegmentError::BadSignature { .. })
        ));
        // Re-signed by another key claiming to be this one.
        let resigned = reel_keys::KeyProvider::sign(
            &other,
            reel_keys::Domain::Segment,
            &changed.encode_to_vec(),
        );
        let forged = reframe(SIGNED_SEGMENT_MAGIC, &changed, Some(&resigned), content);
        assert!(verify_signature(&forged, std::slice::from_ref(&public)).is_err());
        // The signature stripped: the header still names its key.
        let stripped = reframe(SEGMENT_MAGIC, &header, None, content);
        assert!(matches!(
            decode_segment(&stripped, None),
            Err(SegmentError::Inconsistent(_))
        ));
        // Stripped with the key id too: a different header, so the chain's
        // next link (the SHA-256 of this object) no longer matches, and it
        // verifies only as unsigned.
        let mut anonymous = header.clone();
        anonymous.signing_key_id.clear();
        let unsigned = reframe(SEGMENT_MAGIC, &anonymous, None, content);
        assert_ne!(sha256(&unsigned), seg.sha256);
        assert_eq!(
            verify_signature(&unsigned, std::slice::from_ref(&public)),
            Ok(Signer::Unsigned)
        );
        // Cut inside the signature.
        assert!(matches!(
            decode_header(&seg.bytes[..sig_at + 10]),
            Err(SegmentError::Truncated("signature"))
        ));
    }

    #[test]
    fn a_block_whose_crc_was_mended_fails_its_integrity_check() {
        let ev = |t, text: &str| Event {
            time_us: t,
            kind: 1,
            data: text.as_bytes().to_vec(),
        };
        let seg = encode_segment(spec(0, None), &[ev(1, "ls -la"), ev(2, "exit")]);
        let block = &seg.header.blocks[0];
        assert_eq!(
            block.sha256,
            sha256(&seg.bytes[seg.content_offset as usize..]).to_vec()
        );
        let mut content = seg.bytes[seg.content_offset as usize..].to_vec();
        assert_eq!(decode_block(block, &content, true, None).unwrap().len(), 2);
        let at = content.windows(6).position(|w| w == b"ls -la").unwrap();
        content[at..at + 6].copy_from_slice(b"rm -rf");
        // Whoever changed the bytes also gave the block a matching CRC32C.
        let mended = ContentBlock {
            crc32c: crc32c::crc32c(&content),
            ..block.clone()
        };
        assert_eq!(
            decode_block(&mended, &content, true, None),
            Err(SegmentError::BlockIntegrity { offset: 0 })
        );
        // A hash of the wrong length is refused by the layout check.
        let bad = ContentBlock {
            sha256: vec![0; 31],
            ..block.clone()
        };
        let h = &seg.header;
        assert!(
            check_block_layout(
                &[bad],
                h.content_len,
                h.first_event_index,
                h.event_count,
                h.start_time_us,
                h.end_time_us
            )
            .is_err()
        );
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
        assert_eq!(decode_segment(&bytes, None), Err(SegmentError::ContentHash));
        bytes.truncate(last);
        assert!(matches!(
            decode_segment(&bytes, None),
            Err(SegmentError::ContentLength { .. })
        ));
        assert_eq!(
            decode_segment(b"not a segment", None),
            Err(SegmentError::BadMagic)
        );
    }

    /// A segment object around `header` and `content`, its CRC and SHA-256
    /// right.
    fn object(mut header: SegmentHeader, content: &[u8]) -> Vec<u8> {
        header.content_len = content.len() as u64;
        header.content_sha256 = sha256(content).to_vec();
        let h = header.encode_to_vec();
        let mut out = SEGMENT_MAGIC.to_vec();
        out.extend_from_slice(&(h.len() as u32).to_le_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(&crc32c::crc32c(&h).to_le_bytes());
        out.extend_from_slice(content);
        out
    }

    #[test]
    fn headers_whose_ranges_overflow_are_refused_by_field() {
        let ev = |t| Event {
            time_us: t,
            kind: 1,
            data: b"abc".to_vec(),
        };
        let seg = encode_segment(spec(0, None), &[ev(1), ev(2), ev(3)]);
        let content = &seg.bytes[seg.content_offset as usize..];
        let field = |h: SegmentHeader| match decode_segment(&object(h, content), None) {
            Err(SegmentError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        // Before: check_blocks added first_event_index and the count of a
        // block's events, and overflowed.
        let mut h = seg.header.clone();
        h.first_event_index = u64::MAX - 1;
        h.blocks[0].first_event_index = u64::MAX - 1;
        assert_eq!(field(h), "header.event_count");
        let mut h = seg.header.clone();
        h.blocks[0].len = u64::MAX;
        assert_eq!(field(h), "header.blocks[0].len");
        let mut h = seg.header.clone();
        h.blocks[0].offset = 1;
        assert_eq!(field(h), "header.blocks[0].offset");
        let mut h = seg.header.clone();
        h.blocks.push(ContentBlock::default());
        assert_eq!(field(h), "header.blocks");
        let mut h = seg.header.clone();
        h.event_count = 1000;
        assert_eq!(field(h), "header.event_count");
        let mut h = seg.header.clone();
        h.start_time_us = 5;
        assert_eq!(field(h), "header.start_time_us");
        // The header's blocks counted before they are decoded.
        let mut many = Vec::new();
        for _ in 0..=crate::limits::MAX_BLOCKS_PER_SEGMENT {
            many.extend_from_slice(&[0x7a, 0x00]);
        }
        assert!(matches!(
            decode_header_message(&many),
            Err(SegmentError::TooLarge { .. })
        ));
    }

    #[test]
    fn content_that_is_not_events_is_refused_at_its_offset() {
        let ev = |t| Event {
            time_us: t,
            kind: 1,
            data: b"abc".to_vec(),
        };
        let seg = encode_segment(spec(0, None), &[ev(1), ev(2)]);
        let content = seg.bytes[seg.content_offset as usize..].to_vec();
        let one = content.len() / 2;
        // Field 2 where the second event should be.
        let mut bad = content.clone();
        bad[one] = 0x12;
        let mut h = seg.header.clone();
        h.blocks[0].crc32c = crc32c::crc32c(&bad);
        h.blocks[0].sha256 = sha256(&bad).to_vec();
        assert!(matches!(
            decode_segment(&object(h, &bad), None),
            Err(SegmentError::Event { offset, .. }) if offset == one as u64
        ));
        // An event claiming more bytes than are left.
        let mut bad = content.clone();
        bad[1] = 0x7f;
        let mut h = seg.header.clone();
        h.blocks[0].crc32c = crc32c::crc32c(&bad);
        h.blocks[0].sha256 = sha256(&bad).to_vec();
        assert!(matches!(
            decode_segment(&object(h, &bad), None),
            Err(SegmentError::Event { offset: 0, .. })
        ));
        // check_segment agrees with decode_segment and keeps no event.
        let ok = check_segment(&seg.bytes).unwrap();
        assert_eq!(ok.header, seg.header);
        assert_eq!(ok.data_bytes, 6);
        assert_eq!(ok.content_offset, seg.content_offset);
    }

    proptest! {
        #[test]
        fn events_round_trip(events in arb_events(), seq in 0u64..3) {
            let prev = (seq > 0).then_some([7u8; 32]);
            let seg = encode_segment(spec(seq, prev), &events);
            prop_assert_eq!(seg.sha256, sha256(&seg.bytes));
            let back = decode_segment(&seg.bytes, None).unwrap();
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
                decode_block(b, &content[b.offset as usize..(b.offset + b.len) as usize], true, None).unwrap()
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
            let decoded = decode_segment(&bytes, None);
            prop_assert_eq!(decoded.is_ok(), check_segment(&bytes).is_ok());
        }

        #[test]
        fn any_flipped_byte_is_rejected(events in arb_events(), at in any::<prop::sample::Index>(), flip in 1u8..=255) {
            let seg = encode_segment(spec(0, None), &events);
            let mut bytes = seg.bytes.clone();
            let i = at.index(bytes.len());
            bytes[i] ^= flip;
            prop_assert!(decode_segment(&bytes, None).is_err());
        }
    }
}
