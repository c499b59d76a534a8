//! A local-directory store whose writes are on stable storage when they
//! return. object_store's `LocalFileSystem` writes and renames but does not
//! fsync; Reel deletes its local copy once a store says "stored", so the
//! store must mean it.

use std::collections::HashSet;
use std::fmt;
use std::ops::Range;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result, UploadPart,
};

/// [`LocalFileSystem`] plus `fsync` of each written file, its directory,
/// and the parent of each directory not yet known to be durable.
#[derive(Debug)]
pub struct DurableLocalStore {
    inner: Arc<LocalFileSystem>,
    dirs: Arc<Dirs>,
}

/// The store's root, and the directories under it whose own entry (in
/// their parent) was synced since the store was opened and that no delete
/// or rename has been given since (one may have removed them: empty
/// directories are cleaned up). A segment's first upload into a
/// recording's directories syncs the chain up to the root; the next ones
/// sync only their file and its directory (two fsyncs an upload rather
/// than one for every directory up to the root).
#[derive(Debug)]
struct Dirs {
    root: PathBuf,
    synced: Mutex<HashSet<PathBuf>>,
}

impl Dirs {
    fn synced(&self) -> std::sync::MutexGuard<'_, HashSet<PathBuf>> {
        self.synced.lock().expect("synced dirs")
    }

    /// Before `location` is deleted or renamed away: its directories may go
    /// with it.
    fn forget_dirs_of(&self, inner: &LocalFileSystem, location: &Path) {
        if let Ok(path) = inner.path_to_filesystem(location) {
            forget(&path, &self.root, &mut self.synced());
        }
    }
}

impl DurableLocalStore {
    /// A store rooted at `root`, which is created if missing.
    pub fn new(root: impl Into<PathBuf>) -> std::io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        let root = root.canonicalize()?;
        let inner = LocalFileSystem::new_with_prefix(&root)
            .map_err(std::io::Error::other)?
            .with_automatic_cleanup(true);
        Ok(DurableLocalStore {
            inner: Arc::new(inner),
            dirs: Arc::new(Dirs {
                root,
                synced: Mutex::default(),
            }),
        })
    }

    async fn sync(&self, location: &Path) -> Result<()> {
        let path = self.inner.path_to_filesystem(location)?;
        sync_file_and_dirs(path, self.dirs.clone()).await
    }
}

/// Syncs the file, then its directory (the rename that published the file
/// is there), then the parent of each directory not known to be durable
/// (a directory made for the file lives in its own parent), up to the
/// store root.
async fn sync_file_and_dirs(path: PathBuf, dirs: Arc<Dirs>) -> Result<()> {
    let generic = |e: Box<dyn std::error::Error + Send + Sync>| object_store::Error::Generic {
        store: "DurableLocalStore",
        source: e,
    };
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        std::fs::File::open(&path)?.sync_all()?;
        let (to_sync, now_durable) = dirs_to_sync(&path, &dirs.root, &dirs.synced());
        for d in &to_sync {
            std::fs::File::open(d)?.sync_all()?;
        }
        dirs.synced().extend(now_durable);
        Ok(())
    })
    .await
    .map_err(|e| generic(Box::new(e)))?
    .map_err(|e| generic(Box::new(e)))
}

/// For a file written at `file`: the directories to fsync, in order, and
/// those whose entry that makes durable.
fn dirs_to_sync(
    file: &FsPath,
    root: &FsPath,
    synced: &HashSet<PathBuf>,
) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let (mut sync, mut durable) = (Vec::new(), Vec::new());
    let mut dir = file.parent();
    while let Some(d) = dir {
        sync.push(d.to_path_buf());
        if d == root || !d.starts_with(root) || synced.contains(d) {
            break;
        }
        durable.push(d.to_path_buf());
        dir = d.parent();
    }
    (sync, durable)
}

/// Forgets every directory between `path` and the root.
fn forget(path: &FsPath, root: &FsPath, synced: &mut HashSet<PathBuf>) {
    let mut dir = path.parent();
    while let Some(d) = dir.filter(|d| *d != root && d.starts_with(root)) {
        synced.remove(d);
        dir = d.parent();
    }
}

