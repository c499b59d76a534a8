//! Reel's keys, and the few operations that use them.
//!
//! - The **signing key** (Ed25519) signs what Reel stores (segment headers,
//!   manifests, combined indexes, archives); anyone holding its public key
//!   checks a recording without trusting Reel's server. Every signature is
//!   made over a [`Domain`] prefix, so a signature made for one kind of object
//!   never verifies as another.
//! - **Master keys** wrap each recording's **data key** (XChaCha20-Poly1305,
//!   the recording id as associated data, so a wrapped key moved to another
//!   recording does not open). A recording's blocks are sealed with its data
//!   key ([`seal`], [`open`]; XAES-256-GCM, or XChaCha20-Poly1305 for keys
//!   made before: see [`Cipher`]); destroying the wrapped key makes every
//!   copy of the recording unreadable.
//! - A [`KeyProvider`] holds them: [`FileKeys`] keeps them in files (the
//!   default), and a KMS or HSM provider can implement the same trait.
//!
//! No key is ever printed: the `Debug` of every type here that holds key
//! material shows its [`KeyId`] at most. See `docs/rfcs/0001-evidence.md`.

mod aead;
mod error;
mod file;

use std::fmt;
use std::sync::{Arc, OnceLock};

use ed25519_dalek::pkcs8::{DecodePublicKey, EncodePublicKey};
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

pub use error::KeyError;
pub use file::FileKeys;

pub use aead::{Cipher, NONCE_LEN, TAG_LEN};

/// What a box of [`seal`] adds to its plaintext: the nonce in front, the
/// tag behind.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;
/// The length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// The first 8 bytes of the SHA-256 of a key's public part (a signing key's
/// public key; a master key's SHA-256 of its bytes, under a label): a name
/// that says which key without saying anything about it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(pub [u8; 8]);

impl KeyId {
    fn of(label: &[u8], bytes: &[u8]) -> KeyId {
        let digest = Sha256::new()
            .chain_update(label)
            .chain_update(bytes)
            .finalize();
        KeyId(digest[..8].try_into().expect("8 of 32 bytes"))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// What a signature is for; part of every signed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    /// A segment object's header.
    Segment,
    /// A closed recording's manifest.
    Manifest,
    /// A combined object's index.
    Index,
    /// An archive's end frame.
    Archive,
}

impl Domain {
    fn prefix(self) -> &'static [u8] {
        match self {
            Domain::Segment => b"reel/segment/v1\0",
            Domain::Manifest => b"reel/manifest/v1\0",
            Domain::Index => b"reel/index/v1\0",
            Domain::Archive => b"reel/archive/v1\0",
        }
    }

    fn message(self, message: &[u8]) -> Vec<u8> {
        [self.prefix(), message].concat()
    }
}

/// A signing key's public part: what an auditor needs to check recordings.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    pub fn id(&self) -> KeyId {
        KeyId::of(b"reel/signing-key\0", self.0.as_bytes())
    }

    /// Checks `signature` over `message` for `domain`.
    pub fn verify(&self, domain: Domain, message: &[u8], signature: &[u8]) -> Result<(), KeyError> {
        let signature = Signature::from_slice(signature).map_err(|_| KeyError::BadSignature)?;
        self.0
            .verify(&domain.message(message), &signature)
            .map_err(|_| KeyError::BadSignature)
    }

    /// The key as PEM (SubjectPublicKeyInfo, as `openssl pkey -pubout`
    /// writes it).
    pub fn to_pem(&self) -> String {
        self.0
            .to_public_key_pem(Default::default())
            .expect("an Ed25519 public key always encodes")
    }

    /// Reads a PEM public key (as [`PublicKey::to_pem`] writes it).
    pub fn from_pem(pem: &str) -> Result<PublicKey, KeyError> {
        VerifyingKey::from_public_key_pem(pem.trim())
            .map(PublicKey)
            .map_err(|e| KeyError::Malformed {
                what: "public key".into(),
                why: e.to_string(),
            })
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.id())
    }
}

