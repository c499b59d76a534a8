//! Streaming a large object into a store: a multipart upload with a few
//! parts in flight, so memory stays bounded by `part size x parts in
//! flight` whatever the object's size, and every step has a time-out that
//! feeds the store's health like any other call.

use std::time::Duration;

use async_trait::async_trait;
use object_store::path::Path;
use object_store::{
    MultipartUpload, ObjectStoreExt, PutPayload, PutResult, UploadPart, WriteMultipart,
};

use crate::{Result, Store};

/// Bytes of one part (S3 wants at least 5 MiB but for the last).
pub const PART_BYTES: usize = 8 << 20;
/// Parts uploading at once.
pub const PARTS_IN_FLIGHT: usize = 4;

/// A multipart upload under way; see [`Store::writer`]. Dropping it without
/// [`finish`](Self::finish) leaves no object (the upload is abandoned; S3
/// servers discard abandoned parts by their own rules).
pub struct ObjectWriter<'a> {
    store: &'a Store,
    key: Path,
    write: Option<WriteMultipart>,
    written: u64,
}

/// Time-outs on each part and on completion: a hung server fails the write
/// instead of holding it forever.
#[derive(Debug)]
struct TimedUpload {
    inner: Box<dyn MultipartUpload>,
    part_timeout: Duration,
    complete_timeout: Duration,
}

fn timed_out(what: &str, after: Duration) -> object_store::Error {
    object_store::Error::Generic {
        store: "reel",
        source: format!("{what} timed out after {after:?}").into(),
    }
}

#[async_trait]
impl MultipartUpload for TimedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let part = self.inner.put_part(data);
        let after = self.part_timeout;
        Box::pin(async move {
            tokio::time::timeout(after, part)
                .await
                .unwrap_or_else(|_| Err(timed_out("part upload", after)))
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let after = self.complete_timeout;
        tokio::time::timeout(after, self.inner.complete())
            .await
            .unwrap_or_else(|_| Err(timed_out("completing the upload", after)))
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        let after = self.complete_timeout;
        tokio::time::timeout(after, self.inner.abort())
            .await
            .unwrap_or_else(|_| Err(timed_out("aborting the upload", after)))
    }
}

impl Store {
    /// Starts writing `key` as a stream of bytes. Nothing is visible under
    /// `key` until [`ObjectWriter::finish`] succeeds; then the object
    /// replaces whatever was there, and is durable.
    pub async fn writer(&self, key: &Path) -> Result<ObjectWriter<'_>> {
        let config = self.health.config();
        let upload = self
            .call(
                "put_multipart",
                key,
                config.op_timeout,
                self.inner.put_multipart(key),
            )
            .await?;
        let timed = TimedUpload {
            inner: upload,
            part_timeout: config.timeout_for(PART_BYTES as u64),
            complete_timeout: config.timeout_for(PART_BYTES as u64),
        };
        Ok(ObjectWriter {
            store: self,
            key: key.clone(),
            write: Some(WriteMultipart::new_with_chunk_size(
                Box::new(timed),
                PART_BYTES,
            )),
            written: 0,
        })
    }
}

impl ObjectWriter<'_> {
    /// Appends `bytes`, waiting while [`PARTS_IN_FLIGHT`] parts are
    /// uploading. A failed part fails this (or a later) call.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let write = self.write.as_mut().expect("writer used after finish");
        let wait = self
            .store
            .health
            .config()
            .timeout_for((PART_BYTES * PARTS_IN_FLIGHT) as u64);
        self.store
            .call(
                "put_part",
                &self.key,
                wait,
                write.wait_for_capacity(PARTS_IN_FLIGHT - 1),
            )
            .await?;
        write.write(bytes);
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Uploads what is left and completes the object.
    pub async fn finish(mut self) -> Result<()> {
        let write = self.write.take().expect("writer finished twice");
        let wait = self
            .store
            .health
            .config()
            .timeout_for((PART_BYTES * (PARTS_IN_FLIGHT + 1)) as u64);
        self.store
            .call("complete", &self.key, wait, write.finish())
            .await?;
        Ok(())
    }

    /// Abandons the upload, telling the store so (best effort).
    pub async fn abort(mut self) {
        if let Some(write) = self.write.take() {
            let _ =
                tokio::time::timeout(self.store.health.config().op_timeout, write.abort()).await;
        }
    }
}
