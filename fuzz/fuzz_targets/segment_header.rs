//! A segment header message (`SegmentHeader`, protobuf) and the checks
//! applied to it before its blocks are used as byte ranges.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use reel_log::blocks_for_window;
use reel_log::segment::decode_header_message;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = decode_header_message(data) {
        h.first_event_index
            .checked_add(h.event_count)
            .expect("the event range was checked");
        for b in &h.blocks {
            let end = b.offset.checked_add(b.len).expect("block end was checked");
            assert!(end <= h.content_len);
        }
        let window = blocks_for_window(&h.blocks, h.start_time_us, h.end_time_us.saturating_add(1));
        assert!(window.end <= h.blocks.len());
        assert_eq!(decode_header_message(&h.encode_to_vec()), Ok(h));
    }
});
