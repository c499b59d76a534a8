//! `reel load`: a load generator for sizing a server, and the project's own
//! benchmark of the whole ingest path. It opens N recordings as gRPC
//! streams over C connections (all of them, before any sends) and then
//! sends terminal-like events, open loop
//! (each event is due at its own time, whatever the acknowledgements do,
//! and its latency counts from when it was due, so a server that falls
//! behind shows it) in bursts as a terminal's output comes; or closed loop
//! (one event a message, the next once the last is acknowledged) for the
//! most a server takes. Once every recording has stopped and has its
//! acknowledgements, it closes them all, and reports events sent and
//! acknowledged, the acknowledgement latency's percentiles, how long
//! opening and closing took, and the errors.
//!
//! The events are a function of the seed, the recording's number and the
//! event's index ([`event_data`]); each recording is labelled
//! `load=<seed>` and targets `load-<number>`, so that what was stored can
//! be checked against what was sent.

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::Context;
use reel_proto::v1::record_request::Request as Req;
use reel_proto::v1::record_response::Response as Resp;
use reel_proto::v1::{
    CloseRecording, Event, EventBatch, EventKind, RecordRequest, RecordResponse, RecordingMetadata,
    StartRecording,
};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use crate::grpc::{self, Ingest};
use crate::{Client, UsageError};

/// The smallest event: room for the recording's number and the index.
const MIN_EVENT_BYTES: usize = 32;
/// A burst holds at most this many events.
const MAX_BURST: u64 = 16;

#[derive(Debug, clap::Args)]
pub(crate) struct LoadArgs {
    /// Recordings open at once, each its own gRPC stream.
    #[arg(long, default_value_t = 100)]
    recordings: usize,
    /// Events a second each recording sends (open loop).
    #[arg(long, default_value_t = 10.0)]
    events_per_second: f64,
    /// Bytes of each event's data (at least 32).
    #[arg(long, default_value_t = 128)]
    event_bytes: usize,
    /// How long to send (`30s`, `2m`).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// gRPC connections the streams are spread over.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// One event a message, the next when the last is acknowledged: the
    /// most the server takes, rather than a given rate.
    #[arg(long)]
    closed_loop: bool,
    /// The events are a function of this (the same seed, the same bytes).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// One JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// The latencies are also given for each interval this long (by when
    /// the events were due), to tell a steady tail from a passing one.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    interval: Duration,
}

/// What `reel load --json` prints.
#[derive(Debug, Serialize)]
pub struct LoadReport {
    pub recordings: usize,
    pub connections: usize,
    pub closed_loop: bool,
    /// The whole run: opening, sending for `--duration`, closing.
    pub seconds: f64,
    /// Opening every recording, before any event is sent.
    pub open_seconds: f64,
    /// Closing every recording, once all have stopped sending.
    pub close_seconds: f64,
    pub events_sent: u64,
    pub events_acknowledged: u64,
    /// Acknowledged events a second.
    pub events_per_second: f64,
    pub ack_p50_ms: f64,
    pub ack_p99_ms: f64,
    pub ack_p999_ms: f64,
    pub ack_max_ms: f64,
    /// How late this tool handed batches to their streams, against when
    /// they were due (open loop; 0 closed loop). A latency counts from when
    /// its batch was due, so where this is near the acknowledgement
    /// latencies, the load generator, not the server, is the bottleneck.
    pub send_late_p99_ms: f64,
    /// Recordings whose stream failed, or that closed with other than what
    /// was acknowledged.
    pub errors: u64,
    /// The first few errors, as the server said them.
    pub error_samples: Vec<String>,
    pub seed: u64,
    /// The acknowledgement latencies of each `--interval` of the run, by
    /// when the events were due.
    pub intervals: Vec<IntervalReport>,
}

/// The acknowledgement latencies of the batches due in one interval.
#[derive(Debug, Serialize, PartialEq)]
pub struct IntervalReport {
    /// Where the interval starts, seconds after the first event was due.
    pub from_seconds: f64,
    /// Acknowledged batches (messages) due in it.
    pub acknowledgements: u64,
    pub ack_p50_ms: f64,
    pub ack_p99_ms: f64,
    pub ack_max_ms: f64,
}

