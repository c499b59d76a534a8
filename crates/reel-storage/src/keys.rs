//! Where Reel puts things in a store. The same key is used on both stores,
//! so an object can be told apart only by its store, and an upload retried
//! on either store lands on the same key (idempotent).
//!
//! ```text
//! recordings/<recording id>/segments/<sequence, 10 digits>.seg
//! recordings/<recording id>/recording.reel   (the recombined recording)
//! keys/<recording id>             (the recording's wrapped data key)
//! _reel/probes/<token>            (health probes, deleted at once)
//! audit/<first seq>-<last seq>.pb (copies of the audit log, 20 digits each)
//! ```

use std::fmt::Display;

use object_store::path::Path;

/// The key of segment `sequence` of `recording`.
pub fn segment(recording: impl Display, sequence: u64) -> Path {
    Path::from(format!(
        "recordings/{recording}/segments/{sequence:010}.seg"
    ))
}

/// The key of `recording`'s combined object (its segments recombined, with
/// an index; see reel-log's `combined` module).
pub fn recording_object(recording: impl Display) -> Path {
    Path::from(format!("recordings/{recording}/recording.reel"))
}

/// Where the key objects are.
pub const KEYS_PREFIX: &str = "keys";

/// The key object of `recording`: its data key wrapped by a master key, on
/// every store that holds any of its objects, so that a catalog rebuilt
/// from the stores can read it. Outside `recordings/<id>/` so that no copy
/// of the recording's objects carries it: a purge deletes it first.
pub fn data_key(recording: impl Display) -> Path {
    Path::from(format!("{KEYS_PREFIX}/{recording}"))
}

/// Where the audit log's copies are.
pub const AUDIT_PREFIX: &str = "audit";

/// The copy of audit entries `first..=last`.
pub fn audit(first: u64, last: u64) -> Path {
    Path::from(format!("{AUDIT_PREFIX}/{first:020}-{last:020}.pb"))
}

/// A probe object (health checks write, read and delete it).
pub fn probe(token: &str) -> Path {
    Path::from(format!("_reel/probes/{token}"))
}
