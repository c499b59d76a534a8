//! The web player on a recombined 1 GiB recording on a real S3 server (a
//! Garage process), in a headless Chromium, beside a raw ranged GET of the
//! same window in the same run.
//!
//! The recording: an output event every 10 ms of 32 printable lines of
//! 128 bytes (4 KiB), 1 GiB of events (about 44 minutes), 8 MiB segments,
//! sealed (the default), recombined into one object on the primary; then
//! its keyframes are built (timed) as reeld's builder does after a close.
//!
//! - deep link: the browser, signed in, opens `/recordings/ID?t=T` at a
//!   random moment in the middle; the time is from the navigation's start
//!   to the terminal showing the last line printed before T (and not the
//!   next), measured in the page (`performance.now()`). Raw: one ranged GET
//!   of the combined object's bytes that hold the piece T falls in, read to
//!   the end. Goal: Reel <= 2 x raw + 100 ms (medians of 9).
//! - memory: the page's JS heap (`performance.memory.usedJSHeapSize`)
//!   after 20 seeks to random moments, each waited for until its screen is
//!   right. Goal: under 100 MB.
//!
//! Run: `cargo bench --bench player` (`-- --quick`: 256 MiB). Needs Garage
//! (`scripts/install-garage`), chromium and chromium-driver (`scripts/setup
//! test`).

#[allow(dead_code)]
#[path = "../tests/e2e/browser.rs"]
mod browser;

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::serve::ListenerExt;
use futures::StreamExt;
use object_store::{GetOptions, GetRange, ObjectStore};
use reel_engine::{Engine, EngineConfig};
use reel_proto::RecordingId;
use reel_proto::v1::{Event, EventKind, RecordingMetadata};
use reel_storage::{HealthConfig, Role, Router, Store, StoreConfig, keys};
use reel_testkit::Garage;

const LINES: usize = 32;
const LINE_BYTES: usize = 128;
const STEP_US: u64 = 10_000;

/// Event `i`: 32 lines of printable text, each tagged `E{i}.{line}`.
fn event(i: u64) -> Event {
    let noise = reel_testkit::varied_bytes(i, LINES * LINE_BYTES);
    let mut data = Vec::with_capacity(LINES * LINE_BYTES);
    for (k, chunk) in noise.chunks(LINE_BYTES).enumerate() {
        let tag = format!("{} ", tag(i, k));
        data.extend_from_slice(tag.as_bytes());
        data.extend(
            chunk[..LINE_BYTES - tag.len() - 2]
                .iter()
                .map(|b| b' ' + b % 95),
        );
        data.extend_from_slice(b"\r\n");
    }
    Event {
        time_us: i * STEP_US,
        kind: EventKind::Output as i32,
        data,
    }
}

fn tag(i: u64, line: usize) -> String {
    format!("E{i:08}.{line:02}")
}

