//! Window reads from a recombined 1 GiB recording on a real S3 server (a
//! Garage process), beside a raw ranged GET of the same bytes in the same
//! run.
//!
//! The recording: 64 KiB output events every 100 ms (about 27 minutes),
//! 8 MiB segments, recombined into one object on the primary. For each
//! window the raw baseline is one `get_opts` with the byte range that holds
//! the window (first wanted block to last), read to the end.
//!
//! - time to first byte: windows of 10 s at random starts; raw = first
//!   chunk of the ranged GET; Reel = first events of `Engine::read`, and
//!   first body bytes of the HTTP export (`format=raw`, served in-process
//!   as reeld serves it, through one kept-alive client connection).
//! - throughput: 5 windows of 400 s (about 256 MiB); MB/s of the object bytes
//!   the window spans, read to the end, raw vs Reel (engine and HTTP).
//!
//! Raw and Reel runs are interleaved; medians are reported. All of it is
//! done twice, by an engine storing in the clear (`[keys] encrypt = false`)
//! and by one sealing every block (the default), on the same Garage.
//!
//! Run: `cargo bench --bench read` (`-- --quick`: 256 MiB recording).
//! Needs Garage (`scripts/install-garage`).

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::serve::ListenerExt;
use futures::StreamExt;
use object_store::{GetOptions, GetRange, ObjectStore};
use reel_engine::{Engine, EngineConfig, ReadItem, Window};
use reel_proto::RecordingId;
use reel_proto::v1::{Event, EventKind, RecordingMetadata};
use reel_storage::{HealthConfig, Role, Router, Store, StoreConfig, keys};
use reel_testkit::Garage;
use reel_testkit::process_cpu_seconds as cpu;

const EVENT_BYTES: usize = 64 << 10;
const STEP_US: u64 = 100_000;

fn event(i: u64) -> Event {
    let data = reel_testkit::varied_bytes(i, EVENT_BYTES);
    Event {
        time_us: i * STEP_US,
        kind: EventKind::Output as i32,
        data,
    }
}

async fn engine(dir: &std::path::Path, primary: &Garage, encrypt: bool) -> Engine {
    let mut config = EngineConfig::new(dir.join("reel"));
    config.encrypt = encrypt;
    config.segment_target_bytes = 8 << 20;
    config.segment_max_age = Duration::from_secs(3600);
    config.compactor.enabled = false;
    config.health = HealthConfig::default();
    let router = Arc::new(Router::new(config.health.clone(), config.clock.clone()));
    let p = Store::build(
        Role::Primary,
        &primary.store_config(),
        router.primary.clone(),
    )
    .unwrap();
    let s = Store::build(
        Role::Secondary,
        &StoreConfig::Local {
            path: dir.join("secondary"),
        },
        router.secondary.clone(),
    )
    .unwrap();
    Engine::open_with_stores(config, p, s, router)
        .await
        .unwrap()
}

/// A closed, recombined recording of `n` events.
async fn recombined(engine: &Engine, n: u64) -> RecordingId {
    let mut w = engine.start(RecordingMetadata::default()).await.unwrap();
    let id = w.id();
    for i in 0..n {
        w.append(None, vec![event(i)]).unwrap().await.unwrap();
    }
    w.close(0).await.unwrap();
    while engine.local_status().unwrap().upload_queue > 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    engine.compact(Some(id)).await.unwrap();
    assert!(engine.recording(id).await.unwrap().row.combined_size > 0);
    while engine.drain_deletions().await.unwrap() > 0 {}
    id
}

/// The byte range of the combined object that holds `window`.
async fn object_range(engine: &Engine, id: RecordingId, window: Window) -> Range<u64> {
    let info = engine.recording(id).await.unwrap();
    let end = window.to_us.unwrap_or(u64::MAX);
    let mut range: Option<Range<u64>> = None;
    for seg in &info.segments {
        if seg.end_time_us < window.from_us || seg.start_time_us >= end {
            continue;
        }
        let blocks = reel_log::blocks_for_window(&seg.blocks, window.from_us, end);
        let base = seg.combined_offset.unwrap() + seg.content_offset;
        let first = &seg.blocks[blocks.start];
        let last = &seg.blocks[blocks.end - 1];
        let r = base + first.offset..base + last.offset + last.len;
        range = Some(match range {
            None => r,
            Some(prev) => prev.start..r.end,
        });
    }
    range.unwrap()
}

