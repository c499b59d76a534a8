//! `reel`, Reel's command-line client. Every command talks to a running
//! `reeld`: HTTP for reading (`--server`), gRPC for ingest (the address the
//! server advertises, or `--grpc`).

mod archive;
mod compact;
mod format;
mod grpc;
mod ingest;
mod keys;
pub mod load;
mod play;
mod purge;
mod record;
mod terminal_guard;
mod token;
mod verify;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use clap::{Parser, Subcommand, ValueEnum};
use futures::StreamExt;
use reel_api::{ApiError, RecordingDetail, RecordingList, ServerStatus, StorageStatus};
use reel_proto::RecordingId;

/// reel: work with the recordings of a Reel server.
#[derive(Debug, Parser)]
#[command(name = "reel", version)]
pub struct Cli {
    /// The server's HTTP API.
    #[arg(
        long,
        global = true,
        env = "REEL_SERVER",
        default_value = "http://127.0.0.1:7701"
    )]
    server: String,
    /// The server's gRPC ingest endpoint (default: the one the server advertises).
    #[arg(long, global = true, env = "REEL_GRPC")]
    grpc: Option<String>,
    /// The API token to send (else `REEL_TOKEN`, then the file
    /// `REEL_TOKEN_FILE` names, then ./reel-data/admin.token if it exists).
    #[arg(long, global = true, env = "REEL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A CA certificate (PEM) to trust for a server with TLS (besides the
    /// system's roots).
    #[arg(long, global = true, env = "REEL_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// A client certificate and key (PEM) for a server that asks for one
    /// (mTLS on gRPC ingest).
    #[arg(long, global = true, env = "REEL_CLIENT_CERT", requires = "client_key")]
    client_cert: Option<PathBuf>,
    #[arg(long, global = true, env = "REEL_CLIENT_KEY", requires = "client_cert")]
    client_key: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Stream an asciicast file (v2 or v3) to the server as a new recording; prints its id.
    Ingest(ingest::IngestArgs),
    /// Load a server as a fleet of recorders would: N recordings streaming
    /// terminal-like events at a rate (or closed loop); prints the events
    /// acknowledged a second and the acknowledgement latency.
    Load(load::LoadArgs),
    /// Run a command (default: your shell) in a new terminal and record it
    /// live; exits with the command's status. A bastion runs it for every
    /// SSH session (README, "Recording a bastion").
    Record(record::RecordArgs),
    /// List recordings, filtered, sorted and a page at a time.
    Ls(LsArgs),
    /// Show one recording with each of its segments and where it is.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Write a recording, or a window of it, out. Lost events (no intact
    /// copy) are marked in the cast and reported on standard error.
    Export {
        id: String,
        #[arg(long, value_enum, default_value_t = ExportFormat::Cast)]
        format: ExportFormat,
        /// Start of the window ([[HH:]MM:]SS[.fraction] from the recording's
        /// start); event times in a cast then count from here.
        #[arg(long)]
        from: Option<String>,
        /// End of the window (exclusive).
        #[arg(long)]
        to: Option<String>,
        /// Write here instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Replay a terminal recording in this terminal.
    Play(play::PlayArgs),
    /// Delete recordings everywhere (local log, both stores, catalog), by id
    /// or by age; written to the audit log. Held recordings are refused.
    Purge(purge::PurgeArgs),
    /// Put a recording under legal hold: no purge, by hand or by rule.
    Hold(purge::HoldArgs),
    /// Lift a legal hold.
    Release(purge::HoldArgs),
    /// The audit log: purges, holds, releases (who, when, what, why).
    Audit(purge::AuditArgs),
    /// Compare the catalog with the stores; exit 1 on a problem. `--repair`
    /// fixes what can be fixed safely.
    Verify(verify::VerifyArgs),
    /// Recreate a lost catalog from the stores alone (reeld stopped).
    RebuildCatalog(verify::RebuildArgs),
    /// Write recordings with their catalog entries into an archive file;
    /// `--remove` purges them once the file is written and checked.
    ExportArchive(archive::ExportArchiveArgs),
    /// Bring an archive's recordings back, with their ids and metadata.
    ImportArchive(archive::ImportArchiveArgs),
    /// Check an archive with nothing but the file and the public key of the
    /// server that wrote it (`reel keys public`): which recordings and
    /// events are intact. Exit 1 unless all of it is.
    VerifyArchive(archive::VerifyArchiveArgs),
    /// Recombine split and segmented recordings into one object each on the
    /// primary, with progress; `--dry-run` lists what would be done.
    Compact(compact::CompactArgs),
    /// API tokens: create (printed once), ls, revoke (admin).
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// The keys: the public key recordings are signed with, and master
    /// key rotation (admin).
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Show the stores' health, where uploads go, the local backlog and the
    /// recent failovers and failbacks.
    Status {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
struct LsArgs {
    /// Sessions of this user (`*` matches any run of characters).
    #[arg(long)]
    user: Option<String>,
    /// Sessions to this target (host, database, ...).
    #[arg(long)]
    target: Option<String>,
    /// Sessions of this protocol (ssh, rdp, postgres, ...).
    #[arg(long)]
    protocol: Option<String>,
    /// With this label (`key`) or label value (`key=value`); repeatable.
    #[arg(long)]
    label: Vec<String>,
    /// Sessions started at or after this (2026-11-01, 2026-11-01T10:00:00Z, or an age: 7d).
    #[arg(long)]
    since: Option<String>,
    /// Sessions started before this.
    #[arg(long)]
    until: Option<String>,
    /// open, closed, interrupted, damaged or recombined.
    #[arg(long)]
    state: Option<String>,
    /// Only recordings that cannot be read in full right now (some bytes
    /// only on a store that is down): what an outage hides.
    #[arg(long)]
    unreadable: bool,
    /// created, started, duration, size or user.
    #[arg(long, default_value = "created")]
    sort: String,
    /// Largest (or latest) first.
    #[arg(long)]
    desc: bool,
    /// At most this many per page.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Start after this cursor (printed at the end of the previous page).
    #[arg(long, alias = "after")]
    cursor: Option<String>,
    /// Every page, not just the first.
    #[arg(long)]
    all: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ExportFormat {
    /// asciicast v2 (asciinema).
    Cast,
    /// The concatenated output bytes.
    Raw,
}

/// Bad input from the user (exit code 2), as opposed to a failed operation.
#[derive(Debug)]
pub(crate) struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Entry point of the `reel` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Before any thread starts: a setgid copy (a bastion's recorder) reads
    // its configuration and token, then gives up the group for good.
    let settings = match &cli.command {
        Command::Record(args) => record::privileged::prepare(true, args.config()),
        _ => record::privileged::prepare(false, None),
    };
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match settings.and_then(|s| runtime.block_on(run(cli, s))) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("reel: {e:#}");
            if e.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    tls: TlsFiles,
}

/// The PEM files `reel` uses with a server that has TLS.
#[derive(Default)]
pub(crate) struct TlsFiles {
    pub ca: Option<Vec<u8>>,
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl TlsFiles {
    fn load(cli: &Cli) -> anyhow::Result<TlsFiles> {
        let read =
            |p: &PathBuf| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
        Ok(TlsFiles {
            ca: cli.ca_file.as_ref().map(read).transpose()?,
            identity: match (&cli.client_cert, &cli.client_key) {
                (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
                _ => None,
            },
        })
    }
}

impl Client {
    fn new(base: &str, token: Option<String>, tls: TlsFiles) -> anyhow::Result<Client> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = &token {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| UsageError("the token holds characters a header cannot".into()))?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let mut builder = reqwest::Client::builder().default_headers(headers);
        if let Some(ca) = &tls.ca {
            builder = builder.add_root_certificate(
                reqwest::Certificate::from_pem(ca)
                    .context("the CA file is not a PEM certificate")?,
            );
        }
        Ok(Client {
            http: builder.build().context("HTTP client")?,
            base: base.trim_end_matches('/').to_string(),
            token,
            tls,
        })
    }

    /// The TLS files given (for the gRPC ingest stream).
    pub(crate) fn tls(&self) -> &TlsFiles {
        &self.tls
    }

    /// The token this client sends (for the gRPC ingest stream).
    pub(crate) fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    async fn get(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        self.request(reqwest::Method::GET, path).await
    }

    pub(crate) async fn post_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> anyhow::Result<T> {
        self.request(reqwest::Method::POST, path)
            .await?
            .json()
            .await
            .context("the server's answer is not what reel expects")
    }

    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> anyhow::Result<reqwest::Response> {
        self.request_with(method, path, None::<&()>).await
    }

    /// A POST of a streamed body, its JSON answer decoded.
    pub(crate) async fn post_body<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: reqwest::Body,
    ) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base);
        let response = self
            .http
            .post(&url)
            .body(body)
            .send()
            .await
            .with_context(|| format!("cannot reach the server at {}", self.base))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            match serde_json::from_str::<ApiError>(&text) {
                Ok(e) => bail!("{} ({}, HTTP {})", e.error, e.code, status.as_u16()),
                Err(_) => bail!("server answered HTTP {status}: {text}"),
            }
        }
        response
            .json()
            .await
            .context("the server's answer is not what reel expects")
    }

    /// A POST whose answer is read as a stream.
    pub(crate) async fn post_stream(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        self.request(reqwest::Method::POST, path).await
    }

    /// A request with a JSON body, its JSON answer decoded.
    pub(crate) async fn send_json<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        self.request_with(method, path, Some(body))
            .await?
            .json()
            .await
            .context("the server's answer is not what reel expects")
    }

    async fn request_with<B: serde::Serialize>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
    ) -> anyhow::Result<reqwest::Response> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.with_context(|| {
            format!(
                "cannot reach the server at {} (is reeld running?)",
                self.base
            )
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        match serde_json::from_str::<ApiError>(&text) {
            // The request was wrong: a usage error, like one reel finds itself.
            Ok(e) if status == reqwest::StatusCode::BAD_REQUEST => Err(UsageError(e.error).into()),
            Ok(e) => bail!("{} ({}, HTTP {})", e.error, e.code, status.as_u16()),
            Err(_) => bail!("server answered HTTP {status}: {text}"),
        }
    }

    pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> anyhow::Result<T> {
        let response = self.get(path).await?;
        response
            .json()
            .await
            .context("the server's answer is not what reel expects")
    }

    pub(crate) async fn status(&self) -> anyhow::Result<ServerStatus> {
        self.get_json("/api/v1/status").await
    }
}

