//! The two AEADs of Reel's boxes, both with 24-byte nonces built the same
//! way: a prefix drawn once per process, then a counter. Each comes down
//! to an RFC AEAD in AWS-LC's assembly under a subkey that depends only on
//! the key and the nonce's first bytes, so a process derives it once per
//! data key and keeps it ([`crate::DataKey`] does).
//!
//! - **XAES-256-GCM** ([C2SP](https://c2sp.org/XAES-256-GCM)): the subkey is
//!   made by AES-256 in a CMAC-like construction from the nonce's first 12
//!   bytes, then AES-256-GCM seals under the last 12. Every data key made
//!   now is for it: with the AES instructions of any server CPU it opens a
//!   64 KiB block about 5 times as fast as ChaCha20-Poly1305 here (5.2 µs
//!   against 26 µs) and seals a small journal record in 0.6 of the time
//!   (`cargo bench -p reel-keys --bench sealing`). That cost was most of
//!   what encryption at rest took from reads and from ingest.
//! - **XChaCha20-Poly1305** (draft-irtf-cfrg-xchacha): HChaCha20
//!   (RustCrypto's `chacha20`) turns the key and the nonce's first 16 bytes
//!   into a subkey, and ChaCha20-Poly1305 (RFC 8439) seals under the last 8.
//!   The data keys of recordings written before XAES-256-GCM, and the
//!   master key's wrapping of data keys. Its boxes are byte for byte those
//!   of RustCrypto's `XChaCha20Poly1305` (the tests check both ways).

use aws_lc_rs::aead::{AES_256_GCM, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::cipher::{AES_256, EncryptingKey, UnboundCipherKey};
use zeroize::Zeroizing;

use crate::KeyError;

/// The length of a nonce (both AEADs).
pub const NONCE_LEN: usize = 24;
/// What a box adds to its plaintext beyond the nonce (the tag).
pub const TAG_LEN: usize = 16;

/// The RFC AEAD key that a box's key and nonce prefix come down to, and
/// which of the two it is (for the short nonce).
pub(crate) struct Subkey {
    key: LessSafeKey,
    cipher: Cipher,
}

/// The AEAD of a data key's boxes. It travels with the key: a wrapped key
/// says which (see [`crate::WrappedKey`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cipher {
    /// XChaCha20-Poly1305: recordings written before XAES-256-GCM.
    XChaCha20Poly1305,
    /// XAES-256-GCM: every data key made now.
    Xaes256Gcm,
}

impl Cipher {
    /// Every cipher, the one new data keys are for first.
    pub const ALL: [Cipher; 2] = [Cipher::Xaes256Gcm, Cipher::XChaCha20Poly1305];

    /// Its name in configuration (`[keys] cipher`) and messages.
    pub fn name(self) -> &'static str {
        match self {
            Cipher::XChaCha20Poly1305 => "xchacha20-poly1305",
            Cipher::Xaes256Gcm => "xaes-256-gcm",
        }
    }

    /// The cipher of a [`Cipher::name`].
    pub fn from_name(name: &str) -> Option<Cipher> {
        Cipher::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The subkey of boxes under `key` whose nonces begin with `prefix`
    /// (a nonce's first 16 bytes, of which XAES-256-GCM uses 12).
    pub(crate) fn subkey(self, key: &[u8; 32], prefix: &[u8; 16]) -> Subkey {
        let (algorithm, sub) = match self {
            Cipher::XChaCha20Poly1305 => {
                let sub = Zeroizing::new(<[u8; 32]>::from(chacha20::hchacha::<chacha20::R20>(
                    &(*key).into(),
                    &(*prefix).into(),
                )));
                (&CHACHA20_POLY1305, sub)
            }
            Cipher::Xaes256Gcm => (
                &AES_256_GCM,
                xaes_subkey(key, prefix[..12].try_into().expect("12 of 16 bytes")),
            ),
        };
        let key = UnboundKey::new(algorithm, sub.as_ref()).expect("a 32-byte key");
        Subkey {
            key: LessSafeKey::new(key),
            cipher: self,
        }
    }

    /// The RFC AEAD's 12-byte nonce of a 24-byte nonce: for ChaCha20-Poly1305
    /// its last 8 bytes behind 4 zero bytes, for AES-256-GCM its last 12.
    fn short_nonce(self, nonce: &[u8; NONCE_LEN]) -> Nonce {
        let mut short = [0u8; 12];
        match self {
            Cipher::XChaCha20Poly1305 => short[4..].copy_from_slice(&nonce[16..]),
            Cipher::Xaes256Gcm => short.copy_from_slice(&nonce[12..]),
        }
        Nonce::assume_unique_for_key(short)
    }
}

