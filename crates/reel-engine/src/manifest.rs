//! A closed recording's manifest as the audit log keeps it: the close
//! appends an audit entry `closed` (in the same commit that closes the
//! recording) whose detail states the recording's total events, duration,
//! segment count and the SHA-256 of its final segment. The final segment's
//! signed header says the same; the audit entry is what is left when the
//! final segment itself was removed from the stores: the audit log is hash
//! chained and copied to both stores, so a catalog rebuilt from the stores
//! can tell a removed tail from a recording whose recorder went away.

use reel_catalog::RecordingId;
use reel_proto::v1::{AuditEntry, RecordingRow};

/// The audit action of a close.
pub(crate) const ACTION: &str = "closed";

/// What a closed recording is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Manifest {
    pub events: u64,
    pub duration_us: u64,
    pub segments: u64,
    pub final_sha256: Vec<u8>,
    /// `closed` (by its recorder) or `interrupted` (by the server).
    pub reason: String,
}

impl Manifest {
    /// The manifest of `row`, just closed, whose final segment's SHA-256 is
    /// `final_sha256`.
    pub(crate) fn of(row: &RecordingRow, final_sha256: &[u8]) -> Manifest {
        Manifest {
            events: row.event_count,
            duration_us: row.duration_us,
            segments: row.segment_count,
            final_sha256: final_sha256.to_vec(),
            reason: row.close_reason.clone(),
        }
    }

    /// The audit entry of the close of recording `id` at `at_us`.
    pub(crate) fn audit_entry(&self, id: RecordingId, at_us: i64) -> AuditEntry {
        AuditEntry {
            at_us,
            by: "reeld".into(),
            action: ACTION.into(),
            recordings: vec![id.to_string()],
            reason: self.reason.clone(),
            detail: format!(
                "manifest events={} duration_us={} segments={} final_sha256={}",
                self.events,
                self.duration_us,
                self.segments,
                hex::encode(&self.final_sha256)
            ),
            ..Default::default()
        }
    }

    /// The manifest an audit entry states, if it is a close's.
    pub(crate) fn from_audit(entry: &AuditEntry) -> Option<(RecordingId, Manifest)> {
        if entry.action != ACTION {
            return None;
        }
        let id = entry.recordings.first()?.parse().ok()?;
        let mut fields = entry.detail.strip_prefix("manifest ")?.split(' ');
        let mut field = |name: &str| {
            fields
                .next()?
                .strip_prefix(name)?
                .strip_prefix('=')
                .map(str::to_string)
        };
        let events = field("events")?.parse().ok()?;
        let duration_us = field("duration_us")?.parse().ok()?;
        let segments = field("segments")?.parse().ok()?;
        let final_sha256 = hex::decode(field("final_sha256")?).ok()?;
        Some((
            id,
            Manifest {
                events,
                duration_us,
                segments,
                final_sha256,
                reason: entry.reason.clone(),
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_reads_back_from_its_audit_entry_and_nothing_else_does() {
        let id: RecordingId = "01KAZ3Q6Z2VJ6D1N7M4R8TXQ2C".parse().unwrap();
        let manifest = Manifest {
            events: 1234,
            duration_us: 99_000_000,
            segments: 3,
            final_sha256: vec![0xab; 32],
            reason: "closed".into(),
        };
        let entry = manifest.audit_entry(id, 7);
        assert_eq!(Manifest::from_audit(&entry), Some((id, manifest)));
        let mut other = entry.clone();
        other.action = "purge".into();
        assert_eq!(Manifest::from_audit(&other), None);
        let mut cut = entry;
        cut.detail = "manifest events=1234 duration_us=x".into();
        assert_eq!(Manifest::from_audit(&cut), None);
    }
}
