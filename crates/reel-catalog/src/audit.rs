//! The audit log (family `audit`): append-only and hash-chained.
//!
//! Entries are chained when their batch is written, under the catalog's
//! write lock: each gets the next `seq` and the SHA-256 of the previous
//! entry's encoding, and the head (key `0xff`: the last seq, its hash and
//! time) moves in the same atomic write. Times never go back along the
//! chain (an entry's time is at least its predecessor's), so the key, time
//! then seq, orders the log the same way as the chain. Changing or removing
//! an entry breaks the chain after it or disagrees with the head;
//! [`Catalog::check_audit`] finds both.
//!
//! Family `audit_by_recording` indexes the entries by the recordings they
//! name (written in the same atomic write as the entry), so that who acted
//! on one recording is found without reading the whole log: a recording's
//! page lists its viewers however long the log has grown since. It is
//! derived from the log alone; a catalog opened without it builds it.

use prost::Message;
use reel_proto::v1::{AuditEntry, AuditHead};
use rocksdb::{DB, Direction, IteratorMode, WriteBatch};
use sha2::{Digest, Sha256};

use reel_log::limits::{MAX_AUDIT_ID_BYTES, MAX_AUDIT_RECORDINGS, MAX_AUDIT_TEXT_BYTES};

use crate::{Batch, CF_AUDIT, CF_AUDIT_BY_RECORDING, Catalog, Result, cf_handle, decode};

/// Cuts `text` to at most `max` bytes, on a character boundary, saying so.
fn clip(text: &mut String, max: usize) {
    const MARK: &str = "…[clipped]";
    if text.len() > max {
        let mut end = max - MARK.len();
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str(MARK);
    }
}

/// The head's key: after every entry's (whose first byte is a time's).
const HEAD_KEY: &[u8] = &[0xff];
/// `[0xfe, store]`: the key of the last entry copied to that store.
const COPIED: u8 = 0xfe;

/// Whether `key` is an entry's (not the head or a copy mark).
fn is_entry(key: &[u8]) -> bool {
    key.first().is_some_and(|b| *b < 0xf0)
}

fn entry_key(at_us: i64, seq: u64) -> Vec<u8> {
    let mut key = (at_us.max(0) as u64).to_be_bytes().to_vec();
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// The index's key prefix of a recording (as entries name it: a string of
/// at most `MAX_AUDIT_ID_BYTES`, so its length fits the byte before it).
fn by_recording_prefix(recording: &str) -> Vec<u8> {
    let id = &recording.as_bytes()[..recording.len().min(u8::MAX as usize)];
    let mut key = Vec::with_capacity(1 + id.len() + 16);
    key.push(id.len() as u8);
    key.extend_from_slice(id);
    key
}

/// The index keys of an entry stored under `key`: one per recording named.
fn by_recording_keys<'a>(
    entry: &'a AuditEntry,
    key: &'a [u8],
) -> impl Iterator<Item = Vec<u8>> + 'a {
    entry.recordings.iter().map(move |r| {
        let mut k = by_recording_prefix(r);
        k.extend_from_slice(key);
        k
    })
}

/// Key of the index's mark: written once the index covers the whole log.
const INDEX_BUILT: &[u8] = &[0xff];

/// Hash of an entry as stored.
pub fn entry_hash(encoded: &[u8]) -> Vec<u8> {
    Sha256::digest(encoded).to_vec()
}

impl Batch {
    /// Appends to the audit log when the batch is committed (chained then).
    /// Text fields longer than [`MAX_AUDIT_TEXT_BYTES`] are clipped, and an
    /// act on more than [`MAX_AUDIT_RECORDINGS`] recordings becomes several
    /// entries, so that every entry stays within [`MAX_AUDIT_ENTRY_BYTES`]
    /// (what readers of the log's copies accept).
    ///
    /// [`MAX_AUDIT_ENTRY_BYTES`]: reel_log::limits::MAX_AUDIT_ENTRY_BYTES
    pub fn append_audit(&mut self, entry: &AuditEntry) -> &mut Self {
        let mut entry = entry.clone();
        for text in [
            &mut entry.by,
            &mut entry.action,
            &mut entry.reason,
            &mut entry.client,
            &mut entry.detail,
        ] {
            clip(text, MAX_AUDIT_TEXT_BYTES);
        }
        let mut ids = std::mem::take(&mut entry.recordings);
        for id in &mut ids {
            clip(id, MAX_AUDIT_ID_BYTES);
        }
        loop {
            let rest = ids.split_off(ids.len().min(MAX_AUDIT_RECORDINGS));
            self.audit.push(AuditEntry {
                recordings: std::mem::replace(&mut ids, rest),
                ..entry.clone()
            });
            if ids.is_empty() {
                return self;
            }
        }
    }

