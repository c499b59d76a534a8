//! What someone with write access to a bucket can do to an object without
//! any key: here, change bytes and keep the CRC32C they are checked by.

/// Changes the 4 bytes at `at` so that `crc32c(bytes) == target`.
///
/// A CRC over a fixed length is affine in the message bits: flipping a set
/// of bits changes the CRC by the XOR of what each flip alone changes. So
/// the 32 bits at `at` (whose effects are independent for a CRC of degree
/// 32) can be solved for, by Gaussian elimination over GF(2), to reach any
/// CRC. This is why a CRC only detects accidents.
pub fn forge_crc32c(bytes: &mut [u8], at: usize, target: u32) {
    assert!(at + 4 <= bytes.len(), "4 bytes at {at} past the end");
    let base = crc32c::crc32c(bytes);
    // basis[bit]: a CRC change whose highest set bit is `bit`, and the flips
    // (a mask of the 32 bits at `at`) that make it.
    let mut basis = [(0u32, 0u32); 32];
    for i in 0..32 {
        bytes[at + i / 8] ^= 1 << (i % 8);
        let (mut change, mut flips) = (crc32c::crc32c(bytes) ^ base, 1u32 << i);
        bytes[at + i / 8] ^= 1 << (i % 8);
        for bit in (0..32).rev() {
            if change >> bit & 1 == 0 {
                continue;
            }
            if basis[bit].0 == 0 {
                basis[bit] = (change, flips);
                break;
            }
            change ^= basis[bit].0;
            flips ^= basis[bit].1;
        }
    }
    let (mut want, mut flips) = (base ^ target, 0u32);
    for bit in (0..32).rev() {
        if want >> bit & 1 == 1 {
            assert_ne!(basis[bit].0, 0, "32 consecutive bits always reach any CRC");
            want ^= basis[bit].0;
            flips ^= basis[bit].1;
        }
    }
    for i in 0..32 {
        if flips >> i & 1 == 1 {
            bytes[at + i / 8] ^= 1 << (i % 8);
        }
    }
    assert_eq!(crc32c::crc32c(bytes), target);
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_changed_message_is_given_back_its_crc() {
        let original = b"output: ls -la /home/alice\r\n................".to_vec();
        let crc = crc32c::crc32c(&original);
        let mut altered = original.clone();
        altered[8..14].copy_from_slice(b"rm -rf");
        assert_ne!(crc32c::crc32c(&altered), crc);
        super::forge_crc32c(&mut altered, 30, crc);
        assert_eq!(crc32c::crc32c(&altered), crc);
        assert_eq!(&altered[8..14], b"rm -rf");
        // Only the text changed and the 4 bytes chosen to mend the CRC.
        for (i, (a, b)) in altered.iter().zip(&original).enumerate() {
            if !(8..14).contains(&i) && !(30..34).contains(&i) {
                assert_eq!(a, b, "byte {i}");
            }
        }
    }
}
