//! `reel ingest`: a recorder for asciicast files.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, anyhow, bail};
use clap::Args;
use reel_proto::v1::record_request::Request as Req;
use reel_proto::v1::record_response::Response as Resp;
use reel_proto::v1::{CloseRecording, Event, EventBatch, RecordRequest, StartRecording};

use crate::{Client, UsageError, grpc};

/// Events per batch, and bytes per batch, sent to the server.
const BATCH_EVENTS: usize = 1000;
const BATCH_BYTES: usize = 1 << 20;

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// The asciicast file (v2 or v3).
    file: PathBuf,
    /// The user whose session this is (default: $USER).
    #[arg(long)]
    user: Option<String>,
    /// The host or service the session was opened to.
    #[arg(long, default_value = "localhost")]
    target: String,
    #[arg(long, default_value = "ssh")]
    protocol: String,
    /// A label, as NAME=VALUE; repeat for more.
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Title (default: the cast file's).
    #[arg(long)]
    title: Option<String>,
}

pub(crate) fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("label {s:?} is not NAME=VALUE")),
    }
}

pub(crate) async fn run(
    client: &Client,
    grpc: Option<&str>,
    server: &str,
    args: IngestArgs,
) -> anyhow::Result<()> {
    // Read and check the whole file before sending anything, so a bad file
    // leaves nothing behind on the server.
    let text = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let text = String::from_utf8(text)
        .map_err(|e| UsageError(format!("{}: not UTF-8 text: {e}", args.file.display())))?;
    let cast = reel_asciicast::parse(&text)
        .map_err(|e| UsageError(format!("{}: {e}", args.file.display())))?;

    let mut metadata = cast.metadata;
    metadata.user = args
        .user
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".into());
    metadata.target = args.target;
    metadata.protocol = args.protocol;
    metadata.labels = args.labels.into_iter().collect::<HashMap<_, _>>();
    if let Some(title) = args.title {
        metadata.title = title;
    }

    let endpoint = grpc::endpoint(client, grpc, server).await?;
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("cannot connect to the ingest service at {}", endpoint.uri()))?;
    let mut ingest = grpc::ingest(channel, client)?;

    let total = cast.events.len() as u64;
    let mut messages = vec![RecordRequest {
        request: Some(Req::Start(StartRecording {
            metadata: Some(metadata),
        })),
    }];
    let mut first_index = 0u64;
    for batch in batches(cast.events) {
        let n = batch.len() as u64;
        messages.push(RecordRequest {
            request: Some(Req::Events(EventBatch {
                first_index: Some(first_index),
                events: batch,
            })),
        });
        first_index += n;
    }
    messages.push(RecordRequest {
        request: Some(Req::Close(CloseRecording { duration_us: 0 })),
    });

    let mut responses = ingest
        .record(tokio_stream::iter(messages))
        .await
        .map_err(|s| anyhow!("server refused the recording: {}", s.message()))?
        .into_inner();
    let mut id = None;
    let mut durable = 0;
    loop {
        let message = responses.message().await.map_err(|s| {
            anyhow!(
                "{} ({:?}); {durable} of {total} events were acknowledged{}",
                s.message(),
                s.code(),
                id.as_ref()
                    .map(|i| format!(" in recording {i}"))
                    .unwrap_or_default()
            )
        })?;
        match message.and_then(|m| m.response) {
            Some(Resp::Started(s)) => id = Some(s.recording_id),
            Some(Resp::Ack(a)) => durable = a.durable_events,
            Some(Resp::Closed(c)) => {
                if c.event_count != total {
                    bail!(
                        "server closed recording {} with {} of {total} events",
                        c.recording_id,
                        c.event_count
                    );
                }
                println!("{}", c.recording_id);
                return Ok(());
            }
            None => bail!(
                "the server ended the stream before closing the recording ({durable} of {total} events acknowledged)"
            ),
        }
    }
}

fn batches(events: Vec<Event>) -> Vec<Vec<Event>> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0;
    for e in events {
        if !current.is_empty()
            && (current.len() >= BATCH_EVENTS || bytes + e.data.len() > BATCH_BYTES)
        {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += e.data.len();
        current.push(e);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}