async fn engine(dir: &std::path::Path, primary: &Garage) -> Engine {
    let mut config = EngineConfig::new(dir.join("reel"));
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
    // 128 events (512 KiB) a batch, a few in flight.
    let mut acks = std::collections::VecDeque::new();
    for first in (0..n).step_by(128) {
        let batch = (first..(first + 128).min(n)).map(event).collect();
        acks.push_back(w.append(None, batch).unwrap());
        if acks.len() > 4 {
            acks.pop_front().unwrap().await.unwrap();
        }
    }
    for ack in acks {
        ack.await.unwrap();
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

/// The byte range of the combined object that holds the events of
/// `from..to`.
async fn object_range(engine: &Engine, id: RecordingId, from: u64, to: u64) -> Range<u64> {
    let info = engine.recording(id).await.unwrap();
    let mut range: Option<Range<u64>> = None;
    for seg in &info.segments {
        if seg.end_time_us < from || seg.start_time_us >= to {
            continue;
        }
        let blocks = reel_log::blocks_for_window(&seg.blocks, from, to);
        if blocks.is_empty() {
            continue;
        }
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

/// One ranged GET read to its end.
async fn raw(store: &Arc<dyn ObjectStore>, id: RecordingId, range: Range<u64>) -> Duration {
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
    let mut bytes = 0;
    while let Some(chunk) = body.next().await {
        bytes += chunk.unwrap().len() as u64;
    }
    assert_eq!(bytes, range.end - range.start);
    start.elapsed()
}

/// Waits in the page until the player's terminal shows `want` and not
/// `not` (after a seek). Looked at on each change of the page (a
/// `MutationObserver`, reading `textContent`, which lays nothing out), so
/// that waiting does not slow the page down.
const WAIT_SCREEN: &str = "
    const [want, not, done] = arguments;
    const right = () => {
        const t = document.querySelector('.ap-term');
        const text = t ? t.textContent : '';
        return text.includes(want) && !text.includes(not);
    };
    if (right()) { done(performance.now()); return; }
    const seen = new MutationObserver(() => {
        if (right()) { seen.disconnect(); done(performance.now()); }
    });
    seen.observe(document, { childList: true, subtree: true, characterData: true });";

/// Times a deep link from the page's first moment (given to the browser
/// before the navigation, with `WANT` and `NOT` replaced): on each change
/// of the page, whether the screen shown (reeld's drawing while it is
/// there, then the player's terminal) shows `WANT` and not `NOT`. A time is
/// that of the frame that first drew the screen right for the last time
/// (the `requestAnimationFrame` before its paint), in ms since the
/// navigation started; the player's is timed apart.
///
/// A deep link's time used to be taken by a script run once WebDriver's
/// navigation returned (after the page's load event and a round trip),
/// which timed a screen already right at that late moment.
const TIME_SCREEN: &str = "(() => {
    const [want, not] = [WANT, NOT];
    const right = (selector) => {
        const t = document.querySelector(selector);
        const text = t ? t.textContent : '';
        return text.includes(want) && !text.includes(not);
    };
    // The screen the page shows first (reeld's, before the player draws)
    // and the player's.
    const timing = { shown: undefined, player: undefined, element: undefined };
    window.reelScreenTiming = timing;
    // The paint of reeld's screen as Chromium reports it (Element Timing),
    // to check the frames' times against.
    new PerformanceObserver((list) => {
        for (const e of list.getEntries()) {
            if (e.identifier === 'reel-screen' && timing.element === undefined) {
                timing.element = e.renderTime || e.loadTime;
            }
        }
    }).observe({ type: 'element', buffered: true });
    const track = (what, ok) => {
        if (!ok) { timing[what] = undefined; return; }
        if (timing[what]) return;
        const stretch = { painted: undefined };
        timing[what] = stretch;
        requestAnimationFrame(() => { stretch.painted = performance.now(); });
    };
    new MutationObserver(() => {
        // The player lies hidden under reeld's screen while that is there.
        const drawn = document.querySelector('.reel-screen') !== null;
        const player = !drawn && right('.ap-term');
        track('player', player);
        track('shown', drawn ? right('.reel-screen') : player);
    }).observe(document, { childList: true, subtree: true, characterData: true });
})();";

/// Waits until [`TIME_SCREEN`] has timed the player's screen, returns
/// `[shown, player, element, stages]`: the last, where the page's time
/// went (navigation timing and the stylesheets', ms).
const TIMED_SCREEN: &str = "
    const done = arguments[0];
    const waited = performance.now();
    const poll = () => {
        const t = window.reelScreenTiming || {};
        const painted = (s) => s && s.painted !== undefined;
        // reeld's screen's paint is reported a little after it happens.
        const reported = t.element !== undefined || performance.now() > waited + 2000;
        if (painted(t.shown) && painted(t.player) && reported) {
            const nav = performance.getEntriesByType('navigation')[0];
            const css = performance.getEntriesByType('resource')
                .filter(e => e.name.endsWith('.css')).map(e => Math.round(e.responseEnd));
            const stages = {
                request: Math.round(nav.requestStart), response: Math.round(nav.responseStart),
                received: Math.round(nav.responseEnd), css, interactive: Math.round(nav.domInteractive),
                frame: Math.round(t.shown.painted), element: t.element,
            };
            done([t.shown.painted, t.player.painted, t.element === undefined ? null : t.element, stages]);
        }
        else setTimeout(poll, 10);
    };
    poll();";

/// The screen at `T = i x STEP + STEP / 2`: event `i`'s last line, not
/// event `i + 1`'s first.
fn expected(i: u64) -> (String, String) {
    (tag(i, LINES - 1), tag(i + 1, 0))
}

fn seconds(i: u64) -> String {
    let us = i * STEP_US + STEP_US / 2;
    format!("{}.{:06}", us / 1_000_000, us % 1_000_000)
}

/// The machine's busy and total CPU time, from `/proc/stat`.
fn cpu_times() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = fields.iter().sum();
    // idle and iowait
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// Waits (at most `limit`) until the whole machine is under 15% busy over
/// two seconds; says how busy it was last.
async fn settle(limit: Duration) -> String {
    let started = Instant::now();
    loop {
        let (b0, t0) = cpu_times();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (b1, t1) = cpu_times();
        let busy = (b1 - b0) as f64 / (t1 - t0).max(1) as f64;
        if busy < 0.15 || started.elapsed() > limit {
            return format!("{:.0}% busy after {:.0?}", busy * 100.0, started.elapsed());
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn main_async(quick: bool) {
    let dir = reel_testkit::bench_dir();
    let primary = Garage::start(&dir.path().join("garage-primary")).unwrap();
    let raw_store: Arc<dyn ObjectStore> = Arc::new(primary.object_store());
    let engine = engine(dir.path(), &primary).await;
    let size: u64 = if quick { 256 << 20 } else { 1 << 30 };
    let n = size / (LINES * LINE_BYTES) as u64;
    let built = Instant::now();
    let id = recombined(&engine, n).await;
    let object = engine.recording(id).await.unwrap().row.combined_size;
    eprintln!(
        "recombined {} MiB ({n} events) in {:.1?}",
        object >> 20,
        built.elapsed()
    );

    let access = reel_server::access::Access::load(&engine, dir.path(), false)
        .await
        .unwrap();
    let token = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
    let state = reel_server::http::AppState::new(
        engine.clone(),
        "127.0.0.1:0".parse().unwrap(),
        access,
        false,
    );
    let started = Instant::now();
    let kept = reel_server::web::keyframes::build(&state, id)
        .await
        .unwrap();
    let keyframes_s = started.elapsed().as_secs_f64();
    eprintln!("{kept} keyframes built in {keyframes_s:.1} s");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = reel_server::http::router(state);
    // As reeld serves: no Nagle delay on a response's later writes.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap()
    });

    let browser = browser::Browser::start("bench-player").await;
    browser.sign_in(&base, token.trim()).await;
    let b = &browser.client;
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut pick = |lo: u64, hi: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        lo + seed % (hi - lo)
    };
    let info = engine.recording(id).await.unwrap();
    let starts = reel_server::web::player::plan(&info);
    let piece_of = |t_us: u64| {
        let i = reel_server::web::player::piece_of(&starts, t_us);
        (starts[i], starts.get(i + 1).copied().unwrap_or(u64::MAX))
    };

    // A first page load, for the browser to cache the player's assets.
    let warm = pick(n / 10, n / 5);
    b.goto(&format!("{base}/recordings/{id}?t={}", seconds(warm)))
        .await
        .unwrap();
    let (want, not) = expected(warm);
    b.execute_async(WAIT_SCREEN, vec![want.into(), not.into()])
        .await
        .unwrap();

    // Garage and the catalog settle after a gigabyte written, the segments
    // deleted and the keyframes kept: measured on a quiet machine.
    let quiet = settle(Duration::from_secs(90)).await;
    eprintln!("settled: {quiet}");
    let (mut shown_ms, mut reel_ms, mut raw_ms) = (Vec::new(), Vec::new(), Vec::new());
    let mut element_ms = Vec::new();
    for _ in 0..9 {
        let i = pick(3 * n / 10, 7 * n / 10);
        let (from, to) = piece_of(i * STEP_US + STEP_US / 2);
        let range = object_range(&engine, id, from, to).await;
        raw_ms.push(raw(&raw_store, id, range).await.as_secs_f64() * 1e3);
        let (want, not) = expected(i);
        let timer = browser
            .on_new_pages(
                &TIME_SCREEN
                    .replace("WANT", &serde_json::to_string(&want).unwrap())
                    .replace("NOT", &serde_json::to_string(&not).unwrap()),
            )
            .await;
        b.goto(&format!("{base}/recordings/{id}?t={}", seconds(i)))
            .await
            .unwrap();
        let at = b.execute_async(TIMED_SCREEN, vec![]).await.unwrap();
        browser.forget(&timer).await;
        eprintln!("deep link stages (ms): {}", at[3]);
        shown_ms.push(at[0].as_f64().unwrap());
        element_ms.extend(at[2].as_f64());
        reel_ms.push(at[1].as_f64().unwrap());
    }
    // Where the last deep link's time went, from the page's own timings.
    let timings = b
        .execute(
            "const nav = performance.getEntriesByType('navigation')[0];
             const r = performance.getEntriesByType('resource')
               .filter(e => e.name.includes('/player'))
               .map(e => [e.name.split('/').slice(-2).join('/'),
                          Math.round(e.startTime), Math.round(e.responseEnd)]);
             return [Math.round(nav.responseEnd), Math.round(nav.domContentLoadedEventEnd), r];",
            vec![],
        )
        .await
        .unwrap();
    eprintln!("last deep link: page received, DOM ready, [resource, start, end] (ms): {timings}");
    browser.shot("deep-link").await;
    // The server's share: pieces fetched alone, by a plain client.
    let client = reqwest::Client::new();
    let (mut index_ms, mut piece_ms, mut page_ms) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..9 {
        let i = pick(0, n - 1);
        let (from, to) = piece_of(i * STEP_US);
        let piece = if to == u64::MAX {
            format!("from={from}&end={}", info.durable_time_us)
        } else {
            format!("from={from}&to={to}")
        };
        for (url, into) in [
            (
                format!("{base}/recordings/{id}?t={}", seconds(i)),
                &mut page_ms,
            ),
            (format!("{base}/recordings/{id}/player.json"), &mut index_ms),
            (
                format!("{base}/recordings/{id}/player/piece?{piece}"),
                &mut piece_ms,
            ),
        ] {
            let started = Instant::now();
            let r = client
                .get(&url)
                .bearer_auth(token.trim())
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{url}: {}", r.status());
            r.bytes().await.unwrap();
            into.push(started.elapsed().as_secs_f64() * 1e3);
        }
    }
    eprintln!(
        "alone: a deep link's page {:.1} ms, the index {:.1} ms, a piece {:.1} ms (medians of 9)",
        median(page_ms),
        median(index_ms),
        median(piece_ms)
    );
    let heap = |v: serde_json::Value| v.as_f64().unwrap() / 1e6;
    let heap_after_link = heap(
        b.execute("return performance.memory.usedJSHeapSize;", vec![])
            .await
            .unwrap(),
    );
    for _ in 0..20 {
        let i = pick(0, n - 1);
        b.execute(
            "window.reelPlayer.seek(arguments[0]);",
            vec![serde_json::json!(seconds(i).parse::<f64>().unwrap())],
        )
        .await
        .unwrap();
        let (want, not) = expected(i);
        b.execute_async(WAIT_SCREEN, vec![want.into(), not.into()])
            .await
            .unwrap();
    }
    browser.shot("after-seeks").await;
    let heap_after_seeks = heap(
        b.execute("return performance.memory.usedJSHeapSize;", vec![])
            .await
            .unwrap(),
    );
    let (reel, raw) = (median(reel_ms.clone()), median(raw_ms.clone()));
    let shown = median(shown_ms.clone());
    let goal = 2.0 * raw + 100.0;
    println!(
        "\n### Web player: deep link into a recombined {} MiB recording on Garage\n",
        object >> 20
    );
    println!("| what | median | runs |");
    println!("|---|---:|---|");
    println!("| raw ranged GET of the piece's bytes | {raw:.1} ms | {raw_ms:.1?} |");
    println!(
        "| deep link, navigation to the right screen shown | {shown:.1} ms | {shown_ms:.1?} |"
    );
    if !element_ms.is_empty() {
        println!(
            "| the same, as Chromium's Element Timing reports reeld's screen painted | {:.1} ms | {element_ms:.1?} |",
            median(element_ms.clone())
        );
    }
    println!("| deep link, navigation to the player showing it | {reel:.1} ms | {reel_ms:.1?} |");
    // The later of the two timings of reeld's screen: Chromium reports its
    // paint when the frame is presented, tens of ms after the frame began.
    let shown = if element_ms.is_empty() {
        shown
    } else {
        shown.max(median(element_ms.clone()))
    };
    let met = |ms: f64| if ms <= goal { "met" } else { "NOT met" };
    println!(
        "\ngoal: deep link <= 2 x raw + 100 ms = {goal:.1} ms: the right screen shown ({shown:.1} ms): {}; the player showing it: {}",
        met(shown),
        met(reel)
    );
    println!(
        "JS heap: {heap_after_link:.1} MB after the deep links, {heap_after_seeks:.1} MB after 20 random seeks (goal < 100 MB: {})",
        if heap_after_seeks < 100.0 {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "keyframes: {kept} built in {keyframes_s:.1} s ({:.0} MB/s of events)",
        size as f64 / keyframes_s / 1e6
    );
    let _ = browser.client.clone().close().await;
}

fn main() {
    reel_testkit::bench_main(main_async);
}
