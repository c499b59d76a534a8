//! The journal's record framing (`len | crc32c | payload`), as recovery
//! reads it from a file: decode, resync past garbage, and the entry behind
//! a record whose CRC is right.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reel_log::record::{self, FrameError, HEADER_LEN};

const MAX: u32 = 1 << 16;

fuzz_target!(|data: &[u8]| {
    match record::decode(data, MAX) {
        Ok((payload, n)) => {
            assert_eq!(n, HEADER_LEN + payload.len());
            assert_eq!(record::encode(payload), data[..n]);
            let _ = reel_log::validate::decode_journal_entry(payload);
        }
        Err(FrameError::TooLong { len, max }) => assert!(len > max),
        Err(FrameError::Truncated { len, available }) => assert!(len as usize > available),
        Err(_) => {}
    }
    if let Some(at) = record::resync(data, 0, MAX) {
        assert!(record::decode(&data[at..], MAX).is_ok());
    }
    // The bytes framed as the journal writes them: past the CRC, to the
    // entry decoder.
    if !data.is_empty() && data.len() <= MAX as usize {
        let framed = record::encode(data);
        let (payload, n) = record::decode(&framed, MAX).expect("a record as written decodes");
        assert_eq!((payload, n), (data, framed.len()));
        let _ = reel_log::validate::decode_journal_entry(payload);
    }
});
