//! Reel's stores: where sealed segments go once they leave the local log.
//!
//! A [`Store`] is any object_store backend (a local directory, S3, MinIO,
//! Garage, ...) in a [`Role`], with the key layout Reel uses in it
//! ([`keys`]). Stores are configured with [`StoreConfig`].

mod durable_local;
pub mod faults;
pub mod health;
pub mod keys;
mod writer;

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use durable_local::DurableLocalStore;
pub use health::{
    Health, HealthConfig, HealthSnapshot, RouteChange, RouteEvent, Router, StoreState, Transition,
};
pub use writer::{ObjectWriter, PART_BYTES, PARTS_IN_FLIGHT};

/// Which store a [`Store`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Primary,
    Secondary,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Primary => "primary",
            Role::Secondary => "secondary",
        })
    }
}

/// How to reach a store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum StoreConfig {
    /// A local (or mounted) directory.
    Local { path: PathBuf },
    /// An S3-compatible bucket (AWS S3, MinIO, Garage, ...).
    S3(S3Config),
}

/// An S3-compatible bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// e.g. `http://127.0.0.1:9000`; unset means AWS.
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default = "default_region")]
    pub region: String,
    pub bucket: String,
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub secret_access_key: Option<Secret>,
    /// Allow plain `http://` endpoints.
    #[serde(default)]
    pub allow_http: bool,
    /// Path-style requests (`endpoint/bucket/key`), as MinIO and Garage want.
    #[serde(default = "default_true")]
    pub path_style: bool,
    /// A key prefix inside the bucket, e.g. `reel/`.
    #[serde(default)]
    pub prefix: Option<String>,
}

/// A secret from the configuration (an S3 secret key). Its `Debug` and
/// `Serialize` never show it; only [`Secret::expose`] does, for the client
/// that needs it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

impl StoreConfig {
    /// Where the store is, for people to read: no credential.
    pub fn describe(&self) -> String {
        match self {
            StoreConfig::Local { path } => format!("local {}", path.display()),
            StoreConfig::S3(s3) => format!(
                "s3 {}/{}{}",
                s3.endpoint.as_deref().unwrap_or("https://s3.amazonaws.com"),
                s3.bucket,
                s3.prefix
                    .as_deref()
                    .map(|p| format!(" (prefix {p})"))
                    .unwrap_or_default()
            ),
        }
    }
}

fn default_region() -> String {
    "us-east-1".into()
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Error)]
pub enum StorageError {
    #[error("{role} store: cannot use {what}: {reason}")]
    Config {
        role: Role,
        what: String,
        reason: String,
    },
    #[error("{role} store: object {key} not found")]
    NotFound { role: Role, key: String },
    #[error("{role} store: {op} {key} timed out after {after:?}")]
    Timeout {
        role: Role,
        op: &'static str,
        key: String,
        after: Duration,
    },
    #[error("{role} store: {op} {key} failed: {source}")]
    Backend {
        role: Role,
        op: &'static str,
        key: String,
        #[source]
        source: object_store::Error,
    },
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

impl StorageError {
    /// A short name of the kind of failure, for metrics: `timeout`,
    /// `not_found`, `backend`, `config`.
    pub fn kind(&self) -> &'static str {
        match self {
            StorageError::Config { .. } => "config",
            StorageError::NotFound { .. } => "not_found",
            StorageError::Timeout { .. } => "timeout",
            StorageError::Backend { .. } => "backend",
        }
    }
}

/// One store in its role. Every call has a time-out and its outcome feeds
/// the store's [`Health`].
#[derive(Clone)]
pub struct Store {
    role: Role,
    inner: Arc<dyn ObjectStore>,
    description: String,
    health: Arc<Health>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Store({}: {})", self.role, self.description)
    }
}

impl Store {
    /// Builds the store `config` describes; its calls report to `health`.
    pub fn build(role: Role, config: &StoreConfig, health: Arc<Health>) -> Result<Store> {
        let config_error = |what: &str, reason: String| StorageError::Config {
            role,
            what: what.into(),
            reason,
        };
        match config {
            StoreConfig::Local { path } => {
                let store = DurableLocalStore::new(path)
                    .map_err(|e| config_error(&path.display().to_string(), e.to_string()))?;
                Ok(Store::new(
                    role,
                    Arc::new(store),
                    format!("local directory {}", path.display()),
                    health,
                ))
            }
            StoreConfig::S3(s3) => {
                // Reel has its own time-outs, failover and retries: the
                // client must fail fast instead of retrying for minutes.
                let timeouts = health.config();
                let client = object_store::ClientOptions::new()
                    .with_connect_timeout(timeouts.op_timeout)
                    .with_timeout(timeouts.timeout_for(64 << 20));
                let retry = object_store::RetryConfig {
                    max_retries: 1,
                    retry_timeout: timeouts.op_timeout,
                    ..Default::default()
                };
                let mut builder = object_store::aws::AmazonS3Builder::new()
                    .with_client_options(client)
                    .with_retry(retry)
                    .with_region(&s3.region)
                    .with_bucket_name(&s3.bucket)
                    .with_allow_http(s3.allow_http)
                    .with_virtual_hosted_style_request(!s3.path_style);
                if let Some(endpoint) = &s3.endpoint {
                    builder = builder.with_endpoint(endpoint);
                }
                if let Some(key) = &s3.access_key_id {
                    builder = builder.with_access_key_id(key);
                }
                if let Some(secret) = &s3.secret_access_key {
                    builder = builder.with_secret_access_key(secret.expose());
                }
                let s3_store = builder
                    .build()
                    .map_err(|e| config_error(&format!("bucket {}", s3.bucket), e.to_string()))?;
                let description = format!(
                    "s3 bucket {} at {}",
                    s3.bucket,
                    s3.endpoint.as_deref().unwrap_or("AWS")
                );
                let store: Arc<dyn ObjectStore> =
                    match s3.prefix.as_deref().map(|p| p.trim_matches('/')) {
                        Some(prefix) if !prefix.is_empty() => {
                            Arc::new(object_store::prefix::PrefixStore::new(s3_store, prefix))
                        }
                        _ => Arc::new(s3_store),
                    };
                Ok(Store::new(role, store, description, health))
            }
        }
    }

