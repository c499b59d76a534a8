//! reeld's configuration: built-in defaults, then a TOML file, then flags
//! and environment variables, each overriding the one before.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use reel_engine::{EngineConfig, ReleaseAfter, UploadMode};
use reel_storage::{HealthConfig, S3Config, StoreConfig};
use serde::{Deserialize, Deserializer};

/// reeld: Reel's session-recording server.
///
/// With no arguments it runs on the embedded default: data under
/// ./reel-data, the primary and secondary stores as the local directories
/// ./reel-data/primary and ./reel-data/secondary, gRPC ingest on
/// 127.0.0.1:7700 and the HTTP API on 127.0.0.1:7701. A TOML file (--config)
/// overrides the defaults; flags and REEL_* environment variables override
/// the file. See the README for every setting of the file.
#[derive(Debug, Parser)]
#[command(name = "reeld", version)]
pub struct Args {
    /// TOML configuration file.
    #[arg(long, short, env = "REEL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (journal, spool, catalog).
    #[arg(long, env = "REEL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// gRPC ingest address.
    #[arg(long, env = "REEL_GRPC_LISTEN")]
    pub grpc_listen: Option<SocketAddr>,
    /// HTTP API address.
    #[arg(long, env = "REEL_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,
    /// Use this local directory as the primary store.
    #[arg(long, env = "REEL_PRIMARY_DIR")]
    pub primary_dir: Option<PathBuf>,
    /// Use this local directory as the secondary store.
    #[arg(long, env = "REEL_SECONDARY_DIR")]
    pub secondary_dir: Option<PathBuf>,
    /// Seal a segment once its oldest event is this old (e.g. 30s, 2m).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub segment_max_age: Option<Duration>,
    /// Seal a segment once it holds this many bytes of events.
    #[arg(long)]
    pub segment_target_bytes: Option<u64>,
    /// Refuse ingest while the data directory has less free space than this.
    #[arg(long)]
    pub min_free_disk_bytes: Option<u64>,
    /// Refuse ingest while the local log (journal and spool) holds this much.
    #[arg(long)]
    pub local_capacity_bytes: Option<u64>,
    /// Do not recombine in the background (`reel compact` still does).
    #[arg(long)]
    pub no_compactor: bool,
    /// Log filter, e.g. `info`, `reel_engine=debug`.
    #[arg(long, env = "REEL_LOG")]
    pub log: Option<String>,
    /// Print the effective configuration and exit.
    #[arg(long)]
    pub print_config: bool,
}

/// The `[...]` sections of the TOML file. Every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub grpc_listen: Option<SocketAddr>,
    pub http_listen: Option<SocketAddr>,
    pub log: Option<String>,
    pub primary: Option<StoreConfig>,
    pub secondary: Option<StoreConfig>,
    #[serde(default)]
    pub ingest: IngestSection,
    #[serde(default)]
    pub segments: SegmentSection,
    #[serde(default)]
    pub journal: JournalSection,
    #[serde(default)]
    pub upload: UploadSection,
    #[serde(default)]
    pub cache: CacheSection,
    #[serde(default)]
    pub health: HealthSection,
    #[serde(default)]
    pub compactor: CompactorSection,
    #[serde(default)]
    pub retention: RetentionSection,
    #[serde(default)]
    pub http: HttpSection,
    #[serde(default)]
    pub keys: KeysSection,
    /// TLS on both listeners (and mTLS for recorders with `client_ca_file`).
    pub tls: Option<TlsConfig>,
}

/// `[tls]`: PEM files. With `client_ca_file`, every gRPC client must show a
/// certificate that CA signed; its common name is then the recorder's
/// identity (role `recorder`) unless it also sends a token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

/// `[http]`: the HTTP API's own settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    /// Serve `/metrics` without a token (to a scraper on a trusted network).
    #[serde(default)]
    pub open_metrics: bool,
}

