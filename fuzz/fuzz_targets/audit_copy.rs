//! An audit copy object (`audit/<first>-<last>.pb` in a store): decoded up
//! to its first fault. What decodes stays within its bounds and reads the
//! same once written back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reel_log::audit::{decode_copy, encode_copy};
use reel_log::limits::MAX_AUDIT_ENTRY_BYTES;

fuzz_target!(|data: &[u8]| {
    let decoded = decode_copy(data);
    let taken: usize = decoded.entries.iter().map(|e| e.bytes.len()).sum();
    assert!(taken <= data.len());
    for e in &decoded.entries {
        assert!(e.bytes.len() as u64 <= MAX_AUDIT_ENTRY_BYTES);
    }
    let bytes: Vec<Vec<u8>> = decoded.entries.iter().map(|e| e.bytes.clone()).collect();
    let again = decode_copy(&encode_copy(&bytes));
    assert_eq!(again.error, None);
    assert_eq!(again.entries, decoded.entries);
});
