//! The JSON documents of `reeld`'s HTTP API (`/api/v1/...`). The server
//! produces them and the `reel` CLI reads them; both use these types.
//!
//! Times are microseconds: `*_at_us` since the Unix epoch, other `*_us`
//! from the start of the recording.

pub mod display;
mod time;

use std::collections::BTreeMap;

pub use time::{parse_instant, parse_offset, system_time};

/// How an export in asciicast form marks events that are lost (no intact
/// copy): an `"m"` event whose label starts with this.
pub const GAP_MARKER: &str = "reel: gap: ";

use serde::{Deserialize, Serialize};

/// One line of `reel ls` / an item of `GET /api/v1/recordings`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordingSummary {
    pub id: String,
    pub user: String,
    pub target: String,
    pub protocol: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub started_at_us: i64,
    pub duration_us: u64,
    /// `open` or `closed`.
    pub state: String,
    /// `closed` (by the recorder) or `interrupted` (by the server).
    #[serde(default)]
    pub close_reason: String,
    /// Durable events (sealed and unsealed).
    pub event_count: u64,
    /// Event payload bytes.
    pub data_bytes: u64,
    pub segment_count: u64,
    /// Where the bytes are: `local`, `primary`, `secondary`, `split`, or a
    /// `+`-joined mix.
    pub placement: String,
    /// Every byte can be read right now (each segment has a copy locally
    /// or on a store that is up).
    #[serde(default)]
    pub readable: bool,
    /// Where a read takes its bytes from now: `local`, `primary`,
    /// `secondary`, `+`-joined in the order first needed.
    #[serde(default)]
    pub read_from: String,
    /// What cannot be read now, and on which stores it waits.
    #[serde(default)]
    pub unreadable: Option<String>,
    /// A recorder is streaming into it right now.
    pub attached: bool,
    #[serde(default)]
    pub damage: Vec<String>,
}

/// `GET /api/v1/recordings`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordingList {
    pub recordings: Vec<RecordingSummary>,
    /// Pass as `after` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// One segment of `reel show`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentSummary {
    pub sequence: u64,
    pub first_event_index: u64,
    pub event_count: u64,
    pub start_time_us: u64,
    pub end_time_us: u64,
    pub data_bytes: u64,
    /// Size of the segment object.
    pub size: u64,
    pub sha256: String,
    /// `local`, `primary`, `secondary`.
    pub locations: Vec<String>,
    /// Stores where a failed put may still have left a copy.
    #[serde(default)]
    pub uncertain: Vec<String>,
    #[serde(rename = "final")]
    pub is_final: bool,
    /// Where the segment starts inside the recording's combined object,
    /// once recombined.
    #[serde(default)]
    pub combined_offset: Option<u64>,
}

/// A recording's one object on the primary, once recombined.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CombinedObject {
    pub key: String,
    pub size: u64,
    pub sha256: String,
    /// The stores that hold it: `primary`, and in mirror mode `secondary`.
    #[serde(default)]
    pub stores: Vec<String>,
}

/// One recording the compactor has to do (`GET /api/v1/compact`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompactItem {
    pub id: String,
    /// `split`, `secondary` or `segmented`.
    pub reason: String,
    pub segments: u64,
    pub bytes: u64,
    /// Why it cannot be done now, if it cannot.
    pub waiting: Option<String>,
}

/// `GET /api/v1/compact` (and the answer of `POST`): what is left and what
/// the compactor is doing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompactStatus {
    pub plan: Vec<CompactItem>,
    /// The recording being recombined: (id, bytes copied, bytes in all).
    pub current: Option<(String, u64, u64)>,
    pub recombined: u64,
    pub recombined_bytes: u64,
    pub failures: u64,
    pub last_error: Option<String>,
    pub bad_copies: Vec<String>,
    /// Old copies waiting in the deletion queue.
    pub pending_deletions: u64,
}

/// `GET /api/v1/recordings/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordingDetail {
    #[serde(flatten)]
    pub summary: RecordingSummary,
    pub title: String,
    pub terminal: Option<String>,
    pub created_at_us: i64,
    pub closed_at_us: i64,
    /// The identity that started it (a token's name, or `cert:NAME` for a
    /// client certificate); only it may resume the recording.
    #[serde(default)]
    pub owner: String,
    pub segments: Vec<SegmentSummary>,
    /// Why the recording waits for recombination onto the primary (`split`,
    /// `secondary`), if it does.
    pub recombine: Option<String>,
    /// The recording's one object on the primary, once recombined.
    #[serde(default)]
    pub object: Option<CombinedObject>,
    /// The legal hold on it, if any: no purge touches it.
    #[serde(default)]
    pub legal_hold: Option<HoldInfo>,
    /// Durable events still only in the local journal.
    pub unsealed_events: u64,
    pub unsealed_bytes: u64,
}