/// XAES-256-GCM's derived key for the nonce's first 12 bytes `n`: with
/// `L = AES(K, 0)` and `K1` its CMAC doubling, `AES(K, M1 ^ K1) ||
/// AES(K, M2 ^ K1)` where `M1 = 00 01 'X' 00 || n`, `M2 = 00 02 'X' 00 || n`.
fn xaes_subkey(key: &[u8; 32], n: &[u8; 12]) -> Zeroizing<[u8; 32]> {
    let aes = EncryptingKey::ecb(UnboundCipherKey::new(&AES_256, key).expect("a 32-byte key"))
        .expect("AES-256 in ECB mode");
    let mut l = Zeroizing::new([0u8; 16]);
    aes.encrypt(l.as_mut()).expect("one whole block");
    let l = Zeroizing::new(u128::from_be_bytes(*l));
    let k1 = Zeroizing::new((*l << 1) ^ if *l >> 127 == 1 { 0x87 } else { 0 });
    let mut m = Zeroizing::new([0u8; 32]);
    for (i, half) in m.chunks_exact_mut(16).enumerate() {
        half[..4].copy_from_slice(&[0, i as u8 + 1, b'X', 0]);
        half[4..].copy_from_slice(n);
        let x = u128::from_be_bytes(half.try_into().expect("16 bytes")) ^ *k1;
        half.copy_from_slice(&x.to_be_bytes());
    }
    aes.encrypt(m.as_mut()).expect("two whole blocks");
    m
}

/// `nonce || ciphertext || tag` of `plaintext` under `key` and `nonce`,
/// binding `aad`. The caller makes sure a nonce is never used twice with
/// one key.
pub(crate) fn seal(
    cipher: Cipher,
    key: &[u8; 32],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, KeyError> {
    let mut out = Vec::new();
    seal_appending(
        &cipher.subkey(key, nonce[..16].try_into().expect("16 of 24 bytes")),
        nonce,
        aad,
        &mut out,
        plaintext.len(),
        |out| out.extend_from_slice(plaintext),
    )?;
    Ok(out)
}

/// Appends to `out` the box `nonce || ciphertext || tag` of the
/// `plaintext_len` bytes `write` appends, sealed under `subkey` (the subkey
/// of `nonce`'s prefix) and binding `aad`. The plaintext is encrypted
/// where `write` put it: `out` is grown first to hold the whole box, so no
/// copy of the plaintext is left behind in a buffer given up by a
/// reallocation.
///
/// # Panics
/// If `write` appends other than `plaintext_len` bytes.
pub(crate) fn seal_appending(
    subkey: &Subkey,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    out: &mut Vec<u8>,
    plaintext_len: usize,
    write: impl FnOnce(&mut Vec<u8>),
) -> Result<(), KeyError> {
    out.reserve(NONCE_LEN + plaintext_len + TAG_LEN);
    out.extend_from_slice(nonce);
    let start = out.len();
    write(out);
    assert_eq!(
        out.len() - start,
        plaintext_len,
        "the plaintext written is the length announced"
    );
    let tag = subkey
        .key
        .seal_in_place_separate_tag(
            subkey.cipher.short_nonce(nonce),
            Aad::from(aad),
            &mut out[start..],
        )
        .map_err(|_| KeyError::TooLong)?;
    out.extend_from_slice(tag.as_ref());
    Ok(())
}

/// The plaintext of a box [`seal`] made with `cipher`, `key` and `aad`;
/// fails if a byte of it (nonce, ciphertext or tag) or the `aad` differs.
pub(crate) fn open(
    cipher: Cipher,
    key: &[u8; 32],
    aad: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>, KeyError> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(KeyError::Inauthentic);
    }
    let nonce: [u8; NONCE_LEN] = sealed[..NONCE_LEN].try_into().expect("nonce bytes");
    open_with(
        &cipher.subkey(key, nonce[..16].try_into().expect("16 of 24 bytes")),
        &nonce,
        aad,
        &sealed[NONCE_LEN..],
    )
}

