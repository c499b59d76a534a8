//! `reel`, Reel's command-line client. Every command talks to a running
//! `reeld`: HTTP for reading (`--server`), gRPC for ingest (the address the
//! server advertises, or `--grpc`).

mod compact;
mod format;
mod ingest;

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
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Stream an asciicast file (v2 or v3) to the server as a new recording; prints its id.
    Ingest(ingest::IngestArgs),
    /// List recordings.
    Ls {
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Start after this recording id (the previous page's last).
        #[arg(long)]
        after: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show one recording with each of its segments and where it is.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Write a recording out.
    Export {
        id: String,
        #[arg(long, value_enum, default_value_t = ExportFormat::Cast)]
        format: ExportFormat,
        /// Write here instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Recombine split and segmented recordings into one object each on the
    /// primary, with progress; `--dry-run` lists what would be done.
    Compact(compact::CompactArgs),
    /// Show the stores' health, where uploads go, the local backlog and the
    /// recent failovers and failbacks.
    Status {
        #[arg(long)]
        json: bool,
    },
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
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
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
}

impl Client {
    fn new(base: &str) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_string(),
        }
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
        let url = format!("{}{path}", self.base);
        let response = self
            .http
            .request(method, &url)
            .send()
            .await
            .with_context(|| {
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

async fn run(cli: Cli) -> anyhow::Result<()> {
    let client = Client::new(&cli.server);
    match cli.command {
        Command::Ingest(args) => ingest::run(&client, cli.grpc.as_deref(), &cli.server, args).await,
        Command::Ls { limit, after, json } => {
            let mut path = format!("/api/v1/recordings?limit={limit}");
            if let Some(after) = after {
                path += &format!("&after={}", parse_id(&after)?);
            }
            let list: RecordingList = client.get_json(&path).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print!("{}", format::table(&list.recordings));
                if let Some(next) = list.next_cursor {
                    eprintln!("(more: reel ls --after {next})");
                }
            }
            Ok(())
        }
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
        Command::Export { id, format, output } => {
            let id = parse_id(&id)?;
            let fmt = match format {
                ExportFormat::Cast => "cast",
                ExportFormat::Raw => "raw",
            };
            let response = client
                .get(&format!("/api/v1/recordings/{id}/export?format={fmt}"))
                .await?;
            export_body(response, output).await
        }
        Command::Compact(args) => compact::run(&client, args).await,
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

async fn export_body(response: reqwest::Response, output: Option<PathBuf>) -> anyhow::Result<()> {
    let mut sink: Box<dyn Write> = match &output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut body = response.bytes_stream();
    let result: anyhow::Result<()> = async {
        while let Some(chunk) = body.next().await {
            let chunk =
                chunk.map_err(|e| anyhow!("export interrupted: {e}; the output is incomplete"))?;
            sink.write_all(&chunk)?;
        }
        sink.flush()?;
        Ok(())
    }
    .await;
    if result.is_err()
        && let Some(path) = &output
    {
        drop(sink);
        let _ = std::fs::remove_file(path);
    }
    result
}
