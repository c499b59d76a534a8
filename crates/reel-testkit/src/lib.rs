//! Reel's test kit (dev-only, never shipped): real `reeld` processes on
//! their own data directories and ports, killed for real; recorders that
//! speak the real gRPC protocol; Garage S3 servers started as plain
//! processes; tmpfs mounts for full-disk tests; the soak driver; and the
//! small helpers (events, waits, seeds, bench directories) every test and
//! bench of the workspace shares.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use reel_proto::v1::ingest_client::IngestClient;
use reel_proto::v1::record_request::Request as Req;
use reel_proto::v1::record_response::Response as Resp;
use reel_proto::v1::{
    CloseRecording, Event, EventBatch, RecordRequest, RecordResponse, RecordingMetadata,
    ResumeRecording, StartRecording,
};
use tokio::sync::mpsc as tmpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

pub mod attack;
pub mod soak;

/// `target/<profile>` of the running test or bench executable (which is
/// `target/<profile>/deps/..`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("test binaries live in target/<profile>/deps")
        .to_path_buf()
}

/// The `target/` directory of the running build.
pub fn target_dir() -> PathBuf {
    let profile = profile_dir();
    profile.parent().map_or(profile.clone(), Path::to_path_buf)
}

/// A binary of this workspace (`reeld`, `reel`), next to the running test or
/// bench executable.
pub fn bin(name: &str) -> PathBuf {
    let path = profile_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace binaries first (cargo test builds them)",
        path.display()
    );
    path
}

/// CPU seconds (user and system) this process has used: what a bench
/// reports beside a rate, since the rate of an fsync-bound path moves with
/// the disk and the CPU it costs does not.
pub fn process_cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct it is given; all-zero is a valid
    // rusage.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// Where a bench keeps its data: a temporary directory (removed when
