//! The gRPC ingest service: one bidirectional stream per recording.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use reel_engine::{AckFuture, Engine, RecordingWriter};
use reel_proto::RecordingId;
use reel_proto::v1::ingest_server::Ingest;
use reel_proto::v1::record_request::Request as Req;
use reel_proto::v1::record_response::Response as Resp;
use reel_proto::v1::{Ack, Closed, RecordRequest, RecordResponse, Started};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::{Request, Response, Status, Streaming};
use tracing::{Instrument, Span, debug, info_span, warn};

use crate::access::{Action, Identity, Tokens, audit_refusal, bearer};
use crate::status::to_status;

/// The interceptor of the ingest service: the bearer token in the
/// `authorization` metadata must stand for an identity that may record.
/// Refusals are audited.
pub fn authenticate(
    engine: Engine,
    tokens: Arc<Tokens>,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |mut request: Request<()>| {
        let client = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        // A token names the identity; without one, a verified client
        // certificate (mTLS) does.
        let from_cert = || crate::tls::certificate_identity(request.peer_certs(), client.clone());
        let result = match (header, from_cert()) {
            (None, Some(identity)) => Ok(identity),
            _ => bearer(header).and_then(|secret| tokens.authenticate(secret, client.clone())),
        }
        .and_then(|identity| identity.check(Action::Record).map(|()| identity));
        match result {
            Ok(identity) => {
                request.extensions_mut().insert(identity);
                Ok(request)
            }
            Err(denied) => {
                let engine = engine.clone();
                let status = denied.to_status();
                tokio::spawn(async move {
                    audit_refusal(&engine, None, &client, "gRPC Ingest/Record", &denied).await;
                });
                Err(status)
            }
        }
    }
}

/// Batches a stream may have in flight (accepted, not yet acknowledged).
const MAX_IN_FLIGHT: usize = 256;
/// How long a stream may stay open after its recording was closed.
const AFTER_CLOSE: Duration = Duration::from_secs(30);

pub struct IngestService {
    engine: Engine,
    /// One permit per open stream.
    streams: Arc<Semaphore>,
    max_streams: usize,
}

impl IngestService {
    /// A service that keeps at most `max_streams` streams open at once.
    pub fn new(engine: Engine, max_streams: usize) -> Self {
        IngestService {
            engine,
            streams: Arc::new(Semaphore::new(max_streams)),
            max_streams,
        }
    }
}

type Item = Result<RecordResponse, Status>;

#[tonic::async_trait]
impl Ingest for IngestService {
    type RecordStream = Pin<Box<dyn Stream<Item = Item> + Send>>;

    async fn record(
        &self,
        request: Request<Streaming<RecordRequest>>,
    ) -> Result<Response<Self::RecordStream>, Status> {
        let permit = self.streams.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "{} ingest streams are open, the most this server takes (ingest.max_streams); \
                 retry when others end",
                self.max_streams
            ))
        })?;
        let identity = request
            .extensions()
            .get::<Identity>()
            .cloned()
            .ok_or_else(|| Status::unauthenticated("no identity"))?;
        let session = Session {
            engine: self.engine.clone(),
            who: identity,
            inbound: request.into_inner(),
            stage: Stage::Opening,
            pending: InOrder::default(),
            span: Span::none(),
            _permit: permit,
        };
        // The response stream drives the session itself: each answer is
        // made when the transport asks for the next one, with no task or
        // channel between the journal's acknowledgement and the socket.
        Ok(Response::new(Box::pin(futures::stream::unfold(
            session,
            |mut session| async move {
                let item = session.next().await?;
                if let Err(status) = &item {
                    debug!(code = ?status.code(), message = status.message(), "ingest stream ended with an error");
                    session.stage = Stage::Done;
                }
                Some((item, session))
            },
        ))))
    }
}

/// Where a stream is in its life.
enum Stage {
    /// Waiting for its first message, a start or a resume.
    Opening,
    /// Taking batches and acknowledging them.
    Streaming(RecordingWriter),
    /// The recorder ended its stream without closing: what is in flight is
    /// acknowledged, then the recording is left open (detached).
    Detaching,
    /// A close came: what is in flight is acknowledged, then the recording
    /// is closed with this duration.
    Closing(RecordingWriter, u64),
    /// Closed: anything more is refused for a while.
    AfterClose(RecordingId),
    Done,
}

