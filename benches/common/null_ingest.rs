//! The gRPC floor: reeld's ingest service with nothing behind it.
//!
//! The same service (`reel.v1.Ingest/Record`), the same tonic server with
//! the same settings as reeld (default builder, TCP_NODELAY on each
//! accepted connection, mimalloc in the binary that serves it) and the same
//! shape of answer (the response stream reads the next request when the
//! transport asks for the next answer), but every batch is acknowledged the
//! moment it is decoded: no journal, no fsync, no catalog, no token check.
//! `reel load` against it measures what tonic, HTTP/2 and the kernel's
//! loopback cost a recorder and a server on this machine, the part of
//! reeld's end-to-end figures no change to Reel's engine can remove.

use std::net::SocketAddr;
use std::pin::Pin;

use futures::{Stream, StreamExt};
use reel_proto::v1::ingest_server::{Ingest, IngestServer};
use reel_proto::v1::record_request::Request as Req;
use reel_proto::v1::record_response::Response as Resp;
use reel_proto::v1::{Ack, Closed, RecordRequest, RecordResponse, Started};
use tonic::{Request, Response, Status, Streaming};

struct NullIngest;

/// A stream's state: its requests and the events it has "stored".
struct Session {
    inbound: Streaming<RecordRequest>,
    events: u64,
    done: bool,
}

type Item = Result<RecordResponse, Status>;

impl Session {
    async fn next(&mut self) -> Option<Item> {
        if self.done {
            return None;
        }
        let request = match self.inbound.next().await? {
            Ok(r) => r.request,
            Err(status) => return Some(Err(status)),
        };
        let answer = match request {
            Some(Req::Start(_)) | Some(Req::Resume(_)) => Resp::Started(Started {
                recording_id: "00000000000000000000000000".into(),
                durable_events: self.events,
                last_time_us: 0,
            }),
            Some(Req::Events(batch)) => {
                self.events += batch.events.len() as u64;
                Resp::Ack(Ack {
                    durable_events: self.events,
                    last_event_index: self.events.checked_sub(1),
                })
            }
            Some(Req::Close(_)) => {
                self.done = true;
                Resp::Closed(Closed {
                    recording_id: "00000000000000000000000000".into(),
                    event_count: self.events,
                    duration_us: 0,
                })
            }
            None => return Some(Err(Status::invalid_argument("an empty request"))),
        };
        Some(Ok(RecordResponse {
            response: Some(answer),
        }))
    }
}

#[tonic::async_trait]
impl Ingest for NullIngest {
    type RecordStream = Pin<Box<dyn Stream<Item = Item> + Send>>;

    async fn record(
        &self,
        request: Request<Streaming<RecordRequest>>,
    ) -> Result<Response<Self::RecordStream>, Status> {
        let session = Session {
            inbound: request.into_inner(),
            events: 0,
            done: false,
        };
        Ok(Response::new(Box::pin(futures::stream::unfold(
            session,
            |mut session| async move {
                let item = session.next().await?;
                Some((item, session))
            },
        ))))
    }
}

/// Serves the null ingest service on `listen` until the process is killed;
/// prints `listening <address>` once it accepts connections.
pub async fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("listening {}", listener.local_addr()?);
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|tcp| {
        tcp.inspect(|tcp| {
            let _ = tcp.set_nodelay(true);
        })
    });
    tonic::transport::Server::builder()
        .add_service(IngestServer::new(NullIngest))
        .serve_with_incoming(incoming)
        .await?;
    Ok(())
}
