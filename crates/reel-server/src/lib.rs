//! `reeld`, Reel's server: the gRPC ingest service recorders stream to, and
//! the HTTP API that lists, shows and exports recordings.

pub mod access;
mod exposition;
pub mod grpc;
pub mod http;
pub mod status;
pub mod tls;
pub mod tokens;
pub mod web;

use axum::serve::ListenerExt;

use anyhow::Context;
use clap::Parser;
use reel_engine::Engine;
use reel_proto::v1::ingest_server::IngestServer;
use tokio_stream::StreamExt as _;
use tracing::info;

pub use reel_config::{Args, ServerConfig};

/// The message size gRPC accepts beyond the largest batch (field overhead).
const GRPC_SLACK: usize = 1 << 20;

/// Entry point of the `reeld` binary.
pub fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let config = match ServerConfig::load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("reeld: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    // Test builds only: the crashpoints of the kill -9 torture test.
    reel_engine::crashpoints_from_env(&config.engine.failpoints);
    if args.print_config {
        println!("{config:#?}");
        return std::process::ExitCode::SUCCESS;
    }
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&config.log))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(run(config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("reeld: {}", error_chain(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each once: library errors often repeat their
/// source's text in their own message.
fn error_chain(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let line = cause.to_string();
        if !text.contains(&line) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&line);
        }
    }
    text
}

/// Runs the server until SIGINT or SIGTERM.
pub async fn run(config: ServerConfig) -> anyhow::Result<()> {
    let data_dir = config.engine.data_dir.display().to_string();
    let engine = Engine::open(config.engine.clone())
        .await
        .with_context(|| format!("cannot open data directory {data_dir}"))?;
    let grpc_listener = tokio::net::TcpListener::bind(config.grpc_listen)
        .await
        .with_context(|| format!("cannot listen for gRPC on {}", config.grpc_listen))?;
    let http_listener = tokio::net::TcpListener::bind(config.http_listen)
        .await
        .with_context(|| format!("cannot listen for HTTP on {}", config.http_listen))?;
    let grpc_addr = grpc_listener.local_addr()?;
    let http_addr = http_listener.local_addr()?;
    let access = access::Access::load(&engine, &config.engine.data_dir, config.open_metrics)
        .await
        .context("cannot set up the API tokens")?;

    let max_message = config.engine.max_batch_bytes + GRPC_SLACK;
    let ingest = tonic::service::interceptor::InterceptedService::new(
        IngestServer::new(grpc::IngestService::new(engine.clone(), config.max_streams))
            .max_decoding_message_size(max_message)
            .max_encoding_message_size(max_message),
        grpc::authenticate(engine.clone(), access.tokens.clone()),
    );
    let tls = match &config.tls {
        Some(t) => Some(tls::load(t).await?),
        None => None,
    };
    let mut builder = tonic::transport::Server::builder();
    if let Some(t) = &tls {
        builder = builder
            .tls_config(t.grpc.clone())
            .context("the TLS configuration does not work for gRPC")?;
    }
    // One stop signal for both listeners, its handler installed before
    // "ready" is said: a SIGTERM that comes at once stops both (one handler
    // per listener, installed when each was first polled, let a signal
    // between the two stop one and leave the other serving for good).
    let stop = shutdown_signal()?;
    // No Nagle delay on acknowledgements: each is a small write that would
    // otherwise wait for the recorder's (delayed, up to 40 ms) TCP ACK of
    // the one before. The builder's own `tcp_nodelay` applies only to
    // listeners it binds itself.
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(grpc_listener).map(|tcp| {
        tcp.inspect(|tcp| {
            let _ = tcp.set_nodelay(true);
        })
    });
    let grpc = builder
        .add_service(ingest)
        .serve_with_incoming_shutdown(incoming, stopped(stop.clone()));
    let state = http::AppState::new(engine.clone(), grpc_addr, access, tls.is_some());
    web::keyframes::spawn(state.clone(), stop.clone());
    let app = http::router(state);
    let make_service = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let http: std::pin::Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>> = match &tls {
        Some(t) => {
            let handle = axum_server::Handle::new();
            let stopper = handle.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                stopped(stop).await;
                stopper.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
            });
            // Nagle is off there too (its default acceptor sets nodelay).
            let server = axum_server::from_tcp_rustls(http_listener.into_std()?, t.http.clone())
                .handle(handle);
            Box::pin(server.serve(make_service))
        }
        None => {
            // No Nagle delay on the small first writes of an export (its
            // status line and first events): time to first byte is what a
            // player waits for.
            let http_listener = http_listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            Box::pin(async move {
                axum::serve(http_listener, make_service)
                    .with_graceful_shutdown(stopped(stop))
                    .await
            })
        }
    };
    // Tests and scripts wait for this line.
    let scheme = if tls.is_some() { "https" } else { "http" };
    info!(grpc = %grpc_addr, http = %http_addr, scheme = %scheme, data_dir, "reeld ready");
    let (g, h) = tokio::join!(grpc, http);
    engine.shutdown().await;
    g.context("gRPC server failed")?;
    h.context("HTTP server failed")?;
    info!("reeld stopped");
    Ok(())
}

/// Installs the SIGTERM and SIGINT handlers now; the receiver turns true
/// once either arrives.
fn shutdown_signal() -> anyhow::Result<tokio::sync::watch::Receiver<bool>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        let _ = tx.send(true);
    });
    Ok(rx)
}

/// Resolves once [`shutdown_signal`]'s receiver says stop.
async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
