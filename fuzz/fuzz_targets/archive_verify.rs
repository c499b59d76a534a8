//! `reel verify-archive` (`archive::verify`): any file, checked with a
//! public key that signed nothing here. It never panics, never calls such a
//! file intact (its end frame cannot carry a signature that checks), and
//! gives the same verdict however the file arrives (reads of any size).
//! Odd first byte: the file is built from frame descriptions, with CRCs and
//! the end frame right.
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use reel_keys::PublicKey;
use reel_log::archive::verify;

const KEY: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAPzLKXYXJuaATakAOrnHf3AOA9NxCBHw8augc/PhSD/Q=
-----END PUBLIC KEY-----";

/// Hands out the file in reads of the sizes `sizes` gives, in turn.
struct Trickle<'a> {
    file: &'a [u8],
    sizes: &'a [u8],
    turn: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let size = self
            .sizes
            .get(self.turn % self.sizes.len().max(1))
            .map_or(1, |&s| usize::from(s).max(1));
        self.turn += 1;
        let n = size.min(buf.len()).min(self.file.len());
        buf[..n].copy_from_slice(&self.file[..n]);
        self.file = &self.file[n..];
        Ok(n)
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (sizes, body) = reel_fuzz::split(rest);
    let file = if mode & 1 == 0 {
        body.to_vec()
    } else {
        reel_fuzz::archive_from_frames(body)
    };
    let key = PublicKey::from_pem(KEY).expect("a valid key");
    let whole = verify(&file[..], &key).expect("reading a slice does not fail");
    assert!(!whole.intact(), "nothing here was signed by this key");
    let trickled = verify(
        Trickle {
            file: &file,
            sizes,
            turn: 0,
        },
        &key,
    )
    .expect("reading a slice does not fail");
    assert_eq!(whole, trickled);
});
