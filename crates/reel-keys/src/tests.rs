use std::os::unix::fs::PermissionsExt;

use super::*;

fn keys(dir: &std::path::Path) -> FileKeys {
    FileKeys::open(dir, None).unwrap()
}

#[test]
fn signatures_check_with_the_public_key_only_for_their_domain_and_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let k = keys(dir.path());
    let public = k.public_key();
    let sig = k.sign(Domain::Segment, b"header bytes");
    public
        .verify(Domain::Segment, b"header bytes", &sig)
        .unwrap();
    // Another domain, another message, one flipped bit of the signature.
    assert!(matches!(
        public.verify(Domain::Archive, b"header bytes", &sig),
        Err(KeyError::BadSignature)
    ));
    assert!(
        public
            .verify(Domain::Segment, b"header bytez", &sig)
            .is_err()
    );
    let mut bad = sig;
    bad[10] ^= 1;
    assert!(
        public
            .verify(Domain::Segment, b"header bytes", &bad)
            .is_err()
    );
    assert!(
        public
            .verify(Domain::Segment, b"header bytes", &sig[..63])
            .is_err()
    );
    // The PEM form reads back as the same key; another server's key does
    // not check this signature.
    let again = PublicKey::from_pem(&public.to_pem()).unwrap();
    assert_eq!(again, public);
    assert!(public.to_pem().starts_with("-----BEGIN PUBLIC KEY-----"));
    let other = tempfile::tempdir().unwrap();
    assert!(
        keys(other.path())
            .public_key()
            .verify(Domain::Segment, b"header bytes", &sig)
            .is_err()
    );
}

#[test]
fn keys_persist_across_opens_and_are_readable_by_their_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let first = keys(dir.path());
    let second = keys(dir.path());
    assert_eq!(first.public_key(), second.public_key());
    assert_eq!(first.master_key_id(), second.master_key_id());
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let mode = entry.unwrap().metadata().unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "mode {mode:o}");
    }
    // A key file others may read is refused, by name.
    let signing = dir.path().join("signing.pem");
    std::fs::set_permissions(&signing, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = FileKeys::open(dir.path(), None).unwrap_err();
    assert!(matches!(err, KeyError::Permissions { .. }), "{err}");
    assert!(err.to_string().contains("signing.pem"), "{err}");
}

#[test]
fn a_data_key_opens_only_for_its_recording_and_with_its_master_key() {
    let dir = tempfile::tempdir().unwrap();
    let k = keys(dir.path());
    let data = DataKey::generate().unwrap();
    let wrapped = k.wrap(b"recording-a", &data).unwrap();
    let back = WrappedKey::from_bytes(&wrapped.to_bytes()).unwrap();
    assert_eq!(back, wrapped);
    let opened = k.unwrap(b"recording-a", &back).unwrap();
    let boxed = seal(&data, b"aad", b"typed: hunter2").unwrap();
    assert_eq!(open(&opened, b"aad", &boxed).unwrap(), b"typed: hunter2");
    // Moved to another recording, or altered: it does not open.
    assert!(matches!(
        k.unwrap(b"recording-b", &wrapped),
        Err(KeyError::WrongKey)
    ));
    let mut altered = wrapped.clone();
    altered.ciphertext[3] ^= 1;
    assert!(k.unwrap(b"recording-a", &altered).is_err());
    // Another server's master key does not open it, and says which key.
    let other = tempfile::tempdir().unwrap();
    assert!(matches!(
        keys(other.path()).unwrap(b"recording-a", &wrapped),
        Err(KeyError::UnknownMasterKey(id)) if id == wrapped.master_key_id
    ));
    // Wrong lengths and versions are refused, never read past.
    assert!(WrappedKey::from_bytes(&wrapped.to_bytes()[1..]).is_err());
    let mut v3 = wrapped.to_bytes();
    v3[0] = 3;
    assert!(WrappedKey::from_bytes(&v3).is_err());
}

