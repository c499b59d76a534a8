//! What the fuzz targets share: objects built around fuzzed bytes with
//! their checksums made right (so the fuzzer gets past CRC32C and SHA-256
//! gates to the checks behind them), and input cut into chunks the way a
//! network delivers it.

use prost::Message;
use reel_proto::v1::{RecordingIndex, SegmentHeader};
use sha2::{Digest, Sha256};

/// `data` cut into chunks whose sizes cycle through `sizes` (a zero is 1).
pub fn chunks<'a>(data: &'a [u8], sizes: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < data.len() {
        let size = sizes.get(i % sizes.len().max(1)).copied().unwrap_or(0);
        // Sizes up to 4 KiB in steps of 16 beyond the first 128.
        let size = match size {
            0 => 1,
            n if n < 128 => n as usize,
            n => (n as usize - 127) * 16,
        };
        let end = (at + size).min(data.len());
        out.push(&data[at..end]);
        at = end;
        i += 1;
    }
    out
}

/// A segment object around a header message and content. When the header
/// decodes, its content length, content SHA-256 and the CRC32C of every
/// block that lies in the content are made right first.
pub fn segment_around(header_bytes: &[u8], content: &[u8]) -> Vec<u8> {
    let header = match SegmentHeader::decode(header_bytes) {
        Ok(mut h) => {
            h.content_len = content.len() as u64;
            h.content_sha256 = Sha256::digest(content).to_vec();
            for b in &mut h.blocks {
                let range = usize::try_from(b.offset).ok().and_then(|start| {
                    let end = start.checked_add(usize::try_from(b.len).ok()?)?;
                    content.get(start..end)
                });
                if let Some(bytes) = range {
                    b.crc32c = crc32c::crc32c(bytes);
                }
            }
            h.encode_to_vec()
        }
        Err(_) => header_bytes.to_vec(),
    };
    let mut out = reel_log::segment::SEGMENT_MAGIC.to_vec();
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&crc32c::crc32c(&header).to_le_bytes());
    out.extend_from_slice(content);
    out
}

/// The tail of a combined object (index and footer) around an index
/// message, with its CRC32C right; when the message decodes, its content
/// SHA-256 is given the right length.
pub fn combined_tail(index_bytes: &[u8]) -> Vec<u8> {
    let index = match RecordingIndex::decode(index_bytes) {
        Ok(mut i) => {
            i.content_sha256.resize(32, 0);
            i.encode_to_vec()
        }
        Err(_) => index_bytes.to_vec(),
    };
    let mut out = index.clone();
    out.extend_from_slice(reel_log::combined::INDEX_MAGIC);
    out.extend_from_slice(&(index.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&index).to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    out
}

/// An archive file from fuzzed frame descriptions: `kind: u8 | len: u16 LE
/// | payload[len]`, each framed with its right CRC32C; a kind-3 frame
/// becomes a right end frame (counts and SHA-256 of what precedes it).
pub fn archive_from_frames(mut data: &[u8]) -> Vec<u8> {
    let mut file = reel_log::archive::ARCHIVE_MAGIC.to_vec();
    file.extend_from_slice(&1u32.to_le_bytes());
    let (mut recordings, mut segments) = (0u64, 0u64);
    while data.len() >= 3 {
        let kind = data[0];
        let len = (u16::from_le_bytes([data[1], data[2]]) as usize).min(data.len() - 3);
        let mut payload = data[3..3 + len].to_vec();
        data = &data[3 + len..];
        match kind {
            1 => recordings += 1,
            2 => segments += 1,
            3 => {
                payload = reel_proto::v1::ArchiveEnd {
                    recordings,
                    segments,
                    sha256: Sha256::digest(&file).to_vec(),
                    // Unsigned: the reader checks the file's SHA-256, not
                    // the signature (that is `archive::verify`'s).
                    ..Default::default()
                }
                .encode_to_vec();
            }
            _ => {}
        }
        file.push(kind);
        file.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        file.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
        file.extend_from_slice(&payload);
    }
    file
}

/// Splits `data` at a length read from its first two bytes: the two parts
/// of a structured input.
pub fn split(data: &[u8]) -> (&[u8], &[u8]) {
    if data.len() < 2 {
        return (data, &[]);
    }
    let n = (u16::from_le_bytes([data[0], data[1]]) as usize).min(data.len() - 2);
    (&data[2..2 + n], &data[2 + n..])
}