/// Raw: time to the first chunk and to the end of a ranged GET.
async fn raw(
    store: &Arc<dyn ObjectStore>,
    id: RecordingId,
    range: Range<u64>,
) -> (Duration, Duration) {
    let start = Instant::now();
    let options = GetOptions {
        range: Some(GetRange::Bounded(range.clone())),
        ..Default::default()
    };
    let mut body = store
        .get_opts(&keys::recording_object(id), options)
        .await
        .unwrap()
        .into_stream();
    let mut first = None;
    let mut bytes = 0;
    while let Some(chunk) = body.next().await {
        bytes += chunk.unwrap().len() as u64;
        first.get_or_insert(start.elapsed());
    }
    assert_eq!(bytes, range.end - range.start);
    (first.unwrap(), start.elapsed())
}

/// Reel (engine): time to the first events and to the end of a read.
async fn reel_read(engine: &Engine, id: RecordingId, window: Window) -> (Duration, Duration) {
    let start = Instant::now();
    let mut events = engine.read(id, window).await.unwrap();
    let mut first = None;
    let mut n = 0;
    while let Some(item) = events.next().await {
        match item.unwrap() {
            ReadItem::Events(batch) => n += batch.len(),
            ReadItem::Gap(g) => panic!("gap {g}"),
        }
        first.get_or_insert(start.elapsed());
    }
    assert!(n > 0);
    (first.unwrap(), start.elapsed())
}

/// Reel (HTTP export, raw format): first body bytes and the end.
async fn reel_http(
    client: &reqwest::Client,
    base: &str,
    id: RecordingId,
    window: Window,
) -> (Duration, Duration) {
    let s = |us: u64| format!("{}.{:06}", us / 1_000_000, us % 1_000_000);
    let url = format!(
        "{base}/api/v1/recordings/{id}/export?format=raw&from={}&to={}",
        s(window.from_us),
        s(window.to_us.unwrap())
    );
    let start = Instant::now();
    let response = client.get(&url).send().await.unwrap();
    assert!(response.status().is_success());
    let mut body = response.bytes_stream();
    let mut first = None;
    while let Some(chunk) = body.next().await {
        chunk.unwrap();
        first.get_or_insert(start.elapsed());
    }
    (first.unwrap(), start.elapsed())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mb_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

async fn main_async(quick: bool) {
    let dir = reel_testkit::bench_dir();
    let primary = Garage::start(&dir.path().join("garage-primary")).unwrap();
    let raw_store: Arc<dyn ObjectStore> = Arc::new(primary.object_store());
    let mut goals = Vec::new();
    for encrypt in [false, true] {
        // Each its own data directory (and admin token); the same server.
        let sub = dir.path().join(if encrypt { "sealed" } else { "clear" });
        std::fs::create_dir_all(&sub).unwrap();
        goals.push((
            encrypt,
            measure(&sub, &primary, &raw_store, quick, encrypt).await,
        ));
    }
    println!("\n### Encryption at rest: window export throughput >= 0.80 x raw, sealed as clear\n");
    println!(
        "| stored | engine TTFB / raw | engine throughput / raw | HTTP TTFB / raw | HTTP throughput / raw |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (encrypt, g) in goals {
        println!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} |",
            if encrypt { "sealed" } else { "clear" },
            g[0],
            g[1],
            g[2],
            g[3]
        );
    }
}

