//! `reel play`: replays a terminal recording in the terminal, like
//! `asciinema play`: output events written at their times, scaled by
//! `--speed`, with pauses capped by `--idle-limit` (or the recording's own
//! `idle_time_limit`), starting at `--from`. Only what draws on the screen
//! reaches the terminal (see `terminal_guard`).

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, anyhow};
use clap::Args;
use futures::StreamExt;
use reel_api::GAP_MARKER;
use tokio::time::Instant;

use crate::terminal_guard::TerminalGuard;
use crate::{Client, UsageError, parse_id, window_query};

#[derive(Debug, Args)]
pub(crate) struct PlayArgs {
    id: String,
    /// Playback speed: 2 plays twice as fast.
    #[arg(long, short, default_value_t = 1.0)]
    speed: f64,
    /// Start here ([[HH:]MM:]SS[.fraction] from the recording's start).
    #[arg(long)]
    from: Option<String>,
    /// Stop here.
    #[arg(long)]
    to: Option<String>,
    /// Cap every pause at this many seconds (default: the recording's
    /// idle_time_limit, if it has one).
    #[arg(long, short)]
    idle_limit: Option<f64>,
}

pub(crate) async fn run(client: &Client, args: PlayArgs) -> anyhow::Result<()> {
    let id = parse_id(&args.id)?;
    if !(args.speed.is_finite() && args.speed > 0.0) {
        return Err(UsageError("--speed must be a positive number".into()).into());
    }
    if args
        .idle_limit
        .is_some_and(|l| !(l.is_finite() && l >= 0.0))
    {
        return Err(UsageError("--idle-limit must be zero or more seconds".into()).into());
    }
    let query = window_query("cast", args.from.as_deref(), args.to.as_deref())?;
    let response = client
        .get(&format!("/api/v1/recordings/{id}/export?{query}"))
        .await?;
    let mut body = response.bytes_stream();
    let mut pending = Vec::new();
    let mut player: Option<Player> = None;
    let mut out = std::io::stdout().lock();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| anyhow!("playback interrupted: {e}"))?;
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let line = std::str::from_utf8(&line[..line.len() - 1])
                .context("the server sent a line that is not UTF-8")?;
            match &mut player {
                None => player = Some(Player::new(line, args.speed, args.idle_limit)?),
                Some(p) => p.event(line, &mut out).await?,
            }
        }
    }
    out.flush()?;
    Ok(())
}

struct Player {
    speed: f64,
    idle_limit: Option<f64>,
    start: Instant,
    /// The recording time of the last event, and the playback time (in
    /// recording seconds, pauses capped) it was shown at.
    last_time: f64,
    played: f64,
    /// Keeps what could act outside the screen off the reviewer's terminal.
    guard: TerminalGuard,
}

impl Player {
    fn new(header: &str, speed: f64, idle_limit: Option<f64>) -> anyhow::Result<Player> {
        let header: serde_json::Value =
            serde_json::from_str(header).context("the recording's header is not JSON")?;
        let idle_limit = idle_limit.or_else(|| header["idle_time_limit"].as_f64());
        Ok(Player {
            speed,
            idle_limit,
            start: Instant::now(),
            last_time: 0.0,
            played: 0.0,
            guard: TerminalGuard::default(),
        })
    }

    async fn event(&mut self, line: &str, out: &mut impl Write) -> anyhow::Result<()> {
        let event: (f64, String, String) = serde_json::from_str(line)
            .with_context(|| format!("not an asciicast event: {line}"))?;
        let (time, code, data) = event;
        let mut pause = (time - self.last_time).max(0.0);
        if let Some(limit) = self.idle_limit {
            pause = pause.min(limit);
        }
        self.last_time = time;
        self.played += pause;
        let due = self.start + Duration::from_secs_f64(self.played / self.speed);
        if due > Instant::now() {
            out.flush()?;
            tokio::time::sleep_until(due).await;
        }
        match code.as_str() {
            "o" => out.write_all(&self.guard.filter(data.as_bytes()))?,
            "m" if data.starts_with(GAP_MARKER) => {
                out.flush()?;
                eprintln!("\r\n[reel: {}]\r", &data["reel: ".len()..]);
            }
            _ => {}
        }
        Ok(())
    }
}
