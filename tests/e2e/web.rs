//! The web UI in a real browser (Debian's Chromium, headless, driven over
//! WebDriver by chromedriver): signing in, a wrong token, filtering the
//! list, playing a recording, a deep link into the middle of a long one
//! that fetches only its window, and an open recording followed live.
//! Screenshots of each step are kept in `target/test-artifacts/web/`.
//! Without a browser: what needs a session, and what a session cannot do.

use std::time::Duration;

use fantoccini::Locator;
use reel_api::AuditRecord;
use reel_proto::v1::{Event, EventKind};
use reel_testkit::{Recorder, Reeld, metadata, wait_for};
use serde_json::{Value, json};

use crate::browser::Browser;

/// `reel token create --role ROLE`; the secret.
fn token(reeld: &Reeld, name: &str, role: &str) -> String {
    let out = reeld.reel(&["token", "create", "--name", name, "--role", role]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines().last().unwrap().trim().to_string()
}

/// Line `i`, at `i` times `step_us`.
fn line(prefix: &str, i: u64, width: usize, step_us: u64) -> Event {
    let text = format!("{prefix} {i:05} {}\r\n", "=".repeat(width));
    Event {
        time_us: i * step_us,
        kind: EventKind::Output as i32,
        data: text.into_bytes(),
    }
}

/// Records `n` lines, one every `step_us`, of about `width` bytes each;
/// the id.
async fn record_lines(
    reeld: &Reeld,
    (user, target): (&str, &str),
    n: u64,
    width: usize,
    step_us: u64,
) -> String {
    let mut rec = Recorder::start(&reeld.grpc, metadata(user, target))
        .await
        .unwrap();
    let events: Vec<Event> = (0..n).map(|i| line("line", i, width, step_us)).collect();
    for chunk in events.chunks(200) {
        rec.append(chunk.to_vec()).await.unwrap();
    }
    let id = rec.id.clone();
    rec.close().await.unwrap();
    id
}

/// The player's piece requests the page made: (URL, body bytes).
async fn piece_fetches(browser: &Browser) -> Vec<(String, u64)> {
    let entries = browser
        .client
        .execute(
            "return performance.getEntriesByType('resource')
               .filter(e => e.name.includes('/player/piece'))
               .map(e => [e.name, e.encodedBodySize]);",
            vec![],
        )
        .await
        .unwrap();
    entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e[0].as_str().unwrap().to_string(), e[1].as_u64().unwrap()))
        .collect()
}