/// One ingest stream: its recorder's identity, its messages, and the
/// batches accepted and not yet acknowledged.
struct Session {
    engine: Engine,
    who: Identity,
    inbound: Streaming<RecordRequest>,
    stage: Stage,
    pending: InOrder,
    /// The recording's span, made once it is known: made per answer, it
    /// cost a formatted id and an allocation for every acknowledgement.
    span: Span,
    _permit: OwnedSemaphorePermit,
}

impl Session {
    /// The next answer to the recorder, or `None` when the stream ends.
    async fn next(&mut self) -> Option<Item> {
        loop {
            match std::mem::replace(&mut self.stage, Stage::Done) {
                Stage::Opening => {
                    let first = match self.inbound.message().await {
                        Ok(Some(first)) => first,
                        Ok(None) => return None,
                        Err(status) => return Some(Err(status)),
                    };
                    let writer = match self.open(first).await {
                        Ok(writer) => writer,
                        Err(status) => return Some(Err(status)),
                    };
                    let started = Resp::Started(Started {
                        recording_id: writer.id().to_string(),
                        durable_events: writer.durable(),
                        last_time_us: writer.last_time_us(),
                    });
                    self.span = info_span!("ingest", recording = %writer.id());
                    self.stage = Stage::Streaming(writer);
                    return Some(Ok(answer(started)));
                }
                Stage::Streaming(writer) => {
                    let span = self.span.clone();
                    match self.stream_events(writer).instrument(span).await {
                        Step::Answer(item) => return item,
                        Step::Moved => continue,
                    }
                }
                Stage::Detaching => {
                    let acked = self.pending.next().await?;
                    self.stage = Stage::Detaching;
                    return Some(acked.map(ack).map_err(to_status));
                }
                Stage::Closing(writer, duration_us) => {
                    if let Some(acked) = self.pending.next().await {
                        self.stage = Stage::Closing(writer, duration_us);
                        return Some(acked.map(ack).map_err(to_status));
                    }
                    let closed = match writer.close(duration_us).await {
                        Ok(closed) => closed,
                        Err(e) => return Some(Err(to_status(e))),
                    };
                    self.stage = Stage::AfterClose(closed.id);
                    return Some(Ok(answer(Resp::Closed(Closed {
                        recording_id: closed.id.to_string(),
                        event_count: closed.event_count,
                        duration_us: closed.duration_us,
                    }))));
                }
                Stage::AfterClose(id) => {
                    return after_close(id, &mut self.inbound).await.err().map(Err);
                }
                Stage::Done => return None,
            }
        }
    }

    /// The first message: starts or resumes a recording, if `who` may.
    async fn open(&mut self, first: RecordRequest) -> Result<RecordingWriter, Status> {
        let (engine, who) = (&self.engine, &self.who);
        match first.request {
            Some(Req::Start(start)) => {
                let metadata = start.metadata.unwrap_or_default();
                if !who.scopes.admits(&metadata) {
                    let message = format!(
                        "{} may not record user {:?} on target {:?} ({}): outside its scopes",
                        who.name, metadata.user, metadata.target, metadata.protocol
                    );
                    return Err(refuse(engine, who, "gRPC start", message).await);
                }
                engine.start_owned(metadata, &who.name).await
            }
            Some(Req::Resume(resume)) => match resume.recording_id.parse::<RecordingId>() {
                Ok(id) => {
                    // Only the identity that started a recording may add to it.
                    let info = engine.recording(id).await.map_err(to_status)?;
                    if info.row.owner != who.name && !info.row.owner.is_empty() {
                        let message = format!(
                            "recording {id} was started by another identity; {} may not resume it",
                            who.name
                        );
                        let asked = format!("gRPC resume {id}");
                        return Err(refuse(engine, who, &asked, message).await);
                    }
                    engine.resume(id).await
                }
                Err(e) => Err(e.into()),
            },
            Some(Req::Events(_) | Req::Close(_)) => {
                return Err(Status::failed_precondition(
                    "events before a start: the first message of a stream must be start or resume",
                ));
            }
            None => return Err(Status::invalid_argument("empty request message")),
        }
        .map_err(to_status)
    }

