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
//! (its catalog row carries it), and the whole file by the end frame.

use bytes::{Buf, Bytes, BytesMut};
use prost::Message;
use reel_proto::v1::{ArchiveEnd, ArchiveRecording};
use sha2::{Digest, Sha256};

use crate::error::SegmentError;

pub const ARCHIVE_MAGIC: &[u8; 8] = b"REELARC1";
const VERSION: u32 = 1;
const HEAD_LEN: usize = 12;
const FRAME_HEAD: usize = 13;
/// A frame larger than this is corruption (segments are a few MiB).
pub const MAX_FRAME: u64 = 1 << 30;

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

    /// The end frame; nothing may follow it.
    pub fn end(mut self) -> Vec<u8> {
        let end = ArchiveEnd {
            recordings: self.recordings,
            segments: self.segments,
            sha256: self.sha.clone().finalize().to_vec(),
        };
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

/// Reads an archive from bytes pushed in as they arrive, checking every
/// frame, and at the end the whole file.
#[derive(Default)]
pub struct ArchiveReader {
    buf: BytesMut,
    sha: Sha256,
    started: bool,
    ended: bool,
    recordings: u64,
    segments: u64,
}

impl ArchiveReader {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, `None` until more bytes are pushed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, SegmentError> {
        if !self.started {
            if self.buf.len() < HEAD_LEN {
                return Ok(None);
            }
            if &self.buf[..8] != ARCHIVE_MAGIC {
                return Err(SegmentError::BadMagic);
            }
            let version = u32::from_le_bytes(self.buf[8..12].try_into().expect("4 bytes"));
            if version != VERSION {
                return Err(SegmentError::Version(version));
            }
            self.sha.update(&self.buf[..HEAD_LEN]);
            self.buf.advance(HEAD_LEN);
            self.started = true;
        }
        if self.ended {
            return match self.buf.is_empty() {
                true => Ok(None),
                false => Err(SegmentError::Inconsistent(
                    "bytes after the end frame".into(),
                )),
            };
        }
        if self.buf.len() < FRAME_HEAD {
            return Ok(None);
        }
        let kind = self.buf[0];
        let len = u64::from_le_bytes(self.buf[1..9].try_into().expect("8 bytes"));
        let crc = u32::from_le_bytes(self.buf[9..13].try_into().expect("4 bytes"));
        if len > MAX_FRAME {
            return Err(SegmentError::Inconsistent(format!(
                "a frame of {len} bytes"
            )));
        }
        if (self.buf.len() as u64) < FRAME_HEAD as u64 + len {
            return Ok(None);
        }
        let frame = self.buf.split_to(FRAME_HEAD + len as usize).freeze();
        let payload = frame.slice(FRAME_HEAD..);
        if crc32c::crc32c(&payload) != crc {
            return Err(SegmentError::HeaderChecksum);
        }
        let decode = |e: prost::DecodeError| SegmentError::HeaderDecode(e.to_string());
        let out = match kind {
            KIND_RECORDING => {
                self.recordings += 1;
                Frame::Recording(Box::new(ArchiveRecording::decode(payload).map_err(decode)?))
            }
            KIND_SEGMENT => {
                self.segments += 1;
                Frame::Segment(payload)
            }
            KIND_END => {
                let end = ArchiveEnd::decode(payload).map_err(decode)?;
                let sha = self.sha.clone().finalize();
                if end.sha256[..] != sha[..]
                    || end.recordings != self.recordings
                    || end.segments != self.segments
                {
                    return Err(SegmentError::ContentHash);
                }
                self.ended = true;
                Frame::End(end)
            }
            other => {
                return Err(SegmentError::Inconsistent(format!(
                    "unknown frame kind {other}"
                )));
            }
        };
        self.sha.update(&frame);
        Ok(Some(out))
    }

    /// True once the end frame was read and checked.
    pub fn complete(&self) -> bool {
        self.ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reel_proto::v1::RecordingRow;

    fn sample() -> Vec<u8> {
        let mut w = ArchiveWriter::new();
        let mut out = w.head();
        out.extend(w.recording(&ArchiveRecording {
            row: Some(RecordingRow {
                id: vec![1; 16],
                ..Default::default()
            }),
            segments: Vec::new(),
        }));
        out.extend(w.segment(b"segment bytes"));
        out.extend(w.end());
        out
    }

    #[test]
    fn round_trips_in_any_chunking_and_detects_any_flip() {
        let file = sample();
        for chunk in [1, 7, 64, file.len()] {
            let mut r = ArchiveReader::new();
            let mut frames = Vec::new();
            for part in file.chunks(chunk) {
                r.push(part);
                while let Some(f) = r.next_frame().unwrap() {
                    frames.push(f);
                }
            }
            assert!(r.complete());
            assert_eq!(frames.len(), 3);
            assert_eq!(
                frames[1],
                Frame::Segment(Bytes::from_static(b"segment bytes"))
            );
        }
        for i in 0..file.len() {
            let mut bad = file.clone();
            bad[i] ^= 0x10;
            let mut r = ArchiveReader::new();
            r.push(&bad);
            let mut result = Ok(());
            loop {
                match r.next_frame() {
                    Ok(Some(_)) => continue,
                    Ok(None) => break,
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
            assert!(result.is_err() || !r.complete(), "flip at {i} went unseen");
        }
    }
}