/// The data of event `index` of recording `number` under `seed`: a
/// coloured stamp, then printable characters from a generator seeded by
/// all three, then CR LF; `bytes` long (at least [`MIN_EVENT_BYTES`]).
pub fn event_data(seed: u64, number: usize, index: u64, bytes: usize) -> Vec<u8> {
    use std::io::Write as _;
    // Made to its length at once: this is on the generator's per-event
    // path, and every byte of CPU it spends is taken from the server it
    // shares a machine with.
    let mut out = Vec::with_capacity(bytes.max(MIN_EVENT_BYTES));
    write!(out, "\x1b[32m{number:05} {index:08}\x1b[0m ").expect("writing to a Vec");
    let mut x = (seed ^ ((number as u64) << 40) ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1;
    while out.len() < bytes.saturating_sub(2) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.push(b' ' + (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 58) as u8 % 95);
    }
    out.truncate(bytes.saturating_sub(2));
    out.extend_from_slice(b"\r\n");
    out
}

/// A small generator for the timing of bursts (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// When one recording's bursts are due, open loop: bursts of geometric
/// size (mean about 3: a terminal's output comes in runs of reads) at
/// exponential gaps whose mean is the burst's events over the rate.
///
/// The first burst is due as if the recording had been sending for long
/// already (the process's equilibrium): its gap is drawn for a burst size
/// picked in proportion to its gap's mean, the way a random instant falls
/// in a long gap more often than in a short one. A fleet of recordings so
/// started sends at its rate from the first instant; starting each one
/// uniformly over the first 0.4 s, as before, sent up to 1.9 times the
/// rate in that time (every first burst on top of the second ones), and
/// made the first second the worst of every run.
struct Schedule {
    rng: Rng,
    rate: f64,
    due: Instant,
}

impl Schedule {
    fn new(rng: Rng, rate: f64, begin: Instant) -> Self {
        let mut s = Schedule {
            rng,
            rate,
            due: begin,
        };
        let biased = loop {
            let k = s.burst_size();
            if s.rng.unit() * (MAX_BURST as f64) < k as f64 {
                break k;
            }
        };
        let gap = s.gap(biased);
        s.due += gap;
        s
    }

    fn burst_size(&mut self) -> u64 {
        let mut k = 1;
        while k < MAX_BURST && self.rng.unit() < 2.0 / 3.0 {
            k += 1;
        }
        k
    }

    fn gap(&mut self, burst: u64) -> Duration {
        let mean = burst as f64 / self.rate;
        Duration::from_secs_f64(-mean * (1.0 - self.rng.unit()).ln())
    }

    /// The next burst: when it is due, and how many events it holds.
    fn next_burst(&mut self) -> (Instant, u64) {
        let due = self.due;
        let burst = self.burst_size();
        let gap = self.gap(burst);
        self.due += gap;
        (due, burst)
    }
}

