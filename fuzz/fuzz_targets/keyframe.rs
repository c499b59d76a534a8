//! Keyframes as the web player reads them back from the catalog
//! (`Snapshot::from_bytes`), and the screens they restore: what the
//! catalog holds was written by the server, but a catalog is bytes on disk.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reel_asciicast::screen::{MAX_COLS, MAX_ROWS, Screen, Snapshot};

fuzz_target!(|data: &[u8]| {
    let Some(snapshot) = Snapshot::from_bytes(data) else {
        return;
    };
    // A restored screen never exceeds the bounds a resize has, whatever
    // size the bytes claim.
    assert!((1..=MAX_COLS).contains(&snapshot.cols) && (1..=MAX_ROWS).contains(&snapshot.rows));
    assert_eq!(
        Snapshot::from_bytes(&snapshot.to_bytes()).as_ref(),
        Some(&snapshot)
    );
    // Screens up to 1000 x 500 cost milliseconds to draw twice: the
    // emulator is fed at a few hundred cells' sizes so that the fuzzer
    // explores the text rather than the size (the size checks are above).
    if u32::from(snapshot.cols) * u32::from(snapshot.rows) > 200 * 60 {
        return;
    }
    let screen = Screen::restore(&snapshot);
    assert_eq!(screen.text().len(), snapshot.rows as usize);
    // A keyframe taken of that screen restores the same screen: what the
    // player shows at a keyframe is what was there when it was taken.
    let again = Screen::restore(&screen.snapshot());
    assert_eq!(again.text(), screen.text());
});
