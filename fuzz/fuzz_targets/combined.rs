//! The tail of a combined object (index and footer), as a reader or the
//! catalog rebuild reads it. Odd first byte: the rest is an index message,
//! wrapped in a footer with its CRC32C right.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reel_log::combined::{
    FOOTER_LEN, decode_footer, decode_index, index_content_len, segments_for_window,
};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let tail = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        reel_fuzz::combined_tail(rest)
    };
    if tail.len() >= FOOTER_LEN {
        let _ = decode_footer(&tail[tail.len() - FOOTER_LEN..]);
    }
    if let Ok(index) = decode_index(&tail) {
        let mut end = 0u64;
        for s in &index.segments {
            assert_eq!(s.offset, end);
            end = s.offset.checked_add(s.size).expect("checked");
            s.first_event_index
                .checked_add(s.event_count)
                .expect("checked");
        }
        assert_eq!(index_content_len(&index), end);
        let _ = segments_for_window(&index, index.duration_us / 2, u64::MAX);
    }
});
