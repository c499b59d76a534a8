//! A fault-injecting [`ObjectStore`] for deterministic tests: it wraps a real
//! store and, by rules set at run time, fails, hangs, slows down or lies
//! about operations. object_store's `ThrottledStore` only adds delays; a
//! storage system's tests need the failures too.
//!
//! ```
//! # use std::sync::Arc;
//! # use object_store::memory::InMemory;
//! use reel_storage::faults::{Fault, FaultyStore, Ops};
//! let (store, faults) = FaultyStore::wrap(Arc::new(InMemory::new()));
//! faults.fail_next(Ops::PUT, 2, Fault::Error);        // an error burst of two writes
//! faults.fail_always(Ops::WRITES, Fault::AfterWrite); // writes land, yet report failure
//! faults.clear();
//! # let _ = store;
//! ```

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
    UploadPart,
};
use tokio::sync::Notify;

/// A set of operation kinds a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ops(u8);

impl Ops {
    pub const PUT: Ops = Ops(1);
    pub const GET: Ops = Ops(2);
    pub const DELETE: Ops = Ops(4);
    pub const LIST: Ops = Ops(8);
    pub const HEAD: Ops = Ops(16);
    /// Parts of multipart uploads (the upload itself starts and completes).
    pub const PART: Ops = Ops(32);
    pub const COPY: Ops = Ops(64);
    pub const WRITES: Ops = Ops(1 | 4 | 32 | 64);
    pub const READS: Ops = Ops(2 | 8 | 16);
    pub const ALL: Ops = Ops(0xff);

    pub fn union(self, other: Ops) -> Ops {
        Ops(self.0 | other.0)
    }

    fn contains(self, op: Ops) -> bool {
        self.0 & op.0 != 0
    }
}

/// What happens to an operation a rule catches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Fails at once; the inner store is not touched.
    Error,
    /// Runs on the inner store, then reports failure: the ambiguous write
    /// (a time-out after the server stored the object).
    AfterWrite,
    /// Never answers until [`FaultHandle::release`] (or the caller's time-out):
    /// a hung connection, a frozen server.
    Hang,
    /// Runs on the inner store, then never answers until
    /// [`FaultHandle::release`]: the store took the write and the caller died
    /// before it heard so (a crash in the middle of a put).
    HangAfterWrite,
    /// Answers after this delay.
    Delay(Duration),
    /// Reads answer at once but deliver each chunk of the body after this
    /// delay.
    SlowBody(Duration),
}

struct Rule {
    ops: Ops,
    fault: Fault,
    remaining: Option<u64>,
}

#[derive(Default)]
struct Shared {
    rules: Mutex<Vec<Rule>>,
    release: Notify,
    counts: [AtomicU64; 8],
}

/// Sets the faults of a [`FaultyStore`] and counts its operations.
#[derive(Clone)]
pub struct FaultHandle {
    shared: Arc<Shared>,
}

impl FaultHandle {
    /// The next `n` operations in `ops` meet `fault`.
    pub fn fail_next(&self, ops: Ops, n: u64, fault: Fault) {
        self.push(ops, fault, Some(n));
    }

    /// Every operation in `ops` meets `fault` until [`clear`](Self::clear).
    pub fn fail_always(&self, ops: Ops, fault: Fault) {
        self.push(ops, fault, None);
    }

    fn push(&self, ops: Ops, fault: Fault, remaining: Option<u64>) {
        self.shared.rules.lock().expect("rules lock").push(Rule {
            ops,
            fault,
            remaining,
        });
    }

    /// Removes every rule and lets hung operations go on.
    pub fn clear(&self) {
        self.shared.rules.lock().expect("rules lock").clear();
        self.release();
    }

    /// Lets every hung operation go on to the inner store.
    pub fn release(&self) {
        self.shared.release.notify_waiters();
    }

    /// Operations of kind `op` seen so far (faulted or not).
    pub fn count(&self, op: Ops) -> u64 {
        self.shared.counts[op.0.trailing_zeros() as usize].load(Ordering::Relaxed)
    }