/// Builds a recombined recording with an engine that stores in the clear
/// or sealed, and measures its windows against raw ranged GETs of the same
/// bytes; prints the table and returns the four ratios to raw (engine
/// TTFB, engine throughput, HTTP TTFB, HTTP throughput).
async fn measure(
    dir: &std::path::Path,
    primary: &Garage,
    raw_store: &Arc<dyn ObjectStore>,
    quick: bool,
    encrypt: bool,
) -> [f64; 4] {
    let engine = engine(dir, primary, encrypt).await;
    let size: u64 = if quick { 256 << 20 } else { 1 << 30 };
    let n = size / EVENT_BYTES as u64;
    let built = Instant::now();
    let id = recombined(&engine, n).await;
    let object = engine.recording(id).await.unwrap().row.combined_size;
    eprintln!("recombined {} MiB in {:.1?}", object >> 20, built.elapsed());

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let access = reel_server::access::Access::load(&engine, dir, false)
        .await
        .unwrap();
    let token = std::fs::read_to_string(dir.join("admin.token")).unwrap();
    let app = reel_server::http::router(reel_server::http::AppState::new(
        engine.clone(),
        "127.0.0.1:0".parse().unwrap(),
        access,
        false,
    ));
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {}", token.trim()).parse().unwrap(),
    );
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap();

    let duration = n * STEP_US;
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut pick = |len: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let from = seed % (duration - len);
        Window::new(from, Some(from + len)).unwrap()
    };

    // Time to first byte: 10 s windows.
    let (mut t_raw, mut t_reel, mut t_http) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..15 {
        let w = pick(10_000_000);
        let range = object_range(&engine, id, w).await;
        t_raw.push(raw(raw_store, id, range).await.0);
        t_reel.push(reel_read(&engine, id, w).await.0);
        t_http.push(reel_http(&client, &base, id, w).await.0);
    }
    let (raw_ttfb, reel_ttfb, http_ttfb) = (median(t_raw), median(t_reel), median(t_http));
    // The floor of any HTTP request to the in-process server.
    let mut floor = Vec::new();
    for _ in 0..15 {
        let start = Instant::now();
        let r = client.get(format!("{base}/healthz")).send().await.unwrap();
        r.bytes().await.unwrap();
        floor.push(start.elapsed());
    }
    let floor = median(floor);

    // Throughput: 400 s windows (about 256 MiB; a quarter of the quick run).
    let len = if quick { 100_000_000 } else { 400_000_000 };
    let (mut b_raw, mut b_reel, mut b_http) = (Vec::new(), Vec::new(), Vec::new());
    let mut bytes = 0;
    // CPU seconds of this process (client, and for Reel the engine and the
    // HTTP server) per path; Garage runs beside it on the same cores.
    let mut cpu_s = [0.0f64; 3];
    for _ in 0..5 {
        let w = pick(len);
        let range = object_range(&engine, id, w).await;
        let span = range.end - range.start;
        bytes += span;
        let c0 = cpu();
        b_raw.push((span, raw(raw_store, id, range).await.1));
        let c1 = cpu();
        b_reel.push((span, reel_read(&engine, id, w).await.1));
        let c2 = cpu();
        b_http.push((span, reel_http(&client, &base, id, w).await.1));
        let c3 = cpu();
        cpu_s[0] += c1 - c0;
        cpu_s[1] += c2 - c1;
        cpu_s[2] += c3 - c2;
    }
    let rate = |v: &[(u64, Duration)]| {
        let mut r: Vec<f64> = v.iter().map(|(b, d)| mb_s(*b, *d)).collect();
        r.sort_by(f64::total_cmp);
        r[r.len() / 2]
    };
    let (raw_rate, reel_rate, http_rate) = (rate(&b_raw), rate(&b_reel), rate(&b_http));

    println!(
        "## Window reads of a recombined {} MiB recording stored {} on Garage ({} windows of 10 s for TTFB, 5 of {} s for throughput, {} MiB read)\n",
        object >> 20,
        if encrypt { "sealed" } else { "in the clear" },
        15,
        len / 1_000_000,
        bytes >> 20
    );
    println!(
        "| | raw ranged GET | Reel engine read | Reel / raw | Reel HTTP export (raw) | HTTP / raw |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    println!(
        "| time to first byte (median) | {:.2} ms | {:.2} ms | {:.2} x | {:.2} ms | {:.2} x |",
        ms(raw_ttfb),
        ms(reel_ttfb),
        ms(reel_ttfb) / ms(raw_ttfb),
        ms(http_ttfb),
        ms(http_ttfb) / ms(raw_ttfb)
    );
    println!(
        "| throughput (median) | {raw_rate:.0} MB/s | {reel_rate:.0} MB/s | {:.2} x | {http_rate:.0} MB/s | {:.2} x |",
        reel_rate / raw_rate,
        http_rate / raw_rate
    );
    let per_gib = |c: f64| c / (bytes as f64 / (1u64 << 30) as f64);
    println!(
        "\nCPU of the bench process per GiB read: raw {:.2} s, engine read {:.2} s, HTTP export (server and client) {:.2} s.",
        per_gib(cpu_s[0]),
        per_gib(cpu_s[1]),
        per_gib(cpu_s[2])
    );
    println!(
        "\nAn empty HTTP request (GET /healthz) to the same server takes {:.2} ms (median).",
        ms(floor)
    );
    println!(
        "\nGoals: time to first byte <= 2 x raw; throughput >= 0.80 x raw. \
         Engine: TTFB {:.2} x, throughput {:.2} x. HTTP export: TTFB {:.2} x, throughput {:.2} x.",
        ms(reel_ttfb) / ms(raw_ttfb),
        reel_rate / raw_rate,
        ms(http_ttfb) / ms(raw_ttfb),
        http_rate / raw_rate
    );
    engine.shutdown().await;
    [
        ms(reel_ttfb) / ms(raw_ttfb),
        reel_rate / raw_rate,
        ms(http_ttfb) / ms(raw_ttfb),
        http_rate / raw_rate,
    ]
}

fn main() {
    reel_testkit::bench_main(main_async);
}