/// `GET /api/v1/keys/public`: the key the server signs recordings with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublicKeyInfo {
    /// A short name for the key: hex of the first 8 bytes of its SHA-256.
    pub id: String,
    /// Always `ed25519`.
    pub algorithm: String,
    /// The key as PEM (SubjectPublicKeyInfo).
    pub pem: String,
}

/// `GET /api/v1/keys`, and the answer of `POST /api/v1/keys/rotate`: the
/// master keys (by id) and how far their rotation is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MasterKeys {
    /// The master key new data keys are wrapped with.
    pub current: String,
    /// Every master key the server holds, the current one among them.
    pub held: Vec<String>,
    /// Data keys are being wrapped again with the current master key.
    pub rewrapping: bool,
    /// Wrapped data keys the last pass found under an older key and could
    /// not wrap again.
    pub remaining: u64,
    /// Data keys wrapped again since the server started.
    pub rewrapped: u64,
    /// Why the rewrapping waits (a store it cannot reach), if it does.
    pub waiting: Option<String>,
}

/// The answer of `POST /api/v1/keys/rotate/finish`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetiredMasterKeys {
    /// Older master keys destroyed (their files overwritten and removed).
    pub retired: Vec<String>,
    /// Older master keys given in `REEL_MASTER_KEY`: no longer used; remove
    /// them there.
    pub in_environment: Vec<String>,
}

/// `GET /api/v1/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerStatus {
    pub version: String,
    /// Where recorders connect (gRPC).
    pub grpc_listen: String,
    pub data_dir: String,
    pub primary: String,
    pub secondary: String,
    pub journal_bytes: u64,
    pub journal_files: usize,
    pub spool_bytes: u64,
    pub spool_segments: u64,
    pub upload_queue: usize,
    pub open_recordings: usize,
    pub low_disk: Option<String>,
    /// The catalog's files, the audit log not included.
    #[serde(default)]
    pub catalog_bytes: u64,
    /// The catalog's write-ahead log.
    #[serde(default)]
    pub catalog_log_bytes: u64,
    /// The audit log in the catalog: it only grows, by design.
    #[serde(default)]
    pub audit_log_bytes: u64,
    /// Catalog writes held in memory, not yet in its files.
    #[serde(default)]
    pub catalog_memory_bytes: u64,
    /// `failover` (each segment on one store) or `mirror` (on both).
    #[serde(default)]
    pub upload_mode: String,
    /// Mirror mode only: queued segments each store still lacks.
    #[serde(default)]
    pub mirror_backlog: Option<MirrorBacklog>,
    /// The read cache's limit (0: no cache), and what it holds.
    #[serde(default)]
    pub cache_max_bytes: u64,
    #[serde(default)]
    pub cache_bytes: u64,
    #[serde(default)]
    pub cache_segments: u64,
    /// Recordings with bytes only on a store that is down now (counted
    /// only while a store is down).
    #[serde(default)]
    pub unreadable_recordings: u64,
}

/// Mirror mode's backlog in [`ServerStatus`]: what a store that was down
/// (or mirror mode turned on over older recordings) still has to receive.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorBacklog {
    pub primary_segments: u64,
    pub secondary_segments: u64,
    /// Whether this start's scan for the copies a store lacks has
    /// finished: until it has, zero segments does not mean mirrored.
    #[serde(default)]
    pub scanned: bool,
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    /// Machine-readable: `invalid_argument`, `not_found`, ...
    pub code: String,
    /// What went wrong, for people.
    pub error: String,
}

/// One store's health in [`StorageStatus`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreHealth {
    /// `primary` or `secondary`.
    pub role: String,
    /// `healthy`, `suspect`, `down` or `probing`.
    pub state: String,
    /// Seconds in this state.
    pub for_duration: f64,
    /// When it entered this state, seconds since the Unix epoch.
    pub since_unix: f64,
    pub consecutive_failures: u32,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreStatus {
    pub description: String,
    pub health: StoreHealth,
}

/// A failover, failback, or the loss or return of every store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteEvent {
    pub at_unix: f64,
    /// `failover`, `failback`, `both-down`, `store-back`.
    pub kind: String,
    pub from: String,
    pub to: String,
    pub reason: String,
}

/// `GET /api/v1/storage`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StorageStatus {
    pub primary: StoreStatus,
    pub secondary: StoreStatus,
    /// `primary`, `secondary`, or absent while both stores are down.
    pub writing_to: Option<String>,
    /// Sealed segments waiting locally for a store, and their bytes.
    pub backlog_segments: u64,
    pub backlog_bytes: u64,
    pub journal_bytes: u64,
    pub local_capacity_bytes: u64,
    /// Recent failovers and failbacks, oldest first.
    pub events: Vec<RouteEvent>,
}