fn parse_id(text: &str) -> anyhow::Result<RecordingId> {
    text.parse::<RecordingId>()
        .map_err(|e| UsageError(e.to_string()).into())
}

async fn run(cli: Cli, settings: Option<record::privileged::Settings>) -> anyhow::Result<ExitCode> {
    // The command line's TLS files, unless a configuration file decides.
    let tls = match settings {
        Some(_) => TlsFiles::default(),
        None => TlsFiles::load(&cli)?,
    };
    if let Command::Record(mut args) = cli.command {
        // From the configuration file when there is one (a setgid copy
        // reads nothing else), else from the command line.
        let (client, grpc, server, log) = match settings {
            Some(s) => {
                args.apply(&s);
                let client = Client::new(&s.server, Some(s.token), s.tls)?;
                (client, s.grpc, s.server, Some(s.log))
            }
            None => {
                let token = record::token(cli.token.clone(), args.token_file())?;
                let client = Client::new(&cli.server, token, tls)?;
                (client, cli.grpc, cli.server, None)
            }
        };
        return record::run(&client, grpc.as_deref(), &server, args, log).await;
    }
    let client = Client::new(&cli.server, token::resolve(cli.token.clone())?, tls)?;
    run_command(&client, &cli.server, cli.grpc.as_deref(), cli.command)
        .await
        .map(|()| ExitCode::SUCCESS)
}