    /// Takes batches until one is acknowledged (its answer is returned) or
    /// the stream moves on to another stage (detached, closing) or fails.
    async fn stream_events(&mut self, mut writer: RecordingWriter) -> Step {
        let id = writer.id();
        loop {
            tokio::select! {
                biased;
                Some(acked) = self.pending.next(), if !self.pending.is_empty() => {
                    self.stage = Stage::Streaming(writer);
                    return Step::Answer(Some(acked.map(ack).map_err(to_status)));
                }
                message = self.inbound.message(), if self.pending.len() < MAX_IN_FLIGHT => {
                    let message = match message {
                        Ok(Some(message)) => message,
                        Ok(None) => {
                            // The recorder ended its stream without closing.
                            self.stage = Stage::Detaching;
                            return Step::Moved;
                        }
                        Err(status) => return Step::Answer(Some(Err(status))),
                    };
                    match message.request {
                        Some(Req::Events(batch)) => {
                            match writer.append(batch.first_index, batch.events) {
                                Ok(acked) => self.pending.push_back(acked),
                                Err(e) => return Step::Answer(Some(Err(to_status(e)))),
                            }
                        }
                        Some(Req::Close(close)) => {
                            self.stage = Stage::Closing(writer, close.duration_us);
                            return Step::Moved;
                        }
                        Some(Req::Start(_) | Req::Resume(_)) => {
                            return Step::Answer(Some(Err(Status::failed_precondition(format!(
                                "this stream already carries recording {id}; open a new stream for another recording"
                            )))));
                        }
                        None => {
                            let status = Status::invalid_argument("empty request message");
                            return Step::Answer(Some(Err(status)));
                        }
                    }
                }
            }
        }
    }
}

/// The acknowledgements of a stream's batches, in the order the batches
/// were accepted. The journal completes appends in that order, so only
/// the oldest is polled: each of the others is ready, or waits behind it.
/// (A `FuturesOrdered` polls each future that wakes and keeps a task per
/// future: work per acknowledgement that order makes needless.)
#[derive(Default)]
struct InOrder(std::collections::VecDeque<AckFuture>);

impl InOrder {
    fn push_back(&mut self, ack: AckFuture) {
        self.0.push_back(ack);
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The oldest acknowledgement, once it resolves; `None` if there is
    /// none.
    async fn next(&mut self) -> Option<reel_engine::Result<u64>> {
        let oldest = self.0.front_mut()?;
        let acked = oldest.await;
        self.0.pop_front();
        Some(acked)
    }
}

/// What [`Session::stream_events`] came to.
enum Step {
    /// This answer goes to the recorder (`None`: the stream ends).
    Answer(Option<Item>),
    /// The stage changed; the next answer is the new stage's.
    Moved,
}

fn answer(response: Resp) -> RecordResponse {
    RecordResponse {
        response: Some(response),
    }
}

fn ack(durable: u64) -> RecordResponse {
    answer(Resp::Ack(Ack {
        durable_events: durable,
        last_event_index: durable.checked_sub(1),
    }))
}

/// Refuses, audited, what `who` may not do to a recording.
async fn refuse(engine: &Engine, who: &Identity, asked: &str, message: String) -> Status {
    let denied = crate::access::Denied::Forbidden(message);
    audit_refusal(engine, Some(who), &who.client, asked, &denied).await;
    denied.to_status()
}

/// Anything sent after a close is refused with a clear status.
async fn after_close(
    id: RecordingId,
    inbound: &mut Streaming<RecordRequest>,
) -> Result<(), Status> {
    match tokio::time::timeout(AFTER_CLOSE, inbound.message()).await {
        Ok(Ok(Some(_))) => {
            warn!(recording = %id, "message after close refused");
            Err(Status::failed_precondition(format!(
                "recording {id} is closed; it takes no more events"
            )))
        }
        _ => Ok(()),
    }
}