pub(crate) async fn run(
    client: &Client,
    grpc: Option<&str>,
    server: &str,
    args: LoadArgs,
) -> anyhow::Result<()> {
    if args.interval.is_zero() {
        return Err(UsageError("--interval must be above 0".into()).into());
    }
    if args.recordings == 0 || args.connections == 0 {
        return Err(UsageError("--recordings and --connections must be at least 1".into()).into());
    }
    if args.event_bytes < MIN_EVENT_BYTES {
        return Err(UsageError(format!("--event-bytes must be at least {MIN_EVENT_BYTES}")).into());
    }
    let rate_ok = args.events_per_second.is_finite() && args.events_per_second > 0.0;
    if !args.closed_loop && !rate_ok {
        return Err(UsageError("--events-per-second must be above 0".into()).into());
    }
    let endpoint = grpc::endpoint(client, grpc, server).await?;
    let mut channels = Vec::new();
    for _ in 0..args.connections {
        let channel = endpoint.connect().await.with_context(|| {
            format!("cannot connect to the ingest service at {}", endpoint.uri())
        })?;
        channels.push(grpc::ingest(channel, client)?);
    }
    let seed = args.seed;
    let started = Instant::now();
    let mut failures: Vec<String> = Vec::new();
    // Every recording is open before any sends: the latencies are those of
    // recordings held open, not of a server busy opening others (how long
    // opening took is said apart).
    let mut opening = tokio::task::JoinSet::new();
    for number in 0..args.recordings {
        let ingest = channels[number % channels.len()].clone();
        opening.spawn(async move {
            open(ingest, number, seed)
                .await
                .map_err(|e| format!("recording {number}: {e:#}"))
        });
    }
    let mut streams = Vec::with_capacity(args.recordings);
    while let Some(done) = opening.join_next().await {
        match done.context("a load task failed")? {
            Ok(stream) => streams.push(stream),
            Err(e) => failures.push(e),
        }
    }
    let open_seconds = started.elapsed().as_secs_f64();
    // The first events are due once every sending task has been spawned
    // and polled (some microseconds a recording): this tool's own start is
    // not the server's latency.
    let begin = Instant::now()
        + Duration::from_millis(20)
        + Duration::from_micros(5) * args.recordings.min(1 << 20) as u32;
    let plan = Plan {
        seed,
        rate: args.events_per_second,
        bytes: args.event_bytes,
        closed_loop: args.closed_loop,
        begin,
        until: begin + args.duration,
    };
    let mut sending = tokio::task::JoinSet::new();
    for mut stream in streams {
        let plan = plan.clone();
        sending.spawn(async move {
            let mut out = Outcome::default();
            let result = send(&mut stream, &plan, &mut out).await;
            (stream, out, result)
        });
    }
    let (mut sent, mut acked) = (0u64, 0u64);
    let mut acks: Vec<Sample> = Vec::new();
    let mut late_us: Vec<u32> = Vec::new();
    let mut streams = Vec::new();
    while let Some(done) = sending.join_next().await {
        let (stream, outcome, result) = done.context("a load task failed")?;
        sent += outcome.sent;
        acked += stream.durable;
        acks.extend(outcome.samples);
        late_us.extend(outcome.late_us);
        match result {
            Ok(()) => streams.push(stream),
            Err(e) => failures.push(format!("recording {}: {e:#}", stream.number)),
        }
    }
    // Closed once every recording has stopped: a close seals the
    // recording's last segment, work that would otherwise land on the
    // acknowledgements of recordings still sending.
    let closing_from = Instant::now();
    let mut closing = tokio::task::JoinSet::new();
    for stream in streams {
        let number = stream.number;
        closing.spawn(async move {
            close(stream)
                .await
                .map_err(|e| format!("recording {number}: {e:#}"))
        });
    }
    while let Some(done) = closing.join_next().await {
        if let Err(e) = done.context("a load task failed")? {
            failures.push(e);
        }
    }
    let close_seconds = closing_from.elapsed().as_secs_f64();
    let errors = failures.len() as u64;
    failures.sort();
    let samples: Vec<String> = failures.into_iter().take(5).collect();
    let seconds = started.elapsed().as_secs_f64();
    let intervals = by_interval(&mut acks, args.interval);
    let mut latencies: Vec<u32> = acks.iter().map(|s| s.latency_us).collect();
    drop(acks);
    latencies.sort_unstable();
    let pct = |p: f64| percentile_ms(&latencies, p);
    late_us.sort_unstable();
    let report = LoadReport {
        recordings: args.recordings,
        connections: args.connections,
        closed_loop: args.closed_loop,
        seconds,
        open_seconds,
        close_seconds,
        events_sent: sent,
        events_acknowledged: acked,
        events_per_second: acked as f64 / args.duration.as_secs_f64().max(1e-9),
        ack_p50_ms: pct(0.5),
        ack_p99_ms: pct(0.99),
        ack_p999_ms: pct(0.999),
        ack_max_ms: pct(1.0),
        send_late_p99_ms: percentile_ms(&late_us, 0.99),
        errors,
        error_samples: samples,
        seed: args.seed,
        intervals,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "reel load: {} recordings over {} connection(s), {}, {}-byte events, {:.1} s",
            report.recordings,
            report.connections,
            if args.closed_loop {
                "closed loop".to_string()
            } else {
                format!("{} events/s each", args.events_per_second)
            },
            args.event_bytes,
            seconds
        );
        println!(
            "opened the recordings in {:.1} s, closed them in {:.1} s",
            report.open_seconds, report.close_seconds
        );
        println!(
            "sent {} events, acknowledged {} ({:.0} events/s), errors {}",
            report.events_sent, report.events_acknowledged, report.events_per_second, report.errors
        );
        println!(
            "acknowledgement latency: p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms",
            report.ack_p50_ms, report.ack_p99_ms, report.ack_p999_ms, report.ack_max_ms
        );
        if !args.closed_loop {
            println!(
                "sent late (this tool's own delay, counted in the latencies): p99 {:.2} ms",
                report.send_late_p99_ms
            );
        }
        if report.intervals.len() > 1 {
            for i in &report.intervals {
                println!(
                    "  from {:>5.0} s: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  ({} acknowledgements)",
                    i.from_seconds, i.ack_p50_ms, i.ack_p99_ms, i.ack_max_ms, i.acknowledgements
                );
            }
        }
        for e in &report.error_samples {
            println!("error: {e}");
        }
    }
    if report.errors > 0 {
        anyhow::bail!(
            "{} of {} recordings failed",
            report.errors,
            report.recordings
        );
    }
    Ok(())
}

