//! A recording's wrapped data key as read from its catalog row, its key
//! object on a store or an archive (`reel_keys::WrappedKey::from_bytes`):
//! only the exact length and a known version are accepted, and what is
//! accepted is written back byte for byte, its version naming its cipher.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reel_keys::{Cipher, WRAPPED_KEY_LEN, WrappedKey};

fuzz_target!(|data: &[u8]| {
    let Ok(wrapped) = WrappedKey::from_bytes(data) else {
        return;
    };
    assert_eq!(data.len(), WRAPPED_KEY_LEN);
    assert_eq!(wrapped.to_bytes(), data);
    let version = match wrapped.cipher {
        Cipher::XChaCha20Poly1305 => 1,
        Cipher::Xaes256Gcm => 2,
    };
    assert_eq!(data[0], version);
});