/// dropped) in `REEL_BENCH_DIR` if set, else in the build's `target/`, so
/// that it is on the disk being measured and not in a RAM-backed `/tmp`.
pub fn bench_dir() -> tempfile::TempDir {
    let parent = std::env::var_os("REEL_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(target_dir);
    std::fs::create_dir_all(&parent).expect("bench directory");
    tempfile::tempdir_in(parent).expect("bench directory")
}

/// A `reeld` process.
pub struct Reeld {
    child: Option<Child>,
    pub data_dir: PathBuf,
    pub grpc: String,
    pub http: String,
    pub log: PathBuf,
    args: Vec<String>,
    /// Extra environment of the next launches (e.g. `FAILPOINTS`).
    pub env: Vec<(String, String)>,
    /// Listen on the same addresses on every launch (see
    /// [`pin_ports`](Self::pin_ports)).
    pinned: bool,
    /// For a reeld with TLS: the CA (PEM file) its certificate chains to,
    /// trusted by [`Reeld::request`] and [`Reeld::reel`].
    pub ca_file: Option<PathBuf>,
}

impl Reeld {
    /// Starts `reeld` on `data_dir` with ports chosen by the OS, plus `args`,
    /// and waits until it is ready.
    pub fn start(data_dir: &Path, args: &[&str]) -> anyhow::Result<Reeld> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let mut reeld = Reeld {
            child: None,
            data_dir: data_dir.to_path_buf(),
            grpc: String::new(),
            http: String::new(),
            log: data_dir.with_extension("log"),
            args,
            env: Vec::new(),
            pinned: false,
            ca_file: None,
        };
        reeld.launch()?;
        Ok(reeld)
    }

    /// Later restarts listen where this one does, so that a client
    /// holding the addresses (a recorder reconnecting) finds the server
    /// again.
    pub fn pin_ports(&mut self) {
        self.pinned = true;
    }

    fn launch(&mut self) -> anyhow::Result<()> {
        let address = |url: &str| {
            url.split_once("://")
                .map(|(_, a)| a.to_string())
                .unwrap_or_default()
        };
        let (grpc, http) = if self.pinned {
            (address(&self.grpc), address(&self.http))
        } else {
            ("127.0.0.1:0".to_string(), "127.0.0.1:0".to_string())
        };
        let mut cmd = Command::new(bin("reeld"));
        cmd.arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--grpc-listen", &grpc, "--http-listen", &http])
            .args(&self.args)
            .env(
                "REEL_LOG",
                std::env::var("REEL_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env_remove("REEL_CONFIG")
            .env_remove("FAILPOINTS")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().context("cannot start reeld")?;
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        let log_path = self.log.clone();
        std::thread::spawn(move || {
            let mut log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .ok();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(log) = log.as_mut() {
                    use std::io::Write;
                    let _ = writeln!(log, "{line}");
                }
                if line.contains("reeld ready") {
                    let _ = tx.send(Ok(line));
                } else if line.starts_with("reeld:") {
                    let _ = tx.send(Err(line));
                }
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(line)) => line,
            Ok(Err(error)) => {
                let _ = child.wait();
                bail!("reeld failed to start: {error}");
            }
            Err(_) => {
                let _ = child.kill();
                bail!("reeld did not become ready; see {}", self.log.display());
            }
        };
        let field = |name: &str| -> anyhow::Result<String> {
            let start = line
                .find(&format!("{name}="))
                .ok_or_else(|| anyhow!("no {name}= in {line:?}"))?;
            let rest = &line[start + name.len() + 1..];
            Ok(rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string())
        };
        let scheme = field("scheme").unwrap_or_else(|_| "http".into());
        self.grpc = format!("{scheme}://{}", field("grpc")?);
        self.http = format!("{scheme}://{}", field("http")?);
        self.child = Some(child);
        // Recorders given this endpoint stream with the admin token.
        let token = self.token()?;
        ENDPOINT_TOKENS
            .lock()
            .expect("endpoint tokens")
            .insert(self.grpc.clone(), token);
        Ok(())
    }

    /// The bootstrap admin token reeld wrote to its data directory (read
    /// each time: a rebuilt catalog gets a new one).
    pub fn token(&self) -> anyhow::Result<String> {
        let path = self.data_dir.join("admin.token");
        Ok(std::fs::read_to_string(&path)
            .with_context(|| format!("reeld's admin token {}", path.display()))?
            .trim()
            .to_string())
    }

    /// A request to the HTTP API with the admin token. It fails after five
    /// minutes without an answer: a hung server fails its test instead of
    /// stalling the suite.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut client = reqwest::Client::builder().timeout(Duration::from_secs(300));
        if let Some(ca) = self.ca_file.as_ref().and_then(|f| std::fs::read(f).ok()) {
            client = client.add_root_certificate(
                reqwest::Certificate::from_pem(&ca).expect("a PEM certificate"),
            );
        }
        let request = client
            .build()
            .expect("HTTP client")
            .request(method, format!("{}{path}", self.http));
        match self.token() {
            Ok(token) => request.bearer_auth(token),
            Err(_) => request,
        }
    }

    /// SIGKILL: no shutdown code runs, as in a crash or power loss of the
    /// process.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// True once the process has ended by itself (a crashpoint, a crash),
    /// rather than by [`kill9`](Self::kill9) or [`stop`](Self::stop).
    pub fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))))
    }

    /// SIGTERM and wait: a clean stop.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signalling a child process we own.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            let _ = child.wait();
        }
    }

    /// Starts it again on the same data directory (new ports).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill9();
        self.launch()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Runs the `reel` CLI against this server, with the admin token.
    pub fn reel(&self, args: &[&str]) -> std::process::Output {
        Command::new(bin("reel"))
            .args(["--server", &self.http, "--grpc", &self.grpc])
            .args(args)
            .env_remove("REEL_TOKEN")
            .env("REEL_TOKEN_FILE", self.data_dir.join("admin.token"))
            .envs(self.ca_file.iter().map(|f| ("REEL_CA_FILE", f)))
            .output()
            .expect("run reel")
    }

    /// GET on the HTTP API, with the admin token.
    pub async fn get(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        Ok(self.request(reqwest::Method::GET, path).send().await?)
    }

    /// GET on the HTTP API, decoded as JSON; non-2xx is an error.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let response = self.get(path).await?;
        let status = response.status();
        if !status.is_success() {
            bail!(
                "GET {path}: HTTP {status}: {}",
                response.text().await.unwrap_or_default()
            );
        }
        Ok(response.json().await?)
    }

    /// The recordings of `user` (a first page, oldest first).
    pub async fn recordings_of(&self, user: &str) -> Vec<reel_api::RecordingSummary> {
        let list: reel_api::RecordingList = self
            .get_json(&format!("/api/v1/recordings?user={user}&sort=created"))
            .await
            .expect("list recordings");
        list.recordings
    }

    /// Every event of a recording, through the cast export.
    pub async fn export_events(&self, id: &str) -> anyhow::Result<Vec<Event>> {
        let response = self
            .get(&format!("/api/v1/recordings/{id}/export?format=cast"))
            .await?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            bail!("export {id}: HTTP {status}: {text}");
        }
        Ok(reel_asciicast::parse(&text)?.events)
    }
}