/// Data keys made before XAES-256-GCM (XChaCha20-Poly1305, wrapped as
/// version 1) still open and seal as they did; a wrapped key whose version
/// byte was changed to name the other AEAD does not open at all.
#[test]
fn data_keys_of_either_cipher_wrap_and_open_and_their_version_is_bound() {
    let dir = tempfile::tempdir().unwrap();
    let k = keys(dir.path());
    let new = DataKey::generate().unwrap();
    assert_eq!(new.cipher(), Cipher::Xaes256Gcm);
    let old = DataKey::from_bytes(Cipher::XChaCha20Poly1305, Zeroizing::new([7u8; 32]));
    for (data, version) in [(&new, 2u8), (&old, 1u8)] {
        let wrapped = k.wrap(b"recording-a", data).unwrap();
        let bytes = wrapped.to_bytes();
        assert_eq!(bytes[0], version);
        let opened = k
            .unwrap(b"recording-a", &WrappedKey::from_bytes(&bytes).unwrap())
            .unwrap();
        assert_eq!(opened.cipher(), data.cipher());
        let boxed = seal(data, b"aad", b"typed: hunter2").unwrap();
        assert_eq!(open(&opened, b"aad", &boxed).unwrap(), b"typed: hunter2");
        let mut flipped = bytes.clone();
        flipped[0] = 3 - version;
        let flipped = WrappedKey::from_bytes(&flipped).unwrap();
        assert!(matches!(
            k.unwrap(b"recording-a", &flipped),
            Err(KeyError::WrongKey)
        ));
    }
    // The same 32 bytes under the other AEAD open nothing.
    let boxed = seal(&old, b"aad", b"typed").unwrap();
    let as_xaes = DataKey::from_bytes(Cipher::Xaes256Gcm, Zeroizing::new([7u8; 32]));
    assert!(open(&as_xaes, b"aad", &boxed).is_err());
}

#[test]
fn a_master_key_from_the_environment_is_current_and_never_written() {
    let dir = tempfile::tempdir().unwrap();
    let first = keys(dir.path());
    let data = DataKey::generate().unwrap();
    let old = first.wrap(b"r", &data).unwrap();
    let hex_key = "11".repeat(32);
    let k = FileKeys::open(dir.path(), Some(&hex_key)).unwrap();
    assert_ne!(k.master_key_id(), first.master_key_id());
    // Older wraps still open with the file's key; new ones use the new key.
    assert!(k.unwrap(b"r", &old).is_ok());
    assert_eq!(
        k.wrap(b"r", &data).unwrap().master_key_id,
        k.master_key_id()
    );
    let written: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap_or_default())
        .collect();
    assert!(written.iter().all(|text| !text.contains(&hex_key)));
    // A malformed key is refused without being repeated.
    let err = FileKeys::open(dir.path(), Some("not-a-key-zz")).unwrap_err();
    assert!(!err.to_string().contains("not-a-key-zz"), "{err}");
}

#[test]
fn a_sealed_block_opens_only_whole_and_with_its_aad() {
    let key = DataKey::generate().unwrap();
    let a = seal(&key, b"rec|0|0", b"secret").unwrap();
    let b = seal(&key, b"rec|0|0", b"secret").unwrap();
    assert_ne!(a[..NONCE_LEN], b[..NONCE_LEN], "a fresh nonce every time");
    assert_eq!(a.len(), b"secret".len() + SEAL_OVERHEAD);
    assert!(!a.windows(6).any(|w| w == b"secret"));
    assert!(matches!(
        open(&key, b"rec|0|1", &a),
        Err(KeyError::Inauthentic)
    ));
    let mut flipped = a.clone();
    flipped[NONCE_LEN] ^= 0x80;
    assert!(open(&key, b"rec|0|0", &flipped).is_err());
    let other = DataKey::generate().unwrap();
    assert!(open(&other, b"rec|0|0", &a).is_err());
}

#[test]
fn nothing_secret_in_debug() {
    let dir = tempfile::tempdir().unwrap();
    let k = keys(dir.path());
    let data = DataKey::generate().unwrap();
    let text = format!("{k:?} {data:?} {:?}", k.wrap(b"r", &data).unwrap());
    let pem = std::fs::read_to_string(dir.path().join("signing.pem")).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(!text.contains(&body), "{text}");
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "key") {
            let master = std::fs::read_to_string(path).unwrap();
            assert!(!text.contains(master.trim()), "{text}");
        }
    }
    assert!(text.contains(&k.public_key().id().to_string()), "{text}");
}

