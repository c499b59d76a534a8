//! Segment objects as read from a store, the spool or an archive: the
//! whole-object check (one event at a time), the decode, and the blocks a
//! reader seeks by. Odd first byte: the rest is `header | content` and the
//! object is built around it with its CRC32C and SHA-256 right.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reel_log::validate::{check_row_matches_segment, check_segment_row};
use reel_log::{
    SegmentError, blocks_for_window, check_segment, content_blocks, decode_block, decode_segment,
};
use reel_proto::v1::SegmentRow;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let object = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        let (header, content) = reel_fuzz::split(rest);
        reel_fuzz::segment_around(header, content)
    };
    let bytes = &object[..];
    let checked = check_segment(bytes);
    let decoded = decode_segment(bytes, None);
    match (&checked, &decoded) {
        (Ok(c), Ok(d)) => {
            assert_eq!(c.header, d.header);
            assert_eq!(d.events.len() as u64, d.header.event_count);
            let data_bytes: u64 = d.events.iter().map(|e| e.data.len() as u64).sum();
            assert_eq!(c.data_bytes, data_bytes);
            // The blocks a reader uses decode to the same events.
            let content = &bytes[c.content_offset as usize..];
            let mut again = Vec::new();
            let has_blocks = !c.header.blocks.is_empty();
            for b in content_blocks(&c.header) {
                let part = &content[b.offset as usize..(b.offset + b.len) as usize];
                again.extend(
                    decode_block(&b, part, has_blocks, None).expect("a checked block decodes"),
                );
            }
            assert_eq!(again, d.events);
            let h = &c.header;
            let span = h.end_time_us.saturating_sub(h.start_time_us);
            let from = h.start_time_us.saturating_add(span / 3);
            let window = blocks_for_window(&h.blocks, from, from.saturating_add(span / 3 + 1));
            assert!(window.end <= h.blocks.len());
            // A row made from it passes what an import checks.
            let row = SegmentRow {
                sequence: h.sequence,
                first_event_index: h.first_event_index,
                event_count: h.event_count,
                start_time_us: h.start_time_us,
                end_time_us: h.end_time_us,
                data_bytes: c.data_bytes,
                size: bytes.len() as u64,
                sha256: reel_log::sha256(bytes).to_vec(),
                r#final: h.r#final,
                content_offset: c.content_offset,
                blocks: h.blocks.clone(),
                ..Default::default()
            };
            check_segment_row(&row).expect("a checked segment's row is valid");
            check_row_matches_segment(&row, c, bytes.len() as u64).expect("its own row matches");
        }
        // Sealed blocks are checked without their key as far as the
        // stored bytes go; their events need the key.
        (Ok(c), Err(SegmentError::KeyNeeded)) if c.header.encrypted => {}
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("check_segment and decode_segment disagree: {checked:?} / {decoded:?}"),
    }
});