impl Drop for Reeld {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The admin token of each endpoint a [`Reeld`] of this process listens
/// on: [`Recorder::start`] and [`Recorder::resume`] use it.
static ENDPOINT_TOKENS: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<String, String>>,
> = std::sync::LazyLock::new(Default::default);

fn start_request(metadata: RecordingMetadata) -> RecordRequest {
    RecordRequest {
        request: Some(Req::Start(StartRecording {
            metadata: Some(metadata),
        })),
    }
}

fn resume_request(id: &str) -> RecordRequest {
    RecordRequest {
        request: Some(Req::Resume(ResumeRecording {
            recording_id: id.to_string(),
        })),
    }
}

/// A recorder: one gRPC stream carrying one recording.
pub struct Recorder {
    tx: tmpsc::Sender<RecordRequest>,
    responses: Streaming<RecordResponse>,
    pub id: String,
    /// Events the server has acknowledged as durable.
    pub acked: u64,
    /// Events sent so far (the next event's index).
    pub sent: u64,
}

impl Recorder {
    /// A client of `endpoint` sending `token` (none: the admin token of the
    /// harness's reeld there, if any).
    pub async fn client(
        endpoint: &str,
        token: Option<&str>,
    ) -> Result<
        IngestClient<
            tonic::service::interceptor::InterceptedService<
                tonic::transport::Channel,
                impl tonic::service::Interceptor + Clone,
            >,
        >,
        tonic::Status,
    > {
        let token = match token {
            Some(t) => Some(t.to_string()),
            None => ENDPOINT_TOKENS
                .lock()
                .expect("endpoint tokens")
                .get(endpoint)
                .cloned(),
        };
        let value = token
            .map(|t| format!("Bearer {t}").parse::<tonic::metadata::MetadataValue<_>>())
            .transpose()
            .map_err(|_| tonic::Status::invalid_argument("token is not a header value"))?;
        let channel = tonic::transport::Endpoint::from_shared(endpoint.to_string())
            .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?
            .connect()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        Self::client_on(channel, value)
    }

    #[allow(clippy::type_complexity)]
    fn client_on(
        channel: tonic::transport::Channel,
        value: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    ) -> Result<
        IngestClient<
            tonic::service::interceptor::InterceptedService<
                tonic::transport::Channel,
                impl tonic::service::Interceptor + Clone,
            >,
        >,
        tonic::Status,
    > {
        // No client-side size limit: tests check the server's own.
        Ok(
            IngestClient::with_interceptor(channel, move |mut request: tonic::Request<()>| {
                if let Some(v) = &value {
                    request.metadata_mut().insert("authorization", v.clone());
                }
                Ok(request)
            })
            .max_encoding_message_size(usize::MAX),
        )
    }

    async fn open(endpoint: &str, first: RecordRequest) -> Result<Recorder, tonic::Status> {
        Self::open_as(endpoint, None, first).await
    }

