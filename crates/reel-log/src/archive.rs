//! The archive file: recordings with their catalog entries, to keep outside
//! Reel and bring back with their ids and metadata.
//!
//! ```text
//! "REELARC1" | version: u32 LE
//! frame*     = kind: u8 | len: u64 LE | crc32c(payload): u32 LE | payload
//!   kind 1   ArchiveRecording (protobuf): a recording's rows
//!   kind 2   one segment object of the recording before, byte for byte
//!   kind 3   ArchiveEnd (protobuf), the last frame: counts and the SHA-256
//!            of every byte before it
//! ```
//!
//! Every frame is checked by its CRC32C, every segment by its own SHA-256
//! (its catalog row carries it), and the whole file by the end frame, which
//! the server that wrote the archive signs. [`verify`] checks an archive
//! with nothing but the file and that server's public key: the end frame's
//! signature, and each segment's signature, blocks and chain.

use bytes::{Buf, Bytes, BytesMut};
use prost::Message;
use reel_proto::v1::{ArchiveEnd, ArchiveRecording};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::error::InvalidField;
use crate::limits::{
    MAX_BLOCKS_PER_RECORDING, MAX_BLOCKS_PER_SEGMENT, MAX_RECORDING_ROW_BYTES, MAX_ROW_STRINGS,
    MAX_SEGMENT_BYTES, MAX_SEGMENT_ROW_BYTES, MAX_SEGMENTS_PER_RECORDING,
};
use crate::validate::check_archive_recording;
use crate::wire;

pub const ARCHIVE_MAGIC: &[u8; 8] = b"REELARC1";
const VERSION: u32 = 1;
const HEAD_LEN: usize = 12;
const FRAME_HEAD: usize = 13;
/// The largest recording frame: the recording's row and its segments'
/// rows, each within its bound.
pub const MAX_RECORDING_FRAME: u64 =
    MAX_RECORDING_ROW_BYTES + 160 * MAX_SEGMENTS_PER_RECORDING + 48 * MAX_BLOCKS_PER_RECORDING;
/// The largest end frame (two counts, a SHA-256, a key id and a signature).
pub const MAX_END_FRAME: u64 = 160;
/// Locations and uncertain locations of one segment row (there are three
/// places a segment can be).
const MAX_ROW_LOCATIONS: usize = 8;

const KIND_RECORDING: u8 = 1;
const KIND_SEGMENT: u8 = 2;
const KIND_END: u8 = 3;

/// One frame read back.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Recording(Box<ArchiveRecording>),
    Segment(Bytes),
    End(ArchiveEnd),
}

/// Why bytes are not a valid archive; every variant names the byte offset
/// in the file of the frame (or header) at fault.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ArchiveError {
    #[error("not a Reel archive (bad magic at byte 0)")]
    BadMagic,
    #[error("unsupported archive version {0} (byte 8)")]
    Version(u32),
    #[error("frame at byte {offset}: a {kind} frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        offset: u64,
        kind: &'static str,
        len: u64,
        max: u64,
    },
    #[error("frame at byte {offset}: unknown frame kind {kind}")]
    UnknownKind { offset: u64, kind: u8 },
    #[error(
        "frame at byte {offset}: CRC32C mismatch (stored {stored:#010x}, computed {computed:#010x})"
    )]
    FrameChecksum {
        offset: u64,
        stored: u32,
        computed: u32,
    },
    #[error("byte {offset}: {message} does not decode: {reason}")]
    Decode {
        offset: u64,
        message: &'static str,
        reason: String,
    },
    #[error("frame at byte {offset}: recording rows: {source}")]
    InvalidRow {
        offset: u64,
        #[source]
        source: InvalidField,
    },
    #[error("frame at byte {offset}: {problem}")]
    OutOfOrder { offset: u64, problem: String },
    #[error("frame at byte {offset}: the end frame does not match the file: {what}")]
    EndMismatch { offset: u64, what: String },
    #[error("byte {offset}: data after the end frame")]
    TrailingData { offset: u64 },
}

impl ArchiveError {
    /// The archive names a frame larger than this reader accepts.
    pub fn is_too_large(&self) -> bool {
        matches!(self, ArchiveError::FrameTooLarge { .. })
    }
}