    pub fn reset_counts(&self) {
        for c in &self.shared.counts {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// The wrapper. See the module documentation.
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    shared: Arc<Shared>,
}

impl FaultyStore {
    /// Wraps `inner`; the handle sets faults and reads counters.
    pub fn wrap(inner: Arc<dyn ObjectStore>) -> (Arc<FaultyStore>, FaultHandle) {
        let shared = Arc::new(Shared::default());
        (
            Arc::new(FaultyStore {
                inner,
                shared: shared.clone(),
            }),
            FaultHandle { shared },
        )
    }

    /// The same store (role, description, health) with its backend behind
    /// the wrapper.
    pub fn wrap_store(store: &crate::Store) -> (crate::Store, FaultHandle) {
        let (faulty, handle) = FaultyStore::wrap(store.object_store().clone());
        let wrapped = crate::Store::new(
            store.role(),
            faulty,
            store.description(),
            store.health().clone(),
        );
        (wrapped, handle)
    }

    /// Counts `op` and returns the fault a rule gives it, if any.
    fn fault_for(&self, op: Ops) -> Option<Fault> {
        self.shared.counts[op.0.trailing_zeros() as usize].fetch_add(1, Ordering::Relaxed);
        let mut rules = self.shared.rules.lock().expect("rules lock");
        let i = rules.iter().position(|r| r.ops.contains(op))?;
        let fault = rules[i].fault;
        if let Some(n) = rules[i].remaining.as_mut() {
            *n -= 1;
            if *n == 0 {
                rules.remove(i);
            }
        }
        Some(fault)
    }

    /// Applies the part of a fault that comes before the inner call.
    /// `Ok(true)` means: run the call, then fail (AfterWrite).
    async fn before(&self, op: Ops, fault: Option<Fault>) -> Result<bool> {
        match fault {
            None | Some(Fault::SlowBody(_) | Fault::HangAfterWrite) => Ok(false),
            Some(Fault::Error) => Err(injected(op, "injected failure")),
            Some(Fault::AfterWrite) => Ok(true),
            Some(Fault::Hang) => {
                self.shared.release.notified().await;
                Ok(false)
            }
            Some(Fault::Delay(d)) => {
                tokio::time::sleep(d).await;
                Ok(false)
            }
        }
    }

    async fn run<T>(&self, op: Ops, call: impl Future<Output = Result<T>>) -> Result<T> {
        let fault = self.fault_for(op);
        let fail_after = self.before(op, fault).await?;
        let out = call.await?;
        if fault == Some(Fault::HangAfterWrite) {
            self.shared.release.notified().await;
        }
        if fail_after {
            return Err(injected(
                op,
                "injected failure after the operation took effect",
            ));
        }
        Ok(out)
    }
}

fn injected(op: Ops, what: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "FaultyStore",
        source: format!("{what} ({op:?})").into(),
    }
}

impl fmt::Debug for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.run(Ops::PUT, self.inner.put_opts(location, payload, opts))
            .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(FaultyUpload {
            inner,
            store: FaultyStore {
                inner: self.inner.clone(),
                shared: self.shared.clone(),
            },
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let op = if options.head { Ops::HEAD } else { Ops::GET };
        let fault = self.fault_for(op);
        let fail_after = self.before(op, fault).await?;
        if fail_after {
            return Err(injected(op, "injected failure"));
        }
        let mut result = self.inner.get_opts(location, options).await?;
        if let Some(Fault::SlowBody(delay)) = fault {
            let body = match result.payload {
                GetResultPayload::Stream(s) => s,
                #[allow(unreachable_patterns)]
                other => {
                    result.payload = other;
                    return Ok(result);
                }
            };
            result.payload = GetResultPayload::Stream(
                body.then(move |chunk| async move {
                    tokio::time::sleep(delay).await;
                    chunk
                })
                .boxed(),
            );
        }
        Ok(result)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.run(Ops::GET, self.inner.get_ranges(location, ranges))
            .await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let fault = self.fault_for(Ops::DELETE);
        match fault {
            Some(Fault::Error) | Some(Fault::Hang) => {
                futures::stream::once(async { Err(injected(Ops::DELETE, "injected failure")) })
                    .boxed()
            }
            Some(Fault::AfterWrite) => self
                .inner
                .delete_stream(locations)
                .map(|r| {
                    r.and(Err(injected(
                        Ops::DELETE,
                        "injected failure after the delete",
                    )))
                })
                .boxed(),
            _ => self.inner.delete_stream(locations),
        }
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        match self.fault_for(Ops::LIST) {
            Some(Fault::Error | Fault::AfterWrite) => {
                futures::stream::once(async { Err(injected(Ops::LIST, "injected failure")) })
                    .boxed()
            }
            // A listing that never yields, as from a server that stopped
            // answering mid-request.
            Some(Fault::Hang) => futures::stream::pending().boxed(),
            _ => self.inner.list(prefix),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.run(Ops::LIST, self.inner.list_with_delimiter(prefix))
            .await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.run(Ops::COPY, self.inner.copy_opts(from, to, options))
            .await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.run(Ops::COPY, self.inner.rename_opts(from, to, options))
            .await
    }
}

struct FaultyUpload {
    inner: Box<dyn MultipartUpload>,
    store: FaultyStore,
}

impl fmt::Debug for FaultyUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FaultyUpload")
    }
}

