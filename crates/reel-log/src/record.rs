//! Record framing: `len: u32 LE | crc32c: u32 LE | payload[len]`.
//!
//! The CRC covers the length field and the payload, so a torn or corrupted
//! length is caught as surely as a corrupted payload. A zero length never
//! frames a record (payloads are never empty), which lets a zero-filled tail
//! read as "end of data".

use thiserror::Error;

/// Bytes in a record header.
pub const HEADER_LEN: usize = 8;

/// Why bytes at some offset do not frame a valid record.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    #[error("fewer than {HEADER_LEN} bytes left for a record header ({0} left)")]
    ShortHeader(usize),
    #[error("zero-length record (end of written data)")]
    Zero,
    #[error("record length {len} exceeds the maximum {max}")]
    TooLong { len: u32, max: u32 },
    #[error("record claims {len} payload bytes but only {available} remain")]
    Truncated { len: u32, available: usize },
    #[error("record checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum { stored: u32, computed: u32 },
}

/// The checksum stored in a header for `payload`.
pub fn checksum(payload: &[u8]) -> u32 {
    let len = (payload.len() as u32).to_le_bytes();
    crc32c::crc32c_append(crc32c::crc32c(&len), payload)
}

/// Appends the framed record for `payload` to `out`.
///
/// Panics if `payload` is empty or longer than `u32::MAX` bytes: callers
/// check payload sizes against their configured maximum first.
pub fn encode_into(payload: &[u8], out: &mut Vec<u8>) {
    assert!(!payload.is_empty(), "empty journal record");
    let len = u32::try_from(payload.len()).expect("record longer than 4 GiB");
    out.reserve(HEADER_LEN + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&checksum(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// The framed record for `payload`.
pub fn encode(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    encode_into(payload, &mut out);
    out
}

/// Decodes the record at the start of `buf`; returns the payload and the
/// total number of bytes the record occupies (header included).
pub fn decode(buf: &[u8], max_len: u32) -> Result<(&[u8], usize), FrameError> {
    if buf.len() < HEADER_LEN {
        return Err(FrameError::ShortHeader(buf.len()));
    }
    let len = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes"));
    let stored = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
    if len == 0 {
        return Err(FrameError::Zero);
    }
    if len > max_len {
        return Err(FrameError::TooLong { len, max: max_len });
    }
    let available = buf.len() - HEADER_LEN;
    if len as usize > available {
        return Err(FrameError::Truncated { len, available });
    }
    let payload = &buf[HEADER_LEN..HEADER_LEN + len as usize];
    let computed = checksum(payload);
    if computed != stored {
        return Err(FrameError::Checksum { stored, computed });
    }
    Ok((payload, HEADER_LEN + len as usize))
}

/// Finds the first offset at or after `from` where a valid record starts.
/// Used to step over a corrupted region and tell it from a torn tail.
pub fn resync(buf: &[u8], from: usize, max_len: u32) -> Option<usize> {
    (from..buf.len().saturating_sub(HEADER_LEN - 1)).find(|&at| decode(&buf[at..], max_len).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_and_zero_tail() {
        let mut buf = encode(b"hello");
        encode_into(b"world!", &mut buf);
        buf.extend_from_slice(&[0u8; 32]);
        let (p, n) = decode(&buf, 1024).unwrap();
        assert_eq!(p, b"hello");
        let (p2, n2) = decode(&buf[n..], 1024).unwrap();
        assert_eq!(p2, b"world!");
        assert_eq!(decode(&buf[n + n2..], 1024), Err(FrameError::Zero));
    }

    #[test]
    fn corrupted_length_is_caught_by_checksum() {
        let mut buf = encode(b"abcdef");
        buf.extend_from_slice(b"xyz");
        buf[0] = 7; // claims 7 bytes; 9 are available
        assert!(matches!(
            decode(&buf, 1024),
            Err(FrameError::Checksum { .. })
        ));
    }

    #[test]
    fn resync_skips_garbage() {
        let mut buf = vec![0xAB; 13];
        let start = buf.len();
        encode_into(b"payload", &mut buf);
        assert_eq!(resync(&buf, 0, 1024), Some(start));
        assert_eq!(resync(&buf, start + 1, 1024), None);
    }

    proptest! {
        #[test]
        fn encoded_payloads_decode_to_themselves(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..300), 1..20)
        ) {
            let mut buf = Vec::new();
            for p in &payloads {
                encode_into(p, &mut buf);
            }
            let mut at = 0;
            for p in &payloads {
                let (got, n) = decode(&buf[at..], 4096).unwrap();
                prop_assert_eq!(got, &p[..]);
                at += n;
            }
            prop_assert_eq!(at, buf.len());
        }

        #[test]
        fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..600)) {
            // Either a record whose checksum matches, or a clear error.
            if let Ok((payload, n)) = decode(&buf, 4096) {
                prop_assert_eq!(n, HEADER_LEN + payload.len());
                prop_assert_eq!(checksum(payload), u32::from_le_bytes(buf[4..8].try_into().unwrap()));
            }
            let _ = resync(&buf, 0, 4096);
        }

        #[test]
        fn any_single_byte_flip_is_detected(
            payload in proptest::collection::vec(any::<u8>(), 1..200),
            flip_at in any::<prop::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let mut buf = encode(&payload);
            let i = flip_at.index(buf.len());
            buf[i] ^= flip;
            // CRC32C detects every single-byte error.
            prop_assert!(decode(&buf, 4096).is_err());
        }
    }
}
