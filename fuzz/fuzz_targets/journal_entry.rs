//! A journal record's payload (`JournalEntry`, protobuf) and the checks
//! recovery applies before trusting it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use reel_log::validate::decode_journal_entry;

fuzz_target!(|data: &[u8]| {
    if let Ok(entry) = decode_journal_entry(data) {
        // What recovery computes from it cannot overflow.
        assert_eq!(entry.recording_id.len(), 16);
        entry
            .first_index
            .checked_add(entry.events.len() as u64)
            .expect("the event range was checked");
        u32::try_from(entry.events.len()).expect("a chunk's count fits in 32 bits");
        assert!(
            entry
                .events
                .windows(2)
                .all(|w| w[0].time_us <= w[1].time_us)
        );
        // Written again, it reads back the same.
        assert_eq!(decode_journal_entry(&entry.encode_to_vec()), Ok(entry));
    }
});