async fn run_command(
    client: &Client,
    server: &str,
    grpc: Option<&str>,
    command: Command,
) -> anyhow::Result<()> {
    match command {
        Command::Ingest(args) => ingest::run(client, grpc, server, args).await,
        Command::Load(args) => load::run(client, grpc, server, args).await,
        Command::Record(_) => unreachable!("handled by run"),
        Command::Ls(args) => ls(client, args).await,
        Command::Show { id, json } => {
            let id = parse_id(&id)?;
            let detail: RecordingDetail =
                client.get_json(&format!("/api/v1/recordings/{id}")).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&detail)?);
            } else {
                print!("{}", format::detail(&detail));
            }
            Ok(())
        }
        Command::Export {
            id,
            format,
            from,
            to,
            output,
        } => {
            let id = parse_id(&id)?;
            let fmt = match format {
                ExportFormat::Cast => "cast",
                ExportFormat::Raw => "raw",
            };
            let query = window_query(fmt, from.as_deref(), to.as_deref())?;
            let response = client
                .get(&format!("/api/v1/recordings/{id}/export?{query}"))
                .await?;
            export_body(response, output, matches!(format, ExportFormat::Cast)).await
        }
        Command::Play(args) => play::run(client, args).await,
        Command::Purge(args) => purge::purge(client, args).await,
        Command::Hold(args) => purge::hold(client, args, true).await,
        Command::Release(args) => purge::hold(client, args, false).await,
        Command::Audit(args) => purge::audit(client, args).await,
        Command::Verify(args) => verify::run(client, args).await,
        Command::RebuildCatalog(args) => verify::rebuild(args).await,
        Command::Token(command) => token::run(client, command).await,
        Command::Keys(command) => keys::run(client, command).await,
        Command::ExportArchive(args) => archive::export(client, args).await,
        Command::ImportArchive(args) => archive::import(client, args).await,
        Command::VerifyArchive(args) => archive::verify(args),
        Command::Compact(args) => compact::run(client, args).await,
        Command::Status { json } => {
            let status = client.status().await?;
            let storage: StorageStatus = client.get_json("/api/v1/storage").await?;
            if json {
                let both = serde_json::json!({ "server": status, "storage": storage });
                println!("{}", serde_json::to_string_pretty(&both)?);
            } else {
                print!("{}", format::status(&status, &storage));
            }
            Ok(())
        }
    }
}