    /// Starts a new recording over `channel` (e.g. one with TLS and a
    /// client certificate), sending `token` if given.
    pub async fn start_on(
        channel: tonic::transport::Channel,
        token: Option<&str>,
        metadata: RecordingMetadata,
    ) -> Result<Recorder, tonic::Status> {
        let value = token
            .map(|t| format!("Bearer {t}").parse())
            .transpose()
            .map_err(|_| tonic::Status::invalid_argument("token is not a header value"))?;
        let client = Self::client_on(channel, value)?;
        Self::open_client(client, start_request(metadata)).await
    }

    async fn open_as(
        endpoint: &str,
        token: Option<&str>,
        first: RecordRequest,
    ) -> Result<Recorder, tonic::Status> {
        let client = Self::client(endpoint, token).await?;
        Self::open_client(client, first).await
    }

    async fn open_client(
        mut client: IngestClient<
            tonic::service::interceptor::InterceptedService<
                tonic::transport::Channel,
                impl tonic::service::Interceptor + Clone,
            >,
        >,
        first: RecordRequest,
    ) -> Result<Recorder, tonic::Status> {
        let (tx, rx) = tmpsc::channel(1024);
        tx.send(first).await.expect("fresh channel");
        let mut responses = client.record(ReceiverStream::new(rx)).await?.into_inner();
        match responses.message().await?.and_then(|m| m.response) {
            Some(Resp::Started(s)) => Ok(Recorder {
                tx,
                responses,
                id: s.recording_id,
                acked: s.durable_events,
                sent: s.durable_events,
            }),
            other => Err(tonic::Status::internal(format!(
                "expected Started, got {other:?}"
            ))),
        }
    }

    /// Starts a new recording.
    pub async fn start(
        endpoint: &str,
        metadata: RecordingMetadata,
    ) -> Result<Recorder, tonic::Status> {
        Self::open(endpoint, start_request(metadata)).await
    }

    /// Starts a new recording as the identity of `token`.
    pub async fn start_as(
        endpoint: &str,
        token: &str,
        metadata: RecordingMetadata,
    ) -> Result<Recorder, tonic::Status> {
        Self::open_as(endpoint, Some(token), start_request(metadata)).await
    }

    /// Re-attaches to an open recording as the identity of `token`.
    pub async fn resume_as(
        endpoint: &str,
        token: &str,
        id: &str,
    ) -> Result<Recorder, tonic::Status> {
        Self::open_as(endpoint, Some(token), resume_request(id)).await
    }

    /// Re-attaches to an open recording.
    pub async fn resume(endpoint: &str, id: &str) -> Result<Recorder, tonic::Status> {
        Self::open(endpoint, resume_request(id)).await
    }

    /// Sends a batch without waiting for its acknowledgement.
    pub async fn send(&mut self, events: Vec<Event>) -> Result<(), tonic::Status> {
        let n = events.len() as u64;
        self.send_raw(RecordRequest {
            request: Some(Req::Events(EventBatch {
                first_index: Some(self.sent),
                events,
            })),
        })
        .await?;
        self.sent += n;
        Ok(())
    }

    /// Sends any message.
    pub async fn send_raw(&mut self, message: RecordRequest) -> Result<(), tonic::Status> {
        self.tx
            .send(message)
            .await
            .map_err(|_| tonic::Status::unavailable("stream closed"))
    }

    /// Waits for the next acknowledgement; returns the durable count.
    pub async fn next_ack(&mut self) -> Result<u64, tonic::Status> {
        loop {
            match self.responses.message().await?.and_then(|m| m.response) {
                Some(Resp::Ack(a)) => {
                    self.acked = a.durable_events;
                    return Ok(a.durable_events);
                }
                Some(_) => continue,
                None => return Err(tonic::Status::unavailable("stream ended")),
            }
        }
    }

    /// Sends a batch and waits until it is acknowledged.
    pub async fn append(&mut self, events: Vec<Event>) -> Result<u64, tonic::Status> {
        self.send(events).await?;
        while self.acked < self.sent {
            self.next_ack().await?;
        }
        Ok(self.acked)
    }

