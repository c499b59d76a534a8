use std::path::PathBuf;

use crate::KeyId;

/// Why a key could not be loaded or used. No variant carries key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{} can be read by other users (mode {mode:03o}): a key file must be readable by its owner only (chmod 600)",
        path.display()
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("malformed {what}: {why}")]
    Malformed { what: String, why: String },
    #[error("the signature does not match")]
    BadSignature,
    #[error(
        "the current master key comes from the environment (REEL_MASTER_KEY): to rotate it, set REEL_MASTER_KEY to NEW,OLD (the new key first) and restart; reeld then wraps every data key with the new one"
    )]
    RotateInEnvironment,
    #[error("master key {0} is not available")]
    UnknownMasterKey(KeyId),
    #[error(
        "the data key does not open: wrapped for another recording, altered, or by another master key"
    )]
    WrongKey,
    #[error("a sealed block failed its integrity check")]
    Inauthentic,
    #[error("the message is too long to seal")]
    TooLong,
    #[error("no random bytes from the operating system: {0}")]
    Random(String),
}