/// `POST /api/v1/purge`: either `ids`, or `older_than` (a duration such as
/// `90d`, by session start, closed recordings only) with optional `user`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct PurgeRequest {
    #[serde(default)]
    pub ids: Vec<String>,
    #[serde(default)]
    pub older_than: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub dry_run: bool,
    /// Purge recordings that are still open too (refused otherwise: 409).
    #[serde(default)]
    pub force: bool,
    /// Ignored: the audit log names the caller's authenticated identity.
    #[serde(default)]
    pub by: String,
    /// Why, for the audit log.
    #[serde(default)]
    pub reason: String,
}

/// A recording a purge left alone, and why (legal hold, unknown id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refusal {
    pub id: String,
    pub reason: String,
}

/// The answer of `POST /api/v1/purge` and `POST /api/v1/retention`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PurgeResponse {
    /// Purged (gone from listings and reads; objects on their way out), or
    /// with `dry_run`, what would be.
    pub purged: Vec<String>,
    pub refused: Vec<Refusal>,
    pub dry_run: bool,
}

/// `POST /api/v1/recordings/{id}/hold` and `DELETE` of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HoldRequest {
    /// Ignored: the audit log names the caller's authenticated identity.
    #[serde(default)]
    pub by: String,
    #[serde(default)]
    pub reason: String,
}

/// A legal hold, as `GET /api/v1/recordings/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HoldInfo {
    pub at_us: i64,
    pub by: String,
    pub reason: String,
}

/// One entry of `GET /api/v1/audit`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub at_us: i64,
    pub by: String,
    /// `purge`, `purged` (every copy deleted), `hold`, `release`.
    pub action: String,
    pub recordings: Vec<String>,
    pub reason: String,
    /// The client's address, for acts that came over the network.
    #[serde(default)]
    pub client: String,
    /// What was asked (a window, a route, a token's roles).
    #[serde(default)]
    pub detail: String,
}

/// `GET /api/v1/audit/verify`: the audit log's hash chain checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditVerify {
    /// Chained entries read.
    pub entries: u64,
    /// Entries from before the log was chained (not provable).
    pub unchained: u64,
    /// The chain's head: how many chained entries there must be.
    pub head_seq: u64,
    /// Every break found; empty when the log is intact.
    pub problems: Vec<String>,
}

/// An API token as `GET /api/v1/tokens` lists it (never its secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub name: String,
    /// recorder, viewer, auditor, custodian, admin.
    pub roles: Vec<String>,
    /// `user=GLOB`, `target=GLOB`, `protocol=GLOB`, `label=K=V`.
    #[serde(default)]
    pub scopes: Vec<String>,
    pub created_at_us: i64,
    /// `None`: never expires.
    #[serde(default)]
    pub expires_at_us: Option<i64>,
    pub created_by: String,
}

/// `POST /api/v1/tokens`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRequest {
    pub name: String,
    pub roles: Vec<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// A lifetime such as `30d`; none: never expires.
    #[serde(default)]
    pub expires: Option<String>,
}

/// The answer to `POST /api/v1/tokens`: the secret, shown this once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewToken {
    #[serde(flatten)]
    pub info: TokenInfo,
    pub token: String,
}

/// One disagreement `reel verify` found (see `reel_engine::Problem`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyProblem {
    /// `missing`, `corrupt`, `chain`, `orphan`.
    pub kind: String,
    /// `primary`, `secondary`, `local`.
    pub store: String,
    pub key: String,
    pub recording: Option<String>,
    pub sequence: Option<u64>,
    pub detail: String,
    /// What repair did about it, if it ran.
    pub repair: Option<String>,
}

/// The report of `POST /api/v1/verify`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyReport {
    pub recordings: u64,
    pub segments: u64,
    pub objects: u64,
    pub bytes_read: u64,
    pub problems: Vec<VerifyProblem>,
    pub damaged: Vec<String>,
    /// With content checks: copies read that carry no signature (sealed
    /// before Reel signed segments).
    #[serde(default)]
    pub unsigned_segments: u64,
    /// With content checks: combined objects whose index carries no
    /// signature (recombined before Reel signed indexes).
    #[serde(default)]
    pub unsigned_indexes: u64,
}

/// A line of the `POST /api/v1/verify` answer (newline-delimited JSON):
/// progress while it runs, then the report or an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifyLine {
    Progress {
        phase: String,
        done: u64,
        total: u64,
    },
    Report(VerifyReport),
    Error(String),
}

/// The answer of `POST /api/v1/archive` (an import).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportResponse {
    pub imported: Vec<String>,
    /// Recordings already in Reel, left as they are.
    pub refused: Vec<Refusal>,
}