#[async_trait]
impl MultipartUpload for FaultyUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        match self.store.fault_for(Ops::PART) {
            Some(Fault::Error) => {
                Box::pin(async { Err(injected(Ops::PART, "injected part failure")) })
            }
            Some(Fault::AfterWrite) => {
                let part = self.inner.put_part(data);
                Box::pin(async move {
                    part.await?;
                    Err(injected(
                        Ops::PART,
                        "injected failure after the part was stored",
                    ))
                })
            }
            Some(Fault::Hang) => Box::pin(std::future::pending()),
            Some(Fault::HangAfterWrite) => {
                let part = self.inner.put_part(data);
                Box::pin(async move {
                    part.await?;
                    std::future::pending().await
                })
            }
            Some(Fault::Delay(d) | Fault::SlowBody(d)) => {
                let part = self.inner.put_part(data);
                Box::pin(async move {
                    tokio::time::sleep(d).await;
                    part.await
                })
            }
            None => self.inner.put_part(data),
        }
    }

    async fn complete(&mut self) -> Result<PutResult> {
        self.inner.complete().await
    }

    async fn abort(&mut self) -> Result<()> {
        self.inner.abort().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn rules_fail_count_and_expire() {
        let (store, faults) = FaultyStore::wrap(Arc::new(InMemory::new()));
        let key = Path::from("a/b");
        faults.fail_next(Ops::PUT, 2, Fault::Error);
        assert!(
            store
                .put(&key, PutPayload::from_static(b"x"))
                .await
                .is_err()
        );
        assert!(
            store
                .put(&key, PutPayload::from_static(b"x"))
                .await
                .is_err()
        );
        assert!(
            store.get(&key).await.is_err(),
            "the failed puts never landed"
        );
        store
            .put(&key, PutPayload::from_static(b"x"))
            .await
            .unwrap();
        assert_eq!(faults.count(Ops::PUT), 3);

        faults.fail_always(Ops::WRITES, Fault::AfterWrite);
        assert!(
            store
                .put(&key, PutPayload::from_static(b"y"))
                .await
                .is_err()
        );
        let got = store.get(&key).await.unwrap().bytes().await.unwrap();
        assert_eq!(&got[..], b"y", "an ambiguous put did land");
        faults.clear();

        faults.fail_next(Ops::GET, 1, Fault::Hang);
        let hung = tokio::time::timeout(Duration::from_millis(50), store.get(&key)).await;
        assert!(hung.is_err(), "a hung get never answers");
        faults.fail_next(Ops::GET, 1, Fault::Hang);
        let waiting = {
            let store = store.clone();
            let key = key.clone();
            tokio::spawn(async move { store.get(&key).await.map(|_| ()) })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        faults.release();
        waiting.await.unwrap().unwrap();
    }
}
