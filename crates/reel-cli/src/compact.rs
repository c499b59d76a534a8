//! `reel compact`: start recombination on the server and watch it, with a
//! progress bar for the recording being recombined and one for the whole.

use std::time::Duration;

use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use reel_api::CompactStatus;

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
}

const POLL: Duration = Duration::from_millis(200);

pub(crate) async fn run(client: &Client, args: CompactArgs) -> anyhow::Result<()> {
    let query = match &args.recording {
        Some(id) => format!("?recording={}", parse_id(id)?),
        None => String::new(),
    };
    let sep = if query.is_empty() { '?' } else { '&' };
    if args.dry_run {
        let plan: CompactStatus = client
            .post_json(&format!("/api/v1/compact{query}{sep}dry_run=true"))
            .await?;
        return print_plan(&plan, args.json);
    }
    let start: CompactStatus = client.post_json(&format!("/api/v1/compact{query}")).await?;
    let total_bytes: u64 = start.plan.iter().map(|p| p.bytes).sum();
    let total = start.plan.len() as u64;
    let bars = MultiProgress::new();
    let overall = bars.add(ProgressBar::new(total_bytes));
    overall.set_style(
        ProgressStyle::with_template(
            "{prefix:>9} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
        )
        .expect("template")
        .progress_chars("=> "),
    );
    overall.set_prefix("all");
    let current = bars.add(ProgressBar::new(0));
    current.set_style(
        ProgressStyle::with_template("{prefix:>9} [{bar:30}] {bytes}/{total_bytes} {msg}")
            .expect("template")
            .progress_chars("=> "),
    );
    current.set_prefix("recording");
    let base = start.recombined;
    let base_bytes = start.recombined_bytes;
    let last = loop {
        tokio::time::sleep(POLL).await;
        let now: CompactStatus = client.get_json(&format!("/api/v1/compact{query}")).await?;
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
            // The server's round ended (a store failed, or work arrived):
            // ask again.
            let _: CompactStatus = client.post_json(&format!("/api/v1/compact{query}")).await?;
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
