//! Encryption at rest of what a recording holds: its blocks in segment
//! objects and its records in the journal.
//!
//! Each recording has its own data key ([`reel_keys::DataKey`], wrapped by a
//! master key in the recording's catalog row and key objects). A sealed box
//! is `nonce (24 bytes) || XChaCha20-Poly1305(data key, nonce, plaintext,
//! aad)`: the nonce is fresh (a random per-process prefix and a counter, so
//! nothing is kept across crashes), and the
//! associated data binds the box to where it belongs, so a box moved to
//! another recording or another place in its recording does not open.

use reel_keys::DataKey;
pub use reel_keys::SEAL_OVERHEAD;

/// A recording's data key, with the recording it belongs to.
#[derive(Clone, Debug)]
pub struct RecordingKey {
    recording_id: [u8; 16],
    key: DataKey,
}

/// What a box is, as bound in its associated data.
#[derive(Clone, Copy)]
enum Kind {
    /// A segment's block: its first event index and start time.
    Block,
    /// A journal record: its first event index and event count.
    Record,
    /// A keyframe (the screen at a moment, derived from the events): its
    /// time.
    Keyframe,
}

impl RecordingKey {
    pub fn new(recording_id: [u8; 16], key: DataKey) -> RecordingKey {
        RecordingKey { recording_id, key }
    }

    pub fn recording_id(&self) -> &[u8; 16] {
        &self.recording_id
    }

    fn aad(&self, kind: Kind, a: u64, b: u64) -> [u8; 16 + 1 + 16] {
        let mut aad = [0u8; 33];
        aad[..16].copy_from_slice(&self.recording_id);
        aad[16] = match kind {
            Kind::Block => b'B',
            Kind::Record => b'R',
            Kind::Keyframe => b'K',
        };
        aad[17..25].copy_from_slice(&a.to_le_bytes());
        aad[25..].copy_from_slice(&b.to_le_bytes());
        aad
    }

    fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, reel_keys::KeyError> {
        reel_keys::seal(&self.key, aad, plaintext)
    }

    fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        reel_keys::open(&self.key, aad, sealed).ok()
    }

    /// Seals a block of a segment: its run of events, bound to the block's
    /// first event index and start time.
    pub fn seal_block(
        &self,
        first_event_index: u64,
        start_time_us: u64,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, reel_keys::KeyError> {
        let aad = self.aad(Kind::Block, first_event_index, start_time_us);
        self.seal(&aad, plaintext)
    }

    /// Opens what [`RecordingKey::seal_block`] sealed; `None` if the box was
    /// altered, moved, or sealed under another key.
    pub fn open_block(
        &self,
        first_event_index: u64,
        start_time_us: u64,
        sealed: &[u8],
    ) -> Option<Vec<u8>> {
        let aad = self.aad(Kind::Block, first_event_index, start_time_us);
        self.open(&aad, sealed)
    }

    /// Appends to `out` the box of a journal record's events (their
    /// `EventList` bytes, the `plaintext_len` bytes `write` appends, sealed
    /// where they were written: see [`reel_keys::seal_appending`]).
    pub fn seal_record_appending(
        &self,
        first_index: u64,
        event_count: u32,
        out: &mut Vec<u8>,
        plaintext_len: usize,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(), reel_keys::KeyError> {
        let aad = self.aad(Kind::Record, first_index, event_count.into());
        reel_keys::seal_appending(&self.key, &aad, out, plaintext_len, write)
    }

    /// Seals a keyframe: what the recording looked like at `time_us`.
    pub fn seal_keyframe(
        &self,
        time_us: u64,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, reel_keys::KeyError> {
        let aad = self.aad(Kind::Keyframe, time_us, 0);
        self.seal(&aad, plaintext)
    }

    /// Opens what [`RecordingKey::seal_keyframe`] sealed.
    pub fn open_keyframe(&self, time_us: u64, sealed: &[u8]) -> Option<Vec<u8>> {
        let aad = self.aad(Kind::Keyframe, time_us, 0);
        self.open(&aad, sealed)
    }

    /// Opens what [`RecordingKey::seal_record_appending`] sealed.
    pub fn open_record(
        &self,
        first_index: u64,
        event_count: u32,
        sealed: &[u8],
    ) -> Option<Vec<u8>> {
        let aad = self.aad(Kind::Record, first_index, event_count.into());
        self.open(&aad, sealed)
    }
}