/// A recording's data key: 32 random bytes and the AEAD they are for,
/// wiped when dropped.
#[derive(Clone)]
pub struct DataKey {
    bytes: Zeroizing<[u8; 32]>,
    cipher: Cipher,
    /// The subkey for this process's nonces, made at the first box and
    /// shared by clones: with one event per message every event is a box,
    /// and deriving it each time cost more than sealing a small record.
    /// AWS-LC wipes it when it is freed.
    sealing: Arc<OnceLock<aead::Subkey>>,
}

impl DataKey {
    /// A new random key, for XAES-256-GCM.
    pub fn generate() -> Result<DataKey, KeyError> {
        DataKey::generate_for(Cipher::Xaes256Gcm)
    }

    /// A new random key for `cipher`.
    pub fn generate_for(cipher: Cipher) -> Result<DataKey, KeyError> {
        Ok(DataKey::from_bytes(cipher, random_key()?))
    }

    /// A key from its bytes: for a provider that keeps keys elsewhere (a
    /// KMS hands back the unwrapped bytes), and for fuzzing with a fixed
    /// key. The bytes are wiped with the key.
    pub fn from_bytes(cipher: Cipher, bytes: Zeroizing<[u8; 32]>) -> DataKey {
        DataKey {
            bytes,
            cipher,
            sealing: Arc::default(),
        }
    }

    /// The AEAD of this key's boxes.
    pub fn cipher(&self) -> Cipher {
        self.cipher
    }

    /// The subkey of boxes whose nonces begin with this process's prefix
    /// ([`process_nonce_prefix`]), made on first use.
    fn sealing_subkey(&self) -> Result<&aead::Subkey, KeyError> {
        let prefix = process_nonce_prefix()?;
        Ok(self
            .sealing
            .get_or_init(|| self.cipher.subkey(&self.bytes, prefix)))
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(..)")
    }
}

/// 32 random bytes from the operating system.
fn random_key() -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let mut key = Zeroizing::new([0u8; 32]);
    getrandom::fill(key.as_mut()).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(key)
}

/// A data key sealed by a master key, for one recording.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKey {
    /// The AEAD the data key is for (its bytes' version), bound into the
    /// wrapping: a wrapped key whose version was changed does not open.
    pub cipher: Cipher,
    /// The master key that opens it.
    pub master_key_id: KeyId,
    pub nonce: [u8; NONCE_LEN],
    /// The data key, encrypted, and its tag.
    pub ciphertext: Vec<u8>,
}

/// The version byte of a wrapped key: which AEAD the data key is for
/// (read back by [`WrappedKey::from_bytes`] through the same table).
fn wrapped_version(cipher: Cipher) -> u8 {
    match cipher {
        Cipher::XChaCha20Poly1305 => 1,
        Cipher::Xaes256Gcm => 2,
    }
}

/// What a wrapped data key is bound to: its recording and, for keys made
/// after XChaCha20-Poly1305 (whose wrapping bound the recording alone),
/// its AEAD.
fn wrapping_aad(recording: &[u8], cipher: Cipher) -> Vec<u8> {
    match cipher {
        Cipher::XChaCha20Poly1305 => recording.to_vec(),
        Cipher::Xaes256Gcm => [recording, b"\0reel/data-key/xaes-256-gcm"].concat(),
    }
}

/// The length of a [`WrappedKey`]'s bytes.
pub const WRAPPED_KEY_LEN: usize = 1 + 8 + NONCE_LEN + 32 + TAG_LEN;
const WRAPPED_LEN: usize = WRAPPED_KEY_LEN;

