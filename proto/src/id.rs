use std::fmt;
use std::str::FromStr;

use thiserror::Error;
use ulid::Ulid;

/// A recording's id: a ULID, so ids sort by creation time.
///
/// Parsing accepts exactly 26 Crockford base-32 characters and nothing else,
/// so an id taken from a request can never name a path (`../x`), a prefix or
/// anything but one recording.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordingId(Ulid);

/// The text given as a recording id is not one.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "invalid recording id {input:?}: a recording id is a 26-character ULID such as 01JDQ8Z6W5G8R0F1T4Y9M2K3XN"
)]
pub struct InvalidId {
    pub input: String,
}

impl RecordingId {
    /// A new id for a recording starting now. Ids made by one process
    /// strictly increase, so listing by id lists by start.
    pub fn generate() -> Self {
        static GENERATOR: std::sync::Mutex<ulid::Generator> =
            std::sync::Mutex::new(ulid::Generator::new());
        let mut generator = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
        // Overflow needs 2^80 ids in one millisecond; fall back to a plain id.
        RecordingId(generator.generate().unwrap_or_else(|_| Ulid::generate()))
    }

    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        RecordingId(Ulid::from_bytes(bytes))
    }

    /// From the 16 bytes stored in journal records, segments and the catalog.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, InvalidId> {
        let arr: [u8; 16] = bytes.try_into().map_err(|_| InvalidId {
            input: format!("<{} bytes>", bytes.len()),
        })?;
        Ok(Self::from_bytes(arr))
    }

    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_bytes()
    }

    /// Milliseconds since the epoch at which the id was made.
    pub fn timestamp_ms(self) -> u64 {
        self.0.timestamp_ms()
    }
}

impl FromStr for RecordingId {
    type Err = InvalidId;

    fn from_str(s: &str) -> Result<Self, InvalidId> {
        let invalid = || InvalidId {
            input: s.chars().take(64).collect(),
        };
        if s.len() != ulid::ULID_LEN || !s.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(invalid());
        }
        let ulid = Ulid::from_string(s).map_err(|_| invalid())?;
        // Only the canonical spelling: no overflow past 7ZZZ..., no aliases
        // such as O for 0, so one recording has exactly one id.
        if ulid.to_string() != s.to_ascii_uppercase() {
            return Err(invalid());
        }
        Ok(RecordingId(ulid))
    }
}

impl fmt::Display for RecordingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for RecordingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecordingId({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_bad_ids_are_refused() {
        let id = RecordingId::generate();
        assert_eq!(id.to_string().parse::<RecordingId>().unwrap(), id);
        assert_eq!(
            id.to_string()
                .to_lowercase()
                .parse::<RecordingId>()
                .unwrap(),
            id
        );
        assert_eq!(RecordingId::from_slice(&id.to_bytes()).unwrap(), id);
        for bad in [
            "",
            "../x",
            "../../etc/passwd",
            "01JDQ8Z6W5G8R0F1T4Y9M2K3X",
            "01JDQ8Z6W5G8R0F1T4Y9M2K3XNN",
            "01JDQ8Z6W5G8R0F1T4Y9M2K3/N",
            "01JDQ8Z6W5G8R0F1T4Y9M2K3.N",
            "ZZZZZZZZZZZZZZZZZZZZZZZZZZ",
            "O1JDQ8Z6W5G8R0F1T4Y9M2K3XN",
            "01JDQ8Z6W5G8R0F1T4Y9M2K3ÄN",
        ] {
            let err = bad.parse::<RecordingId>().unwrap_err();
            assert!(err.to_string().contains("invalid recording id"), "{bad}");
        }
        assert!(RecordingId::from_slice(b"short").is_err());
    }
}
