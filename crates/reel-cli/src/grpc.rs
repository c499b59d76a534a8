//! The gRPC ingest service of a reeld, as `reel ingest` and `reel record`
//! reach it: the endpoint the server advertises (or `--grpc`), its TLS, and
//! the token on every stream.

use anyhow::Context;
use reel_proto::v1::ingest_client::IngestClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::{Client, UsageError};

/// An ingest client that sends the token.
pub(crate) type Ingest = IngestClient<InterceptedService<Channel, Bearer>>;

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub(crate) struct Bearer(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// The ingest endpoint, with TLS when it is `https://`.
pub(crate) async fn endpoint(
    client: &Client,
    grpc: Option<&str>,
    server: &str,
) -> anyhow::Result<Endpoint> {
    let address = match grpc {
        Some(g) => g.to_string(),
        None => advertised(client, server).await?,
    };
    let mut endpoint = Endpoint::from_shared(address.clone())
        .map_err(|e| UsageError(format!("bad ingest endpoint {address}: {e}")))?;
    if address.starts_with("https://") {
        let mut tls = tonic::transport::ClientTlsConfig::new().with_enabled_roots();
        if let Some(ca) = &client.tls().ca {
            tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(ca));
        }
        if let Some((cert, key)) = &client.tls().identity {
            tls = tls.identity(tonic::transport::Identity::from_pem(cert, key));
        }
        endpoint = endpoint
            .tls_config(tls)
            .context("TLS for the ingest endpoint")?;
    }
    Ok(endpoint)
}

/// A client of `channel` sending `client`'s token.
pub(crate) fn ingest(channel: Channel, client: &Client) -> anyhow::Result<Ingest> {
    let value = client
        .token()
        .map(|t| {
            let mut v: MetadataValue<Ascii> = format!("Bearer {t}").parse()?;
            v.set_sensitive(true);
            Ok::<_, tonic::metadata::errors::InvalidMetadataValue>(v)
        })
        .transpose()
        .map_err(|_| UsageError("the token holds characters a header cannot".into()))?;
    Ok(IngestClient::with_interceptor(channel, Bearer(value)).max_encoding_message_size(64 << 20))
}

/// The ingest endpoint the server advertises (TLS when its HTTP API has
/// it), reached through the host of `server` when it listens on all
/// interfaces. A token that may not read the server's status (a
/// recorder's) gets the default port on the server's host.
async fn advertised(client: &Client, server: &str) -> anyhow::Result<String> {
    let url = reqwest::Url::parse(server).context("bad --server URL")?;
    let host = url.host_str().unwrap_or("127.0.0.1").to_string();
    let scheme = if url.scheme() == "https" {
        "https"
    } else {
        "http"
    };
    let Ok(status) = client.status().await else {
        return Ok(format!("{scheme}://{host}:7700"));
    };
    let addr: std::net::SocketAddr = status.grpc_listen.parse().with_context(|| {
        format!(
            "server advertises a bad gRPC address {:?}",
            status.grpc_listen
        )
    })?;
    if addr.ip().is_unspecified() {
        return Ok(format!("{scheme}://{host}:{}", addr.port()));
    }
    Ok(format!("{scheme}://{addr}"))
}
