//! The audit log's copy objects in the stores (`audit/<first>-<last>.pb`):
//! audit entries as the catalog holds them, each prefixed with its length
//! as a protobuf varint. Anyone with write access to a bucket can put bytes
//! there, so the reader bounds every length before it takes anything.

use prost::Message;
use reel_proto::v1::AuditEntry;
use thiserror::Error;

use crate::limits::{MAX_AUDIT_COPY_BYTES, MAX_AUDIT_ENTRY_BYTES};

/// What is wrong with an audit copy object.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuditCopyError {
    #[error("{size} bytes: larger than any audit copy ({MAX_AUDIT_COPY_BYTES} at most)")]
    TooLarge { size: u64 },
    #[error("byte {offset}: the entry's length does not decode (cut short)")]
    BadLength { offset: u64 },
    #[error("byte {offset}: an entry of {len} bytes exceeds the limit of {MAX_AUDIT_ENTRY_BYTES}")]
    EntryTooLarge { offset: u64, len: u64 },
    #[error("byte {offset}: an entry of {len} bytes is cut short ({left} bytes left)")]
    CutShort { offset: u64, len: u64, left: u64 },
    #[error("byte {offset}: the entry does not decode: {reason}")]
    Decode { offset: u64, reason: String },
}

/// One entry of a copy: decoded, and its bytes as stored (what the chain
/// hashes).
#[derive(Debug, Clone, PartialEq)]
pub struct CopiedEntry {
    pub entry: AuditEntry,
    pub bytes: Vec<u8>,
}

/// A copy object's entries up to the first thing wrong with it, and that.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DecodedCopy {
    pub entries: Vec<CopiedEntry>,
    pub error: Option<AuditCopyError>,
}

/// The object holding `entries` (encoded [`AuditEntry`]s).
pub fn encode_copy(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut body = Vec::with_capacity(entries.iter().map(|e| e.len() + 5).sum());
    for e in entries {
        prost::encoding::encode_varint(e.len() as u64, &mut body);
        body.extend_from_slice(e);
    }
    body
}

/// Decodes a copy object, keeping the entries before the first error.
pub fn decode_copy(mut body: &[u8]) -> DecodedCopy {
    let mut out = DecodedCopy::default();
    if body.len() as u64 > MAX_AUDIT_COPY_BYTES {
        out.error = Some(AuditCopyError::TooLarge {
            size: body.len() as u64,
        });
        return out;
    }
    let total = body.len();
    while !body.is_empty() {
        let offset = (total - body.len()) as u64;
        let Ok(len) = prost::encoding::decode_varint(&mut body) else {
            out.error = Some(AuditCopyError::BadLength { offset });
            break;
        };
        if len > MAX_AUDIT_ENTRY_BYTES {
            out.error = Some(AuditCopyError::EntryTooLarge { offset, len });
            break;
        }
        if len > body.len() as u64 {
            out.error = Some(AuditCopyError::CutShort {
                offset,
                len,
                left: body.len() as u64,
            });
            break;
        }
        let (bytes, rest) = body.split_at(len as usize);
        body = rest;
        match AuditEntry::decode(bytes) {
            Ok(entry) => out.entries.push(CopiedEntry {
                entry,
                bytes: bytes.to_vec(),
            }),
            Err(e) => {
                out.error = Some(AuditCopyError::Decode {
                    offset,
                    reason: e.to_string(),
                });
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64) -> AuditEntry {
        AuditEntry {
            seq,
            action: "export".into(),
            by: "alice".into(),
            recordings: vec!["r1".into()],
            ..Default::default()
        }
    }

    #[test]
    fn entries_come_back_as_written() {
        let bytes: Vec<Vec<u8>> = (1..=3).map(|s| entry(s).encode_to_vec()).collect();
        let decoded = decode_copy(&encode_copy(&bytes));
        assert_eq!(decoded.error, None);
        let seqs: Vec<u64> = decoded.entries.iter().map(|e| e.entry.seq).collect();
        assert_eq!(seqs, [1, 2, 3]);
        assert_eq!(decoded.entries[1].bytes, bytes[1]);
    }

    #[test]
    fn a_cut_object_keeps_what_is_whole_and_names_the_byte() {
        let bytes: Vec<Vec<u8>> = (1..=2).map(|s| entry(s).encode_to_vec()).collect();
        let body = encode_copy(&bytes);
        let decoded = decode_copy(&body[..body.len() - 1]);
        assert_eq!(decoded.entries.len(), 1);
        let first = 1 + bytes[0].len() as u64;
        assert!(matches!(
            decoded.error,
            Some(AuditCopyError::CutShort { offset, .. }) if offset == first
        ));
    }

    #[test]
    fn a_huge_length_is_refused_before_anything_is_taken() {
        let mut body = Vec::new();
        prost::encoding::encode_varint(u64::MAX, &mut body);
        let decoded = decode_copy(&body);
        assert!(decoded.entries.is_empty());
        assert_eq!(
            decoded.error,
            Some(AuditCopyError::EntryTooLarge {
                offset: 0,
                len: u64::MAX
            })
        );
        let text = decoded.error.unwrap().to_string();
        assert!(
            text.contains("byte 0") && text.contains("exceeds"),
            "{text}"
        );
    }
}