/// Opens the `ciphertext || tag` of a box whose nonce is `nonce`, with
/// `subkey` the subkey of its prefix.
pub(crate) fn open_with(
    subkey: &Subkey,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    ciphertext_and_tag: &[u8],
) -> Result<Vec<u8>, KeyError> {
    let mut buf = ciphertext_and_tag.to_vec();
    let len = subkey
        .key
        .open_in_place(subkey.cipher.short_nonce(nonce), Aad::from(aad), &mut buf)
        .map_err(|_| KeyError::Inauthentic)?
        .len();
    buf.truncate(len);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use chacha20poly1305::aead::{Aead, Payload};
    use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};

    use super::*;

    /// Deterministic bytes for the cases (no test depends on a random draw).
    fn bytes(seed: u64, n: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// The boxes are RustCrypto's XChaCha20-Poly1305 boxes: each opens what
    /// the other sealed, and they are equal byte for byte, for every length
    /// around the ChaCha20 block and Poly1305 boundaries, a block's size,
    /// and with and without associated data.
    #[test]
    fn boxes_are_those_of_rustcrypto_xchacha20poly1305_both_ways() {
        let mut lengths: Vec<usize> = (0..=300).collect();
        lengths.extend([1023, 1024, 1025, 4096, 65_536, 65_537]);
        for (i, &len) in lengths.iter().enumerate() {
            let seed = i as u64;
            let key: [u8; 32] = bytes(seed, 32).try_into().unwrap();
            let nonce: [u8; NONCE_LEN] = bytes(seed + 1000, NONCE_LEN).try_into().unwrap();
            let aad = bytes(seed + 2000, i % 40);
            let plain = bytes(seed + 3000, len);
            let reference = XChaCha20Poly1305::new(&key.into())
                .encrypt(
                    &XNonce::from(nonce),
                    Payload {
                        msg: &plain,
                        aad: &aad,
                    },
                )
                .unwrap();
            let ours = seal(Cipher::XChaCha20Poly1305, &key, &nonce, &aad, &plain).unwrap();
            assert_eq!(&ours[..NONCE_LEN], &nonce[..]);
            assert_eq!(&ours[NONCE_LEN..], &reference[..], "length {len}");
            let mut theirs = nonce.to_vec();
            theirs.extend_from_slice(&reference);
            assert_eq!(
                open(Cipher::XChaCha20Poly1305, &key, &aad, &theirs).unwrap(),
                plain
            );
            let back = XChaCha20Poly1305::new(&key.into())
                .decrypt(
                    &XNonce::from(nonce),
                    Payload {
                        msg: &ours[NONCE_LEN..],
                        aad: &aad,
                    },
                )
                .unwrap();
            assert_eq!(back, plain);
        }
    }

    /// XAES-256-GCM's boxes are those of its specification's test vectors
    /// (C2SP), which our nonces' layout does not change: only where the
    /// nonce comes from differs.
    #[test]
    fn xaes_boxes_are_those_of_the_c2sp_test_vectors() {
        let hex = |s: &str| -> Vec<u8> {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        };
        let nonce: [u8; NONCE_LEN] = *b"ABCDEFGHIJKLMNOPQRSTUVWX";
        for (key, aad, expected) in [
            (
                [1u8; 32],
                &b""[..],
                "ce546ef63c9cc60765923609b33a9a1974e96e52daf2fcf7075e2271",
            ),
            (
                [3u8; 32],
                &b"c2sp.org/XAES-256-GCM"[..],
                "986ec1832593df5443a179437fd083bf3fdb41abd740a21f71eb769d",
            ),
        ] {
            let sealed = seal(Cipher::Xaes256Gcm, &key, &nonce, aad, b"XAES-256-GCM").unwrap();
            assert_eq!(&sealed[..NONCE_LEN], &nonce[..]);
            assert_eq!(sealed[NONCE_LEN..], hex(expected)[..]);
            assert_eq!(
                open(Cipher::Xaes256Gcm, &key, aad, &sealed).unwrap(),
                b"XAES-256-GCM"
            );
        }
    }

    #[test]
    fn a_box_does_not_open_altered_cut_with_other_aad_key_or_cipher() {
        let key = [5u8; 32];
        let nonce = [6u8; NONCE_LEN];
        for (cipher, other) in [
            (Cipher::XChaCha20Poly1305, Cipher::Xaes256Gcm),
            (Cipher::Xaes256Gcm, Cipher::XChaCha20Poly1305),
        ] {
            let sealed = seal(cipher, &key, &nonce, b"aad", b"what was typed").unwrap();
            assert_eq!(
                open(cipher, &key, b"aad", &sealed).unwrap(),
                b"what was typed"
            );
            for i in 0..sealed.len() {
                let mut flipped = sealed.clone();
                flipped[i] ^= 0x01;
                assert!(
                    open(cipher, &key, b"aad", &flipped).is_err(),
                    "{cipher:?}: byte {i} flipped"
                );
            }
            for n in 0..sealed.len() {
                assert!(
                    open(cipher, &key, b"aad", &sealed[..n]).is_err(),
                    "cut to {n}"
                );
            }
            assert!(open(cipher, &key, b"aae", &sealed).is_err());
            assert!(open(cipher, &[4u8; 32], b"aad", &sealed).is_err());
            assert!(open(other, &key, b"aad", &sealed).is_err());
        }
    }
}
