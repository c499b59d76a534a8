//! Reel's local log: the shared, group-committed write-ahead journal that
//! makes every event durable before it is acknowledged, and the codec of the
//! sealed segments that leave it for the stores.
//!
//! - [`journal`]: the journal (group commit, rotation, recovery, reads).
//! - [`record`]: the length + CRC32C framing of journal records.
//! - [`segment`]: the self-describing segment objects.
//! - [`combined`]: a recording's segments recombined into one object with
//!   an index.
//! - [`archive`]: the archive file of recordings kept outside Reel.
//! - [`audit`]: the audit log's copy objects in the stores.
//! - [`limits`]: the bounds of what Reel writes, which every decoder checks.
//! - [`sealed`]: encryption at rest of a recording's blocks and records.
//! - [`validate`]: checks of decoded catalog rows and journal entries.
//! - [`disk`]: the local disk's free space.

pub mod archive;
pub mod audit;
pub mod combined;
pub mod disk;
pub mod error;
pub mod journal;
pub mod limits;
pub mod record;
pub mod sealed;
pub mod segment;
pub mod validate;
mod wire;

pub use error::{InvalidField, JournalError, SegmentError, is_disk_full};
pub use journal::{
    Completion, Damage, Journal, JournalOptions, JournalStats, Position, RecoveryReport,
};
pub use sealed::RecordingKey;
pub use segment::{
    BLOCK_TARGET_BYTES, CheckedSegment, DecodedSegment, EncodedSegment, Hash, SegmentSpec, Signer,
    blocks_for_window, check_segment, content_blocks, decode_block, decode_header, decode_segment,
    encode_sealed_segment, encode_segment, encode_signed_segment, sha256, verify_signature,
};
