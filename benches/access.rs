//! What authentication costs: reeld's gRPC ingest and HTTP API with the
//! access rules on, beside the same servers without them, in one run.
//!
//! Two servers run in this process on one engine and data directory (so
//! that the catalog writes of both, audit entries included, go to the same
//! database), on 127.0.0.1: "on" is reeld's own stack (the token checked
//! against the catalog's hashes, the role and the route's rule checked,
//! refusals audited); "off" is the same ingest service and routes with
//! every caller taken to be an admin and no token looked at. Clients are
//! identical (they send the token to both). Cases alternate on/off over
//! several rounds so that drift of the machine (page cache, compaction)
//! falls on both alike.
//!
//! - Ingest: recordings in a closed loop (one event in flight each) over
//!   gRPC, events/s; and short recordings (start, 10 events, close),
//!   recordings/s, where authentication happens once per stream.
//! - HTTP: `GET /api/v1/recordings/{id}` (audited: a synced catalog write
//!   each) and `GET /api/v1/storage` (not audited, served from memory)
//!   over one keep-alive connection, one request at a time, median and p99
//!   latency.
//!
//! Run: `cargo bench --bench access` (`-- --quick` for short rounds,
//! `-- --seconds S` for longer ingest rounds).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reel_engine::{Engine, EngineConfig};
use reel_proto::v1::ingest_server::IngestServer;
use reel_server::access::{Access, Identity, Role};
use reel_server::grpc::{IngestService, authenticate};
use reel_server::http::{AppState, router, router_without_access};

const RECORDINGS: usize = 100;
const ROUNDS: usize = 5;
const HTTP_REQUESTS: usize = 2000;

/// One in-process server: engine, gRPC and HTTP listeners.
struct Server {
    engine: Engine,
    grpc: String,
    http: String,
    token: String,
}

/// Both servers on one engine (so that their catalog writes, audit
/// entries included, land in the same database): access rules on, off.
async fn serve_both(dir: &Path) -> (Server, Server) {
    // No recombination in the background: one side's recordings would be
    // recombined while the other side is measured.
    let mut config = EngineConfig::new(dir);
    config.compactor.enabled = false;
    let engine = Engine::open(config).await.unwrap();
    let access = Access::load(&engine, dir, false).await.unwrap();
    let token = std::fs::read_to_string(dir.join("admin.token"))
        .unwrap()
        .trim()
        .to_string();
    (
        serve(&engine, &access, &token, true).await,
        serve(&engine, &access, &token, false).await,
    )
}

async fn serve(engine: &Engine, access: &Access, token: &str, with_access: bool) -> Server {
    let (engine, access, token) = (engine.clone(), access.clone(), token.to_string());
    let admin = Identity {
        name: "bench".into(),
        roles: vec![Role::Admin],
        scopes: Default::default(),
        client: String::new(),
    };

    let grpc_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc_addr = grpc_listener.local_addr().unwrap();
    let service = IngestServer::new(IngestService::new(engine.clone(), 100_000));
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(grpc_listener);
    let mut builder = tonic::transport::Server::builder();
    if with_access {
        let ingest = tonic::service::interceptor::InterceptedService::new(
            service,
            authenticate(engine.clone(), access.tokens.clone()),
        );
        tokio::spawn(builder.add_service(ingest).serve_with_incoming(incoming));
    } else {
        let who = admin.clone();
        let ingest = tonic::service::interceptor::InterceptedService::new(
            service,
            move |mut request: tonic::Request<()>| {
                request.extensions_mut().insert(who.clone());
                Ok(request)
            },
        );
        tokio::spawn(builder.add_service(ingest).serve_with_incoming(incoming));
    }

    let http_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_addr = http_listener.local_addr().unwrap();
    let state = AppState::new(engine.clone(), grpc_addr, access, false);
    let app = if with_access {
        router(state)
    } else {
        router_without_access(state, admin)
    };
    tokio::spawn(async move {
        axum::serve(
            http_listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    Server {
        engine,
        grpc: format!("http://{grpc_addr}"),
        http: format!("http://{http_addr}"),
        token,
    }
}

/// Events/s of `recordings` closed-loop recorders over `run`.
async fn ingest(server: &Server, recordings: usize, run: Duration) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for r in 0..recordings {
        let (endpoint, token, stop) = (server.grpc.clone(), server.token.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let meta = reel_testkit::metadata(&format!("user{r}"), "bench");
            let mut rec = reel_testkit::Recorder::start_as(&endpoint, &token, meta)
                .await
                .unwrap();
            let mut i = 0u64;
            let mut counted = 0u64;
            let mut measuring = false;
            while !stop.load(Ordering::Relaxed) {
                rec.append(vec![reel_testkit::terminal_event(r, i)])
                    .await
                    .unwrap();
                i += 1;
                if measuring {
                    counted += 1;
                } else if i >= 10 {
                    measuring = true;
                }
            }
            rec.close().await.unwrap();
            counted
        }));
    }
    // Every stream connected and warmed before the clock starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start = Instant::now();
    tokio::time::sleep(run).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed();
    let mut events = 0;
    for t in tasks {
        events += t.await.unwrap();
    }
    events as f64 / elapsed.as_secs_f64()
}

