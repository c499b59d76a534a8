//! A minimal walk over the protobuf wire format, to count what a message
//! holds before it is decoded. prost allocates as it decodes, and an empty
//! repeated element costs two bytes on the wire but tens or hundreds of
//! bytes decoded: the counts are checked against their bounds first.

use std::fmt;

/// Where and why bytes are not well-formed protobuf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    /// Offset of the field in the walked buffer.
    pub offset: usize,
    pub reason: &'static str,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.reason, self.offset)
    }
}

/// One field of a message: its number, where it starts, and for a
/// length-delimited field its bytes.
#[derive(Debug, Clone, Copy)]
pub struct Field<'a> {
    pub number: u32,
    pub offset: usize,
    /// The payload of a length-delimited field; `None` for scalars.
    pub bytes: Option<&'a [u8]>,
}

/// Reads a varint at `buf[*at..]`, advancing `at`.
pub fn varint(buf: &[u8], at: &mut usize) -> Result<u64, WireError> {
    let start = *at;
    let mut value = 0u64;
    for i in 0..10 {
        let Some(&b) = buf.get(start + i) else {
            return Err(WireError {
                offset: start,
                reason: "truncated varint",
            });
        };
        if i == 9 && b > 1 {
            break;
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            *at = start + i + 1;
            return Ok(value);
        }
    }
    Err(WireError {
        offset: start,
        reason: "varint longer than 64 bits",
    })
}

/// The top-level fields of the message in `buf`, in order.
pub fn fields(buf: &[u8]) -> Fields<'_> {
    Fields { buf, at: 0 }
}

pub struct Fields<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Fields<'a> {
    fn step(&mut self) -> Result<Field<'a>, WireError> {
        let offset = self.at;
        let bad = |reason| WireError { offset, reason };
        let key = varint(self.buf, &mut self.at)?;
        let number = u32::try_from(key >> 3)
            .ok()
            .filter(|&n| n > 0 && n < 1 << 29)
            .ok_or_else(|| bad("invalid field number"))?;
        let skip = |this: &mut Self, n: usize| {
            let end = this.at.checked_add(n).filter(|&e| e <= this.buf.len());
            match end {
                Some(end) => {
                    this.at = end;
                    Ok(())
                }
                None => Err(bad("field runs past the end of the message")),
            }
        };
        let bytes = match key & 7 {
            0 => {
                varint(self.buf, &mut self.at)?;
                None
            }
            1 => {
                skip(self, 8)?;
                None
            }
            2 => {
                let len = varint(self.buf, &mut self.at)?;
                let len = usize::try_from(len).map_err(|_| bad("length out of range"))?;
                let start = self.at;
                skip(self, len)?;
                Some(&self.buf[start..self.at])
            }
            5 => {
                skip(self, 4)?;
                None
            }
            _ => return Err(bad("unsupported wire type (groups are not used by Reel)")),
        };
        Ok(Field {
            number,
            offset,
            bytes,
        })
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<Field<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at >= self.buf.len() {
            return None;
        }
        let item = self.step();
        if item.is_err() {
            // Nothing is read past a malformed field.
            self.at = self.buf.len();
        }
        Some(item)
    }
}

/// How many elements field `number` contributes to a repeated field: one
/// per occurrence, or for a packed run of varints one per varint.
pub fn count(buf: &[u8], number: u32, packed: bool) -> Result<usize, WireError> {
    let mut n = 0usize;
    for field in fields(buf) {
        let field = field?;
        if field.number != number {
            continue;
        }
        n += match (packed, field.bytes) {
            (true, Some(run)) => run.iter().filter(|b| *b & 0x80 == 0).count(),
            _ => 1,
        };
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use reel_proto::v1::{ContentBlock, SegmentHeader, SegmentRow};

    #[test]
    fn counts_match_what_prost_decodes() {
        let row = SegmentRow {
            sequence: 3,
            locations: vec![1, 2, 3],
            uncertain: vec![2],
            blocks: vec![ContentBlock::default(); 5],
            sha256: vec![9; 32],
            ..Default::default()
        };
        let bytes = row.encode_to_vec();
        assert_eq!(count(&bytes, 16, false), Ok(5));
        assert_eq!(count(&bytes, 9, true), Ok(3));
        assert_eq!(count(&bytes, 13, true), Ok(1));
        let header = SegmentHeader {
            blocks: vec![ContentBlock::default(); 7],
            ..Default::default()
        };
        assert_eq!(count(&header.encode_to_vec(), 15, false), Ok(7));
    }

    #[test]
    fn malformed_input_is_an_error_with_its_offset() {
        // Field 1, length 5, only 2 bytes follow.
        let err = count(&[0x0a, 5, 1, 2], 1, false).unwrap_err();
        assert_eq!(err.offset, 0);
        // A varint of 11 bytes.
        assert!(
            count(
                &[
                    0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
                ],
                1,
                false
            )
            .is_err()
        );
        // Field number 0.
        assert!(count(&[0x00, 0x01], 1, false).is_err());
        // A group.
        assert!(count(&[0x0b, 0x0c], 1, false).is_err());
        assert_eq!(count(&[], 1, false), Ok(0));
    }
}
