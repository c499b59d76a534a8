//! `reel purge`, `reel hold`, `reel release`, `reel audit`.

use anyhow::bail;
use clap::Args;
use reel_api::{AuditRecord, HoldInfo, HoldRequest, PurgeRequest, PurgeResponse};

use crate::{Client, UsageError, format, parse_id};

#[derive(Debug, Args)]
pub(crate) struct PurgeArgs {
    /// Recordings to purge.
    ids: Vec<String>,
    /// Instead of ids: every closed recording whose session started longer
    /// ago than this (e.g. 90d).
    #[arg(long)]
    older_than: Option<String>,
    /// With --older-than: only this user's (`*` matches any run of characters).
    #[arg(long, requires = "older_than")]
    user: Option<String>,
    /// Why, for the audit log.
    #[arg(long, default_value = "")]
    reason: String,
    /// Purge recordings that are still being recorded too (refused
    /// otherwise).
    #[arg(long)]
    force: bool,
    /// Say what would be purged; change nothing.
    #[arg(long)]
    dry_run: bool,
    #[arg(long)]
    json: bool,
}

pub(crate) async fn purge(client: &Client, args: PurgeArgs) -> anyhow::Result<()> {
    if args.ids.is_empty() == args.older_than.is_none() {
        return Err(UsageError("give recording ids or --older-than (not both)".into()).into());
    }
    for id in &args.ids {
        parse_id(id)?;
    }
    let req = PurgeRequest {
        ids: args.ids,
        older_than: args.older_than,
        user: args.user,
        dry_run: args.dry_run,
        force: args.force,
        by: String::new(),
        reason: args.reason,
    };
    let out: PurgeResponse = client
        .send_json(reqwest::Method::POST, "/api/v1/purge", &req)
        .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let verb = if out.dry_run { "would purge" } else { "purged" };
        for id in &out.purged {
            println!("{verb} {id}");
        }
        for r in &out.refused {
            eprintln!("refused {}: {}", r.id, r.reason);
        }
        if out.purged.is_empty() && out.refused.is_empty() {
            println!("nothing to purge");
        }
    }
    if !out.refused.is_empty() {
        bail!("{} recording(s) not purged", out.refused.len());
    }
    Ok(())
}

#[derive(Debug, Args)]
pub(crate) struct HoldArgs {
    id: String,
    /// Why (required for a hold).
    #[arg(long, default_value = "")]
    reason: String,
}

pub(crate) async fn hold(client: &Client, args: HoldArgs, put: bool) -> anyhow::Result<()> {
    let id = parse_id(&args.id)?;
    if put && args.reason.trim().is_empty() {
        return Err(UsageError("a legal hold needs --reason".into()).into());
    }
    let req = HoldRequest {
        by: String::new(),
        reason: args.reason,
    };
    let path = format!("/api/v1/recordings/{id}/hold");
    if put {
        let hold: HoldInfo = client.send_json(reqwest::Method::POST, &path, &req).await?;
        println!("{id} is under legal hold: {} (by {})", hold.reason, hold.by);
    } else {
        let _: serde_json::Value = client
            .send_json(reqwest::Method::DELETE, &path, &req)
            .await?;
        println!("{id} released");
    }
    Ok(())
}

#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    /// The first `--limit` entries from this time on (a date, an RFC 3339
    /// time, or an age: 7d); without it, the latest `--limit`.
    #[arg(long)]
    since: Option<String>,
    #[arg(long, default_value_t = 1000)]
    limit: usize,
    /// Only the entries that name this recording (the latest `--limit`):
    /// who viewed, exported, held or purged it.
    #[arg(long, value_name = "ID")]
    recording: Option<String>,
    /// Check the log's hash chain instead: exit 1 if an entry was changed
    /// or removed.
    #[arg(long)]
    verify: bool,
    #[arg(long)]
    json: bool,
}

pub(crate) async fn audit(client: &Client, args: AuditArgs) -> anyhow::Result<()> {
    if args.verify {
        let check: reel_api::AuditVerify = client.get_json("/api/v1/audit/verify").await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&check)?);
        } else {
            println!(
                "{} chained entries (head {}), {} from before the chain",
                check.entries, check.head_seq, check.unchained
            );
            for p in &check.problems {
                println!("problem: {p}");
            }
        }
        if !check.problems.is_empty() {
            bail!(
                "the audit log was changed: {} problem(s)",
                check.problems.len()
            );
        }
        println!("the audit log is intact");
        return Ok(());
    }
    let mut pairs = vec![("limit", args.limit.to_string())];
    if let Some(s) = args.since {
        pairs.push(("since", s));
    }
    if let Some(id) = args.recording {
        pairs.push(("recording", id));
    }
    let path = format!("/api/v1/audit?{}", serde_urlencoded::to_string(pairs)?);
    let entries: Vec<AuditRecord> = client.get_json(&path).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(());
    }
    println!(
        "{:<20}  {:<15}  {:<12}  {:<21}  {:<40}  RECORDINGS",
        "WHEN", "ACTION", "BY", "CLIENT", "WHY / WHAT"
    );
    for e in entries {
        let what = match (e.reason.is_empty(), e.detail.is_empty()) {
            (false, false) => format!("{} ({})", e.reason, e.detail),
            (false, true) => e.reason,
            _ => e.detail,
        };
        println!(
            "{:<20}  {:<15}  {:<12}  {:<21}  {:<40}  {}",
            format::time(e.at_us),
            e.action,
            e.by,
            e.client,
            what,
            e.recordings.join(" ")
        );
    }
    Ok(())
}