/// Recordings/s of `loops` loops each starting a recording, sending 10
/// events and closing it, over `run`.
async fn short_recordings(server: &Server, loops: usize, run: Duration) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for r in 0..loops {
        let (endpoint, token, stop) = (server.grpc.clone(), server.token.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let meta = reel_testkit::metadata(&format!("user{r}"), "bench");
                let mut rec = reel_testkit::Recorder::start_as(&endpoint, &token, meta)
                    .await
                    .unwrap();
                let events = (0..10)
                    .map(|i| reel_testkit::terminal_event(r, i))
                    .collect();
                rec.append(events).await.unwrap();
                rec.close().await.unwrap();
                done += 1;
            }
            done
        }));
    }
    tokio::time::sleep(run).await;
    stop.store(true, Ordering::Relaxed);
    let mut recordings = 0;
    for t in tasks {
        recordings += t.await.unwrap();
    }
    recordings as f64 / start.elapsed().as_secs_f64()
}

/// Latencies (µs) of `n` sequential `GET path` requests on one connection.
async fn http_latencies(server: &Server, path: &str, n: usize) -> Vec<f64> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .tcp_nodelay(true)
        .build()
        .unwrap();
    let url = format!("{}{path}", server.http);
    let mut latencies = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let response = client
            .get(&url)
            .bearer_auth(&server.token)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        response.bytes().await.unwrap();
        latencies.push(t.elapsed().as_secs_f64() * 1e6);
    }
    latencies
}

fn median(mut values: Vec<f64>) -> f64 {
    percentile(&mut values, 0.5)
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    values[((values.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let seconds: f64 = args
        .iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(if quick { 1.0 } else { 3.0 });
    let run = Duration::from_secs_f64(seconds);
    let requests = if quick { 300 } else { HTTP_REQUESTS };
    reel_testkit::bench_main(|_| async move {
        let dir = reel_testkit::bench_dir();
        let (on, off) = serve_both(dir.path()).await;
        println!(
            "Authentication on vs off, in-process reeld stacks, {ROUNDS} alternating rounds per case"
        );

        let (mut ingest_on, mut ingest_off) = (Vec::new(), Vec::new());
        let (mut short_on, mut short_off) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            ingest_off.push(ingest(&off, RECORDINGS, run).await);
            ingest_on.push(ingest(&on, RECORDINGS, run).await);
            short_off.push(short_recordings(&off, 20, run).await);
            short_on.push(short_recordings(&on, 20, run).await);
        }
        let (i_on, i_off) = (median(ingest_on), median(ingest_off));
        let (s_on, s_off) = (median(short_on), median(short_off));
        println!("\n| case | off | on | on / off |\n|---|---:|---:|---:|");
        println!(
            "| ingest, {RECORDINGS} recordings closed loop, events/s | {i_off:.0} | {i_on:.0} | {:.3} |",
            i_on / i_off
        );
        println!(
            "| short recordings (start, 10 events, close), 20 loops, recordings/s | {s_off:.0} | {s_on:.0} | {:.3} |",
            s_on / s_off
        );

        // One recording to show (the same one through both servers).
        let meta = reel_testkit::metadata("alice", "db1");
        let rec = reel_testkit::Recorder::start_as(&on.grpc, &on.token, meta)
            .await
            .unwrap();
        let id = rec.id.clone();
        rec.close().await.unwrap();
        // A read that is audited (a synced catalog write each) and one
        // that is not, so that authentication's own cost shows alone.
        // Judged on the unaudited read: the audited one adds a synced
        // write to both sides, whose spread is larger than the goal.
        let mut auth_cost = 0.0;
        for (name, path) in [
            (
                "GET /api/v1/recordings/ID (audited)",
                format!("/api/v1/recordings/{id}"),
            ),
            (
                "GET /api/v1/storage (not audited)",
                "/api/v1/storage".to_string(),
            ),
        ] {
            let (mut lat_on, mut lat_off) = (Vec::new(), Vec::new());
            // Warm both connections and caches, then alternate.
            http_latencies(&off, &path, 100).await;
            http_latencies(&on, &path, 100).await;
            for _ in 0..ROUNDS {
                lat_off.extend(http_latencies(&off, &path, requests).await);
                lat_on.extend(http_latencies(&on, &path, requests).await);
            }
            let (p50_on, p50_off) = (median(lat_on.clone()), median(lat_off.clone()));
            let (p99_on, p99_off) = (
                percentile(&mut lat_on, 0.99),
                percentile(&mut lat_off, 0.99),
            );
            if path == "/api/v1/storage" {
                auth_cost = p50_on - p50_off;
            }
            println!(
                "| {name}, median µs | {p50_off:.1} | {p50_on:.1} | {:+.1} µs |",
                p50_on - p50_off
            );
            println!(
                "| {name}, p99 µs | {p99_off:.1} | {p99_on:.1} | {:+.1} µs |",
                p99_on - p99_off
            );
        }
        println!(
            "\nGoals: ingest on/off >= 0.95 ({}), authorized request <= 50 µs slower at the median, unaudited read ({})",
            if i_on / i_off >= 0.95 {
                "met"
            } else {
                "NOT met"
            },
            if auth_cost <= 50.0 { "met" } else { "NOT met" },
        );
        on.engine.shutdown().await;
    });
}
