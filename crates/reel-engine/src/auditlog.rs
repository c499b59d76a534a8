//! The audit log's copies in the stores. Every few seconds the entries not
//! yet copied go, as one object, to each usable store
//! (`audit/<first seq>-<last seq>.pb`: the entries as the catalog holds
//! them, each length-delimited). A check compares those copies with the
//! catalog, so that an entry changed or removed in the catalog (even with
//! the chain recomputed after it) shows; a rebuilt catalog gets its log
//! back from them.
//!
//! An entry is marked copied to a store only after its object is written:
//! a crash in between copies it again (under another key if more entries
//! came; readers merge copies by seq).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::path::Path;
use prost::Message;
use reel_catalog::{AuditCheck, Batch};
use reel_log::audit::{AuditCopyError, CopiedEntry, decode_copy, encode_copy};
use reel_log::limits::{AUDIT_COPY_TARGET_BYTES, MAX_AUDIT_COPY_BYTES};
use reel_proto::v1::{AuditEntry, AuditHead};
use reel_storage::{Role, keys};
use sha2::{Digest, Sha256};
use tracing::warn;

use crate::Inner;
use crate::error::{EngineError, Result};

const INTERVAL: Duration = Duration::from_secs(5);
/// Entries in one object at most.
const BATCH: usize = 10_000;

pub(crate) async fn run(inner: Arc<Inner>) {
    loop {
        if let Err(e) = copy(&inner).await {
            warn!(error = %e, "copying the audit log to the stores: will retry");
        }
        tokio::select! {
            _ = tokio::time::sleep(INTERVAL) => {}
            _ = inner.stopped() => {
                // A clean stop copies what the last seconds added, briefly.
                let _ = tokio::time::timeout(Duration::from_secs(5), copy(&inner)).await;
                return;
            }
        }
    }
}

/// Copies what each usable store lacks; returns the entries copied.
pub(crate) async fn copy(inner: &Arc<Inner>) -> Result<u64> {
    let mut copied = 0;
    for role in [Role::Primary, Role::Secondary] {
        let store = inner.store(role);
        if !store.health().state().is_usable() {
            continue;
        }
        loop {
            let (entries, position) = inner
                .catalog(move |c| c.audit_to_copy(role as u8, BATCH, AUDIT_COPY_TARGET_BYTES))
                .await?;
            let Some(position) = position else { break };
            let bytes: u64 = entries.iter().map(|e| e.len() as u64).sum();
            let full = entries.len() >= BATCH || bytes >= AUDIT_COPY_TARGET_BYTES;
            if let (Some(first), Some(last)) = (entries.first(), entries.last()) {
                let seq = |bytes: &Vec<u8>| AuditEntry::decode(bytes.as_slice()).map(|e| e.seq);
                let (first, last) = match (seq(first), seq(last)) {
                    (Ok(f), Ok(l)) => (f, l),
                    _ => {
                        return Err(EngineError::Internal(
                            "an audit entry does not decode".into(),
                        ));
                    }
                };
                store
                    .put(
                        &keys::audit(first, last),
                        Bytes::from(encode_copy(&entries)),
                    )
                    .await?;
                copied += entries.len() as u64;
            }
            inner
                .catalog(move |c| {
                    let mut batch = Batch::new();
                    batch.mark_audit_copied(role as u8, position);
                    c.commit(batch)
                })
                .await?;
            if !full {
                break;
            }
        }
    }
    Ok(copied)
}

/// A store's copy of the log: entry bytes by seq, and what does not fit.
struct Copy {
    entries: BTreeMap<u64, Vec<u8>>,
    problems: Vec<String>,
}

