//! `reel export-archive` and `reel import-archive`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use clap::Args;
use futures::StreamExt;
use reel_api::{ImportResponse, PurgeRequest, PurgeResponse};
use reel_log::archive::{ArchiveReader, Frame};

use crate::{Client, UsageError, parse_id};

#[derive(Debug, Args)]
pub(crate) struct ExportArchiveArgs {
    /// Recordings to archive (closed ones).
    ids: Vec<String>,
    /// Instead of ids: closed recordings whose session started longer ago
    /// than this (e.g. 1y).
    #[arg(long)]
    older_than: Option<String>,
    /// With --older-than: only this user's.
    #[arg(long, requires = "older_than")]
    user: Option<String>,
    /// The archive file to write.
    #[arg(long, short)]
    output: PathBuf,
    /// Once the file is written and checked, purge the recordings from Reel.
    #[arg(long)]
    remove: bool,
}

/// What a checked archive holds.
struct Checked {
    recordings: Vec<String>,
    segments: u64,
}

/// Reads an archive file whole and checks every frame, every segment
/// against its row, and the end frame.
fn check(path: &Path) -> anyhow::Result<Checked> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut reader = ArchiveReader::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut out = Checked {
        recordings: Vec::new(),
        segments: 0,
    };
    let mut expected: std::collections::VecDeque<Vec<u8>> = Default::default();
    loop {
        while let Some(frame) = reader
            .next_frame()
            .map_err(|e| anyhow!("{}: {e}", path.display()))?
        {
            match frame {
                Frame::Recording(rec) => {
                    if !expected.is_empty() {
                        bail!("{}: a recording lacks segments", path.display());
                    }
                    let id = rec
                        .row
                        .as_ref()
                        .and_then(|r| reel_proto::RecordingId::from_slice(&r.id).ok())
                        .ok_or_else(|| {
                            anyhow!("{}: a recording without a valid id", path.display())
                        })?;
                    out.recordings.push(id.to_string());
                    expected = rec.segments.iter().map(|s| s.sha256.clone()).collect();
                }
                Frame::Segment(bytes) => {
                    let want = expected.pop_front().ok_or_else(|| {
                        anyhow!("{}: a segment no recording names", path.display())
                    })?;
                    if reel_log::sha256(&bytes)[..] != want[..] {
                        bail!("{}: a segment does not match its SHA-256", path.display());
                    }
                    out.segments += 1;
                }
                Frame::End(_) => {}
            }
        }
        let n = std::io::Read::read(&mut file, &mut buf)?;
        if n == 0 {
            break;
        }
        reader.push(&buf[..n]);
    }
    if !reader.complete() || !expected.is_empty() {
        bail!("{}: truncated (no end frame)", path.display());
    }
    Ok(out)
}

pub(crate) async fn export(client: &Client, args: ExportArchiveArgs) -> anyhow::Result<()> {
    if args.ids.is_empty() == args.older_than.is_none() {
        return Err(UsageError("give recording ids or --older-than (not both)".into()).into());
    }
    let mut pairs: Vec<(&str, String)> = Vec::new();
    if args.ids.is_empty() {
        pairs.push(("older_than", args.older_than.clone().unwrap_or_default()));
        if let Some(u) = &args.user {
            pairs.push(("user", u.clone()));
        }
    } else {
        for id in &args.ids {
            parse_id(id)?;
        }
        pairs.push(("ids", args.ids.join(",")));
    }
    let path = format!("/api/v1/archive?{}", serde_urlencoded::to_string(&pairs)?);
    let response = client.get(&path).await?;
    let tmp = args.output.with_extension("partial");
    let written: anyhow::Result<()> = async {
        let mut file = std::io::BufWriter::new(
            std::fs::File::create(&tmp)
                .with_context(|| format!("cannot create {}", tmp.display()))?,
        );
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            file.write_all(&chunk.map_err(|e| anyhow!("archive export interrupted: {e}"))?)?;
        }
        let file = file.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(())
    }
    .await;
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let checked = match check(&tmp) {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e.context("the archive did not check; nothing was removed"));
        }
    };
    std::fs::rename(&tmp, &args.output)?;
    println!(
        "archived {} recordings ({} segments) to {}, checked",
        checked.recordings.len(),
        checked.segments,
        args.output.display()
    );
    if args.remove && !checked.recordings.is_empty() {
        let req = PurgeRequest {
            ids: checked.recordings.clone(),
            reason: format!("archived to {}", args.output.display()),
            ..Default::default()
        };
        let out: PurgeResponse = client
            .send_json(reqwest::Method::POST, "/api/v1/purge", &req)
            .await?;
        println!("removed {} recordings from Reel", out.purged.len());
        for r in &out.refused {
            eprintln!("not removed {}: {}", r.id, r.reason);
        }
        if !out.refused.is_empty() {
            bail!("{} archived recording(s) not removed", out.refused.len());
        }
    }
    Ok(())
}

