//! A recording frame's payload (`ArchiveRecording`, protobuf): counted on
//! the wire, decoded, checked. What passes can be stored: every sum a
//! reader makes from it stays inside its object.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use reel_log::archive::decode_recording_frame;
use reel_log::validate::check_segment_row;

fuzz_target!(|data: &[u8]| {
    if let Ok(rec) = decode_recording_frame(data, 12) {
        for seg in &rec.segments {
            check_segment_row(seg).expect("checked");
            for b in &seg.blocks {
                let end = seg
                    .content_offset
                    .checked_add(b.offset)
                    .and_then(|s| s.checked_add(b.len))
                    .expect("block range checked");
                assert!(end <= seg.size);
            }
            if let Some(offset) = seg.combined_offset {
                offset.checked_add(seg.size).expect("checked");
            }
        }
        assert_eq!(decode_recording_frame(&rec.encode_to_vec(), 12), Ok(rec));
    }
});