fn query_number(url: &str, key: &str) -> Option<u64> {
    let query = url.split_once('?')?.1;
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_filter_play_and_open_a_moment_of_a_long_recording() {
    let dir = tempfile::tempdir().unwrap();
    let reeld = Reeld::start(&dir.path().join("data"), &[]).unwrap();
    let viewer = token(&reeld, "auditor-ann", "auditor");
    // Two hours at a line a second, about 2.5 MB: many pieces.
    let long = record_lines(&reeld, ("alice", "db-1"), 7200, 320, 1_000_000).await;
    let short = record_lines(&reeld, ("bob", "web-2"), 30, 20, 100_000).await;
    let base = reeld.http.clone();
    let browser = Browser::start("sign_in_filter_play").await;
    let b = &browser.client;

    // A page without a session: the sign-in page, which comes back to it.
    b.goto(&format!("{base}/recordings")).await.unwrap();
    assert_eq!(browser.path().await, "/signin?next=%2Frecordings");
    browser.shot("01-sign-in").await;

    // A wrong token: the sign-in page again, saying so.
    browser.sign_in(&base, "reel_0000wrong").await;
    assert!(browser.path().await.starts_with("/signin"));
    let page = browser.body_text().await;
    assert!(page.contains("Unknown, revoked or expired token"), "{page}");
    browser.shot("02-wrong-token").await;

    browser.sign_in(&base, &viewer).await;
    assert_eq!(browser.path().await, "/recordings");
    let list = browser.body_text().await;
    assert!(list.contains("alice") && list.contains("bob"), "{list}");
    browser.shot("03-list").await;

    // Filter by user.
    let user = b
        .find(Locator::Css("form.filters input[name=user]"))
        .await
        .unwrap();
    user.send_keys("ali*").await.unwrap();
    let filter = b.find(Locator::Css("form.filters button")).await.unwrap();
    browser.click_to_new_page(filter, "filtering").await;
    let rows = b
        .find_all(Locator::Css("table.recordings tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let filtered = browser.body_text().await;
    assert!(
        filtered.contains("alice") && !filtered.contains("web-2"),
        "{filtered}"
    );
    browser.shot("04-filtered").await;

    // Open the short one and play it to its end.
    b.goto(&format!("{base}/recordings/{short}")).await.unwrap();
    b.execute("return window.reelPlayer.play();", vec![])
        .await
        .unwrap();
    let text = browser
        .wait_terminal("playing bob's recording", "line 00029")
        .await;
    assert!(text.contains("line 00010"), "{text}");
    browser.shot("05-played").await;

    // A deep link into the middle of the long one: the screen as it was at
    // 01:00:00.5 (every line up to 03600 printed, none after), paused,
    // fetched without the rest of the recording. The page itself holds
    // the screen, drawn by reeld, until the player has drawn it.
    let page = reeld
        .get(&format!("/recordings/{long}?t=3600.5"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let drawn = page
        .split_once("<pre class=\"reel-screen")
        .and_then(|(_, rest)| rest.split_once("</pre>"))
        .map(|(pre, _)| pre)
        .unwrap_or_else(|| panic!("no screen drawn in the page:\n{page}"));
    assert!(
        drawn.contains("line 03600") && drawn.contains("line 03599"),
        "{drawn}"
    );
    assert!(!drawn.contains("line 03601"), "past the moment:\n{drawn}");
    b.goto(&format!("{base}/recordings/{long}?t=3600.5"))
        .await
        .unwrap();
    let text = browser.wait_terminal("the deep link", "line 03600").await;
    let drawn_left = b
        .execute(
            "return document.querySelector('.reel-screen') !== null;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        drawn_left, false,
        "reeld's screen gives way to the player's"
    );
    assert!(!text.contains("line 03601"), "past the moment:\n{text}");
    assert!(text.contains("line 03599"), "{text}");
    let at = b
        .execute("return window.reelPlayer.getCurrentTime();", vec![])
        .await
        .unwrap();
    assert!(
        (at.as_f64().unwrap() - 3600.5).abs() < 0.5,
        "player at {at}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let still = b
        .execute("return window.reelPlayer.getCurrentTime();", vec![])
        .await
        .unwrap();
    assert_eq!(at, still, "the deep link opens paused");
    browser.shot("06-deep-link").await;

    let fetched = piece_fetches(&browser).await;
    let fetched_bytes: u64 = fetched.iter().map(|f| f.1).sum();
    let whole = reeld
        .get_json::<Value>(&format!("/api/v1/recordings/{long}"))
        .await
        .unwrap()["data_bytes"]
        .as_u64()
        .unwrap();
    assert!(!fetched.is_empty());
    assert!(
        fetched.len() <= 2 && fetched_bytes * 4 < whole,
        "the deep link fetched {fetched_bytes} bytes of a {whole}-byte recording: {fetched:?}"
    );
    let wanted = fetched.iter().any(|(url, _)| {
        let from = query_number(url, "from").unwrap();
        let to = query_number(url, "to")
            .or(query_number(url, "end"))
            .unwrap();
        from <= 3_600_000_000 && 3_600_000_000 <= to
    });
    assert!(wanted, "no piece holds 01:00:00: {fetched:?}");
    assert!(
        fetched
            .iter()
            .all(|(url, _)| query_number(url, "from") != Some(0)),
        "the first piece was fetched: {fetched:?}"
    );

    // Seeking back plays from there with the right screen.
    b.execute("return window.reelPlayer.seek(60.5);", vec![])
        .await
        .unwrap();
    let text = browser.wait_terminal("seeking back", "line 00060").await;
    assert!(
        !text.contains("line 00061") && !text.contains("line 0360"),
        "{text}"
    );
    browser.shot("07-seek-back").await;

    // The recording's page lists who viewed it, to an auditor.
    b.goto(&format!("{base}/recordings/{long}")).await.unwrap();
    let page = browser.body_text().await;
    assert!(
        page.contains("Viewed by") && page.contains("auditor-ann"),
        "{page}"
    );

    // Signing out ends the session: pages send to sign-in again.
    let sign_out = b.find(Locator::Css("form.signout button")).await.unwrap();
    browser.click_to_new_page(sign_out, "signing out").await;
    b.goto(&format!("{base}/recordings")).await.unwrap();
    assert!(browser.path().await.starts_with("/signin"));
    browser.shot("08-signed-out").await;

    // Every piece played is in the audit log under the signed-in token.
    let audit: Vec<AuditRecord> = reeld.get_json("/api/v1/audit?limit=10000").await.unwrap();
    let plays = audit
        .iter()
        .filter(|e| e.action == "play" && e.by == "auditor-ann" && e.recordings == [long.clone()])
        .count();
    assert!(plays >= 2, "{plays} play entries");
    for action in ["sign-in", "list", "show", "sign-out"] {
        assert!(
            audit
                .iter()
                .any(|e| e.action == action && e.by == "auditor-ann"),
            "no {action} in the audit log"
        );
    }
    // Without `since`, the latest entries, this read's own the last.
    let latest: Vec<AuditRecord> = reeld.get_json("/api/v1/audit?limit=3").await.unwrap();
    assert_eq!(latest[..2], audit[audit.len() - 2..]);
    assert_eq!(
        (latest[2].action.as_str(), latest[2].detail.as_str()),
        ("audit-read", "limit=3")
    );
    // The entries about that one recording, by its index: the same ones.
    let about: Vec<AuditRecord> = reeld
        .get_json(&format!("/api/v1/audit?recording={long}&limit=10000"))
        .await
        .unwrap();
    let expected: Vec<&AuditRecord> = audit
        .iter()
        .filter(|e| e.recordings.contains(&long))
        .collect();
    assert_eq!(about.iter().collect::<Vec<_>>(), expected);
    assert!(
        about
            .iter()
            .any(|e| e.action == "show" && e.by == "auditor-ann")
    );
    // ... and the page lists them as its viewers, the latest first.
    let page = reeld
        .get(&format!("/recordings/{long}"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let last_play = about.iter().rev().find(|e| e.action == "play").unwrap();
    assert!(page.contains(&last_play.detail), "{page}");
    let out = reeld.reel(&["audit", "--recording", &long, "--limit", "10000", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli: Vec<AuditRecord> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        cli[..about.len()],
        about[..],
        "and `reel audit --recording`"
    );
    assert!(cli.iter().all(|e| e.recordings.contains(&long)));
    let _ = browser.client.clone().close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_recording_is_followed_live() {
    let dir = tempfile::tempdir().unwrap();
    let reeld = Reeld::start(&dir.path().join("data"), &[]).unwrap();
    let viewer = token(&reeld, "viewer-vic", "viewer");
    let mut rec = Recorder::start(&reeld.grpc, metadata("carol", "db-9"))
        .await
        .unwrap();
    rec.append((0..3).map(|i| line("live", i, 10, 1000)).collect())
        .await
        .unwrap();
    let browser = Browser::start("live").await;
    browser.sign_in(&reeld.http, &viewer).await;
    browser
        .client
        .goto(&format!("{}/recordings/{}", reeld.http, rec.id))
        .await
        .unwrap();
    // The screen as it is, at once.
    browser
        .wait_terminal("the live view's first screen", "live 00002")
        .await;
    browser.shot("01-live-start").await;
    // New lines while it runs.
    for i in 3..6 {
        rec.append(vec![line("live", i, 10, 1000)]).await.unwrap();
        browser
            .wait_terminal("a new line", &format!("live {i:05}"))
            .await;
    }
    browser.shot("02-live-more").await;
    rec.close().await.unwrap();
    let _ = browser.client.clone().close().await;
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn location(r: &reqwest::Response) -> String {
    r.headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// The `name=value` of a `Set-Cookie` for `name`, and the whole header.
fn set_cookie(r: &reqwest::Response, name: &str) -> Option<(String, String)> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with(&format!("{name}=")))
        .map(|c| (c.split(';').next().unwrap().to_string(), c))
}

/// Signs in over plain HTTP as a browser would: the form's cookie and
/// field, and our own origin.
async fn sign_in(http: &str, token: &str) -> reqwest::Response {
    let client = no_redirects();
    let form = client.get(format!("{http}/signin")).send().await.unwrap();
    let (cookie, _) = set_cookie(&form, "reel_signin").expect("the form's cookie");
    let csrf = cookie.split_once('=').unwrap().1.to_string();
    let host = http.trim_start_matches("http://");
    client
        .post(format!("{http}/signin"))
        .header("cookie", cookie)
        .header("origin", format!("http://{host}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            serde_urlencoded::to_string([
                ("token", token),
                ("csrf", &csrf),
                ("next", "/recordings"),
            ])
            .unwrap(),
        )
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_need_a_session_and_a_session_only_reads() {
    let dir = tempfile::tempdir().unwrap();
    let reeld = Reeld::start(&dir.path().join("data"), &[]).unwrap();
    let http = reeld.http.clone();
    let viewer = token(&reeld, "viewer-v", "viewer");
    let recorder = token(&reeld, "recorder-r", "recorder");
    let hostile = "<script>alert(1)</script>";
    let id = record_lines(&reeld, (hostile, "db-1"), 5, 10, 1_000_000).await;
    let client = no_redirects();

    // Without a session: pages send to sign-in, the rest is refused; only
    // the sign-in page and its style are served.
    for page in ["/", "/recordings", &format!("/recordings/{id}?t=3")] {
        let r = client.get(format!("{http}{page}")).send().await.unwrap();
        assert_eq!(r.status(), 303, "{page}");
        assert!(
            location(&r).starts_with("/signin?next="),
            "{page}: {}",
            location(&r)
        );
    }
    for data in [
        "/ui/assets/asciinema-player.min.js".to_string(),
        "/ui/assets/reel.js".to_string(),
        format!("/recordings/{id}/player.json"),
        format!("/recordings/{id}/player/piece?from=0&end=4000000"),
        format!("/recordings/{id}/live"),
    ] {
        let r = client.get(format!("{http}{data}")).send().await.unwrap();
        assert_eq!(r.status(), 401, "{data}");
    }
    for open in ["/signin", "/ui/reel.css"] {
        let r = client.get(format!("{http}{open}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{open}");
    }

    // The sign-in form must come from our page: no form cookie, or
    // another site's origin, is refused.
    let r = client
        .post(format!("{http}/signin"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            serde_urlencoded::to_string([("token", viewer.as_str()), ("csrf", "x"), ("next", "/")])
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(set_cookie(&r, "reel_session").is_none());
    let form = client.get(format!("{http}/signin")).send().await.unwrap();
    let (cookie, _) = set_cookie(&form, "reel_signin").unwrap();
    let csrf = cookie.split_once('=').unwrap().1.to_string();
    let r = client
        .post(format!("{http}/signin"))
        .header("cookie", &cookie)
        .header("origin", "https://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string([("token", viewer.as_str()), ("csrf", &csrf)]).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // A recorder's token may not view.
    let r = sign_in(&http, &recorder).await;
    assert_eq!(r.status(), 403);
    assert!(set_cookie(&r, "reel_session").is_none());

    // A viewer's token makes a strict, HttpOnly session cookie.
    let r = sign_in(&http, &viewer).await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/recordings");
    let (session, header) = set_cookie(&r, "reel_session").expect("a session cookie");
    for part in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(header.contains(part), "{header}");
    }
    assert!(!header.contains(&viewer), "the token is not the cookie");

    // The session reads; what a recorder chose is shown, never run.
    let page = client
        .get(format!("{http}/recordings"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let html = page.text().await.unwrap();
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(!html.contains(hostile));
    let index: Value = client
        .get(format!("{http}/recordings/{id}/player.json"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(index["version"], 1);
    assert_eq!(index["duration"], 4.0);

    // A session never stands for its token where something changes.
    let purge = client
        .post(format!("{http}/api/v1/purge"))
        .header("cookie", &session)
        .json(&json!({ "ids": [id] }))
        .send()
        .await
        .unwrap();
    assert_eq!(purge.status(), 401);
    // Sign-out needs the page's CSRF token.
    let r = client
        .post(format!("{http}/signout"))
        .header("cookie", &session)
        .header("origin", &http)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string([("csrf", "guess")]).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let still = client
        .get(format!("{http}/recordings"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(still.status(), 200, "a forged sign-out changes nothing");

    // Revoking the token ends its sessions at once.
    let out = reeld.reel(&["token", "revoke", "viewer-v"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("the session to end", Duration::from_secs(5), async || {
        client
            .get(format!("{http}/recordings"))
            .header("cookie", &session)
            .send()
            .await
            .unwrap()
            .status()
            == 303
    })
    .await;
}

/// A live view as the browser opens it (the admin's bearer token, our
/// origin), read as ALiS messages.
struct LiveView {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl LiveView {
    async fn open(reeld: &Reeld, id: &str) -> LiveView {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let address = reeld.http.trim_start_matches("http://");
        let mut request = format!("ws://{address}/recordings/{id}/live")
            .into_client_request()
            .unwrap();
        let h = request.headers_mut();
        h.insert("sec-websocket-protocol", "v1.alis".parse().unwrap());
        h.insert("origin", reeld.http.parse().unwrap());
        let bearer = format!("Bearer {}", reeld.token().unwrap());
        h.insert("authorization", bearer.parse().unwrap());
        let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        let magic = next_binary(&mut socket).await.expect("the magic");
        assert_eq!(magic, reel_asciicast::alis::MAGIC);
        LiveView { socket }
    }

    /// The next message; `None` once the stream is over.
    async fn next(&mut self) -> Option<reel_asciicast::alis::Message> {
        let bytes = next_binary(&mut self.socket).await?;
        Some(reel_asciicast::alis::decode(&bytes).unwrap())
    }

    /// Reads until the output so far contains `text`; all the output read.
    async fn until(&mut self, text: &str) -> String {
        use reel_asciicast::alis::{Body, Message};
        let mut out = String::new();
        let found = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(m) = self.next().await {
                match m {
                    Message::Init { init, .. } => out.push_str(&init),
                    Message::Event {
                        body: Body::Output(o),
                        ..
                    } => out.push_str(&o),
                    _ => {}
                }
                if out.contains(text) {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(
            found,
            Ok(true),
            "the live view never showed {text:?}:\n{out}"
        );
        out
    }
}

async fn next_binary(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Option<Vec<u8>> {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message as Ws;
    loop {
        match socket.next().await? {
            Ok(Ws::Binary(b)) => return Some(b.to_vec()),
            Ok(Ws::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_view_goes_on_while_the_primary_store_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let crate::TwoStores {
        mut primary,
        secondary: _secondary,
        cfg: _cfg,
        reeld,
    } = crate::two_stores_small_segments(dir.path());
    let mut rec = Recorder::start(&reeld.grpc, metadata("dave", "db-3"))
        .await
        .unwrap();
    let id = rec.id.clone();
    let lines = |range: std::ops::Range<u64>| -> Vec<Event> {
        range.map(|i| line("live", i, 60, 1000)).collect()
    };
    rec.append(lines(0..200)).await.unwrap();
    wait_for("sealed and uploaded", Duration::from_secs(60), async || {
        reel_testkit::drained(&reeld).await
    })
    .await;

    // A view opened before the outage: the screen as it is, then the
    // events written while the primary is down.
    let mut before = LiveView::open(&reeld, &id).await;
    before.until("live 00199").await;
    primary.kill9();
    rec.append(lines(200..240)).await.unwrap();
    before.until("live 00239").await;

    // A view opened during the outage starts with the screen as it is when
    // the bytes before are readable, and otherwise from now, saying so; in
    // both cases it goes on.
    let mut during = LiveView::open(&reeld, &id).await;
    let first = during.until("\n").await;
    if !first.contains("is on a store that is down") {
        assert!(first.contains("live 00239"), "{first}");
    }
    rec.append(lines(240..250)).await.unwrap();
    during.until("live 00249").await;
    before.until("live 00249").await;

    // The recording closes: both views end.
    rec.close().await.unwrap();
    for view in [&mut before, &mut during] {
        let ended = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(m) = view.next().await {
                if matches!(m, reel_asciicast::alis::Message::EndOfTransmission { .. }) {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(ended, Ok(true), "no end of transmission");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_segment_is_a_notice_in_the_player_not_a_silence() {
    use object_store::ObjectStoreExt;
    let dir = tempfile::tempdir().unwrap();
    let crate::TwoStores {
        primary,
        secondary: _secondary,
        cfg: _cfg,
        reeld,
    } = crate::two_stores_small_segments(dir.path());
    let id = record_lines(&reeld, ("erin", "db-4"), 1000, 60, 1000).await;
    wait_for("uploaded", Duration::from_secs(60), async || {
        reel_testkit::drained(&reeld).await
    })
    .await;
    // A segment in the middle deleted from the only store that had it.
    let detail: reel_api::RecordingDetail = reeld
        .get_json(&format!("/api/v1/recordings/{id}"))
        .await
        .unwrap();
    assert!(
        detail.segments.len() >= 3,
        "{} segments",
        detail.segments.len()
    );
    let gone = &detail.segments[detail.segments.len() / 2];
    let rid: reel_proto::RecordingId = id.parse().unwrap();
    let lost = reel_storage::keys::segment(rid, gone.sequence);
    primary.object_store().delete(&lost).await.unwrap();

    let index: Value = reeld
        .get_json(&format!("/recordings/{id}/player.json"))
        .await
        .unwrap();
    let pieces = index["segments"].as_array().unwrap();
    let mut text = String::new();
    for piece in pieces {
        let url = piece["url"].as_str().unwrap();
        let body: Value = reeld
            .get_json(&format!("/recordings/{id}/{url}"))
            .await
            .unwrap();
        for e in body["events"].as_array().unwrap() {
            text.push_str(e[2].as_str().unwrap());
        }
    }
    let (first, count) = (gone.first_event_index, gone.event_count);
    let notice = text
        .lines()
        .find(|l| l.contains("reel: events"))
        .unwrap_or_else(|| panic!("no notice of the lost segment:\n{text}"));
    assert!(
        notice.contains(&format!("events {first}..{}", first + count)) && notice.contains("lost"),
        "{notice}"
    );
    // Every other line is there, once.
    for i in 0..1000u64 {
        let shown = text.matches(&format!("line {i:05} ")).count();
        let expected = usize::from(!(first..first + count).contains(&i));
        assert_eq!(shown, expected, "line {i}");
    }

    // Once the catalog knows (a verify found the copy gone), the gap is a
    // marker on the player's timeline, at the segment's start, in a real
    // browser.
    let out = reeld.reel(&["verify", "--repair"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let label = format!("events {first}..{} are lost", first + count);
    let index: Value = reeld
        .get_json(&format!("/recordings/{id}/player.json"))
        .await
        .unwrap();
    let markers = index["markers"].as_array().unwrap();
    assert_eq!(markers.len(), 1, "{markers:?}; verify said: {said}");
    assert!(markers[0][1].as_str().unwrap().contains(&label));
    assert_eq!(
        (markers[0][0].as_f64().unwrap() * 1e6).round() as u64,
        gone.start_time_us
    );
    let browser = Browser::start("lost_segment").await;
    browser.sign_in(&reeld.http, &reeld.token().unwrap()).await;
    browser
        .client
        .goto(&format!("{}/recordings/{id}", reeld.http))
        .await
        .unwrap();
    let mut shown = Vec::new();
    for _ in 0..100 {
        let found = browser
            .client
            .execute(
                "return [...document.querySelectorAll('.ap-marker-container .ap-tooltip')]
                   .map(m => m.textContent);",
                vec![],
            )
            .await
            .unwrap();
        shown = found
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap_or_default().to_string())
            .collect();
        if !shown.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        shown.len() == 1 && shown[0].contains(&label),
        "the timeline's markers: {shown:?}"
    );
    let page = browser.body_text().await;
    assert!(page.contains(&label), "{page}");
    browser.shot("gap-marker").await;
    let _ = browser.client.clone().close().await;
}

/// Bytes reeld has asked its stores for on behalf of reads, in all.
async fn read_bytes(reeld: &Reeld) -> u64 {
    let text = reeld.get("/metrics").await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with("reel_read_bytes_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// A deep link into a recording nobody has opened, after a restart (no
/// screen in memory): the keyframes built when it closed are in the
/// catalog, so reeld reads the window's piece from the store, not
/// everything before it, and the screen at the piece's start is right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deep_link_after_a_restart_reads_one_piece_thanks_to_the_keyframes() {
    let dir = tempfile::tempdir().unwrap();
    let mut reeld = Reeld::start(&dir.path().join("data"), &[]).unwrap();
    let id = record_lines(&reeld, ("alice", "db-1"), 7200, 320, 1_000_000).await;
    wait_for(
        "the keyframes built and every segment stored",
        Duration::from_secs(60),
        async || {
            let log = std::fs::read_to_string(&reeld.log).unwrap_or_default();
            log.lines()
                .any(|l| l.contains("keyframes built") && l.contains(&id))
                && reel_testkit::drained(&reeld).await
        },
    )
    .await;
    reeld.restart().unwrap();

    let index: Value = reeld
        .get_json(&format!("/recordings/{id}/player.json"))
        .await
        .unwrap();
    let pieces = index["segments"].as_array().unwrap();
    assert!(pieces.len() > 8, "{} pieces", pieces.len());
    let at = 3600.5;
    let i = pieces
        .iter()
        .rposition(|p| p["start"].as_f64().unwrap() <= at)
        .unwrap();
    assert!(i > 0);
    let whole: u64 = reeld
        .get_json::<Value>(&format!("/api/v1/recordings/{id}"))
        .await
        .unwrap()["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["size"].as_u64().unwrap())
        .sum();
    let before = read_bytes(&reeld).await;
    let url = pieces[i]["url"].as_str().unwrap();
    let piece: Value = reeld
        .get_json(&format!("/recordings/{id}/{url}"))
        .await
        .unwrap();
    let read = read_bytes(&reeld).await - before;
    assert!(read > 0, "the piece was read from a store");
    // About one piece (256 KiB of stored events), not the half of the
    // recording before it.
    assert!(
        read < 2 * (256 << 10) && read * 4 < whole,
        "one piece read {read} bytes of a recording of {whole}"
    );
    // The screen at the piece's start shows the line before it, the
    // events start there.
    let start_us = (pieces[i]["start"].as_f64().unwrap() * 1e6).round() as u64;
    let last_before = (start_us - 1) / 1_000_000;
    let init = piece["snapshot"]["init"].as_str().unwrap();
    assert!(
        init.contains(&format!("line {last_before:05}"))
            && !init.contains(&format!("line {:05}", last_before + 1)),
        "the screen at {start_us} µs: {init:?}"
    );
    let first = piece["events"][0][2].as_str().unwrap_or_default();
    let second = piece["events"][1][2].as_str().unwrap_or_default();
    assert!(
        format!("{first}{second}").contains(&format!("line {:05}", last_before + 1)),
        "{} {}",
        piece["events"][0],
        piece["events"][1]
    );

    // A piece that is not one of the index's is refused (a made-up
    // boundary would have reeld replay and keep one more screen).
    let made_up = reeld
        .get(&format!("/recordings/{id}/player/piece?from=1234&to=99999"))
        .await
        .unwrap();
    assert_eq!(made_up.status(), 400);
}
