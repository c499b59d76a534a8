//! Keys kept in files: the default provider.
//!
//! ```text
//! <dir>/signing.pem           the Ed25519 signing key (PKCS#8 PEM), made on first start
//! <dir>/master-<id>.key       master keys (64 hex digits), one made on first start
//! <dir>/current-master        the id of the master key new data keys are wrapped with
//! ```
//!
//! Every file is written whole (a temporary file, fsync, rename) with mode
//! 0600, in a directory of mode 0700, and refused when others can read it.
//! Master keys may come from the environment instead (`reeld` reads
//! `REEL_MASTER_KEY`: one key, or several separated by commas, the first
//! current), so that they are not stored beside the data they protect.
//!
//! Rotation ([`KeyProvider::add_master_key`]) writes a new master key file
//! and then `current-master`: a crash between the two leaves the old key
//! current and an unused new file, which the next rotation passes over.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signer, SigningKey};
use zeroize::Zeroizing;

use crate::{
    DataKey, Domain, KeyError, KeyId, KeyProvider, MasterKey, PublicKey, RetiredKey, SIGNATURE_LEN,
    WrappedKey, random_key,
};

const SIGNING_FILE: &str = "signing.pem";
const CURRENT_MASTER_FILE: &str = "current-master";

/// The signing key and the master keys, from files (and the environment).
pub struct FileKeys {
    signing: SigningKey,
    public: PublicKey,
    /// Where key files are kept (`None`: in memory only).
    dir: Option<PathBuf>,
    masters: RwLock<Masters>,
}

/// The master keys held, and which one wraps new data keys.
struct Masters {
    keys: BTreeMap<KeyId, MasterKey>,
    current: KeyId,
    /// Keys given by the environment: never written, never deleted.
    from_environment: Vec<KeyId>,
}

impl fmt::Debug for FileKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let masters = self.masters();
        f.debug_struct("FileKeys")
            .field("signing", &self.public.id())
            .field("masters", &masters.keys.keys().collect::<Vec<_>>())
            .field("current", &masters.current)
            .finish()
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl FileKeys {
    /// Opens the keys in `dir`, making the signing key and a first master
    /// key if there are none. `master_key`, when given (64 hex digits, from
    /// the environment), is the current master key and is not written to
    /// `dir`.
    pub fn open(dir: &Path, master_key: Option<&str>) -> Result<FileKeys, KeyError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
        let signing = load_or_make_signing_key(&dir.join(SIGNING_FILE))?;
        let mut masters = BTreeMap::new();
        for entry in fs::read_dir(dir).map_err(io(dir))? {
            let path = entry.map_err(io(dir))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with("master-") && name.ends_with(".key") {
                let key = MasterKey::new(parse_hex_key(&read_private(&path)?, &path)?);
                masters.insert(key.id(), key);
            }
        }
        let mut from_environment = Vec::new();
        let current = if let Some(list) = master_key {
            for hex in list.split(',') {
                let key = MasterKey::new(parse_hex_key(
                    &Zeroizing::new(hex.to_string()),
                    Path::new("a master key of the environment"),
                )?);
                from_environment.push(key.id());
                masters.insert(key.id(), key);
            }
            from_environment[0]
        } else {
            let current_file = dir.join(CURRENT_MASTER_FILE);
            match fs::read_to_string(&current_file) {
                Ok(text) => {
                    let id = parse_key_id(text.trim()).ok_or_else(|| KeyError::Malformed {
                        what: current_file.display().to_string(),
                        why: "not a key id".into(),
                    })?;
                    if !masters.contains_key(&id) {
                        return Err(KeyError::UnknownMasterKey(id));
                    }
                    id
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let key = MasterKey::new(random_key()?);
                    let id = key.id();
                    let hex = Zeroizing::new(hex::encode(key.key.as_ref()));
                    write_private(&dir.join(format!("master-{id}.key")), hex.as_bytes())?;
                    write_private(&current_file, id.to_string().as_bytes())?;
                    masters.insert(id, key);
                    id
                }
                Err(e) => return Err(io(&current_file)(e)),
            }
        };
        let public = PublicKey(signing.verifying_key());
        Ok(FileKeys {
            signing,
            public,
            dir: Some(dir.to_path_buf()),
            masters: RwLock::new(Masters {
                keys: masters,
                current,
                from_environment,
            }),
        })
    }

    fn masters(&self) -> std::sync::RwLockReadGuard<'_, Masters> {
        self.masters.read().unwrap_or_else(|e| e.into_inner())
    }
}

impl FileKeys {
    /// Keys that live in memory only (a random signing key and master key),
    /// for tests, benchmarks and fuzzing.
    pub fn ephemeral() -> Result<FileKeys, KeyError> {
        let signing = SigningKey::from_bytes(&*random_key()?);
        let master = MasterKey::new(random_key()?);
        let current = master.id();
        Ok(FileKeys {
            public: PublicKey(signing.verifying_key()),
            signing,
            dir: None,
            masters: RwLock::new(Masters {
                keys: BTreeMap::from([(current, master)]),
                current,
                from_environment: Vec::new(),
            }),
        })
    }

