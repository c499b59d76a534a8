//! ALiS v1 messages as reeld's asciinema stream endpoint reads them from
//! the network.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reel_asciicast::alis;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = alis::decode(data) {
        // What decodes encodes back to bytes that decode the same.
        assert_eq!(alis::decode(&alis::encode(&message)), Ok(message));
    }
});