/// The query string of an export: the format and the window, each bound
/// checked here so a typo is a usage error before any request.
pub(crate) fn window_query(
    format: &str,
    from: Option<&str>,
    to: Option<&str>,
) -> anyhow::Result<String> {
    let mut pairs = vec![("format", format.to_string())];
    for (name, value) in [("from", from), ("to", to)] {
        if let Some(v) = value {
            reel_api::parse_offset(v).map_err(UsageError)?;
            pairs.push((name, v.to_string()));
        }
    }
    Ok(serde_urlencoded::to_string(pairs)?)
}

async fn ls(client: &Client, args: LsArgs) -> anyhow::Result<()> {
    let mut pairs: Vec<(&str, String)> = vec![("limit", args.limit.to_string())];
    let optional = [
        ("user", &args.user),
        ("target", &args.target),
        ("protocol", &args.protocol),
        ("since", &args.since),
        ("until", &args.until),
        ("state", &args.state),
    ];
    for (name, value) in optional {
        if let Some(v) = value {
            pairs.push((name, v.clone()));
        }
    }
    pairs.extend(args.label.iter().map(|l| ("label", l.clone())));
    if args.unreadable {
        pairs.push(("readable", "false".into()));
    }
    pairs.push(("sort", args.sort.clone()));
    pairs.push(("order", if args.desc { "desc" } else { "asc" }.into()));
    let mut cursor = args.cursor.clone();
    let mut all = Vec::new();
    loop {
        let mut page = pairs.clone();
        if let Some(c) = &cursor {
            page.push(("cursor", c.clone()));
        }
        let path = format!("/api/v1/recordings?{}", serde_urlencoded::to_string(&page)?);
        let list: RecordingList = client.get_json(&path).await?;
        cursor = list.next_cursor.clone();
        if !args.all {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print!("{}", format::table(&list.recordings));
                if let Some(next) = &list.next_cursor {
                    eprintln!("(more: add --cursor {next})");
                }
            }
            return Ok(());
        }
        all.extend(list.recordings);
        if cursor.is_none() {
            break;
        }
    }
    if args.json {
        let list = RecordingList {
            recordings: all,
            next_cursor: None,
        };
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        print!("{}", format::table(&all));
    }
    Ok(())
}

/// Reports the gap markers of a cast export on standard error as they pass.
#[derive(Default)]
struct GapReporter {
    line: Vec<u8>,
    gaps: usize,
}

impl GapReporter {
    fn scan(&mut self, chunk: &[u8]) {
        for part in chunk.split_inclusive(|&b| b == b'\n') {
            self.line.extend_from_slice(part);
            if self.line.last() == Some(&b'\n') {
                let line = String::from_utf8_lossy(&self.line);
                let marker = format!(", \"m\", \"{}", reel_api::GAP_MARKER);
                if let Some(at) = line.find(&marker) {
                    self.gaps += 1;
                    let text = line[at + marker.len()..].trim_end().trim_end_matches("\"]");
                    eprintln!("reel: warning: gap at {}s: {text}", &line[1..at]);
                }
                self.line.clear();
            }
        }
    }
}

async fn export_body(
    response: reqwest::Response,
    output: Option<PathBuf>,
    cast: bool,
) -> anyhow::Result<()> {
    let mut sink: Box<dyn Write> = match &output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut body = response.bytes_stream();
    let mut gaps = GapReporter::default();
    let result: anyhow::Result<()> = async {
        while let Some(chunk) = body.next().await {
            let chunk =
                chunk.map_err(|e| anyhow!("export interrupted: {e}; the output is incomplete"))?;
            if cast {
                gaps.scan(&chunk);
            }
            sink.write_all(&chunk)?;
        }
        sink.flush()?;
        Ok(())
    }
    .await;
    if gaps.gaps > 0 {
        eprintln!(
            "reel: {} gap(s): events no copy holds intact are marked in the cast",
            gaps.gaps
        );
    }
    if result.is_err()
        && let Some(path) = &output
    {
        drop(sink);
        let _ = std::fs::remove_file(path);
    }
    result
}