/// Writes an archive as a sequence of byte chunks (for a streamed body or
/// a file), keeping the running SHA-256 for the end frame.
pub struct ArchiveWriter {
    sha: Sha256,
    recordings: u64,
    segments: u64,
}

impl Default for ArchiveWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl ArchiveWriter {
    pub fn new() -> Self {
        ArchiveWriter {
            sha: Sha256::new(),
            recordings: 0,
            segments: 0,
        }
    }

    /// The file's first bytes.
    pub fn head(&mut self) -> Vec<u8> {
        let mut out = ARCHIVE_MAGIC.to_vec();
        out.extend_from_slice(&VERSION.to_le_bytes());
        self.sha.update(&out);
        out
    }

    pub fn recording(&mut self, rec: &ArchiveRecording) -> Vec<u8> {
        self.recordings += 1;
        self.frame(KIND_RECORDING, &rec.encode_to_vec())
    }

    pub fn segment(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.segments += 1;
        self.frame(KIND_SEGMENT, bytes)
    }

    /// The end frame, signed by `keys`; nothing may follow it.
    pub fn end(mut self, keys: &dyn reel_keys::KeyProvider) -> Vec<u8> {
        let mut end = ArchiveEnd {
            recordings: self.recordings,
            segments: self.segments,
            sha256: self.sha.clone().finalize().to_vec(),
            signing_key_id: keys.public_key().id().0.to_vec(),
            signature: Vec::new(),
        };
        end.signature = keys
            .sign(reel_keys::Domain::Archive, &end_message(&end))
            .to_vec();
        self.frame(KIND_END, &end.encode_to_vec())
    }

    fn frame(&mut self, kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(FRAME_HEAD + payload.len());
        out.push(kind);
        out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
        out.extend_from_slice(payload);
        self.sha.update(&out);
        out
    }
}

/// What the end frame's signature covers.
fn end_message(end: &ArchiveEnd) -> Vec<u8> {
    let mut m = end.sha256.clone();
    m.extend_from_slice(&end.recordings.to_le_bytes());
    m.extend_from_slice(&end.segments.to_le_bytes());
    m
}

/// Reads an archive from bytes pushed in as they arrive, checking every
/// frame, and at the end the whole file.
///
/// Nothing is allocated from a length the file names before it is checked
/// against its kind's bound: a segment frame against the largest segment
/// object (see [`with_max_segment_bytes`](Self::with_max_segment_bytes)), a
/// recording frame against [`MAX_RECORDING_FRAME`], and the rows in a
/// recording frame are counted on the wire before they are decoded. A
/// caller pushes a chunk, then takes frames until `None`, so the buffer
/// holds at most one frame and one chunk. After an error, every call
/// answers the same error.
pub struct ArchiveReader {
    buf: BytesMut,
    sha: Sha256,
    /// Offset in the file of `buf[0]`.
    offset: u64,
    started: bool,
    ended: bool,
    failed: Option<ArchiveError>,
    recordings: u64,
    segments: u64,
    /// Segment frames the last recording frame still expects.
    expected: u64,
    max_segment: u64,
}

impl Default for ArchiveReader {
    fn default() -> Self {
        Self::new()
    }
}

impl ArchiveReader {
    /// A reader that accepts segments up to [`MAX_SEGMENT_BYTES`], the
    /// largest any configuration writes.
    pub fn new() -> Self {
        Self::with_max_segment_bytes(MAX_SEGMENT_BYTES)
    }