#[derive(Clone)]
struct Plan {
    seed: u64,
    rate: f64,
    bytes: usize,
    closed_loop: bool,
    begin: Instant,
    until: Instant,
}

/// What one recording's sending came to.
#[derive(Default)]
struct Outcome {
    sent: u64,
    samples: Vec<Sample>,
    /// How late each batch was handed to the stream (open loop).
    late_us: Vec<u32>,
}

/// One acknowledged batch: when it was due (milliseconds after the run's
/// begin) and how long after that its acknowledgement came.
#[derive(Clone, Copy, Debug)]
struct Sample {
    due_ms: u32,
    latency_us: u32,
}

/// Times are kept in u32 (of ms or µs: days, hours) to keep millions of
/// samples small.
fn saturating_u32(v: u128) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// The `p` quantile of sorted latencies, in milliseconds (0 if none).
fn percentile_ms(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let i = ((sorted_us.len() - 1) as f64 * p).round() as usize;
    sorted_us[i] as f64 / 1000.0
}

/// The latencies of each `interval` of due times, in order, the empty ones
/// left out.
fn by_interval(samples: &mut [Sample], interval: Duration) -> Vec<IntervalReport> {
    let width = saturating_u32(interval.as_millis()).max(1);
    samples.sort_unstable_by_key(|s| s.due_ms);
    samples
        .chunk_by(|a, b| a.due_ms / width == b.due_ms / width)
        .map(|group| {
            let mut us: Vec<u32> = group.iter().map(|s| s.latency_us).collect();
            us.sort_unstable();
            IntervalReport {
                from_seconds: f64::from(group[0].due_ms / width) * f64::from(width) / 1000.0,
                acknowledgements: us.len() as u64,
                ack_p50_ms: percentile_ms(&us, 0.5),
                ack_p99_ms: percentile_ms(&us, 0.99),
                ack_max_ms: percentile_ms(&us, 1.0),
            }
        })
        .collect()
}

/// A recording's open stream, between the phases of a run.
struct Stream {
    number: usize,
    tx: mpsc::Sender<RecordRequest>,
    responses: tonic::Streaming<RecordResponse>,
    /// Events sent.
    next: u64,
    /// Events acknowledged.
    durable: u64,
}

/// Opens recording `number`'s stream and starts it.
async fn open(mut ingest: Ingest, number: usize, seed: u64) -> anyhow::Result<Stream> {
    let (tx, rx) = mpsc::channel(64);
    let metadata = RecordingMetadata {
        user: "load".into(),
        target: format!("load-{number:05}"),
        protocol: "load".into(),
        labels: [("load".to_string(), seed.to_string())].into(),
        ..Default::default()
    };
    tx.send(RecordRequest {
        request: Some(Req::Start(StartRecording {
            metadata: Some(metadata),
        })),
    })
    .await?;
    let mut responses = ingest
        .record(ReceiverStream::new(rx))
        .await
        .map_err(|s| anyhow::anyhow!("start refused: {}", s.message()))?
        .into_inner();
    match responses.message().await?.and_then(|m| m.response) {
        Some(Resp::Started(_)) => {}
        other => anyhow::bail!("expected Started, got {other:?}"),
    }
    Ok(Stream {
        number,
        tx,
        responses,
        next: 0,
        durable: 0,
    })
}