    /// Closes the recording; returns (event count, duration).
    pub async fn close(mut self) -> Result<(u64, u64), tonic::Status> {
        self.send_raw(RecordRequest {
            request: Some(Req::Close(CloseRecording { duration_us: 0 })),
        })
        .await?;
        loop {
            match self.responses.message().await?.and_then(|m| m.response) {
                Some(Resp::Closed(c)) => return Ok((c.event_count, c.duration_us)),
                Some(Resp::Ack(a)) => self.acked = a.durable_events,
                Some(_) => continue,
                None => return Err(tonic::Status::unavailable("stream ended before Closed")),
            }
        }
    }
}

/// A small terminal-like event: output text with its index in it, so any
/// misplaced or corrupted event shows.
pub fn terminal_event(recording: usize, index: u64) -> Event {
    Event {
        time_us: index * 1_000,
        kind: reel_proto::v1::EventKind::Output as i32,
        data: format!(
            "rec {recording:04} event {index:08} {}\r\n",
            "x".repeat((index % 64) as usize)
        )
        .into_bytes(),
    }
}

/// Metadata for test recordings.
pub fn metadata(user: &str, target: &str) -> RecordingMetadata {
    RecordingMetadata {
        user: user.into(),
        target: target.into(),
        protocol: "ssh".into(),
        ..Default::default()
    }
}

/// A small deterministic random generator (xorshift64*), so a failing run
/// can be repeated from its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// A seed from `REEL_TEST_SEED`, or from the clock (printed, to repeat).
    pub fn from_env(test: &str) -> Rng {
        let seed = std::env::var("REEL_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
        eprintln!("{test}: REEL_TEST_SEED={seed}");
        Rng::new(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `range`.
    pub fn range(&mut self, range: std::ops::Range<u64>) -> u64 {
        range.start + self.next_u64() % (range.end - range.start).max(1)
    }
}

/// A tmpfs mounted for one test (a small disk to fill, a read-only one).
/// Needs root, as CI has; fails loudly without it rather than skip.
pub struct Tmpfs {
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn mount(size_bytes: u64, read_only: bool) -> Tmpfs {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path).expect("mount point");
        let mut options = format!("size={size_bytes}");
        if read_only {
            options.push_str(",ro");
        }
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &options, "tmpfs"])
            .arg(&path)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "this test mounts a small tmpfs to fill the disk for real; it needs root (as in CI)"
        );
        Tmpfs { path, _dir: dir }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// A reeld config file using `primary` and `secondary` as stores, with
/// small segments, quick health checks, and `extra` TOML appended.
pub fn garage_config_file(
    dir: &Path,
    primary: &Garage,
    secondary: &Garage,
    extra: &str,
) -> PathBuf {
    let path = dir.join("reel.toml");
    std::fs::write(
        &path,
        format!(
            "[primary]\n{}\n[secondary]\n{}\n\
             [segments]\nmax_age = \"300ms\"\ntarget_bytes = 8192\n\
             [health]\nop_timeout = \"1s\"\nsuspect_window = \"1s\"\nprobe_interval = \"200ms\"\n\
             healthy_probe_interval = \"1s\"\n{extra}",
            primary.store_toml(),
            secondary.store_toml()
        ),
    )
    .expect("write the config file");
    path
}

/// The `garage` executable (see [`tool`]).
pub fn garage_binary() -> PathBuf {
    tool("garage", "REEL_GARAGE", "scripts/install-garage")
}

/// The `asciinema` 3.2 executable (see [`tool`]).
pub fn asciinema_binary() -> PathBuf {
    tool("asciinema", "REEL_ASCIINEMA", "scripts/install-asciinema")
}

/// A program the tests drive for real: `$ENV`, then `PATH`, then
/// `~/.cargo/bin` (where `install` puts it). Tests that need it fail
/// loudly when it is missing: they never pass by skipping.
pub fn tool(name: &str, env: &str, install: &str) -> PathBuf {
    if let Ok(p) = std::env::var(env) {
        return PathBuf::from(p);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if let Some(p) = on_path {
        return p;
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let cargo_bin = home.join(".cargo/bin").join(name);
    assert!(
        cargo_bin.is_file(),
        "{name} is not installed: run {install} (or set {env}); \
         the tests that need it never pass by skipping"
    );
    cargo_bin
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn hex(rng: &mut Rng, bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rng.next_u64() as u8))
        .collect()
}

/// A single-node Garage S3 server, a plain process on 127.0.0.1 with its own
/// directories and ports, one bucket and one key: what a test uses as a
/// primary or secondary store. It can be killed, frozen and restarted.
pub struct Garage {
    child: Option<Child>,
    dir: PathBuf,
    config: PathBuf,
    pub endpoint: String,
    pub bucket: String,
    pub key_id: String,
    pub secret: String,
}

impl Garage {
    /// Sets up and starts a server under `dir` (created), ready for S3 calls.
    pub fn start(dir: &Path) -> anyhow::Result<Garage> {
        std::fs::create_dir_all(dir)?;
        let mut rng = Rng::new(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(7)
                ^ std::process::id() as u64,
        );
        let (s3, rpc, admin) = (free_port(), free_port(), free_port());
        let config = dir.join("garage.toml");
        std::fs::write(
            &config,
            format!(
                "metadata_dir = \"{meta}\"\n\
                 data_dir = \"{data}\"\n\
                 db_engine = \"lmdb\"\n\
                 replication_factor = 1\n\
                 rpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
                 rpc_public_addr = \"127.0.0.1:{rpc}\"\n\
                 rpc_secret = \"{secret}\"\n\
                 [s3_api]\n\
                 s3_region = \"garage\"\n\
                 api_bind_addr = \"127.0.0.1:{s3}\"\n\
                 root_domain = \".s3.garage.localhost\"\n\
                 [admin]\n\
                 api_bind_addr = \"127.0.0.1:{admin}\"\n",
                meta = dir.join("meta").display(),
                data = dir.join("data").display(),
                secret = hex(&mut rng, 32),
            ),
        )?;
        let mut garage = Garage {
            child: None,
            dir: dir.to_path_buf(),
            config,
            endpoint: format!("http://127.0.0.1:{s3}"),
            bucket: "reel".into(),
            key_id: format!("GK{}", hex(&mut rng, 12)),
            secret: hex(&mut rng, 32),
        };
        garage.launch()?;
        // `node id` reads a local key; `status` needs the RPC server up.
        garage.cli_retry(&["status"])?;
        let node = garage.cli_retry(&["node", "id", "-q"])?;
        let node = node
            .trim()
            .split('@')
            .next()
            .unwrap_or_default()
            .to_string();
        garage.cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &node])?;
        garage.cli(&["layout", "apply", "--version", "1"])?;
        garage.cli(&[
            "key",
            "import",
            "--yes",
            "-n",
            "reel",
            &garage.key_id.clone(),
            &garage.secret.clone(),
        ])?;
        garage.cli(&["bucket", "create", "reel"])?;
        garage.cli(&[
            "bucket", "allow", "--read", "--write", "--owner", "reel", "--key", "reel",
        ])?;
        garage.wait_s3()?;
        Ok(garage)
    }

