//! Master key rotation: a new master key wraps new data keys, and every
//! data key wrapped by an older one is wrapped again, wherever a wrapped
//! key is kept (catalog rows, the spool's key files, key objects on both
//! stores). Recordings themselves are never rewritten: a data key does not
//! change, only the box around it.
//!
//! The rewrapping runs in the background in passes until a pass finds
//! nothing left; it is resumable because each pass looks for what is left
//! rather than remembering what it did (a crash, a store down, a key object
//! put back by a racing upload: the next pass finds it). Retiring the old
//! keys ([`finish`]) is refused while any wrapped key the server keeps still
//! names one of them.

use std::sync::Arc;
use std::time::Duration;

use reel_catalog::{Batch, RecordingId};
use reel_keys::{KeyId, RetiredKey, WrappedKey};
use reel_storage::{Role, keys};
use tracing::{info, warn};

use crate::Inner;
use crate::error::{EngineError, Result};
use crate::key_objects::MAX_KEY_OBJECT_BYTES;

/// Rows rewrapped in one catalog commit.
const ROWS_PER_COMMIT: usize = 256;
/// The wait between passes that left something to do (a store down).
const RETRY: Duration = Duration::from_secs(5);

/// What rotation has done and has left.
#[derive(Debug, Clone, Default)]
pub struct RotationStatus {
    /// The master key new data keys are wrapped with.
    pub current: String,
    /// Every master key held (the current one among them).
    pub held: Vec<String>,
    /// A pass is running or due.
    pub running: bool,
    /// Wrapped keys found under an older master key by the last pass that
    /// could look everywhere, and not yet wrapped again.
    pub remaining: u64,
    /// Wrapped keys this process wrapped again.
    pub rewrapped: u64,
    /// Why the last pass could not finish (a store it could not reach).
    pub waiting: Option<String>,
}

/// The rotation's state in the engine.
#[derive(Debug, Default)]
pub(crate) struct Rotation {
    running: bool,
    remaining: u64,
    rewrapped: u64,
    waiting: Option<String>,
}

/// What one pass found.
#[derive(Debug, Default)]
struct Tally {
    /// Wrapped again (or, checking only, found to need it).
    rewrapped: u64,
    /// Found under an older key and left (its copy could not be written).
    left: u64,
    waiting: Option<String>,
}

impl Tally {
    fn wait(&mut self, why: String) {
        self.waiting.get_or_insert(why);
    }
}

/// The rotation's state, as `reel keys status` shows it.
pub(crate) fn status(inner: &Inner) -> RotationStatus {
    let state = inner.rotation.lock().expect("rotation lock");
    RotationStatus {
        current: inner.keys.master_key_id().to_string(),
        held: inner
            .keys
            .master_key_ids()
            .iter()
            .map(KeyId::to_string)
            .collect(),
        running: state.running,
        remaining: state.remaining,
        rewrapped: state.rewrapped,
        waiting: state.waiting.clone(),
    }
}

/// Makes a new master key current and starts wrapping every data key with
/// it. The new key is durable when this returns; the rewrapping goes on in
/// the background ([`status`]).
pub(crate) fn rotate(inner: &Inner) -> Result<KeyId> {
    let id = inner.keys.add_master_key()?;
    info!(master_key = %id, "new master key; wrapping every data key with it");
    inner.rotation.lock().expect("rotation lock").running = true;
    inner.rotation_wake.notify_one();
    Ok(id)
}

/// Forgets (and destroys, if kept in files) every master key but the
/// current one, once nothing the server keeps is wrapped by them: a check
/// of every catalog row, spool key file and key object on both stores
/// (both must answer). Refused, naming what is left, otherwise.
pub(crate) async fn finish(inner: &Arc<Inner>) -> Result<Vec<RetiredKey>> {
    if inner.keys.master_key_ids().len() < 2 {
        return Ok(Vec::new());
    }
    let tally = pass(inner, false).await?;
    if let Some(why) = tally.waiting {
        return Err(EngineError::Unavailable(format!(
            "the older master keys are kept: {why}"
        )));
    }
    if tally.rewrapped > 0 {
        return Err(EngineError::FailedPrecondition(format!(
            "{} wrapped data keys still name an older master key; the rewrapping is not done \
             (see `reel keys status`)",
            tally.rewrapped
        )));
    }
    let retired = inner.keys.retire_master_keys()?;
    for key in &retired {
        info!(master_key = %key.id, "older master key retired");
    }
    Ok(retired)
}