/// Retention rules; see `reel_engine::RetentionConfig`.
///
/// ```toml
/// [retention]
/// interval = "1h"
/// min_age = "7d"
/// [[retention.rules]]
/// older_than = "90d"
/// [[retention.rules]]
/// older_than = "3y"
/// label = "env=prod"
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSection {
    #[serde(default, deserialize_with = "duration")]
    pub interval: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub min_age: Option<Duration>,
    #[serde(default)]
    pub rules: Vec<RetentionRuleSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionRuleSection {
    #[serde(deserialize_with = "required_duration")]
    pub older_than: Duration,
    pub user: Option<String>,
    pub target: Option<String>,
    pub protocol: Option<String>,
    /// `key` or `key=value`.
    pub label: Option<String>,
}

impl RetentionSection {
    fn apply(&self, r: &mut reel_engine::RetentionConfig) {
        if let Some(v) = self.interval {
            r.interval = v.max(Duration::from_millis(100));
        }
        if let Some(v) = self.min_age {
            r.min_age = v;
        }
        r.rules = self
            .rules
            .iter()
            .map(|rule| reel_engine::RetentionRule {
                older_than: rule.older_than,
                user: rule.user.clone(),
                target: rule.target.clone(),
                protocol: rule.protocol.clone(),
                label: rule.label.as_ref().map(|l| match l.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (l.clone(), None),
                }),
            })
            .collect();
    }
}

fn required_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(serde::de::Error::custom)
}

/// `[keys]`: encryption at rest. The master key itself is never in this
/// file (`<data_dir>/keys/` or `REEL_MASTER_KEY`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysSection {
    /// Encrypt recordings started from now on (default true); `false` only
    /// to measure what encryption costs.
    pub encrypt: Option<bool>,
    /// The AEAD of new recordings' data keys: `xaes-256-gcm` (default) or
    /// `xchacha20-poly1305` (faster only on a CPU without AES instructions).
    pub cipher: Option<String>,
}

/// The read cache; see `reel_engine::CacheConfig`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSection {
    /// Bytes of stored segments kept locally for reads (0: no cache).
    pub max_bytes: Option<u64>,
    #[serde(default, deserialize_with = "duration")]
    pub max_age: Option<Duration>,
}

impl CacheSection {
    fn apply(&self, c: &mut reel_engine::CacheConfig) {
        if let Some(v) = self.max_bytes {
            c.max_bytes = v;
        }
        if let Some(v) = self.max_age {
            c.max_age = v;
        }
    }
}

/// Recombination; see `reel_engine::CompactorConfig`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompactorSection {
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "duration")]
    pub interval: Option<Duration>,
    pub max_bytes_per_second: Option<u64>,
    pub verify_read_back: Option<bool>,
}

impl CompactorSection {
    fn apply(&self, c: &mut reel_engine::CompactorConfig) {
        if let Some(v) = self.enabled {
            c.enabled = v;
        }
        if let Some(v) = self.interval {
            c.interval = v.max(Duration::from_millis(10));
        }
        if let Some(v) = self.max_bytes_per_second {
            c.max_bytes_per_second = v;
        }
        if let Some(v) = self.verify_read_back {
            c.verify_read_back = v;
        }
    }
}

/// How stores are judged; see `reel_storage::HealthConfig`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSection {
    #[serde(default, deserialize_with = "duration")]
    pub op_timeout: Option<Duration>,
    pub failure_threshold: Option<u32>,
    #[serde(default, deserialize_with = "duration")]
    pub suspect_window: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub probe_interval: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub healthy_probe_interval: Option<Duration>,
    pub recovery_successes: Option<u32>,
}

impl HealthSection {
    fn apply(&self, h: &mut HealthConfig) {
        if let Some(v) = self.op_timeout {
            h.op_timeout = v;
        }
        if let Some(v) = self.failure_threshold {
            h.failure_threshold = v.max(1);
        }
        if let Some(v) = self.suspect_window {
            h.suspect_window = v;
        }
        if let Some(v) = self.probe_interval {
            h.probe_interval = v;
        }
        if let Some(v) = self.healthy_probe_interval {
            h.healthy_probe_interval = v;
        }
        if let Some(v) = self.recovery_successes {
            h.recovery_successes = v.max(1);
        }
    }
}