    /// The public key of the signing key kept in `dir`, read without making
    /// or changing anything (for a tool run beside a stopped server).
    pub fn public_key_in(dir: &Path) -> Result<PublicKey, KeyError> {
        Ok(PublicKey(
            read_signing_key(&dir.join(SIGNING_FILE))?.verifying_key(),
        ))
    }
}

impl KeyProvider for FileKeys {
    fn public_key(&self) -> PublicKey {
        self.public.clone()
    }

    fn sign(&self, domain: Domain, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.signing.sign(&domain.message(message)).to_bytes()
    }

    fn master_key_id(&self) -> KeyId {
        self.masters().current
    }

    fn master_key_ids(&self) -> Vec<KeyId> {
        self.masters().keys.keys().copied().collect()
    }

    fn wrap(&self, recording: &[u8], key: &DataKey) -> Result<WrappedKey, KeyError> {
        let masters = self.masters();
        masters.keys[&masters.current].wrap(recording, key)
    }

    fn unwrap(&self, recording: &[u8], wrapped: &WrappedKey) -> Result<DataKey, KeyError> {
        self.masters()
            .keys
            .get(&wrapped.master_key_id)
            .ok_or(KeyError::UnknownMasterKey(wrapped.master_key_id))?
            .unwrap(recording, wrapped)
    }

    fn add_master_key(&self) -> Result<KeyId, KeyError> {
        let mut masters = self.masters.write().unwrap_or_else(|e| e.into_inner());
        if masters.from_environment.contains(&masters.current) {
            return Err(KeyError::RotateInEnvironment);
        }
        let key = MasterKey::new(random_key()?);
        let id = key.id();
        if let Some(dir) = &self.dir {
            let hex = Zeroizing::new(hex::encode(key.key.as_ref()));
            write_private(&dir.join(format!("master-{id}.key")), hex.as_bytes())?;
            write_private(&dir.join(CURRENT_MASTER_FILE), id.to_string().as_bytes())?;
        }
        masters.keys.insert(id, key);
        masters.current = id;
        Ok(id)
    }

    fn retire_master_keys(&self) -> Result<Vec<RetiredKey>, KeyError> {
        let mut masters = self.masters.write().unwrap_or_else(|e| e.into_inner());
        let current = masters.current;
        let old: Vec<KeyId> = masters
            .keys
            .keys()
            .copied()
            .filter(|id| *id != current)
            .collect();
        let mut retired = Vec::new();
        for id in old {
            let in_environment = masters.from_environment.contains(&id);
            if !in_environment && let Some(dir) = &self.dir {
                remove_private(&dir.join(format!("master-{id}.key")))?;
            }
            masters.keys.remove(&id);
            retired.push(RetiredKey { id, in_environment });
        }
        Ok(retired)
    }
}

fn load_or_make_signing_key(path: &Path) -> Result<SigningKey, KeyError> {
    if path.exists() {
        return read_signing_key(path);
    }
    let key = SigningKey::from_bytes(&*random_key()?);
    let pem = key
        .to_pkcs8_pem(Default::default())
        .map_err(|e| KeyError::Malformed {
            what: "new signing key".into(),
            why: e.to_string(),
        })?;
    write_private(path, pem.as_bytes())?;
    Ok(key)
}

fn read_signing_key(path: &Path) -> Result<SigningKey, KeyError> {
    let pem = read_private(path)?;
    SigningKey::from_pkcs8_pem(&pem).map_err(|e| KeyError::Malformed {
        what: path.display().to_string(),
        why: e.to_string(),
    })
}

/// Reads a key file, refusing it if anyone but its owner may read it.
fn read_private(path: &Path) -> Result<Zeroizing<String>, KeyError> {
    let mode = fs::metadata(path).map_err(io(path))?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(KeyError::Permissions {
            path: path.to_path_buf(),
            mode: mode & 0o777,
        });
    }
    fs::read_to_string(path)
        .map(Zeroizing::new)
        .map_err(io(path))
}

/// Writes a key file whole: a new file of mode 0600, synced, renamed into
/// place, the directory synced.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    let tmp: PathBuf = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
    }
    Ok(())
}

/// Deletes a key file for good: its bytes overwritten with zeros and
/// synced first (on a file system that rewrites in place, the key's blocks
/// do not outlive the file), then the file removed and its directory
/// synced. A file already gone is not an error.
fn remove_private(path: &Path) -> Result<(), KeyError> {
    match fs::OpenOptions::new().write(true).open(path) {
        Ok(mut f) => {
            let len = f.metadata().map_err(io(path))?.len();
            f.write_all(&vec![0u8; len as usize]).map_err(io(path))?;
            f.sync_all().map_err(io(path))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(path)(e)),
    }
    fs::remove_file(path).map_err(io(path))?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
    }
    Ok(())
}

/// 64 hex digits; the error never repeats the text.
fn parse_hex_key(text: &Zeroizing<String>, source: &Path) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let mut key = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text.trim(), key.as_mut()).map_err(|_| KeyError::Malformed {
        what: source.display().to_string(),
        why: "a master key is 64 hex digits (32 bytes)".into(),
    })?;
    Ok(key)
}

fn parse_key_id(text: &str) -> Option<KeyId> {
    let mut id = [0u8; 8];
    hex::decode_to_slice(text, &mut id).ok()?;
    Some(KeyId(id))
}
