//! What purging needs from the catalog: purge marks, legal holds and
//! removing a recording's rows (its audit entries: the `audit` module).

use prost::Message;
use reel_proto::v1::{LegalHold, PurgeMark};
use rocksdb::{Direction, IteratorMode};

use crate::{
    Batch, CF_HOLDS, CF_PURGING, CF_RECORDINGS, CF_SEGMENTS, CF_UPLOAD_QUEUE, Catalog, Change,
    RecordingId, Result, cf_handle, decode,
};

impl Batch {
    pub fn mark_purging(&mut self, id: RecordingId, mark: &PurgeMark) -> &mut Self {
        self.put(CF_PURGING, id.to_bytes().to_vec(), mark.encode_to_vec())
    }

    pub fn unmark_purging(&mut self, id: RecordingId) -> &mut Self {
        self.delete(CF_PURGING, id.to_bytes().to_vec())
    }

    pub fn put_hold(&mut self, id: RecordingId, hold: &LegalHold) -> &mut Self {
        self.put(CF_HOLDS, id.to_bytes().to_vec(), hold.encode_to_vec())
    }

    pub fn remove_hold(&mut self, id: RecordingId) -> &mut Self {
        self.delete(CF_HOLDS, id.to_bytes().to_vec())
    }

    pub fn delete_segment(&mut self, id: RecordingId, seq: u64) -> &mut Self {
        self.delete(CF_SEGMENTS, crate::segment_key(id, seq).to_vec())
    }

    /// Removes the recording's own row (not its segments).
    pub fn delete_recording(&mut self, id: RecordingId) -> &mut Self {
        self.delete(CF_RECORDINGS, id.to_bytes().to_vec())
    }

    pub(crate) fn put(&mut self, family: &'static str, key: Vec<u8>, value: Vec<u8>) -> &mut Self {
        self.pending.push(Change {
            family,
            key,
            value: Some(value),
        });
        self
    }

    pub(crate) fn delete(&mut self, family: &'static str, key: Vec<u8>) -> &mut Self {
        self.pending.push(Change {
            family,
            key,
            value: None,
        });
        self
    }
}

impl Catalog {
    /// The recording's row, unless it is being purged: for every reader,
    /// a recording is gone from the purge mark on.
    pub fn live_recording(&self, id: RecordingId) -> Result<Option<reel_proto::v1::RecordingRow>> {
        match self.purge_mark(id)? {
            Some(_) => Ok(None),
            None => self.recording(id),
        }
    }

    pub fn purge_mark(&self, id: RecordingId) -> Result<Option<PurgeMark>> {
        self.get(CF_PURGING, &id.to_bytes())
    }

    /// True when the catalog knows no recording at all (none stored, none
    /// being purged): a new catalog, or one rebuilt from nothing.
    pub fn knows_no_recording(&self) -> Result<bool> {
        Ok(self.recordings(None, 1)?.is_empty() && self.purging()?.is_empty())
    }

    /// Every recording being purged.
    pub fn purging(&self) -> Result<Vec<(RecordingId, PurgeMark)>> {
        self.with_db(|db| {
            let mut out = Vec::new();
            for item in db.iterator_cf(cf_handle(db, CF_PURGING), IteratorMode::Start) {
                let (k, v) = item?;
                if let Ok(id) = RecordingId::from_slice(&k) {
                    out.push((id, decode(&k, &v)?));
                }
            }
            Ok(out)
        })
    }

    pub fn hold(&self, id: RecordingId) -> Result<Option<LegalHold>> {
        self.get(CF_HOLDS, &id.to_bytes())
    }

    /// Objects of recording `id` still waiting in the deletion queue.
    pub fn pending_deletions_of(&self, id: RecordingId) -> Result<usize> {
        // Its objects, and its key objects (reel-storage's `keys` layout).
        let needle = format!("recordings/{id}/");
        let key_object = format!("keys/{id}");
        Ok(self
            .deletion_queue()?
            .iter()
            .filter(|(_, key, _)| key.contains(&needle) || *key == key_object)
            .count())
    }

    /// Segments of `id` still waiting for an upload (to drop at purge).
    pub fn queued_uploads_of(&self, id: RecordingId) -> Result<Vec<u64>> {
        let prefix = id.to_bytes();
        self.with_db(|db| {
            let mut out = Vec::new();
            let mode = IteratorMode::From(&prefix, Direction::Forward);
            for item in db.iterator_cf(cf_handle(db, CF_UPLOAD_QUEUE), mode) {
                let (k, _) = item?;
                if !k.starts_with(&prefix) {
                    break;
                }
                if k.len() == 24 {
                    out.push(u64::from_be_bytes(k[16..24].try_into().expect("8 bytes")));
                }
            }
            Ok(out)
        })
    }

    pub(crate) fn get<M: Message + Default>(&self, family: &str, key: &[u8]) -> Result<Option<M>> {
        self.with_db(|db| {
            db.get_pinned_cf(cf_handle(db, family), key)?
                .map(|v| decode(key, &v))
                .transpose()
        })
    }
}
