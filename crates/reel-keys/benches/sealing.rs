//! What sealing and checking cost per box, at the two sizes Reel seals: a
//! journal record of one small terminal event (the ingest path, one box per
//! event) and a 64 KiB segment block (the read path, one box per block).
//!
//! - `seal`, `open`: Reel's boxes of a data key made now (XAES-256-GCM:
//!   AWS-LC's AES-256-GCM under a derived subkey).
//! - `xchacha seal`, `xchacha open`: the boxes of data keys made before
//!   (XChaCha20-Poly1305 as HChaCha20 and AWS-LC's ChaCha20-Poly1305).
//! - `rustcrypto seal`, `rustcrypto open`: XChaCha20-Poly1305 boxes by
//!   RustCrypto's `XChaCha20Poly1305`, which Reel used before AWS-LC.
//! - `sha256`, `crc32c`: the checks every read makes of a block stored in
//!   the clear.
//!
//! Run: `cargo bench -p reel-keys --bench sealing`.

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use reel_keys::{Cipher, DataKey, NONCE_LEN, open, seal};
use sha2::{Digest, Sha256};

/// A journal record of one 128-byte event, and a 64 KiB block.
const SIZES: [usize; 2] = [150, 64 << 10];

fn payload<'a>(msg: &'a [u8], aad: &'a [u8]) -> Payload<'a, 'a> {
    Payload { msg, aad }
}

fn sealing(c: &mut Criterion) {
    let key = DataKey::generate().unwrap();
    let xchacha = DataKey::from_bytes(Cipher::XChaCha20Poly1305, [9u8; 32].into());
    let reference = XChaCha20Poly1305::new(&[9u8; 32].into());
    let nonce = XNonce::from([3u8; NONCE_LEN]);
    let aad = [7u8; 33];
    let mut group = c.benchmark_group("box");
    for size in SIZES {
        let plain: Vec<u8> = (0..size).map(|i| i as u8).collect();
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("seal", size), &plain, |b, p| {
            b.iter(|| seal(&key, &aad, p).unwrap())
        });
        let sealed = seal(&key, &aad, &plain).unwrap();
        group.bench_with_input(BenchmarkId::new("open", size), &sealed, |b, s| {
            b.iter(|| open(&key, &aad, s).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("xchacha seal", size), &plain, |b, p| {
            b.iter(|| seal(&xchacha, &aad, p).unwrap())
        });
        let sealed = seal(&xchacha, &aad, &plain).unwrap();
        group.bench_with_input(BenchmarkId::new("xchacha open", size), &sealed, |b, s| {
            b.iter(|| open(&xchacha, &aad, s).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("rustcrypto seal", size), &plain, |b, p| {
            b.iter(|| reference.encrypt(&nonce, payload(p, &aad)).unwrap())
        });
        let theirs = reference.encrypt(&nonce, payload(&plain, &aad)).unwrap();
        group.bench_with_input(
            BenchmarkId::new("rustcrypto open", size),
            &theirs,
            |b, s| b.iter(|| reference.decrypt(&nonce, payload(s, &aad)).unwrap()),
        );
        group.bench_with_input(BenchmarkId::new("sha256", size), &plain, |b, p| {
            b.iter(|| Sha256::digest(p))
        });
        group.bench_with_input(BenchmarkId::new("crc32c", size), &plain, |b, p| {
            b.iter(|| crc32c::crc32c(p))
        });
    }
    group.finish();
}

criterion_group!(benches, sealing);
criterion_main!(benches);