#[derive(Debug, Args)]
pub(crate) struct ImportArchiveArgs {
    file: PathBuf,
}

pub(crate) async fn import(client: &Client, args: ImportArchiveArgs) -> anyhow::Result<()> {
    // Checked whole first: a damaged file imports nothing.
    let checked = check(&args.file)?;
    let file = tokio::fs::File::open(&args.file).await?;
    let chunks = futures::stream::unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 1 << 20];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(buf), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    });
    let out: ImportResponse = client
        .post_body("/api/v1/archive", reqwest::Body::wrap_stream(chunks))
        .await?;
    println!(
        "imported {} of {} recordings from {}",
        out.imported.len(),
        checked.recordings.len(),
        args.file.display()
    );
    for r in &out.refused {
        eprintln!("not imported {}: {}", r.id, r.reason);
    }
    Ok(())
}

#[derive(Debug, Args)]
pub(crate) struct VerifyArchiveArgs {
    file: PathBuf,
    /// The public key (PEM) of the server that wrote the archive, as `reel
    /// keys public` printed it.
    #[arg(long)]
    public_key: PathBuf,
    /// The verdict as one JSON object.
    #[arg(long)]
    json: bool,
}

/// `reel verify-archive`: checks an archive with the file and a public key
/// alone (no server, no catalog); exit 1 unless everything is intact.
pub(crate) fn verify(args: VerifyArchiveArgs) -> anyhow::Result<()> {
    let pem = std::fs::read_to_string(&args.public_key)
        .with_context(|| format!("cannot read {}", args.public_key.display()))?;
    let key = reel_keys::PublicKey::from_pem(&pem)
        .map_err(|e| UsageError(format!("{}: {e}", args.public_key.display())))?;
    let file = std::fs::File::open(&args.file)
        .with_context(|| format!("cannot open {}", args.file.display()))?;
    let verdict = reel_log::archive::verify(std::io::BufReader::new(file), &key)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let ranges = |r: &[std::ops::Range<u64>]| -> Vec<String> {
        r.iter()
            .map(|e| format!("{}..{}", e.start, e.end))
            .collect()
    };
    if args.json {
        let recordings: Vec<_> = verdict
            .recordings
            .iter()
            .map(|r| {
                serde_json::json!({
                    "id": r.id,
                    "intact": r.problems.is_empty(),
                    "segments": r.segments,
                    "intact_segments": r.intact_segments,
                    "events": r.events,
                    "intact_events": ranges(&r.intact_events),
                    "problems": r.problems,
                })
            })
            .collect();
        let out = serde_json::json!({
            "intact": verdict.intact(),
            "key": key.id().to_string(),
            "signed_whole": verdict.signed_whole,
            "problems": verdict.problems,
            "recordings": recordings,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for r in &verdict.recordings {
            if r.problems.is_empty() {
                println!(
                    "{}: intact ({} segments, {} events)",
                    r.id, r.segments, r.events
                );
            } else {
                println!(
                    "{}: NOT intact; intact events {} of {} ({} of {} segments)",
                    r.id,
                    match ranges(&r.intact_events).join(", ") {
                        s if s.is_empty() => "none".to_string(),
                        s => s,
                    },
                    r.events,
                    r.intact_segments,
                    r.segments
                );
                for p in &r.problems {
                    println!("  {p}");
                }
            }
        }
        for p in &verdict.problems {
            println!("{}: {p}", args.file.display());
        }
        if verdict.signed_whole {
            println!("{}: whole, signed by key {}", args.file.display(), key.id());
        }
    }
    if !verdict.intact() {
        bail!("{}: not intact", args.file.display());
    }
    Ok(())
}
