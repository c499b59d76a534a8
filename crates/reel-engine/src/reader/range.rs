//! One streamed range request of one object, read front to back, and why a
//! copy could not deliver a block.

use bytes::{Buf, Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::BoxStream;
use reel_proto::v1::SegmentRow;
use reel_storage::StorageError;

/// Why one copy could not deliver a block.
#[derive(Debug)]
pub(super) enum Failure {
    /// The copy is not there (object or spool file gone).
    Missing(String),
    /// The copy is there but its bytes do not check.
    Corrupt(String),
    /// The store did not answer, or is down.
    Unavailable(String),
}

impl Failure {
    pub(super) fn from_storage(e: StorageError) -> Failure {
        match e {
            StorageError::NotFound { .. } => Failure::Missing(e.to_string()),
            other => Failure::Unavailable(other.to_string()),
        }
    }

    pub(super) fn text(&self) -> &str {
        match self {
            Failure::Missing(s) | Failure::Corrupt(s) | Failure::Unavailable(s) => s,
        }
    }
}

/// An open streamed range read of one object, consumed front to back.
pub(super) struct RangeReader {
    location: i32,
    /// Absolute offset in the object of the next byte of `buf`.
    pos: u64,
    end: u64,
    buf: Bytes,
    body: BoxStream<'static, reel_storage::Result<Bytes>>,
}

impl RangeReader {
    /// The streamed body of `range` of an object.
    pub(super) fn new(
        location: i32,
        range: std::ops::Range<u64>,
        body: BoxStream<'static, reel_storage::Result<Bytes>>,
    ) -> RangeReader {
        RangeReader {
            location,
            pos: range.start,
            end: range.end,
            buf: Bytes::new(),
            body,
        }
    }

    /// A copy already in memory (the spool's).
    pub(super) fn from_bytes(location: i32, bytes: Bytes) -> RangeReader {
        RangeReader {
            location,
            pos: 0,
            end: bytes.len() as u64,
            buf: bytes,
            body: futures::stream::empty().boxed(),
        }
    }

    pub(super) fn can_serve(&self, location: i32, at: u64, len: u64) -> bool {
        self.location == location
            && at >= self.pos
            && at.checked_add(len).is_some_and(|end| end <= self.end)
    }

    /// The `len` bytes at `at` (at or after the current position, inside
    /// the range read: nothing is allocated for bytes outside it).
    pub(super) async fn read_at(
        &mut self,
        at: u64,
        len: u64,
    ) -> std::result::Result<Bytes, Failure> {
        let inside = at >= self.pos
            && len <= reel_log::limits::MAX_SEGMENT_BYTES
            && at.checked_add(len).is_some_and(|end| end <= self.end);
        if !inside {
            return Err(Failure::Corrupt(format!(
                "the catalog names {len} bytes at {at}, outside the range read ({}..{})",
                self.pos, self.end
            )));
        }
        while self.pos < at {
            self.fill().await?;
            let n = (at - self.pos).min(self.buf.len() as u64);
            self.buf.advance(n as usize);
            self.pos += n;
        }
        let len = len as usize;
        if self.buf.len() >= len {
            self.pos += len as u64;
            return Ok(self.buf.split_to(len));
        }
        let mut out = BytesMut::with_capacity(len);
        while out.len() < len {
            self.fill().await?;
            let n = (len - out.len()).min(self.buf.len());
            out.extend_from_slice(&self.buf.split_to(n));
            self.pos += n as u64;
        }
        Ok(out.freeze())
    }

    async fn fill(&mut self) -> std::result::Result<(), Failure> {
        while self.buf.is_empty() {
            match self.body.next().await {
                Some(chunk) => self.buf = chunk.map_err(Failure::from_storage)?,
                None => {
                    return Err(Failure::Corrupt(format!(
                        "object ends at {}, before the bytes the catalog names",
                        self.pos
                    )));
                }
            }
        }
        Ok(())
    }
}

/// The bytes of blocks `from..to` of `row` within its segment object:
/// checked to exist, to not overflow and to lie inside the object.
pub(super) fn blocks_range(
    row: &SegmentRow,
    from: usize,
    to: usize,
) -> std::result::Result<std::ops::Range<u64>, Failure> {
    let first = row.blocks.get(from);
    let last = to.checked_sub(1).and_then(|i| row.blocks.get(i));
    let range = match (first, last) {
        (Some(first), Some(last)) if from < to => {
            let start = row.content_offset.checked_add(first.offset);
            let end = row
                .content_offset
                .checked_add(last.offset)
                .and_then(|e| e.checked_add(last.len));
            start.zip(end).filter(|(s, e)| s <= e && *e <= row.size)
        }
        _ => None,
    };
    range.map(|(s, e)| s..e).ok_or_else(|| {
        Failure::Corrupt(format!(
            "segment {}: the catalog's blocks {from}..{to} (of {}) are not inside its {} bytes",
            row.sequence,
            row.blocks.len(),
            row.size
        ))
    })
}
