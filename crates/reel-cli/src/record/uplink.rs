//! The live stream of one recorded session to reeld: batches pipelined
//! from the backlog, acknowledgements letting events go, and reconnection
//! that resumes the same recording from the count the server holds.
//!
//! The session's side never waits on this: it pushes into the [`Shared`]
//! backlog and goes on. The uplink sends what the backlog holds, as fast as
//! the server takes it; when the stream breaks (reeld restarting, the
//! network gone) it reconnects with a growing pause, resumes the recording
//! and sends again from the server's durable count: the server skips what
//! it already holds, so nothing is lost or stored twice. A recording the
//! server has closed meanwhile (it closes recordings left detached too long)
//! is continued in a new one, labelled `continues=<id>`.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use reel_proto::v1::record_request::Request as Req;
use reel_proto::v1::record_response::Response as Resp;
use reel_proto::v1::{
    CloseRecording, Event, EventBatch, EventKind, RecordRequest, RecordingMetadata,
    ResumeRecording, StartRecording,
};
use tokio::sync::{Notify, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use super::backlog::{Backlog, Lost};
use super::log::Log;
use crate::grpc::Ingest;

/// Events and bytes a batch carries at most (well inside reeld's default
/// `max_batch_bytes`).
const BATCH_EVENTS: usize = 512;
const BATCH_BYTES: usize = 1 << 20;
/// Events captured within this long of the last message sent wait for the
/// next one: a busy session costs a message every few milliseconds rather
/// than one per read of the terminal (and as many wake-ups of this process
/// and of reeld), while a lone keystroke's echo still leaves at once.
const COALESCE: Duration = Duration::from_millis(5);
/// The pause between attempts to reach reeld grows to this.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// What the session and the uplink share.
pub(crate) struct Shared {
    /// The session's time zero: event times count from here.
    start: Instant,
    backlog: Mutex<Backlog>,
    wake: Notify,
    link: Mutex<Link>,
}

/// What the uplink knows of the server, for the session's checks.
#[derive(Debug, Default, Clone)]
pub(crate) struct Link {
    /// The recording being written (the latest, if continued).
    pub recording: Option<String>,
    /// Every recording of this session, in order.
    pub recordings: Vec<String>,
    /// A stream is open and the server answered it.
    pub connected: bool,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

impl Shared {
    pub(crate) fn new(backlog: Backlog, start: Instant) -> Arc<Shared> {
        Arc::new(Shared {
            start,
            backlog: Mutex::new(backlog),
            wake: Notify::new(),
            link: Mutex::new(Link::default()),
        })
    }

    /// Captures `data` as an event of `kind` now; never waits for the
    /// server. The time is read under the backlog's lock, so that events
    /// captured by several threads are in time order.
    pub(crate) fn capture(&self, kind: EventKind, data: Vec<u8>) {
        {
            let mut backlog = self.backlog();
            backlog.push(Event {
                time_us: self.elapsed_us(),
                kind: kind as i32,
                data,
            });
        }
        self.wake.notify_one();
    }

    /// Microseconds since the session started.
    pub(crate) fn elapsed_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// How long the oldest event not yet durable has waited.
    pub(crate) fn oldest_wait(&self) -> Option<Duration> {
        let time_us = self.backlog().oldest()?.time_us;
        Some(
            self.start
                .elapsed()
                .saturating_sub(Duration::from_micros(time_us)),
        )
    }

    pub(crate) fn backlog(&self) -> MutexGuard<'_, Backlog> {
        self.backlog.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn link(&self) -> Link {
        self.link.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn update(&self, f: impl FnOnce(&mut Link)) {
        f(&mut self.link.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

/// How the session ended on the server's side.
#[derive(Debug)]
pub(crate) struct Closed {
    /// The recordings the session was written to (one unless continued).
    pub recordings: Vec<String>,
    /// Events the last recording holds.
    pub event_count: u64,
    pub lost: Lost,
}

pub(crate) struct Uplink {
    ingest: Ingest,
    metadata: RecordingMetadata,
    shared: Arc<Shared>,
    log: Log,
    recording: Option<String>,
    /// The backlog's number of this recording's event 0 (non-zero in a
    /// continuation).
    base: u64,
    /// The close went out, after every event.
    close_sent: bool,
}

/// Why a stream ended before the recording closed.
enum Broken {
    /// Worth trying again.
    Retry(String),
    /// The server no longer takes this recording: continue in a new one.
    Gone(String),
}

impl From<tonic::Status> for Broken {
    fn from(s: tonic::Status) -> Broken {
        let gone = s.code() == tonic::Code::NotFound
            || (s.code() == tonic::Code::FailedPrecondition && s.message().contains("is closed"));
        let text = format!("{} ({:?})", s.message(), s.code());
        if gone {
            Broken::Gone(text)
        } else {
            Broken::Retry(text)
        }
    }
}

impl Uplink {
    pub(crate) fn new(
        ingest: Ingest,
        metadata: RecordingMetadata,
        shared: Arc<Shared>,
        log: Log,
    ) -> Uplink {
        Uplink {
            ingest,
            metadata,
            shared,
            log,
            recording: None,
            base: 0,
            close_sent: false,
        }
    }

    /// Streams until `finish` carries the session's duration and every
    /// event held has been sent and the recording closed. Runs until then
    /// whatever the server does; the caller bounds how long it waits.
    pub(crate) async fn run(mut self, mut finish: watch::Receiver<Option<u64>>) -> Closed {
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.stream(&mut finish).await {
                Ok(closed) => return closed,
                Err(Broken::Gone(why)) => {
                    // A close whose answer a broken connection swallowed:
                    // the server closed the recording with everything (it
                    // follows every event on the stream).
                    if self.close_sent {
                        let b = self.shared.backlog();
                        return Closed {
                            recordings: self.shared.link().recordings,
                            event_count: b.first() - self.base,
                            lost: b.lost(),
                        };
                    }
                    let old = self.recording.take().unwrap_or_default();
                    self.log.line(&format!(
                        "recording {old} can no longer be written ({why}); continuing in a new recording"
                    ));
                    self.metadata.labels.insert("continues".into(), old);
                    self.base = self.shared.backlog().first();
                }
                Err(Broken::Retry(why)) => {
                    self.shared.update(|l| {
                        l.connected = false;
                        l.last_error = Some(why.clone());
                    });
                    self.log.line(&format!(
                        "reeld unreachable: {why}; {} events held, trying again in {backoff:?}",
                        {
                            let b = self.shared.backlog();
                            b.next() - b.first()
                        }
                    ));
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// One stream: start or resume, send, take acknowledgements, close.
    async fn stream(
        &mut self,
        finish: &mut watch::Receiver<Option<u64>>,
    ) -> Result<Closed, Broken> {
        let (tx, rx) = mpsc::channel(16);
        let first = match &self.recording {
            None => Req::Start(StartRecording {
                metadata: Some(self.metadata.clone()),
            }),
            Some(id) => Req::Resume(ResumeRecording {
                recording_id: id.clone(),
            }),
        };
        let _ = tx.try_send(RecordRequest {
            request: Some(first),
        });
        let mut responses = self
            .ingest
            .record(ReceiverStream::new(rx))
            .await?
            .into_inner();
        let started = match responses.message().await?.and_then(|m| m.response) {
            Some(Resp::Started(s)) => s,
            other => return Err(Broken::Retry(format!("expected Started, got {other:?}"))),
        };
        if self.recording.is_none() {
            self.log
                .line(&format!("recording {}", started.recording_id));
            self.shared
                .update(|l| l.recordings.push(started.recording_id.clone()));
        } else {
            self.log.line(&format!(
                "resumed recording {}: the server holds {} events",
                started.recording_id, started.durable_events
            ));
        }
        self.recording = Some(started.recording_id.clone());
        self.shared.update(|l| {
            l.recording = Some(started.recording_id.clone());
            l.connected = true;
            l.last_error = None;
        });
        let durable = self.base + started.durable_events;
        let mut cursor = {
            let mut backlog = self.shared.backlog();
            backlog.acknowledge(durable);
            if durable < backlog.first() {
                // The server holds fewer events than it acknowledged:
                // resending from there is impossible (they were let go).
                return Err(Broken::Gone(format!(
                    "the server holds {} events of the {} it acknowledged",
                    started.durable_events,
                    backlog.first() - self.base
                )));
            }
            backlog.first().max(durable)
        };
        let mut close_sent = false;
        let mut last_sent: Option<Instant> = None;
        loop {
            if let Some(wait) = last_sent.and_then(|at| COALESCE.checked_sub(at.elapsed())) {
                tokio::time::sleep(wait).await;
            }
            loop {
                let batch = self
                    .shared
                    .backlog()
                    .batch(cursor, BATCH_EVENTS, BATCH_BYTES);
                if batch.is_empty() {
                    break;
                }
                let n = batch.len() as u64;
                let message = RecordRequest {
                    request: Some(Req::Events(EventBatch {
                        first_index: Some(cursor - self.base),
                        events: batch,
                    })),
                };
                // Bounded: a slow server holds the sending here, and the
                // session's events wait in the backlog.
                tokio::select! {
                    sent = tx.send(message) => {
                        sent.map_err(|_| Broken::Retry("stream closed".into()))?;
                        last_sent = Some(Instant::now());
                    }
                    m = responses.message() => {
                        if let Some(closed) = self.answer(m?)? {
                            return Ok(closed);
                        }
                        continue;
                    }
                }
                cursor += n;
            }
            let duration = *finish.borrow();
            if let Some(duration_us) = duration
                && !close_sent
                && cursor == self.shared.backlog().next()
            {
                let close = RecordRequest {
                    request: Some(Req::Close(CloseRecording { duration_us })),
                };
                tx.send(close)
                    .await
                    .map_err(|_| Broken::Retry("stream closed".into()))?;
                close_sent = true;
                self.close_sent = true;
            }
            tokio::select! {
                m = responses.message() => {
                    if let Some(closed) = self.answer(m?)? {
                        return Ok(closed);
                    }
                }
                _ = self.shared.wake.notified() => {}
                _ = finish.changed(), if duration.is_none() => {}
            }
        }
    }

    /// Handles one answer of the server; `Some` once the recording closed.
    fn answer(
        &mut self,
        message: Option<reel_proto::v1::RecordResponse>,
    ) -> Result<Option<Closed>, Broken> {
        match message.and_then(|m| m.response) {
            Some(Resp::Ack(a)) => {
                let mut backlog = self.shared.backlog();
                backlog.acknowledge(self.base + a.durable_events);
                if let Some(e) = backlog.take_failure() {
                    self.log.line(&format!("{e}; the events it held are lost"));
                }
                Ok(None)
            }
            Some(Resp::Closed(c)) => Ok(Some(Closed {
                recordings: self.shared.link().recordings,
                event_count: c.event_count,
                lost: self.shared.backlog().lost(),
            })),
            Some(Resp::Started(_)) => Ok(None),
            None => Err(Broken::Retry("the server ended the stream".into())),
        }
    }
}