    /// A reader that refuses segment frames over `max` bytes (what this
    /// server's configuration writes, say).
    pub fn with_max_segment_bytes(max: u64) -> Self {
        ArchiveReader {
            buf: BytesMut::new(),
            sha: Sha256::new(),
            offset: 0,
            started: false,
            ended: false,
            failed: None,
            recordings: 0,
            segments: 0,
            expected: 0,
            max_segment: max.min(MAX_SEGMENT_BYTES),
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, `None` until more bytes are pushed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ArchiveError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let out = self.step();
        if let Err(e) = &out {
            self.failed = Some(e.clone());
        }
        out
    }

    fn step(&mut self) -> Result<Option<Frame>, ArchiveError> {
        if !self.started {
            if self.buf.len() < HEAD_LEN {
                return Ok(None);
            }
            if &self.buf[..8] != ARCHIVE_MAGIC {
                return Err(ArchiveError::BadMagic);
            }
            let version = u32::from_le_bytes(self.buf[8..12].try_into().expect("4 bytes"));
            if version != VERSION {
                return Err(ArchiveError::Version(version));
            }
            self.sha.update(&self.buf[..HEAD_LEN]);
            self.buf.advance(HEAD_LEN);
            self.offset = HEAD_LEN as u64;
            self.started = true;
        }
        let offset = self.offset;
        if self.ended {
            return match self.buf.is_empty() {
                true => Ok(None),
                false => Err(ArchiveError::TrailingData { offset }),
            };
        }
        if self.buf.len() < FRAME_HEAD {
            return Ok(None);
        }
        let kind = self.buf[0];
        let len = u64::from_le_bytes(self.buf[1..9].try_into().expect("8 bytes"));
        let crc = u32::from_le_bytes(self.buf[9..13].try_into().expect("4 bytes"));
        let (name, max) = match kind {
            KIND_RECORDING => ("recording", MAX_RECORDING_FRAME),
            KIND_SEGMENT => ("segment", self.max_segment),
            KIND_END => ("end", MAX_END_FRAME),
            kind => return Err(ArchiveError::UnknownKind { offset, kind }),
        };
        if len > max {
            return Err(ArchiveError::FrameTooLarge {
                offset,
                kind: name,
                len,
                max,
            });
        }
        let order = |problem: String| Err(ArchiveError::OutOfOrder { offset, problem });
        match kind {
            KIND_SEGMENT if self.expected == 0 => {
                return order("a segment frame that no recording row names".into());
            }
            KIND_RECORDING | KIND_END if self.expected > 0 => {
                return order(format!(
                    "a {name} frame where {} more segment frames of the recording before were due",
                    self.expected
                ));
            }
            _ => {}
        }
        // len <= max, which fits in memory: the sum cannot overflow.
        let total = FRAME_HEAD + len as usize;
        if self.buf.len() < total {
            return Ok(None);
        }
        let frame = self.buf.split_to(total).freeze();
        let payload = frame.slice(FRAME_HEAD..);
        let computed = crc32c::crc32c(&payload);
        if computed != crc {
            return Err(ArchiveError::FrameChecksum {
                offset,
                stored: crc,
                computed,
            });
        }
        let payload_at = offset + FRAME_HEAD as u64;
        let out = match kind {
            KIND_RECORDING => {
                let rec = decode_recording_frame(&payload, offset)?;
                self.recordings += 1;
                self.expected = rec.segments.len() as u64;
                Frame::Recording(Box::new(rec))
            }
            KIND_SEGMENT => {
                self.segments += 1;
                self.expected -= 1;
                Frame::Segment(payload)
            }
            _ => {
                let end = ArchiveEnd::decode(payload).map_err(|e| ArchiveError::Decode {
                    offset: payload_at,
                    message: "ArchiveEnd",
                    reason: e.to_string(),
                })?;
                let sha = self.sha.clone().finalize();
                let what = if end.sha256[..] != sha[..] {
                    Some("SHA-256 of the file".to_string())
                } else if end.recordings != self.recordings {
                    Some(format!(
                        "{} recordings named, {} read",
                        end.recordings, self.recordings
                    ))
                } else if end.segments != self.segments {
                    Some(format!(
                        "{} segments named, {} read",
                        end.segments, self.segments
                    ))
                } else {
                    None
                };
                if let Some(what) = what {
                    return Err(ArchiveError::EndMismatch { offset, what });
                }
                self.ended = true;
                Frame::End(end)
            }
        };
        self.sha.update(&frame);
        self.offset += total as u64;
        Ok(Some(out))
    }

    /// True once the end frame was read and checked.
    pub fn complete(&self) -> bool {
        self.ended
    }

    /// Bytes of the file consumed so far (frames read and checked).
    pub fn consumed(&self) -> u64 {
        self.offset
    }
}

/// Decodes the payload of a recording frame (at `offset` in the file):
/// its rows counted on the wire against their bounds, then decoded, then
/// checked ([`check_archive_recording`]).
pub fn decode_recording_frame(
    payload: &[u8],
    offset: u64,
) -> Result<ArchiveRecording, ArchiveError> {
    let payload_at = offset + FRAME_HEAD as u64;
    scan_recording(payload).map_err(|e| match e {
        Scan::Wire(e) => ArchiveError::Decode {
            offset: payload_at + e.offset as u64,
            message: "ArchiveRecording",
            reason: e.reason.into(),
        },
        Scan::Field(source) => ArchiveError::InvalidRow { offset, source },
    })?;
    let rec = ArchiveRecording::decode(payload).map_err(|e| ArchiveError::Decode {
        offset: payload_at,
        message: "ArchiveRecording",
        reason: e.to_string(),
    })?;
    check_archive_recording(&rec).map_err(|source| ArchiveError::InvalidRow { offset, source })?;
    Ok(rec)
}

enum Scan {
    Wire(wire::WireError),
    Field(InvalidField),
}

impl From<wire::WireError> for Scan {
    fn from(e: wire::WireError) -> Self {
        Scan::Wire(e)
    }
}

/// Counts the rows of a recording frame on the wire, before decoding: an
/// empty segment row is 2 bytes encoded and some 200 decoded, an empty
/// block 2 and 40, a label or a damage note 2 and 24 or more.
fn scan_recording(payload: &[u8]) -> Result<(), Scan> {
    let too_many =
        |field: String, problem: String| Err(Scan::Field(InvalidField::new(field, problem)));
    let (mut row_bytes, mut strings, mut segments, mut blocks) = (0u64, 0u64, 0u64, 0u64);
    for field in wire::fields(payload) {
        let field = field?;
        let Some(bytes) = field.bytes else {
            continue;
        };
        match field.number {
            1 => {
                row_bytes += bytes.len() as u64;
                if row_bytes > MAX_RECORDING_ROW_BYTES {
                    return too_many(
                        "row".into(),
                        format!("more than {MAX_RECORDING_ROW_BYTES} bytes"),
                    );
                }
                strings += wire::count(bytes, 14, false)? as u64;
                for meta in wire::fields(bytes) {
                    let meta = meta?;
                    if let (2, Some(meta)) = (meta.number, meta.bytes) {
                        strings += wire::count(meta, 4, false)? as u64;
                    }
                }
                if strings > MAX_ROW_STRINGS {
                    return too_many(
                        "row".into(),
                        format!("more than {MAX_ROW_STRINGS} labels and damage notes"),
                    );
                }
            }
            2 => {
                let at = format!("segments[{segments}]");
                segments += 1;
                if segments > MAX_SEGMENTS_PER_RECORDING {
                    return too_many(
                        "segments".into(),
                        format!("more than {MAX_SEGMENTS_PER_RECORDING} rows"),
                    );
                }
                if bytes.len() as u64 > MAX_SEGMENT_ROW_BYTES {
                    return too_many(
                        at,
                        format!(
                            "{} bytes, more than a segment row takes ({MAX_SEGMENT_ROW_BYTES})",
                            bytes.len()
                        ),
                    );
                }
                let n = wire::count(bytes, 16, false)? as u64;
                if n > MAX_BLOCKS_PER_SEGMENT {
                    return too_many(
                        format!("{at}.blocks"),
                        format!("{n} blocks, more than a segment has ({MAX_BLOCKS_PER_SEGMENT})"),
                    );
                }
                blocks += n;
                if blocks > MAX_BLOCKS_PER_RECORDING {
                    return too_many(
                        format!("{at}.blocks"),
                        format!("more than {MAX_BLOCKS_PER_RECORDING} blocks in one recording"),
                    );
                }
                let places = wire::count(bytes, 9, true)? + wire::count(bytes, 13, true)?;
                if places > MAX_ROW_LOCATIONS {
                    return too_many(format!("{at}.locations"), format!("{places} locations"));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// What [`verify`] found in one recording of an archive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordingVerdict {
    /// The recording's id, as text.
    pub id: String,
    /// Segments its rows name, and those found intact.
    pub segments: u64,
    pub intact_segments: u64,
    /// Events its rows name.
    pub events: u64,
    /// The events of intact segments, as ranges of event indices (merged).
    pub intact_events: Vec<std::ops::Range<u64>>,
    /// What is wrong, one line each.
    pub problems: Vec<String>,
}

/// What [`verify`] found in an archive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveVerdict {
    pub recordings: Vec<RecordingVerdict>,
    /// The end frame's signature checks with the key: the file is whole and
    /// as the server wrote it.
    pub signed_whole: bool,
    /// What is wrong with the file itself (a frame that does not read, no
    /// end frame, the end's signature).
    pub problems: Vec<String>,
}

impl ArchiveVerdict {
    /// Nothing wrong anywhere.
    pub fn intact(&self) -> bool {
        self.signed_whole
            && self.problems.is_empty()
            && self.recordings.iter().all(|r| r.problems.is_empty())
    }
}

/// Checks an archive with nothing but its bytes and the public key of the
/// server that wrote it: every frame, every segment (its SHA-256 against its
/// row, its header, blocks and events, its signature, its recording, its
/// place in the chain), that a closed recording ends with its final
/// segment, and the end frame's signature over the whole file. Says which
/// recordings and events are intact; a frame that does not read stops the
/// reading there (what came before stands). Only reading `file` fails.
pub fn verify(
    mut file: impl std::io::Read,
    key: &reel_keys::PublicKey,
) -> std::io::Result<ArchiveVerdict> {
    let mut reader = ArchiveReader::new();
    let mut verdict = ArchiveVerdict::default();
    let mut current: Option<Walk> = None;
    let mut buf = vec![0u8; 1 << 20];
    'read: loop {
        loop {
            match reader.next_frame() {
                Ok(None) => break,
                Ok(Some(Frame::Recording(rec))) => {
                    if let Some(done) = current.take() {
                        verdict.recordings.push(done.finish());
                    }
                    current = Some(Walk::new(*rec));
                }
                Ok(Some(Frame::Segment(bytes))) => match current.as_mut() {
                    Some(walk) => walk.segment(&bytes, key),
                    None => verdict
                        .problems
                        .push("a segment before any recording".into()),
                },
                Ok(Some(Frame::End(end))) => {
                    if let Some(done) = current.take() {
                        verdict.recordings.push(done.finish());
                    }
                    match check_end_signature(&end, key) {
                        Ok(()) => verdict.signed_whole = true,
                        Err(why) => verdict.problems.push(why),
                    }
                }
                Err(e) => {
                    verdict.problems.push(e.to_string());
                    break 'read;
                }
            }
        }
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        reader.push(&buf[..n]);
    }
    if let Some(done) = current.take() {
        verdict.recordings.push(done.finish());
    }
    if !reader.complete() && verdict.problems.is_empty() {
        verdict.problems.push(format!(
            "truncated at byte {}: no end frame",
            reader.consumed()
        ));
    }
    Ok(verdict)
}

fn check_end_signature(end: &ArchiveEnd, key: &reel_keys::PublicKey) -> Result<(), String> {
    if end.signature.is_empty() {
        return Err("the archive is not signed (written before archives were signed)".into());
    }
    let named = hex::encode(&end.signing_key_id);
    if end.signing_key_id[..] != key.id().0[..] {
        return Err(format!(
            "the archive is signed by key {named}, not by the key given ({})",
            key.id()
        ));
    }
    key.verify(
        reel_keys::Domain::Archive,
        &end_message(end),
        &end.signature,
    )
    .map_err(|_| format!("the archive's signature does not check with key {named}"))
}

/// One recording being read: its rows, and what its segments showed.
struct Walk {
    rec: ArchiveRecording,
    verdict: RecordingVerdict,
    next: usize,
    /// The SHA-256 of the previous segment object, as read.
    prev: Option<crate::segment::Hash>,
    saw_final: bool,
}

impl Walk {
    fn new(rec: ArchiveRecording) -> Walk {
        let id = rec
            .row
            .as_ref()
            .and_then(|r| reel_proto::RecordingId::from_slice(&r.id).ok())
            .map_or_else(|| "?".to_string(), |id| id.to_string());
        let verdict = RecordingVerdict {
            id,
            segments: rec.segments.len() as u64,
            events: rec.segments.iter().map(|s| s.event_count).sum(),
            ..Default::default()
        };
        Walk {
            rec,
            verdict,
            next: 0,
            prev: None,
            saw_final: false,
        }
    }

    fn segment(&mut self, bytes: &[u8], key: &reel_keys::PublicKey) {
        let i = self.next;
        self.next += 1;
        let sha = crate::segment::sha256(bytes);
        let prev = self.prev.replace(sha);
        match self.check(i, bytes, &sha, prev, key) {
            Ok((events, is_final)) => {
                self.verdict.intact_segments += 1;
                self.saw_final |= is_final;
                match self.verdict.intact_events.last_mut() {
                    Some(last) if last.end == events.start => last.end = events.end,
                    _ if events.is_empty() => {}
                    _ => self.verdict.intact_events.push(events),
                }
            }
            Err(why) => self.verdict.problems.push(format!("segment {i}: {why}")),
        }
    }

    /// One segment's checks; its events and whether it is the final one.
    fn check(
        &mut self,
        i: usize,
        bytes: &[u8],
        sha: &crate::segment::Hash,
        prev: Option<crate::segment::Hash>,
        key: &reel_keys::PublicKey,
    ) -> Result<(std::ops::Range<u64>, bool), String> {
        let row = self
            .rec
            .segments
            .get(i)
            .ok_or("a segment the recording's rows do not name")?;
        if sha[..] != row.sha256[..] {
            return Err("does not match its row's SHA-256".into());
        }
        let checked = crate::segment::check_segment(bytes).map_err(|e| e.to_string())?;
        match crate::segment::verify_signature(bytes, std::slice::from_ref(key)) {
            Ok(crate::segment::Signer::Key(_)) => {}
            Ok(crate::segment::Signer::Unsigned) => return Err("not signed".into()),
            Err(e) => return Err(e.to_string()),
        }
        let h = &checked.header;
        let row_id = self.rec.row.as_ref().map(|r| r.id.as_slice());
        if Some(h.recording_id.as_slice()) != row_id {
            return Err("belongs to another recording".into());
        }
        if h.sequence != i as u64 {
            return Err(format!("is sequence {} in the place of {i}", h.sequence));
        }
        let linked = match prev {
            None => h.prev_hash.is_empty(),
            Some(p) => h.prev_hash[..] == p[..],
        };
        if !linked {
            // Intact on its own (signed, every block checks), but what
            // came before it is not what it was sealed after.
            self.verdict.problems.push(format!(
                "segment {i}: does not follow the segment before it"
            ));
        }
        let end = h.first_event_index.saturating_add(h.event_count);
        Ok((h.first_event_index..end, h.r#final))
    }

    fn finish(mut self) -> RecordingVerdict {
        let listed = self.rec.segments.len();
        if self.next < listed {
            self.verdict.problems.push(format!(
                "{} of its {listed} segments are not in the archive",
                listed - self.next
            ));
        }
        let closed = self
            .rec
            .row
            .as_ref()
            .is_some_and(|r| r.state == reel_proto::v1::RecordingState::Closed as i32);
        if closed && !self.saw_final && self.next >= listed {
            self.verdict
                .problems
                .push("closed, but its final segment is not there: its end was cut off".into());
        }
        self.verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::tests::{archived, archived_by};
    use reel_keys::{FileKeys, KeyProvider};

    /// An archive of one signed recording, written and signed by `keys`.
    fn signed(keys: &FileKeys) -> Vec<u8> {
        let (rec, objects) = archived_by(Some(keys));
        let mut w = ArchiveWriter::new();
        let mut out = w.head();
        out.extend(w.recording(&rec));
        for o in &objects {
            out.extend(w.segment(o));
        }
        out.extend(w.end(keys));
        out
    }

    #[test]
    fn an_archive_checks_with_its_public_key_alone() {
        let keys = FileKeys::ephemeral().unwrap();
        let public = keys.public_key();
        let file = signed(&keys);
        let v = verify(&file[..], &public).unwrap();
        assert!(v.intact(), "{v:?}");
        assert_eq!(v.recordings.len(), 1);
        let whole = &v.recordings[0].intact_events;
        assert_eq!((whole.len(), whole[0].clone()), (1, 0..80));

        // Another server's key: neither the segments nor the file check.
        let other = FileKeys::ephemeral().unwrap().public_key();
        let v = verify(&file[..], &other).unwrap();
        assert!(!v.intact() && !v.signed_whole);
        assert_eq!(v.recordings[0].intact_segments, 0, "{v:?}");
        assert!(v.problems[0].contains("not by the key given"), "{v:?}");

        // One flipped byte inside the second segment, its frame's CRC
        // mended: that segment is named, the first stays intact, and the
        // file's signed SHA-256 no longer matches.
        let mut flipped = file.clone();
        let at = flipped.len() - 300;
        flipped[at] ^= 1;
        let frame_at = HEAD_LEN + {
            let (rec, objects) = archived_by(Some(&keys));
            FRAME_HEAD + rec.encode_to_vec().len() + FRAME_HEAD + objects[0].len()
        };
        let payload = frame_at + FRAME_HEAD;
        let end_frame = file.len() - {
            let mut r = ArchiveReader::new();
            r.push(&file);
            let mut last = 0;
            while let Ok(Some(f)) = r.next_frame() {
                if let Frame::End(e) = f {
                    last = FRAME_HEAD + e.encoded_len();
                }
            }
            last
        };
        let crc = crc32c::crc32c(&flipped[payload..end_frame]);
        flipped[frame_at + 9..frame_at + 13].copy_from_slice(&crc.to_le_bytes());
        let v = verify(&flipped[..], &public).unwrap();
        assert!(!v.intact());
        let r = &v.recordings[0];
        assert_eq!(
            (
                r.intact_segments,
                r.intact_events.len(),
                r.intact_events[0].clone()
            ),
            (1, 1, 0..40),
            "{v:?}"
        );
        assert!(r.problems[0].starts_with("segment 1:"), "{v:?}");
        assert!(
            v.problems.iter().any(|p| p.contains("SHA-256 of the file")),
            "{v:?}"
        );

        // An unsigned archive (written before archives were signed).
        let (rec, objects) = archived();
        let mut w = ArchiveWriter::new();
        let mut old = w.head();
        old.extend(w.recording(&rec));
        for o in &objects {
            old.extend(w.segment(o));
        }
        let end = ArchiveEnd {
            recordings: 1,
            segments: 2,
            sha256: w.sha.clone().finalize().to_vec(),
            ..Default::default()
        };
        old.extend(w.frame(KIND_END, &end.encode_to_vec()));
        let v = verify(&old[..], &public).unwrap();
        assert!(!v.intact());
        assert!(v.problems[0].contains("not signed"), "{v:?}");
        assert!(v.recordings[0].problems[0].contains("not signed"), "{v:?}");

        // Cut short: what came before the cut stands.
        let v = verify(&file[..file.len() - 10], &public).unwrap();
        assert!(!v.intact());
        assert_eq!(v.recordings[0].intact_segments, 2, "{v:?}");
    }

    fn sample() -> Vec<u8> {
        let (rec, objects) = archived();
        let mut w = ArchiveWriter::new();
        let mut out = w.head();
        out.extend(w.recording(&rec));
        for o in &objects {
            out.extend(w.segment(o));
        }
        out.extend(w.end(&reel_keys::FileKeys::ephemeral().unwrap()));
        out
    }

    /// Every frame and the outcome, reading `file` pushed in `chunks`.
    fn read(file: &[u8], chunk: usize) -> (Vec<Frame>, Result<(), ArchiveError>, bool) {
        let mut r = ArchiveReader::new();
        let mut frames = Vec::new();
        for part in file.chunks(chunk.max(1)) {
            r.push(part);
            loop {
                match r.next_frame() {
                    Ok(Some(f)) => frames.push(f),
                    Ok(None) => break,
                    Err(e) => return (frames, Err(e), r.complete()),
                }
            }
        }
        (frames, Ok(()), r.complete())
    }

    #[test]
    fn round_trips_in_any_chunking_and_detects_any_flip() {
        let file = sample();
        let (_, objects) = archived();
        for chunk in [1, 7, 64, 4096, file.len()] {
            let (frames, outcome, complete) = read(&file, chunk);
            assert_eq!(outcome, Ok(()));
            assert!(complete);
            assert_eq!(frames.len(), 4);
            assert_eq!(frames[1], Frame::Segment(Bytes::from(objects[0].clone())));
        }
        for i in (0..file.len()).step_by(97).chain(0..200) {
            let mut bad = file.clone();
            bad[i] ^= 0x10;
            let (_, outcome, complete) = read(&bad, 1000);
            assert!(outcome.is_err() || !complete, "flip at {i} went unseen");
        }
    }

    fn head_and_frame(kind: u8, len: u64) -> Vec<u8> {
        let mut out = ArchiveWriter::new().head();
        out.push(kind);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out
    }

    #[test]
    fn an_oversized_frame_is_refused_from_its_header_with_its_offset() {
        // Before: anything up to 1 GiB was awaited and buffered.
        for (kind, len) in [
            (KIND_SEGMENT, MAX_SEGMENT_BYTES + 1),
            (KIND_RECORDING, MAX_RECORDING_FRAME + 1),
            (KIND_END, 1 << 20),
        ] {
            let mut r = ArchiveReader::new();
            r.push(&head_and_frame(kind, len));
            let err = r.next_frame().unwrap_err();
            assert!(err.is_too_large(), "{err}");
            assert!(err.to_string().contains("frame at byte 12"), "{err}");
        }
        // A server's own bound is tighter.
        let mut r = ArchiveReader::with_max_segment_bytes(14 << 20);
        // A recording frame, then a segment frame too large.
        let mut w = ArchiveWriter::new();
        let mut f = w.head();
        let (rec, _) = archived();
        f.extend(w.recording(&rec));
        let at = f.len() as u64;
        f.extend(head_and_frame(KIND_SEGMENT, 15 << 20)[HEAD_LEN..].to_vec());
        r.push(&f);
        assert!(matches!(r.next_frame(), Ok(Some(Frame::Recording(_)))));
        let err = r.next_frame().unwrap_err();
        assert_eq!(
            err,
            ArchiveError::FrameTooLarge {
                offset: at,
                kind: "segment",
                len: 15 << 20,
                max: 14 << 20
            }
        );
        // The same error again, nothing more read.
        assert_eq!(r.next_frame().unwrap_err(), err);
    }

    #[test]
    fn a_recording_frame_of_empty_rows_is_refused_before_it_is_decoded() {
        // ~2 bytes a row on the wire, ~200 decoded: counted first.
        let rows = MAX_SEGMENTS_PER_RECORDING as usize + 1;
        let mut payload = Vec::with_capacity(rows * 2);
        for _ in 0..rows {
            payload.extend_from_slice(&[0x12, 0x00]);
        }
        let mut file = ArchiveWriter::new().head();
        file.push(KIND_RECORDING);
        file.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        file.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
        file.extend_from_slice(&payload);
        let mut r = ArchiveReader::new();
        r.push(&file);
        let err = r.next_frame().unwrap_err();
        assert!(
            matches!(&err, ArchiveError::InvalidRow { offset: 12, source } if source.field == "segments"),
            "{err}"
        );
        // Empty blocks in one row, the same.
        let mut row = Vec::new();
        for _ in 0..=MAX_BLOCKS_PER_SEGMENT {
            row.extend_from_slice(&[0x82, 0x01, 0x00]);
        }
        let mut payload = vec![0x12];
        let mut len = row.len();
        while len >= 0x80 {
            payload.push((len as u8) | 0x80);
            len >>= 7;
        }
        payload.push(len as u8);
        payload.extend_from_slice(&row);
        assert!(matches!(
            scan_recording(&payload),
            Err(Scan::Field(f)) if f.field == "segments[0].blocks"
        ));
    }

    #[test]
    fn frames_out_of_order_are_refused() {
        let (rec, objects) = archived();
        // A segment frame first.
        let mut w = ArchiveWriter::new();
        let mut f = w.head();
        f.extend(w.segment(&objects[0]));
        let (_, outcome, _) = read(&f, f.len());
        assert!(matches!(
            outcome,
            Err(ArchiveError::OutOfOrder { offset: 12, .. })
        ));
        // The end frame while segments are due.
        let mut w = ArchiveWriter::new();
        let mut f = w.head();
        f.extend(w.recording(&rec));
        f.extend(w.segment(&objects[0]));
        f.extend(w.end(&reel_keys::FileKeys::ephemeral().unwrap()));
        let (frames, outcome, _) = read(&f, f.len());
        assert_eq!(frames.len(), 2);
        assert!(
            matches!(outcome, Err(ArchiveError::OutOfOrder { .. })),
            "{outcome:?}"
        );
        // Rows that do not add up.
        let mut bad = rec.clone();
        bad.segments[1].blocks[0].len = u64::MAX;
        let mut w = ArchiveWriter::new();
        let mut f = w.head();
        f.extend(w.recording(&bad));
        let (_, outcome, _) = read(&f, 3);
        assert!(
            matches!(&outcome, Err(ArchiveError::InvalidRow { source, .. }) if source.field == "segments[1].blocks[0].len"),
            "{outcome:?}"
        );
    }
}