    fn launch(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("garage.log"))?;
        let child = Command::new(garage_binary())
            .arg("-c")
            .arg(&self.config)
            .arg("server")
            .env("RUST_LOG", "warn")
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start garage")?;
        self.child = Some(child);
        Ok(())
    }

    fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(garage_binary())
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .context("cannot run garage")?;
        if !out.status.success() {
            bail!(
                "garage {}: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn cli_retry(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut last = None;
        for _ in 0..100 {
            match self.cli(args) {
                Ok(out) => return Ok(out),
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(last.unwrap_or_else(|| anyhow!("garage did not answer")))
    }

    /// Waits until the S3 API answers a put. Its own runtime runs on its own
    /// thread, so that this can be called from async tests too.
    fn wait_s3(&self) -> anyhow::Result<()> {
        let store = self.object_store();
        std::thread::scope(|scope| {
            scope
                .spawn(|| Self::wait_put(store))
                .join()
                .unwrap_or_else(|_| Err(anyhow!("the readiness check panicked")))
        })
    }

    fn wait_put(store: object_store::aws::AmazonS3) -> anyhow::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let key = object_store::path::Path::from("_ready");
            let mut last = None;
            // Up to 30 s: a Garage restarted while the suite loads both
            // cores once took more than 10 s to know its bucket again
            // ("Unknown API endpoint" until then).
            for _ in 0..300 {
                match object_store::ObjectStoreExt::put(&store, &key, "ok".into()).await {
                    Ok(_) => {
                        let _ = object_store::ObjectStoreExt::delete(&store, &key).await;
                        return Ok(());
                    }
                    Err(e) => last = Some(e),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(anyhow!("garage S3 API never answered: {last:?}"))
        })
    }

    /// An object_store client of the bucket, for checking it directly.
    pub fn object_store(&self) -> object_store::aws::AmazonS3 {
        object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_region("garage")
            .with_bucket_name(&self.bucket)
            .with_access_key_id(&self.key_id)
            .with_secret_access_key(&self.secret)
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            .build()
            .expect("garage client")
    }

    /// This server as a store of Reel's engine.
    pub fn store_config(&self) -> reel_storage::StoreConfig {
        reel_storage::StoreConfig::S3(reel_storage::S3Config {
            endpoint: Some(self.endpoint.clone()),
            region: "garage".into(),
            bucket: self.bucket.clone(),
            access_key_id: Some(self.key_id.clone()),
            secret_access_key: Some(self.secret.clone().into()),
            allow_http: true,
            path_style: true,
            prefix: None,
        })
    }

    /// The TOML table that makes this server a store of reeld.
    pub fn store_toml(&self) -> String {
        format!(
            "type = \"s3\"\nendpoint = \"{}\"\nregion = \"garage\"\nbucket = \"{}\"\naccess_key_id = \"{}\"\n\
             secret_access_key = \"{}\"\nallow_http = true\npath_style = true\n",
            self.endpoint, self.bucket, self.key_id, self.secret
        )
    }

    /// Every object of a recording in the bucket (not health probes, not
    /// the audit log's copies), with its size.
    pub async fn list(&self) -> anyhow::Result<Vec<(String, u64)>> {
        let mut all = self.list_all().await?;
        all.retain(|(k, _)| !k.starts_with("_reel/") && !k.starts_with("audit/"));
        Ok(all)
    }

    /// Every object in the bucket, with its size.
    pub async fn list_all(&self) -> anyhow::Result<Vec<(String, u64)>> {
        use futures::TryStreamExt;
        let store = self.object_store();
        let mut all: Vec<(String, u64)> = object_store::ObjectStore::list(&store, None)
            .map_ok(|m| (m.location.to_string(), m.size))
            .try_collect()
            .await?;
        all.sort();
        Ok(all)
    }

    fn signal(&self, signal: i32) {
        if let Some(child) = &self.child {
            // SAFETY: signalling a child process we own.
            unsafe {
                libc::kill(child.id() as i32, signal);
            }
        }
    }

    /// SIGKILL: the server is gone, connections are refused.
    pub fn kill9(&mut self) {
        self.signal(libc::SIGCONT);
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sets the CPU priority (`nice`, -20..19) of every thread of the
    /// running server, so that a benchmark can let Reel's threads go first,
    /// as if the store ran on another host. A restart resets it.
    pub fn renice(&self, nice: i32) -> anyhow::Result<()> {
        let pid = self
            .child
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("garage is not running"))?
            .id();
        // Linux keeps a priority per thread: each one is set.
        for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
            let tid: libc::id_t = task?.file_name().to_string_lossy().parse()?;
            // SAFETY: setpriority reads its integer arguments only.
            if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, nice) } != 0 {
                anyhow::bail!("setpriority: {}", std::io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// SIGSTOP: the server hangs, connections open and never answer.
    pub fn freeze(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// SIGCONT after [`freeze`](Self::freeze).
    pub fn thaw(&self) {
        self.signal(libc::SIGCONT);
    }

    /// Starts the server again on the same directories and ports.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill9();
        self.launch()?;
        self.wait_s3()
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// What a recorder saw.
pub struct Streamed {
    pub id: String,
    pub acked: u64,
    pub error: Option<String>,
    /// The longest wait for an acknowledgement.
    pub slowest_ack: Duration,
}

/// A recorder streaming terminal events (recording `slot`) in small
/// batches at random short intervals until `stop` is set, then closing.
pub async fn stream(endpoint: String, slot: usize, stop: Arc<AtomicBool>, seed: u64) -> Streamed {
    let mut rng = Rng::new(seed);
    let mut out = Streamed {
        id: String::new(),
        acked: 0,
        error: None,
        slowest_ack: Duration::ZERO,
    };
    let mut rec =
        match Recorder::start(&endpoint, metadata("failover", &format!("host-{slot}"))).await {
            Ok(r) => r,
            Err(e) => {
                out.error = Some(e.to_string());
                return out;
            }
        };
    out.id = rec.id.clone();
    while !stop.load(Ordering::Relaxed) {
        let n = rng.range(1..6);
        let batch: Vec<Event> = (rec.sent..rec.sent + n)
            .map(|i| terminal_event(slot, i))
            .collect();
        let started = Instant::now();
        let result = rec.append(batch).await;
        out.slowest_ack = out.slowest_ack.max(started.elapsed());
        out.acked = rec.acked;
        if let Err(e) = result {
            out.error = Some(e.to_string());
            return out;
        }
        tokio::time::sleep(Duration::from_millis(rng.range(1..15))).await;
    }
    match rec.close().await {
        Ok((count, _)) if count == out.acked => {}
        Ok((count, _)) => {
            out.error = Some(format!(
                "closed with {count} events, {} acknowledged",
                out.acked
            ))
        }
        Err(e) => out.error = Some(e.to_string()),
    }
    out
}

/// Polls `f` until it holds; panics after `limit`, naming `what`.
pub async fn wait_for(what: &str, limit: Duration, mut f: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    // Quick to see a change that comes at once, without spinning on a slow one.
    let mut pause = Duration::from_millis(10);
    while start.elapsed() < limit {
        if f().await {
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
    panic!("timed out after {limit:?} waiting until {what}");
}

/// Everything is uploaded: nothing queued, nothing in the spool.
pub async fn drained(reeld: &Reeld) -> bool {
    let s: reel_api::ServerStatus = reeld.get_json("/api/v1/status").await.unwrap();
    s.upload_queue == 0 && s.spool_segments == 0
}

/// Every file under `dir` (recursively, symbolic links not followed) that
/// holds `needle`, added to `found`; `scanned` counts the bytes looked at,
/// so that a test can tell an empty scan from a clean one.
pub fn files_holding(dir: &Path, needle: &[u8], found: &mut Vec<String>, scanned: &mut u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            files_holding(&path, needle, found, scanned);
        } else if meta.is_file()
            && let Ok(bytes) = std::fs::read(&path)
        {
            *scanned += bytes.len() as u64;
            if bytes.windows(needle.len()).any(|w| w == needle) {
                found.push(path.display().to_string());
            }
        }
    }
}

/// `len` bytes of printable, varied text from `seed`. Garage compresses and
/// deduplicates blocks, so benchmark payloads that repeat would measure
/// less than they claim.
pub fn varied_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut data = Vec::with_capacity(len + 17);
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while data.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(format!("{:016x} ", x % 1_000_000_007).as_bytes());
    }
    data.truncate(len);
    data
}

/// Runs a benchmark's async main on a multi-threaded runtime; it is told
/// whether `--quick` was given.
pub fn bench_main<F: Future<Output = ()>>(main: impl FnOnce(bool) -> F) {
    let quick = std::env::args().any(|a| a == "--quick");
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(main(quick));
}
