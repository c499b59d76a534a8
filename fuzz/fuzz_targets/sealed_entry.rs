//! A journal record's sealed events, opened with the recording's data key
//! as recovery and the reader open them (`validate::open_entry`): any
//! record is an error or its events, never a panic; and any record's events,
//! sealed (`validate::seal_entry`), pass the record checks and open to the
//! same events, while no key, another recording's key or one flipped bit of
//! the box does not open them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use reel_keys::{Cipher, DataKey};
use reel_log::RecordingKey;
use reel_log::validate::{decode_journal_entry, open_entry, seal_entry};

fn key(recording: [u8; 16]) -> RecordingKey {
    RecordingKey::new(
        recording,
        DataKey::from_bytes(Cipher::Xaes256Gcm, [7u8; 32].into()),
    )
}

fuzz_target!(|data: &[u8]| {
    let Ok(entry) = decode_journal_entry(data) else {
        return;
    };
    let id: [u8; 16] = entry.recording_id[..]
        .try_into()
        .expect("checked: 16 bytes");
    let _ = open_entry(entry.clone(), Some(&key(id)));
    if !entry.sealed_events.is_empty() || entry.events.is_empty() {
        return;
    }
    let bytes = seal_entry(id, Some(&key(id)), entry.first_index, entry.events.clone())
        .expect("sealing does not fail");
    let back = decode_journal_entry(&bytes).expect("a sealed record passes the record checks");
    assert!(back.events.is_empty(), "nothing in the clear");
    assert_eq!(back.encode_to_vec(), bytes, "written as prost encodes it");
    assert_eq!(
        open_entry(back.clone(), Some(&key(id))).unwrap(),
        entry.events
    );
    assert!(open_entry(back.clone(), None).is_err());
    let mut other = id;
    other[0] ^= 1;
    assert!(open_entry(back.clone(), Some(&key(other))).is_err());
    let mut flipped = back;
    let last = flipped.sealed_events.len() - 1;
    flipped.sealed_events[last] ^= 1;
    assert!(open_entry(flipped, Some(&key(id))).is_err());
});
