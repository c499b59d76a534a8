//! asciicast v2/v3 files as `reel ingest` reads them.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(cast) = reel_asciicast::parse(&text) {
        assert!(cast.version == 2 || cast.version == 3);
        assert!(cast.events.windows(2).all(|w| w[0].time_us <= w[1].time_us));
        for e in &cast.events {
            let _ = reel_asciicast::v2_event_line(e);
        }
        let _ = reel_asciicast::v2_header(&cast.metadata);
    }
});
