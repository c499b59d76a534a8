//! The gRPC ingest service: one bidirectional stream per recording.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesOrdered;
use reel_engine::{AckFuture, Engine, RecordingWriter};
use reel_proto::RecordingId;
use reel_proto::v1::ingest_server::Ingest;
use reel_proto::v1::record_request::Request as Req;
use reel_proto::v1::record_response::Response as Resp;
use reel_proto::v1::{Ack, Closed, RecordRequest, RecordResponse, Started};
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{Instrument, debug, info_span, warn};

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

type Out = mpsc::Sender<Result<RecordResponse, Status>>;

#[tonic::async_trait]
impl Ingest for IngestService {
    type RecordStream = ReceiverStream<Result<RecordResponse, Status>>;

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
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let engine = self.engine.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(status) = drive(engine, identity, inbound, &tx).await {
                debug!(code = ?status.code(), message = status.message(), "ingest stream ended with an error");
                let _ = tx.send(Err(status)).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

async fn send(out: &Out, response: Resp) -> Result<(), Status> {
    out.send(Ok(RecordResponse {
        response: Some(response),
    }))
    .await
    .map_err(|_| Status::cancelled("recorder went away"))
}

fn ack(durable: u64) -> Resp {
    Resp::Ack(Ack {
        durable_events: durable,
        last_event_index: durable.checked_sub(1),
    })
}

/// Refuses, audited, what `who` may not do to a recording.
async fn refuse(engine: &Engine, who: &Identity, asked: &str, message: String) -> Status {
    let denied = crate::access::Denied::Forbidden(message);
    audit_refusal(engine, Some(who), &who.client, asked, &denied).await;
    denied.to_status()
}

async fn drive(
    engine: Engine,
    who: Identity,
    mut inbound: Streaming<RecordRequest>,
    out: &Out,
) -> Result<(), Status> {
    let Some(first) = inbound.message().await? else {
        return Ok(());
    };
    let writer = match first.request {
        Some(Req::Start(start)) => {
            let metadata = start.metadata.unwrap_or_default();
            if !who.scopes.admits(&metadata) {
                let message = format!(
                    "{} may not record user {:?} on target {:?} ({}): outside its scopes",
                    who.name, metadata.user, metadata.target, metadata.protocol
                );
                return Err(refuse(&engine, &who, "gRPC start", message).await);
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
                    return Err(refuse(&engine, &who, &format!("gRPC resume {id}"), message).await);
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
    .map_err(to_status)?;
    let id = writer.id();
    send(
        out,
        Resp::Started(Started {
            recording_id: id.to_string(),
            durable_events: writer.durable(),
            last_time_us: writer.last_time_us(),
        }),
    )
    .await?;
    stream_events(writer, &mut inbound, out)
        .instrument(info_span!("ingest", recording = %id))
        .await
}

async fn stream_events(
    mut writer: RecordingWriter,
    inbound: &mut Streaming<RecordRequest>,
    out: &Out,
) -> Result<(), Status> {
    let id = writer.id();
    let mut pending: FuturesOrdered<AckFuture> = FuturesOrdered::new();
    loop {
        tokio::select! {
            biased;
            Some(acked) = pending.next(), if !pending.is_empty() => {
                send(out, ack(acked.map_err(to_status)?)).await?;
            }
            message = inbound.message(), if pending.len() < MAX_IN_FLIGHT => {
                let Some(message) = message? else {
                    // The recorder ended its stream without closing: acknowledge
                    // what is in flight, then detach (the recording stays open).
                    drain(&mut pending, out).await?;
                    return Ok(());
                };
                match message.request {
                    Some(Req::Events(batch)) => {
                        pending.push_back(writer.append(batch.first_index, batch.events).map_err(to_status)?);
                    }
                    Some(Req::Close(close)) => {
                        drain(&mut pending, out).await?;
                        let closed = writer.close(close.duration_us).await.map_err(to_status)?;
                        send(out, Resp::Closed(Closed {
                            recording_id: closed.id.to_string(),
                            event_count: closed.event_count,
                            duration_us: closed.duration_us,
                        })).await?;
                        return after_close(id, inbound).await;
                    }
                    Some(Req::Start(_) | Req::Resume(_)) => {
                        return Err(Status::failed_precondition(format!(
                            "this stream already carries recording {id}; open a new stream for another recording"
                        )));
                    }
                    None => return Err(Status::invalid_argument("empty request message")),
                }
            }
        }
    }
}

async fn drain(pending: &mut FuturesOrdered<AckFuture>, out: &Out) -> Result<(), Status> {
    while let Some(acked) = pending.next().await {
        send(out, ack(acked.map_err(to_status)?)).await?;
    }
    Ok(())
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