async fn read_copy(inner: &Arc<Inner>, role: Role) -> Result<Copy> {
    let store = inner.store(role);
    let mut copy = Copy {
        entries: BTreeMap::new(),
        problems: Vec::new(),
    };
    let listed = store.list(Some(&Path::from(keys::AUDIT_PREFIX))).await?;
    for (key, size) in listed {
        // Bounded before it is fetched: anyone who can write to the
        // bucket can put an object here.
        if size > MAX_AUDIT_COPY_BYTES {
            copy.problems.push(format!(
                "{role} store: {key}: {}",
                AuditCopyError::TooLarge { size }
            ));
            continue;
        }
        let body = store.get(&key, Some(size)).await?;
        let decoded = decode_copy(&body);
        if let Some(e) = decoded.error {
            copy.problems.push(format!(
                "{role} store: {key} is not a whole audit copy: {e}"
            ));
        }
        for CopiedEntry { entry, bytes } in decoded.entries {
            match copy.entries.get(&entry.seq) {
                Some(other) if *other != bytes => copy.problems.push(format!(
                    "{role} store: two different copies of entry {}",
                    entry.seq
                )),
                _ => {
                    copy.entries.insert(entry.seq, bytes);
                }
            }
        }
    }
    Ok(copy)
}

fn hash(bytes: &[u8]) -> Vec<u8> {
    Sha256::digest(bytes).to_vec()
}

/// The catalog's chain checked, then compared with each reachable store's
/// copy: an entry there that the catalog lacks or holds differently is a
/// problem (entries not copied yet are not).
pub(crate) async fn check(inner: &Arc<Inner>) -> Result<AuditCheck> {
    let (mut check, log) = inner
        .catalog(|c| Ok((c.check_audit()?, c.audit(0, usize::MAX)?)))
        .await?;
    let by_seq: BTreeMap<u64, Vec<u8>> = log
        .iter()
        .filter(|e| e.seq > 0)
        .map(|e| (e.seq, hash(&e.encode_to_vec())))
        .collect();
    for role in [Role::Primary, Role::Secondary] {
        if !inner.store(role).health().state().is_usable() {
            warn!(store = %role, "the audit log's copy there is not checked: the store is down");
            continue;
        }
        let copy = read_copy(inner, role).await?;
        check.problems.extend(copy.problems);
        for (seq, bytes) in &copy.entries {
            match by_seq.get(seq) {
                Some(h) if *h == hash(bytes) => {}
                Some(_) => check.problems.push(format!(
                    "entry {seq} differs from the {role} store's copy: it was changed"
                )),
                None if *seq > check.head_seq => check.problems.push(format!(
                    "entry {seq} is in the {role} store's copy but past the catalog's head ({}): the end of the log was removed",
                    check.head_seq
                )),
                None => check.problems.push(format!(
                    "entry {seq} is in the {role} store's copy but not in the catalog: it was removed"
                )),
            }
        }
    }
    Ok(check)
}

/// For a rebuilt catalog: the log from the stores' copies (both merged),
/// restored up to its first gap. Returns the entries restored.
pub(crate) async fn restore(inner: &Arc<Inner>) -> Result<u64> {
    let mut merged: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    for role in [Role::Primary, Role::Secondary] {
        if !inner.store(role).health().state().is_usable() {
            continue;
        }
        match read_copy(inner, role).await {
            Ok(copy) => {
                for p in &copy.problems {
                    warn!(problem = %p, "audit copy");
                }
                for (seq, bytes) in copy.entries {
                    merged.entry(seq).or_insert(bytes);
                }
            }
            Err(e) => warn!(store = %role, error = %e, "cannot read the audit log's copy"),
        }
    }
    // The chain from entry 1 on, as long as each entry names the one before.
    let mut chain = Vec::new();
    let mut prev = Vec::new();
    for (seq, bytes) in merged {
        let Ok(entry) = AuditEntry::decode(bytes.as_slice()) else {
            break;
        };
        if seq != chain.len() as u64 + 1 || entry.prev_sha256 != prev {
            warn!(
                seq,
                "the audit log's copies break here; later entries are not restored"
            );
            break;
        }
        prev = hash(&bytes);
        chain.push((entry.at_us, bytes));
    }
    let Some((at_us, _)) = chain.last().cloned() else {
        return Ok(0);
    };
    let head = AuditHead {
        seq: chain.len() as u64,
        sha256: prev,
        at_us,
    };
    let encoded: Vec<Vec<u8>> = chain.into_iter().map(|(_, b)| b).collect();
    let n = encoded.len() as u64;
    inner
        .catalog(move |c| {
            let mut batch = Batch::new();
            batch.restore_audit(&encoded, &head)?;
            c.commit(batch)
        })
        .await?;
    Ok(n)
}