impl WrappedKey {
    /// The bytes stored in catalog rows and key objects: a version, the
    /// master key's id, the nonce, the sealed key.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(WRAPPED_LEN);
        out.push(wrapped_version(self.cipher));
        out.extend_from_slice(&self.master_key_id.0);
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.ciphertext);
        out
    }

    /// Reads what [`WrappedKey::to_bytes`] wrote; anything else is refused.
    pub fn from_bytes(bytes: &[u8]) -> Result<WrappedKey, KeyError> {
        let malformed = |why: &str| KeyError::Malformed {
            what: "wrapped data key".into(),
            why: why.into(),
        };
        if bytes.len() != WRAPPED_LEN {
            return Err(malformed(&format!(
                "{} bytes, not {WRAPPED_LEN}",
                bytes.len()
            )));
        }
        let cipher = Cipher::ALL
            .into_iter()
            .find(|&c| wrapped_version(c) == bytes[0])
            .ok_or_else(|| malformed(&format!("unknown version {}", bytes[0])))?;
        Ok(WrappedKey {
            cipher,
            master_key_id: KeyId(bytes[1..9].try_into().expect("8 bytes")),
            nonce: bytes[9..9 + NONCE_LEN].try_into().expect("nonce bytes"),
            ciphertext: bytes[9 + NONCE_LEN..].to_vec(),
        })
    }
}

impl fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WrappedKey(master {})", self.master_key_id)
    }
}

/// A master key: wraps and unwraps data keys.
#[derive(Clone)]
pub(crate) struct MasterKey {
    id: KeyId,
    key: Zeroizing<[u8; 32]>,
}

impl MasterKey {
    pub(crate) fn new(key: Zeroizing<[u8; 32]>) -> MasterKey {
        MasterKey {
            id: KeyId::of(b"reel/master-key\0", key.as_ref()),
            key,
        }
    }

    pub(crate) fn id(&self) -> KeyId {
        self.id
    }

    pub(crate) fn wrap(&self, recording: &[u8], key: &DataKey) -> Result<WrappedKey, KeyError> {
        let sealed = aead::seal(
            Cipher::XChaCha20Poly1305,
            &self.key,
            &fresh_nonce()?,
            &wrapping_aad(recording, key.cipher),
            key.bytes.as_ref(),
        )?;
        Ok(WrappedKey {
            cipher: key.cipher,
            master_key_id: self.id,
            nonce: sealed[..NONCE_LEN].try_into().expect("nonce bytes"),
            ciphertext: sealed[NONCE_LEN..].to_vec(),
        })
    }

    pub(crate) fn unwrap(
        &self,
        recording: &[u8],
        wrapped: &WrappedKey,
    ) -> Result<DataKey, KeyError> {
        let mut sealed = Vec::with_capacity(NONCE_LEN + wrapped.ciphertext.len());
        sealed.extend_from_slice(&wrapped.nonce);
        sealed.extend_from_slice(&wrapped.ciphertext);
        let plain = Zeroizing::new(
            aead::open(
                Cipher::XChaCha20Poly1305,
                &self.key,
                &wrapping_aad(recording, wrapped.cipher),
                &sealed,
            )
            .map_err(|_| KeyError::WrongKey)?,
        );
        let key: [u8; 32] = plain
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::WrongKey)?;
        Ok(DataKey::from_bytes(wrapped.cipher, Zeroizing::new(key)))
    }
}

/// What holds Reel's keys. Implementations never reveal key material: they
/// sign, wrap and unwrap.
pub trait KeyProvider: fmt::Debug + Send + Sync {
    /// The public part of the signing key.
    fn public_key(&self) -> PublicKey;

    /// Signs `message` for `domain`.
    fn sign(&self, domain: Domain, message: &[u8]) -> [u8; SIGNATURE_LEN];

    /// The master key new data keys are wrapped with.
    fn master_key_id(&self) -> KeyId;

    /// Every master key held: the current one, and older ones kept to open
    /// data keys wrapped before a rotation.
    fn master_key_ids(&self) -> Vec<KeyId>;

    /// Makes a new master key and makes it current; durable when this
    /// returns. Data keys wrapped before stay wrapped by the older keys,
    /// which are still held, until they are wrapped again.
    fn add_master_key(&self) -> Result<KeyId, KeyError>;

    /// Forgets every master key but the current one, destroying those kept
    /// by the provider. The caller first makes sure that no wrapped key it
    /// keeps names one of them: what is still wrapped by them can no longer
    /// be opened.
    fn retire_master_keys(&self) -> Result<Vec<RetiredKey>, KeyError>;

