//! `reel compact`: recombine split and segmented recordings and watch it,
//! with a progress bar for the recording being recombined and one for the
//! whole. Online it asks the server; with `--data-dir` it opens the data
//! directory itself (no server may be running on it).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use reel_api::CompactStatus;
use reel_engine::Engine;
use reel_proto::RecordingId;

use crate::{Client, format, parse_id};

#[derive(Debug, Args)]
pub(crate) struct CompactArgs {
    /// Only this recording.
    #[arg(long)]
    recording: Option<String>,
    /// List what would be recombined, and do nothing.
    #[arg(long)]
    dry_run: bool,
    /// Return only when nothing is left to recombine (else when what can be
    /// done now is done).
    #[arg(long)]
    wait: bool,
    #[arg(long)]
    json: bool,
    /// Work offline on this data directory, with no server running on it.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The reeld configuration (its stores) for `--data-dir`.
    #[arg(long, requires = "data_dir")]
    config: Option<PathBuf>,
}

const POLL: Duration = Duration::from_millis(200);

/// Where the compaction runs: a server, or an engine of our own.
trait Source {
    /// The plan and the compactor's state.
    async fn status(&self) -> anyhow::Result<CompactStatus>;
    /// Starts (another) round of recombination.
    async fn start(&self) -> anyhow::Result<()>;
}

struct Remote<'a> {
    client: &'a Client,
    query: String,
}

impl Source for Remote<'_> {
    async fn status(&self) -> anyhow::Result<CompactStatus> {
        self.client
            .get_json(&format!("/api/v1/compact{}", self.query))
            .await
    }

    async fn start(&self) -> anyhow::Result<()> {
        let _: CompactStatus = self
            .client
            .post_json(&format!("/api/v1/compact{}", self.query))
            .await?;
        Ok(())
    }
}

struct Local {
    engine: Engine,
    only: Option<RecordingId>,
}

impl Source for Local {
    async fn status(&self) -> anyhow::Result<CompactStatus> {
        // The server's answer, as JSON, without a server.
        let state = self.engine.compaction_state(self.only).await?;
        Ok(serde_json::from_value(serde_json::to_value(state)?)?)
    }

    async fn start(&self) -> anyhow::Result<()> {
        let (engine, only) = (self.engine.clone(), self.only);
        tokio::spawn(async move { engine.compact(only).await });
        Ok(())
    }
}

pub(crate) async fn run(client: &Client, args: CompactArgs) -> anyhow::Result<()> {
    let only = args.recording.as_deref().map(parse_id).transpose()?;
    match &args.data_dir {
        Some(dir) => {
            let engine = open_offline(dir, args.config.as_deref()).await?;
            if let Some(id) = only {
                engine.recording(id).await?;
            }
            let local = Local { engine, only };
            let result = compact(&local, &args).await;
            // Old copies go now rather than at the next start.
            if result.is_ok() && !args.dry_run {
                local.engine.drain_deletions().await?;
            }
            local.engine.shutdown().await;
            result
        }
        None => {
            let query = only
                .map(|id| format!("?recording={id}"))
                .unwrap_or_default();
            compact(&Remote { client, query }, &args).await
        }
    }
}

async fn compact(source: &impl Source, args: &CompactArgs) -> anyhow::Result<()> {
    let start = source.status().await?;
    if args.dry_run {
        return print_plan(&start, args.json);
    }
    source.start().await?;
    let total_bytes: u64 = start.plan.iter().map(|p| p.bytes).sum();
    let total = start.plan.len() as u64;
    let bars = MultiProgress::new();
    let style = |template: &str| {
        ProgressStyle::with_template(template)
            .expect("template")
            .progress_chars("=> ")
    };
    let overall = bars.add(ProgressBar::new(total_bytes));
    overall.set_style(style(
        "{prefix:>9} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
    ));
    overall.set_prefix("all");
    let current = bars.add(ProgressBar::new(0));
    current.set_style(style("{prefix:>9} [{bar:30}] {bytes}/{total_bytes} {msg}"));
    current.set_prefix("recording");
    let (base, base_bytes) = (start.recombined, start.recombined_bytes);
    let last = loop {
        tokio::time::sleep(POLL).await;
        let now = source.status().await?;
        let done = now.recombined.saturating_sub(base);
        let in_current = now.current.as_ref().map_or(0, |c| c.1);
        overall.set_position(
            (now.recombined_bytes.saturating_sub(base_bytes) + in_current).min(total_bytes),
        );
        overall.set_message(format!("{done}/{total} recordings"));
        match &now.current {
            Some((id, copied, of)) => {
                current.set_length(*of);
                current.set_position(*copied);
                current.set_message(id.clone());
            }
            None => current.set_message(String::new()),
        }
        let ready = now.plan.iter().filter(|p| p.waiting.is_none()).count();
        if now.current.is_none() && ready == 0 && (!args.wait || now.plan.is_empty()) {
            break now;
        }
        if now.current.is_none() && ready > 0 {
            // The round ended (a store failed, or work arrived): go again.
            source.start().await?;
        }
    };
    overall.finish();
    current.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&last)?);
        return Ok(());
    }
    println!(
        "recombined {} recording(s), {}; {} old object(s) waiting for deletion",
        last.recombined.saturating_sub(base),
        format::bytes(last.recombined_bytes.saturating_sub(base_bytes)),
        last.pending_deletions
    );
    for bad in &last.bad_copies {
        println!("bad copy (not used): {bad}");
    }
    for item in &last.plan {
        println!(
            "left: {}  {}  {}",
            item.id,
            item.reason,
            item.waiting.as_deref().unwrap_or("")
        );
    }
    if let Some(e) = &last.last_error {
        eprintln!("last error: {e}");
    }
    Ok(())
}

fn print_plan(plan: &CompactStatus, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(&plan.plan)?);
        return Ok(());
    }
    if plan.plan.is_empty() {
        println!("nothing to recombine");
    }
    for item in &plan.plan {
        println!(
            "{}  {:<10} {:>4} segments {:>10}  {}",
            item.id,
            item.reason,
            item.segments,
            format::bytes(item.bytes),
            item.waiting
                .as_deref()
                .map_or("ready".to_string(), |w| format!("waiting: {w}"))
        );
    }
    Ok(())
}

/// An engine on `dir` in this process, with reeld's configuration (file
/// and environment) and its background compactor off: for work done while
/// reeld is stopped. Fails with "in use" while reeld holds the directory.
pub(crate) async fn open_offline(
    dir: &std::path::Path,
    config: Option<&std::path::Path>,
) -> anyhow::Result<Engine> {
    let config = reel_config::ServerConfig::offline(dir, config)?;
    Engine::open(config.engine)
        .await
        .with_context(|| format!("cannot open the data directory {}", dir.display()))
}