/// A store from `<PREFIX>_TYPE` (`local` or `s3`) and its fields:
/// `_PATH` for local; `_ENDPOINT`, `_REGION`, `_BUCKET`, `_ACCESS_KEY_ID`,
/// `_SECRET_ACCESS_KEY`, `_ALLOW_HTTP`, `_PATH_STYLE`, `_PREFIX` for s3.
fn store_from_env(prefix: &str) -> anyhow::Result<Option<StoreConfig>> {
    let var = |name: &str| {
        std::env::var(format!("{prefix}_{name}"))
            .ok()
            .filter(|v| !v.is_empty())
    };
    let flag = |name: &str, default: bool| -> anyhow::Result<bool> {
        match var(name).as_deref() {
            None => Ok(default),
            Some("1" | "true" | "yes") => Ok(true),
            Some("0" | "false" | "no") => Ok(false),
            Some(other) => anyhow::bail!("{prefix}_{name}={other:?}: use true or false"),
        }
    };
    match var("TYPE").as_deref() {
        None => Ok(None),
        Some("local") => {
            let path = var("PATH")
                .ok_or_else(|| anyhow::anyhow!("{prefix}_TYPE=local needs {prefix}_PATH"))?;
            Ok(Some(StoreConfig::Local { path: path.into() }))
        }
        Some("s3") => Ok(Some(StoreConfig::S3(S3Config {
            endpoint: var("ENDPOINT"),
            region: var("REGION").unwrap_or_else(|| "us-east-1".into()),
            bucket: var("BUCKET")
                .ok_or_else(|| anyhow::anyhow!("{prefix}_TYPE=s3 needs {prefix}_BUCKET"))?,
            access_key_id: var("ACCESS_KEY_ID"),
            secret_access_key: var("SECRET_ACCESS_KEY").map(Into::into),
            allow_http: flag("ALLOW_HTTP", false)?,
            path_style: flag("PATH_STYLE", true)?,
            prefix: var("PREFIX"),
        }))),
        Some(other) => anyhow::bail!("{prefix}_TYPE={other:?}: use local or s3"),
    }
}

