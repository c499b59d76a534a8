//! Keyframes: what a recording looked like at a moment (a terminal's
//! screen), kept so that a player can start there without replaying what
//! came before. They are derived from the recording, so the catalog treats
//! them as opaque bytes (sealed by the engine with the recording's data
//! key) that can always be computed again: a rebuilt catalog has none, and
//! a purge deletes them with the recording's segment rows.

use rocksdb::{Direction, IteratorMode};

use crate::{Batch, CF_KEYFRAMES, Catalog, RecordingId, Result, cf_handle, segment_key};

impl Batch {
    /// Keeps `bytes` as recording `id`'s keyframe at `time_us`, replacing
    /// any there.
    pub fn put_keyframe(&mut self, id: RecordingId, time_us: u64, bytes: Vec<u8>) -> &mut Self {
        self.put(CF_KEYFRAMES, segment_key(id, time_us).to_vec(), bytes)
    }

    pub fn delete_keyframe(&mut self, id: RecordingId, time_us: u64) -> &mut Self {
        self.delete(CF_KEYFRAMES, segment_key(id, time_us).to_vec())
    }
}

impl Catalog {
    /// Recording `id`'s latest keyframe at or before `time_us`, with its
    /// time.
    pub fn keyframe_at_or_before(
        &self,
        id: RecordingId,
        time_us: u64,
    ) -> Result<Option<(u64, Vec<u8>)>> {
        let prefix = id.to_bytes();
        let from = segment_key(id, time_us);
        self.with_db(|db| {
            let mode = IteratorMode::From(&from, Direction::Reverse);
            let Some(item) = db.iterator_cf(cf_handle(db, CF_KEYFRAMES), mode).next() else {
                return Ok(None);
            };
            let (k, v) = item?;
            if k.len() != 24 || !k.starts_with(&prefix) {
                return Ok(None);
            }
            let at = u64::from_be_bytes(k[16..].try_into().expect("8 bytes"));
            Ok(Some((at, v.to_vec())))
        })
    }

    /// The times of recording `id`'s keyframes, in order.
    pub fn keyframe_times(&self, id: RecordingId) -> Result<Vec<u64>> {
        let prefix = id.to_bytes();
        self.with_db(|db| {
            let mut out = Vec::new();
            let mode = IteratorMode::From(&prefix, Direction::Forward);
            for item in db.iterator_cf(cf_handle(db, CF_KEYFRAMES), mode) {
                let (k, _) = item?;
                if !k.starts_with(&prefix) {
                    break;
                }
                if k.len() == 24 {
                    out.push(u64::from_be_bytes(k[16..].try_into().expect("8 bytes")));
                }
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nearest_earlier_keyframe_of_the_same_recording_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(dir.path()).unwrap();
        let (a, b) = (RecordingId::generate(), RecordingId::generate());
        let (first, second) = if a.to_bytes() < b.to_bytes() {
            (a, b)
        } else {
            (b, a)
        };
        let mut batch = Batch::new();
        batch
            .put_keyframe(first, 10, b"ten".to_vec())
            .put_keyframe(first, 20, b"twenty".to_vec())
            .put_keyframe(second, 5, b"other".to_vec());
        catalog.commit(batch).unwrap();
        let at = |id, t| catalog.keyframe_at_or_before(id, t).unwrap();
        assert_eq!(at(first, 15), Some((10, b"ten".to_vec())));
        assert_eq!(at(first, 20), Some((20, b"twenty".to_vec())));
        assert_eq!(at(first, u64::MAX), Some((20, b"twenty".to_vec())));
        assert_eq!(at(first, 9), None);
        // The recording after `first` in key order is not `first`'s.
        assert_eq!(at(second, 4), None);
        assert_eq!(at(second, 6), Some((5, b"other".to_vec())));
        assert_eq!(catalog.keyframe_times(first).unwrap(), vec![10, 20]);
        let mut batch = Batch::new();
        batch.delete_keyframe(first, 10).delete_keyframe(first, 20);
        catalog.commit(batch).unwrap();
        assert!(catalog.keyframe_times(first).unwrap().is_empty());
        assert_eq!(at(second, 6), Some((5, b"other".to_vec())));
    }
}