impl fmt::Display for DurableLocalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Durable({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for DurableLocalStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let r = self.inner.put_opts(location, payload, opts).await?;
        self.sync(location).await?;
        Ok(r)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(DurableUpload {
            inner,
            path: self.inner.path_to_filesystem(location)?,
            dirs: self.dirs.clone(),
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let (inner, dirs) = (self.inner.clone(), self.dirs.clone());
        // Each location is forgotten as the delete takes it, before it goes.
        let locations = locations
            .inspect(move |location| {
                if let Ok(location) = location {
                    dirs.forget_dirs_of(&inner, location);
                }
            })
            .boxed();
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await?;
        self.sync(to).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.dirs.forget_dirs_of(&self.inner, from);
        self.inner.rename_opts(from, to, options).await?;
        self.sync(to).await
    }
}

#[derive(Debug)]
struct DurableUpload {
    inner: Box<dyn MultipartUpload>,
    path: PathBuf,
    dirs: Arc<Dirs>,
}

#[async_trait]
impl MultipartUpload for DurableUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> Result<PutResult> {
        let r = self.inner.complete().await?;
        sync_file_and_dirs(self.path.clone(), self.dirs.clone()).await?;
        Ok(r)
    }

    async fn abort(&mut self) -> Result<()> {
        self.inner.abort().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_is_synced_in_its_parent_until_a_delete_may_have_removed_it() {
        let root = FsPath::new("/store");
        let seg = |id: &str, n: u32| root.join(format!("segments/{id}/{n}.seg"));
        let dirs =
            |paths: &[&str]| -> Vec<PathBuf> { paths.iter().map(|p| root.join(p)).collect() };
        let mut synced = HashSet::new();
        let write = |file: &FsPath, synced: &mut HashSet<PathBuf>| {
            let (sync, durable) = dirs_to_sync(file, root, synced);
            synced.extend(durable);
            sync
        };

        // The first file of a recording: its directory, the new directory's
        // parent, and the new `segments/` in the root.
        assert_eq!(
            write(&seg("A", 1), &mut synced),
            dirs(&["segments/A", "segments", ""])
        );
        // The next ones: their directory alone.
        assert_eq!(write(&seg("A", 2), &mut synced), dirs(&["segments/A"]));
        // Another recording's first: its directory and `segments/`.
        assert_eq!(
            write(&seg("B", 1), &mut synced),
            dirs(&["segments/B", "segments"])
        );
        // A file in the root: the root alone.
        assert_eq!(write(&root.join("x"), &mut synced), dirs(&[""]));

        // A delete in A may remove A and `segments/` (when left empty):
        // the next file there syncs the chain again; B's stays known.
        forget(&seg("A", 2), root, &mut synced);
        assert_eq!(
            write(&seg("A", 3), &mut synced),
            dirs(&["segments/A", "segments", ""])
        );
        assert_eq!(write(&seg("B", 2), &mut synced), dirs(&["segments/B"]));
    }

    #[tokio::test]
    async fn what_is_put_reads_back_after_deletes_remove_its_directories() {
        use object_store::ObjectStoreExt;
        let dir = tempfile::tempdir().unwrap();
        let store = DurableLocalStore::new(dir.path().join("store")).unwrap();
        let key = Path::from("segments/A/1.seg");
        store
            .put(&key, Bytes::from_static(b"one").into())
            .await
            .unwrap();
        let a = store.dirs.root.join("segments/A");
        assert!(store.dirs.synced().contains(&a));
        store.delete(&key).await.unwrap();
        // Cleaned up with its directory, and forgotten.
        assert!(!a.exists());
        assert!(store.dirs.synced().is_empty());
        store
            .put(&key, Bytes::from_static(b"two").into())
            .await
            .unwrap();
        let got = store.get(&key).await.unwrap().bytes().await.unwrap();
        assert_eq!(&got[..], b"two");
    }
}