    /// Records that the entries up to `upto` (from [`Catalog::audit_to_copy`])
    /// are in store `store`.
    pub fn mark_audit_copied(&mut self, store: u8, upto: AuditPosition) -> &mut Self {
        self.put(CF_AUDIT, vec![COPIED, store], upto.0)
    }

    /// Writes chained entries as they are (their bytes, with their seq and
    /// hashes) and `head`: an audit log brought back from a store's copy.
    pub fn restore_audit(&mut self, encoded: &[Vec<u8>], head: &AuditHead) -> Result<&mut Self> {
        for bytes in encoded {
            let entry: AuditEntry = decode(b"restored", bytes)?;
            let key = entry_key(entry.at_us, entry.seq);
            for index in by_recording_keys(&entry, &key) {
                self.put(CF_AUDIT_BY_RECORDING, index, Vec::new());
            }
            self.put(CF_AUDIT, key, bytes.clone());
        }
        Ok(self.put(CF_AUDIT, HEAD_KEY.to_vec(), head.encode_to_vec()))
    }
}

/// Where a store's copy of the log stands (an entry's key).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditPosition(Vec<u8>);

fn head(db: &DB) -> Result<AuditHead> {
    Ok(db
        .get_pinned_cf(cf_handle(db, CF_AUDIT), HEAD_KEY)?
        .map(|v| decode::<AuditHead>(HEAD_KEY, &v))
        .transpose()?
        .unwrap_or_default())
}

/// Chains `entries` after the head and adds them, and the new head, to `wb`.
/// Called with the catalog's write lock held.
pub(crate) fn chain(db: &DB, wb: &mut WriteBatch, entries: Vec<AuditEntry>) -> Result<()> {
    let cf = cf_handle(db, CF_AUDIT);
    let mut head = head(db)?;
    for mut entry in entries {
        entry.seq = head.seq + 1;
        entry.prev_sha256 = head.sha256.clone();
        entry.at_us = entry.at_us.max(head.at_us);
        let encoded = entry.encode_to_vec();
        let key = entry_key(entry.at_us, entry.seq);
        for index in by_recording_keys(&entry, &key) {
            wb.put_cf(cf_handle(db, CF_AUDIT_BY_RECORDING), index, []);
        }
        wb.put_cf(cf, key, &encoded);
        head = AuditHead {
            seq: entry.seq,
            sha256: entry_hash(&encoded),
            at_us: entry.at_us,
        };
    }
    wb.put_cf(cf, HEAD_KEY, head.encode_to_vec());
    Ok(())
}

/// What [`Catalog::check_audit`] found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditCheck {
    /// Chained entries read.
    pub entries: u64,
    /// Entries written before the log was chained (not provable).
    pub unchained: u64,
    /// The head's seq: the number of chained entries there must be.
    pub head_seq: u64,
    /// Every break found, each naming the entry.
    pub problems: Vec<String>,
}

impl Catalog {
    /// The audit log, oldest first, from `since_us` on, at most `limit`.
    pub fn audit(&self, since_us: i64, limit: usize) -> Result<Vec<AuditEntry>> {
        let start = (since_us.max(0) as u64).to_be_bytes();
        self.with_db(|db| {
            let mut out = Vec::new();
            let mode = IteratorMode::From(&start, Direction::Forward);
            for item in db.iterator_cf(cf_handle(db, CF_AUDIT), mode) {
                let (k, v) = item?;
                if !is_entry(&k) || out.len() >= limit {
                    break;
                }
                out.push(decode(&k, &v)?);
            }
            Ok(out)
        })
    }

    /// The latest `limit` entries of the log, newest first.
    pub fn audit_latest(&self, limit: usize) -> Result<Vec<AuditEntry>> {
        self.with_db(|db| {
            let mut out = Vec::new();
            // Entries' keys sort before every mark's (0xf0 and up).
            let mode = IteratorMode::From(&[0xf0], Direction::Reverse);
            for item in db.iterator_cf(cf_handle(db, CF_AUDIT), mode) {
                let (k, v) = item?;
                if out.len() >= limit || !is_entry(&k) {
                    break;
                }
                out.push(decode(&k, &v)?);
            }
            Ok(out)
        })
    }