/// One recording's events from the plan's beginning to its end, then its
/// acknowledgements until every event sent is acknowledged.
async fn send(stream: &mut Stream, plan: &Plan, out: &mut Outcome) -> anyhow::Result<()> {
    let number = stream.number;
    let rng = Rng((plan.seed ^ ((number as u64 + 1) << 20)) | 1);
    // Events sent and not yet acknowledged: (the index after the batch, when
    // it was due).
    let mut pending: VecDeque<(u64, Instant)> = VecDeque::new();
    let mut schedule = (!plan.closed_loop).then(|| Schedule::new(rng, plan.rate, plan.begin));
    // The next batch: when it is due, and its events.
    let mut next = match &mut schedule {
        Some(s) => s.next_burst(),
        None => (plan.begin, 1),
    };
    let sleep = tokio::time::sleep_until(next.0);
    tokio::pin!(sleep);
    loop {
        let (due, burst) = next;
        let now = Instant::now();
        let may_send = !plan.closed_loop || pending.is_empty();
        let sending = now < plan.until && (plan.closed_loop || due < plan.until);
        if !sending && pending.is_empty() {
            return Ok(());
        }
        if sending && may_send && now >= due {
            if !plan.closed_loop {
                let late = now.saturating_duration_since(due).as_micros();
                out.late_us.push(saturating_u32(late));
            }
            let first = stream.next;
            // A burst is one read of the terminal's output: one time.
            let time_us = now.saturating_duration_since(plan.begin).as_micros() as u64;
            let events: Vec<Event> = (first..first + burst)
                .map(|i| Event {
                    time_us,
                    kind: EventKind::Output as i32,
                    data: event_data(plan.seed, number, i, plan.bytes),
                })
                .collect();
            let message = RecordRequest {
                request: Some(Req::Events(EventBatch {
                    first_index: Some(first),
                    events,
                })),
            };
            stream
                .tx
                .send(message)
                .await
                .map_err(|_| anyhow::anyhow!("the stream closed"))?;
            stream.next += burst;
            out.sent += burst;
            pending.push_back((stream.next, due));
            next = match &mut schedule {
                Some(s) => s.next_burst(),
                None => (Instant::now(), 1),
            };
            continue;
        }
        let m = if sending {
            let wake = if may_send { due } else { plan.until };
            // One timer for the whole run, moved rather than made anew: a
            // timer dropped when an acknowledgement comes first, and made
            // again, costs the timer wheel's lock twice a message; moving a
            // registered timer later does not take it.
            if sleep.deadline() != wake {
                sleep.as_mut().reset(wake);
            }
            tokio::select! {
                m = stream.responses.message() => m,
                _ = &mut sleep => continue,
            }
        } else {
            stream.responses.message().await
        };
        let m = m.map_err(|s| anyhow::anyhow!("{} ({:?})", s.message(), s.code()))?;
        match m.and_then(|m| m.response) {
            Some(Resp::Ack(a)) => {
                stream.durable = stream.durable.max(a.durable_events);
                settle(&mut pending, stream.durable, plan.begin, out);
            }
            Some(other) => anyhow::bail!("unexpected answer {other:?}"),
            None => anyhow::bail!("the server ended the stream"),
        }
    }
}

/// Closes the recording; it must say it holds every event sent.
async fn close(mut stream: Stream) -> anyhow::Result<()> {
    stream
        .tx
        .send(RecordRequest {
            request: Some(Req::Close(CloseRecording { duration_us: 0 })),
        })
        .await
        .map_err(|_| anyhow::anyhow!("the stream closed"))?;
    loop {
        let m = stream
            .responses
            .message()
            .await
            .map_err(|s| anyhow::anyhow!("{} ({:?})", s.message(), s.code()))?;
        match m.and_then(|m| m.response) {
            Some(Resp::Ack(_)) => {}
            Some(Resp::Closed(c)) => {
                if c.event_count != stream.next {
                    anyhow::bail!("closed with {} events, {} sent", c.event_count, stream.next);
                }
                return Ok(());
            }
            other => anyhow::bail!("expected Closed, got {other:?}"),
        }
    }
}