/// Runs passes whenever a rotation starts, and at start when older master
/// keys are still held (a rotation a restart cut short, or keys given as
/// `NEW,OLD` in the environment).
pub(crate) async fn run(inner: Arc<Inner>) {
    if inner.keys.master_key_ids().len() > 1 {
        inner.rotation.lock().expect("rotation lock").running = true;
    }
    loop {
        let due = inner.rotation.lock().expect("rotation lock").running;
        if due {
            match pass(&inner, true).await {
                Ok(tally) => {
                    let mut state = inner.rotation.lock().expect("rotation lock");
                    state.rewrapped += tally.rewrapped;
                    state.waiting = tally.waiting.clone();
                    // Nothing done and nothing waited for: the next pass
                    // would find nothing else (what is left, does not open).
                    if tally.rewrapped == 0 && tally.waiting.is_none() {
                        state.running = false;
                        state.remaining = 0;
                        info!("every data key is wrapped by the current master key");
                    } else {
                        state.remaining = tally.left;
                    }
                }
                Err(e) => {
                    warn!(error = %e, "rewrapping data keys: will retry");
                    inner.rotation.lock().expect("rotation lock").waiting = Some(e.to_string());
                }
            }
        }
        let again = inner.rotation.lock().expect("rotation lock").running;
        tokio::select! {
            _ = tokio::time::sleep(RETRY), if again => {}
            _ = inner.rotation_wake.notified() => {}
            _ = inner.stopped() => return,
        }
    }
}

/// The master keys a pass wraps keys away from: those held but the current.
#[derive(Clone)]
struct Older(Vec<KeyId>);

impl Older {
    fn of(inner: &Inner) -> Older {
        let current = inner.keys.master_key_id();
        Older(
            inner
                .keys
                .master_key_ids()
                .into_iter()
                .filter(|id| *id != current)
                .collect(),
        )
    }

    /// `bytes` as a wrapped key, if one of these keys wrapped it. A key
    /// wrapped by a master key not held at all is left alone: retiring the
    /// older keys changes nothing for it.
    fn wrapped(&self, bytes: &[u8]) -> Option<WrappedKey> {
        WrappedKey::from_bytes(bytes)
            .ok()
            .filter(|w| self.0.contains(&w.master_key_id))
    }
}

/// `wrapped`, the data key of `id`, wrapped again by the current master key.
fn rewrap(inner: &Inner, id: RecordingId, wrapped: &WrappedKey) -> Result<Vec<u8>> {
    let bytes = id.to_bytes();
    let key = inner
        .keys
        .unwrap(&bytes, wrapped)
        .map_err(|source| EngineError::RecordingKey {
            recording: id,
            source,
        })?;
    Ok(inner.keys.wrap(&bytes, &key)?.to_bytes())
}

/// One pass over every place a wrapped key is kept; with `write` false it
/// only counts (as `rewrapped`) what would be wrapped again.
async fn pass(inner: &Arc<Inner>, write: bool) -> Result<Tally> {
    let older = Older::of(inner);
    let mut tally = Tally::default();
    if older.0.is_empty() {
        return Ok(tally);
    }
    rows(inner, &older, write, &mut tally).await?;
    spool_files(inner, &older, write, &mut tally)?;
    for role in [Role::Primary, Role::Secondary] {
        key_objects(inner, role, &older, write, &mut tally).await;
    }
    Ok(tally)
}