    /// The latest `limit` entries that name `recording`, newest first.
    pub fn audit_of(&self, recording: &str, limit: usize) -> Result<Vec<AuditEntry>> {
        let prefix = by_recording_prefix(recording);
        let mut end = prefix.clone();
        end.push(0xff);
        self.with_db(|db| {
            let mut keys = Vec::new();
            let mode = IteratorMode::From(&end, Direction::Reverse);
            for item in db.iterator_cf(cf_handle(db, CF_AUDIT_BY_RECORDING), mode) {
                let (k, _) = item?;
                if keys.len() >= limit || !k.starts_with(&prefix) {
                    break;
                }
                keys.push(k[prefix.len()..].to_vec());
            }
            let cf = cf_handle(db, CF_AUDIT);
            let mut out = Vec::with_capacity(keys.len());
            for (key, value) in keys
                .iter()
                .zip(db.multi_get_cf(keys.iter().map(|k| (cf, k))))
            {
                // An index key whose entry is gone (a damaged log) is skipped;
                // `check_audit` is what reports a damaged log.
                if let Some(v) = value? {
                    out.push(decode(key, &v)?);
                }
            }
            Ok(out)
        })
    }

    /// Builds the by-recording index from the log if it does not cover it
    /// yet (a catalog written before the index existed); idempotent, so a
    /// build cut short is simply done again at the next open.
    pub(crate) fn build_audit_index(&self) -> Result<()> {
        self.with_db(|db| {
            let index = cf_handle(db, CF_AUDIT_BY_RECORDING);
            if db.get_pinned_cf(index, INDEX_BUILT)?.is_some() {
                return Ok(());
            }
            let mut wb = WriteBatch::default();
            for item in db.iterator_cf(cf_handle(db, CF_AUDIT), IteratorMode::Start) {
                let (k, v) = item?;
                if !is_entry(&k) {
                    break;
                }
                // An entry that does not decode indexes nothing (the check
                // of the log names it).
                if let Ok(entry) = AuditEntry::decode(&v[..]) {
                    for key in by_recording_keys(&entry, &k) {
                        wb.put_cf(index, key, []);
                    }
                }
                if wb.len() >= 10_000 {
                    db.write(std::mem::take(&mut wb))?;
                }
            }
            wb.put_cf(index, INDEX_BUILT, []);
            Ok(db.write(wb)?)
        })
    }

    /// Up to `limit` entries not yet copied to store `store`, oldest first,
    /// as stored (their encodings), and the position to mark once copied;
    /// the entry that brings their size to `max_bytes` is the last.
    pub fn audit_to_copy(
        &self,
        store: u8,
        limit: usize,
        max_bytes: u64,
    ) -> Result<(Vec<Vec<u8>>, Option<AuditPosition>)> {
        self.with_db(|db| {
            let cf = cf_handle(db, CF_AUDIT);
            let after = db.get_cf(cf, [COPIED, store])?;
            let start = after.clone().unwrap_or_default();
            let mut out = Vec::new();
            let mut bytes = 0u64;
            let mut last = None;
            for item in db.iterator_cf(cf, IteratorMode::From(&start, Direction::Forward)) {
                let (k, v) = item?;
                if !is_entry(&k) || out.len() >= limit || bytes >= max_bytes {
                    break;
                }
                if after.as_deref() == Some(k.as_ref()) {
                    continue;
                }
                let entry: AuditEntry = decode(&k, &v)?;
                // Entries from before the chain are not copied.
                if entry.seq > 0 {
                    bytes += v.len() as u64;
                    out.push(v.to_vec());
                }
                last = Some(AuditPosition(k.to_vec()));
            }
            Ok((out, last))
        })
    }

    /// The chain's head (seq 0 on an empty log).
    pub fn audit_head(&self) -> Result<AuditHead> {
        self.with_db(head)
    }

