//! Times as people type them in the CLI and the HTTP API: offsets within a
//! recording and instants (dates, date-times, ages).
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use reel_api::{parse_instant, parse_offset, system_time};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(us) = parse_offset(&text) {
        let again = format!("{}.{:06}", us / 1_000_000, us % 1_000_000);
        assert_eq!(parse_offset(&again), Ok(us));
    }
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    if let Ok(us) = parse_instant(&text, now) {
        assert!(us >= 0);
        let _ = system_time(us);
    }
});
