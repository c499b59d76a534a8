//! Key objects: an encrypted recording's wrapped data key
//! (`keys/<recording id>`), put on a store before any object of the
//! recording is, so that a catalog rebuilt from the stores alone can read
//! what it adopts. A purge deletes them ahead of everything else
//! (crypto-shredding: a copy of a recording's objects kept elsewhere can no
//! longer be read).

use std::sync::Arc;

use reel_catalog::{Batch, RecordingId};
use reel_storage::{Role, keys};
use tracing::debug;

use crate::Inner;
use crate::copies::location_of;
use crate::error::Result;

/// How many (recording, store) pairs [`ensure`] remembers.
const KNOWN_MAX: usize = 1 << 16;

/// Puts recording `id`'s key object on `role`'s store unless this process
/// already did, or the recording is stored in the clear. Returns once the
/// store has it. A put that races a purge leaves nothing behind: the key
/// object is queued for deletion like the recording's other objects.
pub(crate) async fn ensure(inner: &Arc<Inner>, id: RecordingId, role: Role) -> Result<()> {
    if inner
        .key_objects
        .lock()
        .expect("key objects lock")
        .contains(&(id, role))
    {
        return Ok(());
    }
    let row = inner.catalog(move |c| c.recording(id)).await?;
    let wrapped = row.map(|r| r.wrapped_key).unwrap_or_default();
    if !wrapped.is_empty() {
        if !put_checked(inner, id, role, wrapped).await? {
            return Ok(());
        }
        debug!(recording = %id, store = %role, "key object stored");
    }
    let mut known = inner.key_objects.lock().expect("key objects lock");
    // A cache, bounded: forgetting costs one small put more.
    if known.len() >= KNOWN_MAX {
        known.clear();
    }
    known.insert((id, role));
    Ok(())
}

/// Puts `wrapped` as recording `id`'s key object on `role`'s store, then
/// looks whether the recording was purged meanwhile: if it was, the object
/// is queued for deletion like the recording's other objects (a put racing
/// a purge leaves nothing readable behind) and `false` is returned.
pub(crate) async fn put_checked(
    inner: &Arc<Inner>,
    id: RecordingId,
    role: Role,
    wrapped: Vec<u8>,
) -> Result<bool> {
    inner
        .store(role)
        .put(&keys::data_key(id), wrapped.into())
        .await?;
    let purged = inner
        .catalog(move |c| {
            c.commit_checked(|c| {
                let gone = c.purge_mark(id)?.is_some() || c.recording(id)?.is_none();
                let mut batch = Batch::new();
                if gone {
                    batch.enqueue_deletion(
                        location_of(role),
                        keys::data_key(id).as_ref(),
                        "purged",
                    );
                }
                Ok((gone, batch))
            })
        })
        .await?;
    if purged {
        inner.deleter_wake.notify_one();
    }
    Ok(!purged)
}

/// Forgets what [`ensure`] remembered of `id` (its key objects are being
/// deleted).
pub(crate) fn forget(inner: &Inner, id: RecordingId) {
    inner
        .key_objects
        .lock()
        .expect("key objects lock")
        .retain(|(r, _)| *r != id);
}

/// Recording `id`'s wrapped data key as the spool keeps it (for segments
/// never uploaded), if it opens with the keys held.
pub(crate) fn spooled(inner: &Inner, id: RecordingId) -> Option<Vec<u8>> {
    let bytes = inner.spool.read_key(id)?;
    opens(inner, id, &bytes).then_some(bytes)
}

fn opens(inner: &Inner, id: RecordingId, bytes: &[u8]) -> bool {
    reel_keys::WrappedKey::from_bytes(bytes)
        .and_then(|w| inner.keys.unwrap(&id.to_bytes(), &w))
        .is_ok()
}

/// Removes the spool's key files of recordings that are not open and have
/// no segment left in the spool.
pub(crate) fn prune_spooled(inner: &Inner) -> Result<()> {
    let kept = inner.spool.keys();
    if kept.is_empty() {
        return Ok(());
    }
    let spooled: std::collections::HashSet<RecordingId> =
        inner.spool.list()?.into_iter().map(|(id, _)| id).collect();
    for id in kept {
        if !spooled.contains(&id) && inner.open_recording(id).is_none() {
            inner.spool.remove_key(id)?;
        }
    }
    Ok(())
}

/// The most bytes a key object is read with (a wrapped key is 81).
pub(crate) const MAX_KEY_OBJECT_BYTES: u64 = 1024;

/// Recording `id`'s wrapped data key from its key object on either store:
/// the first that opens with the keys held and for this recording (a key
/// object moved from another recording, altered, or wrapped by a master
/// key not held is passed over). `None` when no store has one that opens:
/// the recording was purged (its key destroyed) or its master key is gone.
pub(crate) async fn find(inner: &Arc<Inner>, id: RecordingId) -> Option<Vec<u8>> {
    let key = keys::data_key(id);
    for role in [Role::Primary, Role::Secondary] {
        let store = inner.store(role);
        // Bounded: anyone who can write to a bucket can put a large object
        // under this key.
        match store.head(&key).await {
            Ok(size) if size <= MAX_KEY_OBJECT_BYTES => {}
            _ => continue,
        }
        let Ok(bytes) = store.get(&key, Some(MAX_KEY_OBJECT_BYTES)).await else {
            continue;
        };
        if bytes.len() as u64 > MAX_KEY_OBJECT_BYTES {
            continue;
        }
        if opens(inner, id, &bytes) {
            return Some(bytes.to_vec());
        }
    }
    None
}