    /// Walks the whole log and checks the chain: consecutive seqs from 1,
    /// each entry naming its predecessor's hash, the last one the head.
    pub fn check_audit(&self) -> Result<AuditCheck> {
        self.with_db(|db| {
            let head = head(db)?;
            let mut check = AuditCheck {
                head_seq: head.seq,
                ..Default::default()
            };
            let mut prev: Option<(u64, Vec<u8>)> = None;
            for item in db.iterator_cf(cf_handle(db, CF_AUDIT), IteratorMode::Start) {
                let (k, v) = item?;
                if !is_entry(&k) {
                    break;
                }
                let entry: AuditEntry = match decode(&k, &v) {
                    Ok(e) => e,
                    Err(e) => {
                        check.problems.push(format!("an entry does not decode: {e}"));
                        continue;
                    }
                };
                if entry.seq == 0 {
                    check.unchained += 1;
                    if prev.is_some() {
                        check
                            .problems
                            .push("an unchained entry after chained ones".into());
                    }
                    continue;
                }
                check.entries += 1;
                let (want_seq, want_prev) = match &prev {
                    Some((seq, hash)) => (seq + 1, hash.clone()),
                    None => (1, Vec::new()),
                };
                if entry.seq != want_seq {
                    check.problems.push(format!(
                        "entry {} follows entry {}: entries {}..{} are missing",
                        entry.seq,
                        want_seq - 1,
                        want_seq,
                        entry.seq.saturating_sub(1)
                    ));
                } else if entry.prev_sha256 != want_prev {
                    check.problems.push(format!(
                        "entry {} does not chain to entry {}: one of them was changed",
                        entry.seq,
                        want_seq - 1
                    ));
                }
                if k.as_ref() != entry_key(entry.at_us, entry.seq).as_slice() {
                    check
                        .problems
                        .push(format!("entry {} is stored under another time", entry.seq));
                }
                prev = Some((entry.seq, entry_hash(&v)));
            }
            match prev {
                Some((seq, hash)) if seq == head.seq && hash == head.sha256 => {}
                Some((seq, _)) if seq != head.seq => check.problems.push(format!(
                    "the log ends at entry {seq} but its head says {}: entries were removed from its end",
                    head.seq
                )),
                Some((seq, _)) => check
                    .problems
                    .push(format!("entry {seq}, the last, was changed (it is not the head's)")),
                None if head.seq > 0 => check.problems.push(format!(
                    "the log is empty but its head says {} entries",
                    head.seq
                )),
                None => {}
            }
            Ok(check)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Catalog;

    fn entry(i: usize) -> AuditEntry {
        AuditEntry {
            at_us: 1_000 + i as i64,
            by: "alice".into(),
            action: "export".into(),
            recordings: vec![format!("r{i}")],
            ..Default::default()
        }
    }

    fn filled() -> (tempfile::TempDir, Catalog) {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(dir.path()).unwrap();
        for chunk in 0..4 {
            let mut batch = Batch::new();
            for i in 0..5 {
                batch.append_audit(&entry(chunk * 5 + i));
            }
            catalog.commit(batch).unwrap();
        }
        (dir, catalog)
    }

    /// The raw key and value of entry `seq`.
    fn raw(catalog: &Catalog, seq: u64) -> (Vec<u8>, AuditEntry) {
        catalog
            .with_db(|db| {
                for item in db.iterator_cf(cf_handle(db, CF_AUDIT), IteratorMode::Start) {
                    let (k, v) = item?;
                    let e: AuditEntry = decode(&k, &v)?;
                    if e.seq == seq {
                        return Ok((k.to_vec(), e));
                    }
                }
                panic!("no entry {seq}")
            })
            .unwrap()
    }

    #[test]
    fn an_act_on_many_recordings_with_a_long_reason_stays_within_an_entrys_bound() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(dir.path()).unwrap();
        let ids: Vec<String> = (0..25_000).map(|i| format!("rec{i:06}")).collect();
        let mut batch = Batch::new();
        batch.append_audit(&AuditEntry {
            action: "purge".into(),
            by: "admin".into(),
            reason: "é".repeat(1 << 20),
            recordings: ids.clone(),
            ..Default::default()
        });
        catalog.commit(batch).unwrap();
        let log = catalog.audit(0, usize::MAX).unwrap();
        assert_eq!(log.len(), 3, "10,000 recordings an entry");
        let named: Vec<String> = log.iter().flat_map(|e| e.recordings.clone()).collect();
        assert_eq!(named, ids, "every recording named once, in order");
        for e in &log {
            assert!(e.encode_to_vec().len() as u64 <= reel_log::limits::MAX_AUDIT_ENTRY_BYTES);
            assert!(e.reason.len() <= MAX_AUDIT_TEXT_BYTES, "{}", e.reason.len());
            assert!(e.reason.starts_with("éé") && e.reason.ends_with("[clipped]"));
        }
        assert!(catalog.check_audit().unwrap().problems.is_empty());
        // Copies are cut by bytes as well as by count.
        let (first, _) = catalog.audit_to_copy(0, 100, 1).unwrap();
        assert_eq!(first.len(), 1);
        let (all, _) = catalog.audit_to_copy(0, 100, u64::MAX).unwrap();
        assert_eq!(all.len(), 3);
    }

    #[test]
    fn a_recordings_entries_are_found_newest_first_however_long_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(dir.path()).unwrap();
        let named = |i: usize, action: &str, recordings: Vec<String>| AuditEntry {
            at_us: 1_000 + i as i64,
            by: format!("user{i}"),
            action: action.into(),
            recordings,
            ..Default::default()
        };
        // 30,000 entries about other recordings, and four about "rx": the
        // first just after it was made, the last after everything else.
        let mut batch = Batch::new();
        batch.append_audit(&named(0, "show", vec!["rx".into()]));
        batch.append_audit(&named(1, "purge", vec!["ra".into(), "rx".into()]));
        for i in 2..30_002 {
            batch.append_audit(&named(i, "play", vec![format!("r{}", i % 7)]));
        }
        batch.append_audit(&named(30_002, "export", vec!["rx".into()]));
        batch.append_audit(&named(30_003, "play", vec!["rx".into(), "r1".into()]));
        catalog.commit(batch).unwrap();

        let of = |id: &str, limit| -> Vec<String> {
            let entries = catalog.audit_of(id, limit).unwrap();
            assert!(entries.iter().all(|e| e.recordings.iter().any(|r| r == id)));
            entries.iter().map(|e| e.by.clone()).collect()
        };
        assert_eq!(of("rx", 100), ["user30003", "user30002", "user1", "user0"]);
        let latest: Vec<String> = catalog
            .audit_latest(3)
            .unwrap()
            .into_iter()
            .map(|e| e.by)
            .collect();
        assert_eq!(latest, ["user30003", "user30002", "user30001"]);
        assert_eq!(of("rx", 2), ["user30003", "user30002"], "the latest");
        assert!(of("r", 10).is_empty(), "a prefix of an id is not the id");
        assert!(of("nobody", 10).is_empty());
        assert_eq!(of("r1", 1_000_000).len(), 30_000 / 7 + 1);

        // A catalog from before the index (the family empty) builds it when
        // opened, from the log alone.
        catalog
            .with_db(|db| {
                Ok(db.delete_range_cf(
                    cf_handle(db, CF_AUDIT_BY_RECORDING),
                    [0u8].as_slice(),
                    [0xffu8, 0xff].as_slice(),
                )?)
            })
            .unwrap();
        assert!(catalog.audit_of("rx", 10).unwrap().is_empty());
        catalog.close();
        drop(catalog);
        let catalog = Catalog::open(dir.path()).unwrap();
        let rx: Vec<String> = catalog
            .audit_of("rx", 100)
            .unwrap()
            .into_iter()
            .map(|e| e.by)
            .collect();
        assert_eq!(rx, ["user30003", "user30002", "user1", "user0"]);
        assert!(catalog.check_audit().unwrap().problems.is_empty());
    }

    #[test]
    fn an_untouched_log_checks_clean_and_in_order() {
        let (_dir, catalog) = filled();
        let check = catalog.check_audit().unwrap();
        assert_eq!(check.entries, 20);
        assert_eq!(check.head_seq, 20);
        assert!(check.problems.is_empty(), "{check:?}");
        let log = catalog.audit(0, 100).unwrap();
        let seqs: Vec<u64> = log.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
        // A clock that goes back does not reorder the log.
        let mut batch = Batch::new();
        batch.append_audit(&AuditEntry {
            at_us: 5,
            ..entry(99)
        });
        catalog.commit(batch).unwrap();
        let log = catalog.audit(0, 100).unwrap();
        assert_eq!(log.last().unwrap().seq, 21);
        assert!(catalog.check_audit().unwrap().problems.is_empty());
    }

    #[test]
    fn a_changed_entry_is_found() {
        let (_dir, catalog) = filled();
        let (key, mut e) = raw(&catalog, 7);
        e.by = "mallory".into();
        catalog
            .with_db(|db| Ok(db.put_cf(cf_handle(db, CF_AUDIT), &key, e.encode_to_vec())?))
            .unwrap();
        let check = catalog.check_audit().unwrap();
        assert_eq!(
            check.problems,
            vec!["entry 8 does not chain to entry 7: one of them was changed".to_string()]
        );
    }

    #[test]
    fn removed_entries_are_found_in_the_middle_and_at_the_end() {
        let (_dir, catalog) = filled();
        for seq in [5, 20] {
            let (key, _) = raw(&catalog, seq);
            catalog
                .with_db(|db| Ok(db.delete_cf(cf_handle(db, CF_AUDIT), &key)?))
                .unwrap();
        }
        let check = catalog.check_audit().unwrap();
        assert_eq!(check.problems.len(), 2, "{check:?}");
        assert!(check.problems[0].contains("entries 5..5 are missing"));
        assert!(check.problems[1].contains("removed from its end"));
    }
}