/// Catalog rows, a page at a time, each page's rewrapped rows in one
/// commit that keeps a row only if nothing changed it meanwhile.
async fn rows(inner: &Arc<Inner>, older: &Older, write: bool, tally: &mut Tally) -> Result<()> {
    let mut after = None;
    loop {
        let page = inner
            .catalog(move |c| c.recordings(after, ROWS_PER_COMMIT))
            .await?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = Some(RecordingId::from_slice(&last.id)?);
        let mut changes = Vec::new();
        for row in page {
            let Some(wrapped) = older.wrapped(&row.wrapped_key) else {
                continue;
            };
            let id = RecordingId::from_slice(&row.id)?;
            if !write {
                tally.rewrapped += 1;
                continue;
            }
            match rewrap(inner, id, &wrapped) {
                Ok(new) => changes.push((id, row.wrapped_key, new)),
                Err(e) => {
                    warn!(recording = %id, error = %e, "its data key does not open: left as it is");
                    tally.left += 1;
                }
            }
        }
        if changes.is_empty() {
            continue;
        }
        let done = inner
            .catalog(move |c| {
                c.commit_checked(|c| {
                    let mut batch = Batch::new();
                    let mut done = 0u64;
                    for (id, old, new) in changes {
                        if let Some(mut row) = c.recording(id)?
                            && row.wrapped_key == old
                        {
                            row.wrapped_key = new;
                            batch.put_recording(&row);
                            done += 1;
                        }
                    }
                    Ok((done, batch))
                })
            })
            .await?;
        tally.rewrapped += done;
    }
}

/// The spool's key files (segments not yet uploaded): replaced whole and
/// synced.
fn spool_files(inner: &Inner, older: &Older, write: bool, tally: &mut Tally) -> Result<()> {
    for id in inner.spool.keys() {
        let Some(wrapped) = inner.spool.read_key(id).and_then(|b| older.wrapped(&b)) else {
            continue;
        };
        if !write {
            tally.rewrapped += 1;
            continue;
        }
        match rewrap(inner, id, &wrapped) {
            Ok(new) => {
                inner.spool.replace_key(id, &new)?;
                tally.rewrapped += 1;
            }
            Err(e) => {
                warn!(recording = %id, error = %e, "a spooled data key does not open: left as it is");
                tally.left += 1;
            }
        }
    }
    Ok(())
}

/// The key objects on `role`'s store. Only those of recordings the catalog
/// keeps a wrapped key for are wrapped again, with the row's (current)
/// bytes: a key object of a purged recording must stay unreadable once the
/// older key is gone, never be made readable again.
async fn key_objects(
    inner: &Arc<Inner>,
    role: Role,
    older: &Older,
    write: bool,
    tally: &mut Tally,
) {
    let store = inner.store(role);
    let listed = match store.list(Some(&keys::KEYS_PREFIX.into())).await {
        Ok(listed) => listed,
        Err(e) => {
            tally.wait(format!(
                "the {role} store's key objects cannot be listed: {e}"
            ));
            return;
        }
    };
    for (path, size) in listed {
        let Some(id) = path
            .as_ref()
            .strip_prefix(keys::KEYS_PREFIX)
            .and_then(|rest| rest.strip_prefix('/'))
            .and_then(|rest| rest.parse::<RecordingId>().ok())
        else {
            continue;
        };
        if size > MAX_KEY_OBJECT_BYTES {
            continue;
        }
        let bytes = match store.get(&path, Some(MAX_KEY_OBJECT_BYTES)).await {
            Ok(bytes) => bytes,
            Err(reel_storage::StorageError::NotFound { .. }) => continue,
            Err(e) => {
                tally.wait(format!("the {role} store's key object of {id}: {e}"));
                tally.left += 1;
                continue;
            }
        };
        if older.wrapped(&bytes).is_none() {
            continue;
        }
        let row = match inner.catalog(move |c| c.recording(id)).await {
            Ok(row) => row,
            Err(e) => {
                tally.wait(e.to_string());
                continue;
            }
        };
        // The row's key, once the rows are done, is by the current key.
        let Some(fresh) = row
            .map(|r| r.wrapped_key)
            .filter(|w| !w.is_empty() && older.wrapped(w).is_none())
        else {
            continue;
        };
        if !write {
            tally.rewrapped += 1;
            continue;
        }
        match crate::key_objects::put_checked(inner, id, role, fresh).await {
            Ok(_) => tally.rewrapped += 1,
            Err(e) => {
                tally.wait(format!("the {role} store's key object of {id}: {e}"));
                tally.left += 1;
            }
        }
    }
}