#[test]
fn a_rotated_master_key_wraps_new_keys_and_the_old_one_opens_old_keys_until_retired() {
    let dir = tempfile::tempdir().unwrap();
    let k = keys(dir.path());
    let old = k.master_key_id();
    let data = DataKey::generate().unwrap();
    let wrapped_before = k.wrap(b"rec-1", &data).unwrap();
    let new = k.add_master_key().unwrap();
    assert_ne!(new, old);
    assert_eq!(k.master_key_id(), new);
    assert_eq!(k.master_key_ids().len(), 2);
    // A restart finds the rotation: the new key current, the old one held.
    let reopened = keys(dir.path());
    assert_eq!(reopened.master_key_id(), new);
    let opened = reopened.unwrap(b"rec-1", &wrapped_before).unwrap();
    let rewrapped = reopened.wrap(b"rec-1", &opened).unwrap();
    assert_eq!(rewrapped.master_key_id, new);
    // Retired: the old key's file is gone and what it wrapped no longer
    // opens, here or after a restart; what the new one wrapped does.
    let retired = reopened.retire_master_keys().unwrap();
    assert_eq!(
        retired,
        vec![RetiredKey {
            id: old,
            in_environment: false
        }]
    );
    assert!(!dir.path().join(format!("master-{old}.key")).exists());
    assert!(matches!(
        reopened.unwrap(b"rec-1", &wrapped_before),
        Err(KeyError::UnknownMasterKey(id)) if id == old
    ));
    let after = keys(dir.path());
    assert_eq!(after.master_key_ids(), vec![new]);
    assert!(after.unwrap(b"rec-1", &wrapped_before).is_err());
    after.unwrap(b"rec-1", &rewrapped).unwrap();
}

#[test]
fn master_keys_from_the_environment_rotate_by_listing_the_new_one_first() {
    let old_hex = "11".repeat(32);
    let new_hex = "22".repeat(32);
    let dir = tempfile::tempdir().unwrap();
    let before = FileKeys::open(dir.path(), Some(&old_hex)).unwrap();
    let data = DataKey::generate().unwrap();
    let wrapped = before.wrap(b"rec", &data).unwrap();
    // The provider cannot make a key it would have to keep in a file.
    assert!(matches!(
        before.add_master_key(),
        Err(KeyError::RotateInEnvironment)
    ));
    let both = FileKeys::open(dir.path(), Some(&format!("{new_hex},{old_hex}"))).unwrap();
    assert_ne!(both.master_key_id(), wrapped.master_key_id);
    let rewrapped = both
        .wrap(b"rec", &both.unwrap(b"rec", &wrapped).unwrap())
        .unwrap();
    let retired = both.retire_master_keys().unwrap();
    assert!(
        retired
            .iter()
            .any(|r| r.id == wrapped.master_key_id && r.in_environment)
    );
    let only_new = FileKeys::open(dir.path(), Some(&new_hex)).unwrap();
    only_new.unwrap(b"rec", &rewrapped).unwrap();
    assert!(only_new.unwrap(b"rec", &wrapped).is_err());
    // Nothing of either key was written beside the data.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let text = std::fs::read(entry.unwrap().path()).unwrap();
        let text = String::from_utf8_lossy(&text);
        assert!(!text.contains(&old_hex) && !text.contains(&new_hex));
    }
}

/// Boxes of this process open with the subkey it keeps; boxes of another
/// process (another nonce prefix: a journal record written before a crash)
/// open by deriving theirs; either fails once a byte is flipped, and a
/// box appended to a buffer leaves what was there before it alone.
#[test]
fn boxes_of_this_process_and_of_another_open_and_only_unaltered() {
    let key = DataKey::generate().unwrap();
    let ours = seal(&key, b"aad", b"typed: hunter2").unwrap();
    let mut nonce = [0u8; NONCE_LEN];
    nonce[..16].copy_from_slice(&[0xA5; 16]);
    assert_ne!(&nonce[..16], &ours[..16], "another process's prefix");
    let theirs = aead::seal(key.cipher, &key.bytes, &nonce, b"aad", b"typed: hunter2").unwrap();
    for sealed in [&ours, &theirs] {
        assert_eq!(open(&key, b"aad", sealed).unwrap(), b"typed: hunter2");
        assert_eq!(
            open(
                &DataKey::from_bytes(key.cipher, key.bytes.clone()),
                b"aad",
                sealed
            )
            .unwrap(),
            b"typed: hunter2",
            "a copy of the key made before any box"
        );
        for i in 0..sealed.len() {
            let mut flipped = sealed.clone();
            flipped[i] ^= 0x80;
            assert!(open(&key, b"aad", &flipped).is_err(), "byte {i} flipped");
        }
        assert!(open(&key, b"aae", sealed).is_err());
    }
    let mut out = b"header".to_vec();
    seal_appending(&key, b"aad", &mut out, 6, |out| {
        out.extend_from_slice(b"secret")
    })
    .unwrap();
    assert_eq!(&out[..6], b"header");
    assert_eq!(out.len(), 6 + SEAL_OVERHEAD + 6);
    assert!(!out.windows(6).any(|w| w == b"secret"));
    assert_eq!(open(&key, b"aad", &out[6..]).unwrap(), b"secret");
}