    /// Wraps any object_store backend (fault-injecting ones in tests).
    pub fn new(
        role: Role,
        inner: Arc<dyn ObjectStore>,
        description: impl Into<String>,
        health: Arc<Health>,
    ) -> Store {
        Store {
            role,
            inner,
            description: description.into(),
            health,
        }
    }

    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn description(&self) -> &str {
        &self.description
    }

    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    /// Runs one call with a time-out and reports its outcome to the health
    /// tracker. "Not found" is an answer, not a failure of the store.
    async fn call<T>(
        &self,
        op: &'static str,
        key: &Path,
        timeout: Duration,
        call: impl Future<Output = object_store::Result<T>>,
    ) -> Result<T> {
        let outcome = tokio::time::timeout(timeout, call).await;
        self.report(op, key, timeout, outcome)
    }

    /// Maps an object_store outcome (or a time-out) to a [`StorageError`]
    /// and tells the health tracker.
    fn report<T>(
        &self,
        op: &'static str,
        key: &Path,
        timeout: Duration,
        outcome: std::result::Result<object_store::Result<T>, tokio::time::error::Elapsed>,
    ) -> Result<T> {
        let outcome = match outcome {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(object_store::Error::NotFound { .. })) => Err(StorageError::NotFound {
                role: self.role,
                key: key.to_string(),
            }),
            Ok(Err(source)) => Err(StorageError::Backend {
                role: self.role,
                op,
                key: key.to_string(),
                source,
            }),
            Err(_) => Err(StorageError::Timeout {
                role: self.role,
                op,
                key: key.to_string(),
                after: timeout,
            }),
        };
        let transition = match &outcome {
            Ok(_) | Err(StorageError::NotFound { .. }) => self.health.record_success(),
            Err(e) => self.health.record_failure(&e.to_string()),
        };
        if let Some(t) = transition {
            tracing::warn!(store = %t.role, from = %t.from, to = %t.to, reason = %t.reason, "store state changed");
        }
        outcome
    }

    /// Stores `bytes` under `key`, replacing any object there. Durable when
    /// the future resolves with `Ok`. A failure (a time-out above all) does
    /// not say the object is absent: the store may have kept it.
    pub async fn put(&self, key: &Path, bytes: Bytes) -> Result<()> {
        let timeout = self.health.config().timeout_for(bytes.len() as u64);
        self.call(
            "put",
            key,
            timeout,
            self.inner.put(key, PutPayload::from_bytes(bytes)),
        )
        .await
        .map(|_| ())
    }

    /// The whole object. `size_hint` (when known) stretches the time-out.
    pub async fn get(&self, key: &Path, size_hint: Option<u64>) -> Result<Bytes> {
        let timeout = self.health.config().timeout_for(size_hint.unwrap_or(0));
        self.call("get", key, timeout, async {
            self.inner.get(key).await?.bytes().await
        })
        .await
    }

    pub async fn get_range(&self, key: &Path, range: Range<u64>) -> Result<Bytes> {
        let timeout = self.health.config().timeout_for(range.end - range.start);
        self.call("get_range", key, timeout, self.inner.get_range(key, range))
            .await
    }

    /// Streams `range` of the object at `key` as it arrives, for reads too
    /// large to hold at once. The request and then every chunk must come
    /// within the store's op time-out, so a store that hangs mid-body fails
    /// the stream instead of stalling it; each outcome feeds the health
    /// tracker like any call.
    pub async fn get_range_stream(
        &self,
        key: &Path,
        range: Range<u64>,
    ) -> Result<BoxStream<'static, Result<Bytes>>> {
        let timeout = self.health.config().op_timeout;
        let options = object_store::GetOptions {
            range: Some(object_store::GetRange::Bounded(range)),
            ..Default::default()
        };
        let body = self
            .call("get_range", key, timeout, self.inner.get_opts(key, options))
            .await?
            .into_stream();
        let store = self.clone();
        let key = key.clone();
        Ok(futures::stream::unfold(Some(body), move |body| {
            let store = store.clone();
            let key = key.clone();
            async move {
                let mut body = body?;
                let next = tokio::time::timeout(timeout, body.next()).await;
                let item = match next {
                    Ok(None) => return None,
                    Ok(Some(chunk)) => store.report("get_range", &key, timeout, Ok(chunk)),
                    Err(elapsed) => store.report::<Bytes>("get_range", &key, timeout, Err(elapsed)),
                };
                let keep = item.is_ok().then_some(body);
                Some((item, keep))
            }
        })
        .boxed())
    }

    /// The last `len` bytes of the object, and the object's whole size, in
    /// one request.
    pub async fn get_tail(&self, key: &Path, len: u64) -> Result<(Bytes, u64)> {
        let timeout = self.health.config().timeout_for(len);
        let options = object_store::GetOptions {
            range: Some(object_store::GetRange::Suffix(len)),
            ..Default::default()
        };
        self.call("get_tail", key, timeout, async {
            let result = self.inner.get_opts(key, options).await?;
            let size = result.meta.size;
            Ok((result.bytes().await?, size))
        })
        .await
    }

    /// Size of the object at `key`.
    pub async fn head(&self, key: &Path) -> Result<u64> {
        let timeout = self.health.config().op_timeout;
        self.call("head", key, timeout, self.inner.head(key))
            .await
            .map(|m| m.size)
    }

    /// Deletes `key`; deleting what is not there is not an error.
    pub async fn delete(&self, key: &Path) -> Result<()> {
        let timeout = self.health.config().op_timeout;
        match self
            .call("delete", key, timeout, self.inner.delete(key))
            .await
        {
            Ok(()) | Err(StorageError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Every object under `prefix` with its size.
    pub async fn list(&self, prefix: Option<&Path>) -> Result<Vec<(Path, u64)>> {
        let what = prefix.cloned().unwrap_or_default();
        let timeout = self.health.config().op_timeout * 10;
        self.call(
            "list",
            &what,
            timeout,
            self.inner
                .list(prefix)
                .map_ok(|m| (m.location, m.size))
                .try_collect(),
        )
        .await
    }

    /// Writes, reads back and deletes a small object: is the store really
    /// working? The whole round trip has one time-out. Unlike the other
    /// calls it does not report to the health tracker: the caller (the
    /// engine's prober) does, through `Health::probe_finished`, so that a
    /// probe counts as a probe and not as three ordinary calls.
    pub async fn probe(&self, token: &str) -> std::result::Result<(), String> {
        let key = keys::probe(token);
        let body = Bytes::from(format!("reel probe {token}"));
        let timeout = self.health.config().op_timeout;
        let run = async {
            self.inner
                .put(&key, PutPayload::from_bytes(body.clone()))
                .await
                .map_err(|e| format!("probe write: {e}"))?;
            let got = self
                .inner
                .get(&key)
                .await
                .map_err(|e| format!("probe read: {e}"))?
                .bytes()
                .await
                .map_err(|e| format!("probe read: {e}"))?;
            if got != body {
                return Err("probe read back different bytes".to_string());
            }
            self.inner
                .delete(&key)
                .await
                .map_err(|e| format!("probe delete: {e}"))
        };
        match tokio::time::timeout(timeout * 3, run).await {
            Ok(r) => r,
            Err(_) => Err(format!("probe timed out after {:?}", timeout * 3)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_store_round_trip_and_missing_objects() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::build(
            Role::Primary,
            &StoreConfig::Local {
                path: dir.path().join("primary"),
            },
            Arc::new(Health::new(
                Role::Primary,
                HealthConfig::default(),
                reel_clock::system(),
            )),
        )
        .unwrap();
        let key = keys::segment("01JDQ8Z6W5G8R0F1T4Y9M2K3XN", 3);
        store
            .put(&key, Bytes::from_static(b"segment bytes"))
            .await
            .unwrap();
        assert_eq!(&store.get(&key, None).await.unwrap()[..], b"segment bytes");
        assert_eq!(&store.get_range(&key, 8..13).await.unwrap()[..], b"bytes");
        assert_eq!(store.list(None).await.unwrap(), vec![(key.clone(), 13)]);
        assert!(dir.path().join("primary").join(key.as_ref()).exists());
        store.delete(&key).await.unwrap();
        store.delete(&key).await.unwrap();
        let err = store.get(&key, None).await.unwrap_err();
        assert!(matches!(err, StorageError::NotFound { .. }), "{err}");
    }

    #[test]
    fn s3_config_parses_from_toml() {
        let cfg: StoreConfig = toml::from_str(
            r#"
type = "s3"
endpoint = "http://127.0.0.1:3900"
region = "garage"
bucket = "rec"
allow_http = true
"#,
        )
        .unwrap();
        let StoreConfig::S3(s3) = cfg else {
            panic!("not s3")
        };
        assert!(s3.path_style);
        assert_eq!(s3.region, "garage");
        let health = Arc::new(Health::new(
            Role::Secondary,
            HealthConfig::default(),
            reel_clock::system(),
        ));
        Store::build(Role::Secondary, &StoreConfig::S3(s3), health).unwrap();
    }
}