/// Counts the latency of every batch `durable` covers.
fn settle(pending: &mut VecDeque<(u64, Instant)>, durable: u64, begin: Instant, out: &mut Outcome) {
    let now = Instant::now();
    while let Some(&(end, due)) = pending.front() {
        if end > durable {
            break;
        }
        pending.pop_front();
        let us = now.saturating_duration_since(due).as_micros();
        let due_ms = due.saturating_duration_since(begin).as_millis();
        out.samples.push(Sample {
            due_ms: saturating_u32(due_ms),
            latency_us: saturating_u32(us),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_a_function_of_seed_number_and_index() {
        let a = event_data(7, 3, 42, 128);
        assert_eq!(a.len(), 128);
        assert_eq!(a, event_data(7, 3, 42, 128));
        assert_ne!(a, event_data(8, 3, 42, 128));
        assert_ne!(a, event_data(7, 4, 42, 128));
        assert_ne!(a, event_data(7, 3, 43, 128));
        assert!(a.ends_with(b"\r\n"));
        assert!(
            a[..a.len() - 2]
                .iter()
                .all(|&b| b == 0x1b || (b' '..=b'~').contains(&b))
        );
        assert_eq!(event_data(1, 0, 0, MIN_EVENT_BYTES).len(), MIN_EVENT_BYTES);
    }

    #[test]
    fn a_fleet_sends_at_its_rate_from_the_first_instant() {
        // 5,000 recordings at 10 events/s: the events due in each tenth of
        // a second over the first 3 s. Seeded, so the counts are fixed;
        // what is asserted is what a user asked for, the rate.
        let (recordings, rate) = (5_000, 10.0);
        let begin = Instant::now();
        let mut tenths = [0u64; 30];
        for number in 0..recordings {
            let mut s = Schedule::new(Rng((number << 20) | 1), rate, begin);
            loop {
                let (due, burst) = s.next_burst();
                let Some(slot) = tenths.get_mut((due - begin).as_millis() as usize / 100) else {
                    break;
                };
                *slot += burst;
            }
        }
        let expected = recordings as f64 * rate / 10.0;
        let total: u64 = tenths.iter().sum();
        let mean = total as f64 / tenths.len() as f64;
        assert!(
            (mean / expected - 1.0).abs() < 0.03,
            "{mean} events a tenth of a second on average, asked {expected}"
        );
        // No tenth, the first ones included, far from the rate (the old
        // start sent 1.9 times it at 0.3-0.4 s).
        for (i, &n) in tenths.iter().enumerate() {
            let ratio = n as f64 / expected;
            assert!(
                (0.85..1.15).contains(&ratio),
                "{n} events due in tenth {i}, {ratio:.2} times the rate: {tenths:?}"
            );
        }
        let first: u64 = tenths[..5].iter().sum();
        let later: u64 = tenths[20..25].iter().sum();
        assert!(
            (first as f64 / later as f64 - 1.0).abs() < 0.06,
            "{first} events in the first half second, {later} in one later"
        );
    }

    #[test]
    fn each_interval_has_the_latencies_of_the_batches_due_in_it() {
        let sample = |due_ms, latency_us| Sample { due_ms, latency_us };
        // Out of order, as recordings finish; nothing due in 20-30 s.
        let mut acks = vec![
            sample(31_000, 9_000),
            sample(100, 1_000),
            sample(9_999, 3_000),
            sample(10_000, 40_000),
            sample(5_000, 2_000),
        ];
        let intervals = by_interval(&mut acks, Duration::from_secs(10));
        let expect = |from_seconds, acknowledgements, p50, max| IntervalReport {
            from_seconds,
            acknowledgements,
            ack_p50_ms: p50,
            ack_p99_ms: max,
            ack_max_ms: max,
        };
        assert_eq!(
            intervals,
            vec![
                expect(0.0, 3, 2.0, 3.0),
                expect(10.0, 1, 40.0, 40.0),
                expect(30.0, 1, 9.0, 9.0),
            ]
        );
        assert!(by_interval(&mut [], Duration::from_secs(1)).is_empty());
    }
}
