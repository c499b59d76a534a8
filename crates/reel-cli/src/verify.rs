//! `reel verify`: does the catalog agree with the stores? With a progress
//! bar while `reeld` works, then the report.

use anyhow::{Context, anyhow, bail};
use clap::Args;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use reel_api::{VerifyLine, VerifyReport};

use crate::{Client, UsageError, format};

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// Also read every copy and check its SHA-256 and hash chain.
    #[arg(long)]
    content: bool,
    /// Fix what can be fixed safely (restore from a good copy, adopt valid
    /// strays, mark the rest damaged).
    #[arg(long)]
    repair: bool,
    /// With --repair: delete objects that belong to nothing.
    #[arg(long)]
    delete_orphans: bool,
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(client: &Client, args: VerifyArgs) -> anyhow::Result<()> {
    if args.delete_orphans && !args.repair {
        return Err(UsageError("--delete-orphans goes with --repair".into()).into());
    }
    let path = format!(
        "/api/v1/verify?content={}&repair={}&delete_orphans={}",
        args.content, args.repair, args.delete_orphans
    );
    let response = client.post_stream(&path).await?;
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>22} [{bar:30}] {pos}/{len} {elapsed}")
            .expect("template")
            .progress_chars("=> "),
    );
    let mut body = response.bytes_stream();
    let mut pending = Vec::new();
    let mut report = None;
    while let Some(chunk) = body.next().await {
        pending.extend_from_slice(&chunk.map_err(|e| anyhow!("verify interrupted: {e}"))?);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            match serde_json::from_slice::<VerifyLine>(&line)
                .context("the server's answer is not what reel expects")?
            {
                VerifyLine::Progress { phase, done, total } => {
                    bar.set_prefix(phase);
                    bar.set_length(total);
                    bar.set_position(done);
                }
                VerifyLine::Report(r) => report = Some(r),
                VerifyLine::Error(e) => {
                    bar.finish_and_clear();
                    bail!("verify failed: {e}");
                }
            }
        }
    }
    bar.finish_and_clear();
    let report = report.ok_or_else(|| anyhow!("verify ended without a report"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", text(&report));
    }
    let unresolved = report
        .problems
        .iter()
        .filter(|p| p.repair.is_none())
        .count();
    if unresolved > 0 {
        bail!(
            "{unresolved} problem(s) found{}",
            if args.repair {
                " that repair could not fix"
            } else {
                ""
            }
        );
    }
    Ok(())
}

fn text(r: &VerifyReport) -> String {
    let mut out = format!(
        "checked {} recordings, {} segments, {} objects{}\n",
        r.recordings,
        r.segments,
        r.objects,
        if r.bytes_read > 0 {
            format!(", read {}", format::bytes(r.bytes_read))
        } else {
            String::new()
        }
    );
    if r.unsigned_segments > 0 {
        out.push_str(&format!(
            "{} copies unsigned (sealed before Reel signed segments)\n",
            r.unsigned_segments
        ));
    }
    if r.unsigned_indexes > 0 {
        out.push_str(&format!(
            "{} combined objects with an unsigned index (recombined before Reel signed indexes)\n",
            r.unsigned_indexes
        ));
    }
    if r.problems.is_empty() {
        out.push_str("catalog and stores agree\n");
    }
    for p in &r.problems {
        out.push_str(&format!(
            "{:<8} {:<9} {}  {}{}\n",
            p.kind,
            p.store,
            p.key,
            p.detail,
            p.repair
                .as_ref()
                .map(|how| format!("  -> {how}"))
                .unwrap_or_default()
        ));
    }
    for id in &r.damaged {
        out.push_str(&format!(
            "damaged  {id} (reads show a gap where copies were lost)\n"
        ));
    }
    out
}

#[derive(Debug, Args)]
pub(crate) struct RebuildArgs {
    /// The data directory whose catalog is lost (reeld must be stopped).
    #[arg(long)]
    data_dir: std::path::PathBuf,
    /// reeld's configuration file (for the stores).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// Also adopt unsigned segments (sealed before Reel signed them). Anyone
    /// who can write to a bucket can make an unsigned segment: use it only
    /// for data older than signing.
    #[arg(long)]
    accept_unsigned: bool,
    #[arg(long)]
    json: bool,
}

/// `reel rebuild-catalog`: fills a new catalog from the stores, in this
/// process, with a progress bar.
pub(crate) async fn rebuild(args: RebuildArgs) -> anyhow::Result<()> {
    let engine = crate::compact::open_offline(&args.data_dir, args.config.as_deref()).await?;
    let progress = std::sync::Arc::new(reel_engine::VerifyProgress::default());
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>22} [{bar:30}] {pos}/{len} {elapsed}")
            .expect("template")
            .progress_chars("=> "),
    );
    let watch = progress.clone();
    let ticker_bar = bar.clone();
    let ticker = tokio::spawn(async move {
        loop {
            ticker_bar.set_prefix(watch.phase.lock().expect("progress lock").clone());
            ticker_bar.set_length(watch.total.load(std::sync::atomic::Ordering::Relaxed));
            ticker_bar.set_position(watch.done.load(std::sync::atomic::Ordering::Relaxed));
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    });
    let result = engine
        .rebuild_catalog(&progress, args.accept_unsigned)
        .await;
    ticker.abort();
    bar.finish_and_clear();
    // Stray copies queued for deletion go now.
    if result.is_ok() {
        engine.drain_deletions().await?;
    }
    engine.shutdown().await;
    let report = result?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "rebuilt {} recordings, {} segments from {} objects ({}), {} audit entries",
            report.recordings,
            report.segments,
            report.objects_read,
            format::bytes(report.bytes_read),
            report.audit_entries
        );
        if report.unsigned_segments > 0 {
            println!(
                "{} unsigned segments adopted (--accept-unsigned)",
                report.unsigned_segments
            );
        }
        for s in &report.skipped {
            eprintln!("skipped {s}");
        }
        for t in &report.tails_removed {
            eprintln!("tail removed: {t}");
        }
    }
    Ok(())
}