    /// Wraps `key`, the data key of `recording` (its id's bytes), with the
    /// current master key.
    fn wrap(&self, recording: &[u8], key: &DataKey) -> Result<WrappedKey, KeyError>;

    /// Opens `wrapped` for `recording`: fails if its master key is not held,
    /// or if it was wrapped for another recording or altered.
    fn unwrap(&self, recording: &[u8], wrapped: &WrappedKey) -> Result<DataKey, KeyError>;
}

/// A master key given up by [`KeyProvider::retire_master_keys`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetiredKey {
    pub id: KeyId,
    /// It came from the environment (`REEL_MASTER_KEY`): the provider
    /// cannot destroy it; whoever set it should remove it there.
    pub in_environment: bool,
}

/// Seals `plaintext` with `key` under a fresh nonce, binding `aad` (which
/// is authenticated, not encrypted): a box opens only with the same `aad`.
/// The box is self-contained, `nonce || ciphertext || tag`
/// ([`SEAL_OVERHEAD`] bytes longer than the plaintext). Nonces (24 bytes: a
/// random per-process prefix and a counter) need no counter kept across
/// crashes.
pub fn seal(key: &DataKey, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, KeyError> {
    let mut out = Vec::new();
    seal_appending(key, aad, &mut out, plaintext.len(), |out| {
        out.extend_from_slice(plaintext)
    })?;
    Ok(out)
}

/// Appends to `out` the box [`seal`] makes of the `plaintext_len` bytes
/// that `write` appends: for a caller that encodes its plaintext straight
/// into the buffer the box belongs in. They are encrypted where they were
/// written, and `out` is grown beforehand to hold the whole box, so no
/// copy of the plaintext is left behind.
///
/// # Panics
/// If `write` appends other than `plaintext_len` bytes.
pub fn seal_appending(
    key: &DataKey,
    aad: &[u8],
    out: &mut Vec<u8>,
    plaintext_len: usize,
    write: impl FnOnce(&mut Vec<u8>),
) -> Result<(), KeyError> {
    aead::seal_appending(
        key.sealing_subkey()?,
        &fresh_nonce()?,
        aad,
        out,
        plaintext_len,
        write,
    )
}

/// Opens a box [`seal`] made; fails ([`KeyError::Inauthentic`]) if a byte of
/// it or the `aad` differs, or it was sealed with another key.
pub fn open(key: &DataKey, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, KeyError> {
    if sealed.len() < SEAL_OVERHEAD {
        return Err(KeyError::Inauthentic);
    }
    let nonce: &[u8; NONCE_LEN] = sealed[..NONCE_LEN].try_into().expect("nonce bytes");
    match process_nonce_prefix() {
        // Sealed by this process: the key keeps its subkey.
        Ok(prefix) if nonce[..16] == prefix[..] => {
            aead::open_with(key.sealing_subkey()?, nonce, aad, &sealed[NONCE_LEN..])
        }
        _ => aead::open(key.cipher, &key.bytes, aad, sealed),
    }
}

/// A nonce never used before by any process: 16 random bytes drawn once
/// per process, then a counter. A crash cannot make a later process repeat
/// one (it draws another prefix; two prefixes collide with probability
/// 2^-128), and a box costs no system call (one `getrandom` per event was a
/// fifth of the sealed ingest path's CPU).
fn fresh_nonce() -> Result<[u8; NONCE_LEN], KeyError> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut nonce = [0u8; NONCE_LEN];
    nonce[..16].copy_from_slice(process_nonce_prefix()?);
    nonce[16..].copy_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    Ok(nonce)
}

/// The first 16 bytes of every nonce this process makes: random, drawn
/// once.
fn process_nonce_prefix() -> Result<&'static [u8; 16], KeyError> {
    static PREFIX: OnceLock<[u8; 16]> = OnceLock::new();
    if let Some(p) = PREFIX.get() {
        return Ok(p);
    }
    let mut p = [0u8; 16];
    getrandom::fill(&mut p).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(PREFIX.get_or_init(|| p))
}

#[cfg(test)]
mod tests;