/// gRPC ingest streams open at once, by default: above the open recordings
/// a bastion fleet keeps, below what would exhaust the process's memory.
pub const DEFAULT_MAX_STREAMS: usize = 50_000;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSection {
    pub max_event_bytes: Option<usize>,
    pub max_batch_bytes: Option<usize>,
    /// Recordings open at once (attached or resumable).
    pub max_open_recordings: Option<usize>,
    /// gRPC ingest streams open at once.
    pub max_streams: Option<usize>,
    pub min_free_disk_bytes: Option<u64>,
    /// The most the local log may hold while the stores cannot take it.
    pub local_capacity_bytes: Option<u64>,
    #[serde(default, deserialize_with = "duration")]
    pub detached_timeout: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentSection {
    pub target_bytes: Option<u64>,
    #[serde(default, deserialize_with = "duration")]
    pub max_age: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalSection {
    pub file_bytes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadSection {
    pub concurrency: Option<usize>,
    /// `failover` (the default) or `mirror`.
    pub mode: Option<String>,
    /// Mirror mode: `one` (the default) or `both`.
    pub release_after: Option<String>,
    /// Mirror mode: store-to-store copies at most this fast (0: no limit).
    pub catch_up_bytes_per_second: Option<u64>,
}

/// `[upload] mode` and `release_after`, checked together: `release_after`
/// means nothing in failover mode, and saying it there is a mistake.
fn upload_mode(section: &UploadSection) -> anyhow::Result<UploadMode> {
    let release_after = match section.release_after.as_deref() {
        None | Some("one") => ReleaseAfter::One,
        Some("both") => ReleaseAfter::Both,
        Some(other) => {
            anyhow::bail!("upload.release_after must be \"one\" or \"both\", not {other:?}")
        }
    };
    match section.mode.as_deref() {
        None | Some("failover") => {
            anyhow::ensure!(
                section.release_after.is_none(),
                "upload.release_after applies to mode = \"mirror\" only"
            );
            Ok(UploadMode::Failover)
        }
        Some("mirror") => Ok(UploadMode::Mirror { release_after }),
        Some(other) => {
            anyhow::bail!("upload.mode must be \"failover\" or \"mirror\", not {other:?}")
        }
    }
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    s.map(|s| humantime::parse_duration(&s).map_err(serde::de::Error::custom))
        .transpose()
}

/// Everything reeld needs to run.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub engine: EngineConfig,
    /// gRPC ingest streams open at once; one more is refused
    /// (RESOURCE_EXHAUSTED).
    pub max_streams: usize,
    pub grpc_listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub log: String,
    /// `/metrics` without a token.
    pub open_metrics: bool,
    pub tls: Option<TlsConfig>,
}

impl ServerConfig {
    /// reeld's configuration for work done in another process on a stopped
    /// server's data directory (`reel compact --data-dir`, `reel
    /// rebuild-catalog`): `data_dir` and the file `config` as reeld would
    /// read them with its environment, the background compactor off.
    pub fn offline(data_dir: &Path, config: Option<&Path>) -> anyhow::Result<ServerConfig> {
        let mut args = Args::parse_from(["reeld"]);
        args.data_dir = Some(data_dir.to_path_buf());
        if let Some(config) = config {
            args.config = Some(config.to_path_buf());
        }
        args.no_compactor = true;
        ServerConfig::load(&args)
    }

    /// Defaults, overridden by the file (if any), overridden by `args`.
    pub fn load(args: &Args) -> anyhow::Result<ServerConfig> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let data_dir = args
            .data_dir
            .clone()
            .or(file.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from("./reel-data"));
        let mut engine = EngineConfig::new(&data_dir);
        if let Some(p) = file.primary {
            engine.primary = p;
        }
        if let Some(s) = file.secondary {
            engine.secondary = s;
        }
        if let Some(p) = store_from_env("REEL_PRIMARY")? {
            engine.primary = p;
        }
        if let Some(s) = store_from_env("REEL_SECONDARY")? {
            engine.secondary = s;
        }
        // The master key, when it is not to be kept beside the data (see
        // reel_keys::FileKeys): only from the environment, never a flag
        // (flags show in `ps`) or the file.
        engine.master_key = std::env::var("REEL_MASTER_KEY")
            .ok()
            .filter(|k| !k.trim().is_empty())
            .map(reel_storage::Secret::new);
        if let Some(path) = &args.primary_dir {
            engine.primary = StoreConfig::Local { path: path.clone() };
        }
        if let Some(path) = &args.secondary_dir {
            engine.secondary = StoreConfig::Local { path: path.clone() };
        }
        let set = |target: &mut u64, v: Option<u64>| {
            if let Some(v) = v {
                *target = v;
            }
        };
        set(&mut engine.segment_target_bytes, file.segments.target_bytes);
        set(&mut engine.segment_target_bytes, args.segment_target_bytes);
        set(
            &mut engine.min_free_disk_bytes,
            file.ingest.min_free_disk_bytes,
        );
        set(&mut engine.min_free_disk_bytes, args.min_free_disk_bytes);
        set(&mut engine.journal_file_size, file.journal.file_bytes);
        set(
            &mut engine.local_capacity_bytes,
            file.ingest.local_capacity_bytes,
        );
        set(&mut engine.local_capacity_bytes, args.local_capacity_bytes);
        file.health.apply(&mut engine.health);
        file.compactor.apply(&mut engine.compactor);
        file.cache.apply(&mut engine.cache);
        if let Some(v) = file.keys.encrypt {
            engine.encrypt = v;
        }
        if let Some(name) = &file.keys.cipher {
            engine.cipher = reel_engine::Cipher::from_name(name).ok_or_else(|| {
                let names: Vec<_> = reel_engine::Cipher::ALL.iter().map(|c| c.name()).collect();
                anyhow::anyhow!("keys.cipher must be one of {names:?}, not {name:?}")
            })?;
        }
        file.retention.apply(&mut engine.retention);
        if args.no_compactor {
            engine.compactor.enabled = false;
        }
        if let Some(v) = args.segment_max_age.or(file.segments.max_age) {
            engine.segment_max_age = v;
        }
        if let Some(v) = file.ingest.detached_timeout {
            engine.detached_timeout = v;
        }
        if let Some(v) = file.ingest.max_event_bytes {
            engine.max_event_bytes = v;
        }
        if let Some(v) = file.ingest.max_batch_bytes {
            engine.max_batch_bytes = v;
        }
        if let Some(v) = file.ingest.max_open_recordings {
            engine.max_open_recordings = v;
        }
        if let Some(v) = file.upload.concurrency {
            engine.upload_concurrency = v;
        }
        engine.upload_mode = upload_mode(&file.upload)?;
        if let Some(v) = file.upload.catch_up_bytes_per_second {
            engine.catch_up_bytes_per_second = v;
        }
        anyhow::ensure!(
            engine.max_event_bytes <= engine.max_batch_bytes,
            "ingest.max_event_bytes ({}) must not exceed ingest.max_batch_bytes ({})",
            engine.max_event_bytes,
            engine.max_batch_bytes
        );
        anyhow::ensure!(
            (1 << 20..=1 << 30).contains(&engine.journal_file_size),
            "journal.file_bytes must be between 1 MiB and 1 GiB"
        );
        // What every reader of segments and archives checks them against.
        anyhow::ensure!(
            engine.segment_target_bytes <= reel_log::limits::MAX_SEGMENT_TARGET_BYTES,
            "segments.target_bytes ({}) must be at most {} (32 MiB)",
            engine.segment_target_bytes,
            reel_log::limits::MAX_SEGMENT_TARGET_BYTES
        );
        anyhow::ensure!(
            engine.max_batch_bytes as u64 <= reel_log::limits::MAX_BATCH_BYTES,
            "ingest.max_batch_bytes ({}) must be at most {} (63 MiB)",
            engine.max_batch_bytes,
            reel_log::limits::MAX_BATCH_BYTES
        );
        Ok(ServerConfig {
            max_streams: file.ingest.max_streams.unwrap_or(DEFAULT_MAX_STREAMS),
            open_metrics: file.http.open_metrics,
            tls: file.tls.clone(),
            engine,
            grpc_listen: args
                .grpc_listen
                .or(file.grpc_listen)
                .unwrap_or_else(|| "127.0.0.1:7700".parse().expect("valid address")),
            http_listen: args
                .http_listen
                .or(file.http_listen)
                .unwrap_or_else(|| "127.0.0.1:7701".parse().expect("valid address")),
            log: args
                .log
                .clone()
                .or(file.log)
                .unwrap_or_else(|| "info".into()),
        })
    }
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| anyhow::anyhow!("config file {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_flags_override_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reel.toml");
        std::fs::write(
            &path,
            r#"
data_dir = "/var/lib/reel"
http_listen = "0.0.0.0:8080"
[segments]
max_age = "30s"
[primary]
type = "s3"
endpoint = "http://127.0.0.1:9000"
bucket = "recordings"
allow_http = true
"#,
        )
        .unwrap();
        let args = Args::parse_from([
            "reeld",
            "--config",
            path.to_str().unwrap(),
            "--grpc-listen",
            "127.0.0.1:9999",
        ]);
        let cfg = ServerConfig::load(&args).unwrap();
        assert_eq!(cfg.engine.data_dir, PathBuf::from("/var/lib/reel"));
        assert_eq!(cfg.http_listen.to_string(), "0.0.0.0:8080");
        assert_eq!(cfg.grpc_listen.to_string(), "127.0.0.1:9999");
        assert_eq!(cfg.engine.segment_max_age, Duration::from_secs(30));
        assert!(matches!(cfg.engine.primary, StoreConfig::S3(_)));
        assert_eq!(
            cfg.engine.secondary,
            StoreConfig::Local {
                path: PathBuf::from("/var/lib/reel/secondary")
            }
        );
    }

    /// Loads `text` as reeld's configuration file.
    fn load_text(text: &str) -> anyhow::Result<ServerConfig> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reel.toml");
        std::fs::write(&path, text).unwrap();
        ServerConfig::load(&Args::parse_from([
            "reeld",
            "--config",
            path.to_str().unwrap(),
        ]))
    }

    #[test]
    fn sizes_beyond_what_readers_accept_are_refused() {
        for (text, want) in [
            (
                "[segments]\ntarget_bytes = 1073741824\n",
                "segments.target_bytes",
            ),
            (
                "[ingest]\nmax_batch_bytes = 1073741824\n",
                "ingest.max_batch_bytes",
            ),
        ] {
            let err = load_text(text).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
    }

    #[test]
    fn upload_modes() {
        let load = |text: &str| load_text(text).map(|c| c.engine.upload_mode);
        assert_eq!(load("").unwrap(), UploadMode::Failover);
        assert_eq!(
            load("[upload]\nmode = \"mirror\"\n").unwrap(),
            UploadMode::Mirror {
                release_after: ReleaseAfter::One
            }
        );
        assert_eq!(
            load("[upload]\nmode = \"mirror\"\nrelease_after = \"both\"\n").unwrap(),
            UploadMode::Mirror {
                release_after: ReleaseAfter::Both
            }
        );
        for (text, want) in [
            ("[upload]\nmode = \"mirrored\"\n", "upload.mode must be"),
            (
                "[upload]\nmode = \"mirror\"\nrelease_after = \"all\"\n",
                "upload.release_after must be",
            ),
            (
                "[upload]\nrelease_after = \"both\"\n",
                "applies to mode = \"mirror\" only",
            ),
        ] {
            let err = format!("{:#}", load(text).unwrap_err());
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn the_cipher_of_new_recordings() {
        let load = |text: &str| load_text(text).map(|c| c.engine.cipher);
        assert_eq!(load("").unwrap(), reel_engine::Cipher::Xaes256Gcm);
        assert_eq!(
            load("[keys]\ncipher = \"xchacha20-poly1305\"\n").unwrap(),
            reel_engine::Cipher::XChaCha20Poly1305
        );
        let err = load("[keys]\ncipher = \"aes-128-cbc\"\n").unwrap_err();
        assert!(
            err.to_string().contains("keys.cipher") && err.to_string().contains("xaes-256-gcm"),
            "{err}"
        );
    }

    #[test]
    fn stores_from_the_environment() {
        // SAFETY: names no other test reads; set before any read here.
        unsafe {
            std::env::set_var("REELTEST_S3_TYPE", "s3");
            std::env::set_var("REELTEST_S3_ENDPOINT", "http://127.0.0.1:9000");
            std::env::set_var("REELTEST_S3_BUCKET", "recordings");
            std::env::set_var("REELTEST_S3_ALLOW_HTTP", "true");
            std::env::set_var("REELTEST_S3_PREFIX", "reel/");
            std::env::set_var("REELTEST_LOCAL_TYPE", "local");
            std::env::set_var("REELTEST_BAD_TYPE", "s3");
            std::env::set_var("REELTEST_FLAG_TYPE", "s3");
            std::env::set_var("REELTEST_FLAG_BUCKET", "b");
            std::env::set_var("REELTEST_FLAG_ALLOW_HTTP", "maybe");
        }
        let Some(StoreConfig::S3(s3)) = store_from_env("REELTEST_S3").unwrap() else {
            panic!("an s3 store");
        };
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(
            (s3.bucket.as_str(), s3.region.as_str()),
            ("recordings", "us-east-1")
        );
        assert!(s3.allow_http && s3.path_style);
        assert_eq!(s3.prefix.as_deref(), Some("reel/"));
        assert!(store_from_env("REELTEST_NONE").unwrap().is_none());
        let err = |p| store_from_env(p).unwrap_err().to_string();
        assert!(err("REELTEST_LOCAL").contains("REELTEST_LOCAL_PATH"));
        assert!(err("REELTEST_BAD").contains("REELTEST_BAD_BUCKET"));
        assert!(err("REELTEST_FLAG").contains("use true or false"));
    }

    #[test]
    fn unknown_keys_are_a_clear_error() {
        let err = load_text("data_dri = \"x\"\n").unwrap_err().to_string();
        assert!(err.contains("data_dri"), "{err}");
    }
}
