//! asciinema 3.2 (the real CLI, `scripts/install-asciinema`) streaming live
//! sessions into reeld over ALiS, cut off and reconnecting; malformed
//! streams refused.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use reel_api::{RecordingList, RecordingSummary};
use reel_proto::v1::{Event, EventKind};
use reel_testkit::{Reeld, asciinema_binary, wait_for};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite;

fn recorder_token(reeld: &Reeld) -> String {
    let out = reeld.reel(&[
        "token",
        "create",
        "--name",
        "asciinema",
        "--role",
        "recorder",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_string()
}

async fn closed_recordings_of(reeld: &Reeld, user: &str, n: usize) -> Vec<RecordingSummary> {
    let mut found = Vec::new();
    wait_for(
        &format!("{n} closed recordings of {user}"),
        Duration::from_secs(20),
        async || {
            found = reeld.recordings_of(user).await;
            found.len() >= n && found.iter().all(|r| r.state == "closed")
        },
    )
    .await;
    found
}

fn output(events: &[Event]) -> String {
    events
        .iter()
        .filter(|e| e.kind == EventKind::Output as i32)
        .map(|e| String::from_utf8_lossy(&e.data).into_owned())
        .collect()
}

/// `asciinema session --headless`, writing its own cast file beside the
/// stream.
fn asciinema_session(home: &Path, url: &str, local: &Path, command: &str) -> std::process::Child {
    Command::new(asciinema_binary())
        .args(["session", "--headless", "--window-size", "80x24", "-o"])
        .arg(local)
        .args(["--stream-remote", url, "-c", command])
        .env("HOME", home)
        .env_remove("ASCIINEMA_SERVER_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("asciinema")
}

/// A TCP relay whose connections can be cut, as a network would.
struct Relay {
    port: u16,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    _accept: JoinHandle<()>,
}

impl Relay {
    async fn start(upstream: String) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let list = connections.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                let upstream = upstream.clone();
                list.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut up) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                }));
            }
        });
        Relay {
            port,
            connections,
            _accept: accept,
        }
    }

    /// Drops every open connection (new ones are relayed again).
    fn cut(&self) {
        for c in self.connections.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}

/// A session streamed without a break: what Reel stores has the same
/// output as asciinema's own file of the same session, and is closed at
/// the end of transmission.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asciinema_streams_a_session_into_a_recording() {
    let dir = tempfile::tempdir().unwrap();
    let reeld = Reeld::start(&dir.path().join("data"), &[]).unwrap();
    let token = recorder_token(&reeld);
    let address = reeld.http.trim_start_matches("http://");
    let url = format!("ws://{address}/ws/S/{token}?user=dave&target=build-01");
    let local = dir.path().join("local.cast");
    let child = asciinema_session(
        dir.path(),
        &url,
        &local,
        "sh -c 'for i in 1 2 3 4 5; do echo line-$i; sleep 0.1; done'",
    );
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let recordings = closed_recordings_of(&reeld, "dave", 1).await;
    assert_eq!(recordings.len(), 1);
    assert_eq!(recordings[0].target, "build-01");
    let stored = reeld.export_events(&recordings[0].id).await.unwrap();
    let cast = reel_asciicast::parse(&std::fs::read_to_string(&local).unwrap()).unwrap();
    let expected = output(&cast.events);
    assert!(expected.contains("line-5"), "{expected:?}");
    assert_eq!(
        output(&stored),
        expected,
        "the same output as asciinema's own file"
    );
    let log = std::fs::read_to_string(&reeld.log).unwrap();
    assert!(!log.contains(&token), "reeld never logs the token");
}

/// The connection is cut in the middle: asciinema reconnects and the
/// session goes on in the same recording, with a marker where the break
/// was and the screen restored after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_stream_reconnects_into_the_same_recording() {
    let dir = tempfile::tempdir().unwrap();
    let reeld = Reeld::start(&dir.path().join("data"), &[]).unwrap();
    let token = recorder_token(&reeld);
    let relay = Relay::start(reeld.http.trim_start_matches("http://").to_string()).await;
    let url = format!("ws://127.0.0.1:{}/ws/S/{token}?user=erin", relay.port);
    let local = dir.path().join("local.cast");
    let child = asciinema_session(
        dir.path(),
        &url,
        &local,
        "sh -c 'i=1; while [ $i -le 40 ]; do echo line-$i; i=$((i+1)); sleep 0.1; done'",
    );
    let waiting = tokio::task::spawn_blocking(move || child.wait_with_output());
    // Once the stream is under way, cut it.
    wait_for(
        "the stream has begun",
        Duration::from_secs(20),
        async || !reeld.recordings_of("erin").await.is_empty(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    relay.cut();
    let out = waiting.await.unwrap().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let recordings = closed_recordings_of(&reeld, "erin", 1).await;
    assert_eq!(
        recordings.len(),
        1,
        "one recording across the break: {recordings:?}"
    );
    let stored = reeld.export_events(&recordings[0].id).await.unwrap();
    let text = output(&stored);
    assert!(
        text.contains("line-1\r\n") && text.contains("line-40\r\n"),
        "{text:?}"
    );
    let markers: Vec<String> = stored
        .iter()
        .filter(|e| e.kind == EventKind::Marker as i32)
        .map(|e| String::from_utf8_lossy(&e.data).into_owned())
        .collect();
    assert!(
        markers.iter().any(|m| m.contains("reconnected")),
        "{markers:?}"
    );
}

/// Malformed streams get a close code and a reason, and store nothing; a
/// wrong token is refused before the upgrade.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_streams_are_refused_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let reeld = Reeld::start(&dir.path().join("data"), &[]).unwrap();
    let token = recorder_token(&reeld);
    let address = reeld.http.trim_start_matches("http://");
    let connect = async |token: &str| {
        let mut request = tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://{address}/ws/S/{token}?user=mallory"
        ))
        .unwrap();
        request
            .headers_mut()
            .insert("sec-websocket-protocol", "v1.alis".parse().unwrap());
        tokio_tungstenite::connect_async(request).await
    };

    // A wrong token: 401, no connection.
    match connect("reel_not_a_token").await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("expected 401, got {other:?}"),
    }

    let cases: [(&str, Vec<Vec<u8>>, &str); 3] = [
        ("no magic", vec![b"hello".to_vec()], "magic"),
        (
            "garbage after the magic",
            vec![b"ALiS\x01".to_vec(), b"z".to_vec()],
            "unknown message type",
        ),
        (
            "an event before the init",
            vec![
                b"ALiS\x01".to_vec(),
                reel_asciicast::alis::encode(&reel_asciicast::alis::Message::Event {
                    id: 1,
                    interval_us: 0,
                    body: reel_asciicast::alis::Body::Output("x".into()),
                }),
            ],
            "not an init",
        ),
    ];
    for (what, messages, reason) in cases {
        let (mut ws, _) = connect(&token).await.unwrap();
        for m in messages {
            ws.send(tungstenite::Message::binary(m)).await.unwrap();
        }
        let close = loop {
            match ws.next().await {
                Some(Ok(tungstenite::Message::Close(frame))) => break frame,
                Some(Ok(_)) => continue,
                other => panic!("{what}: expected a close, got {other:?}"),
            }
        };
        let frame = close.unwrap_or_else(|| panic!("{what}: a close without a reason"));
        assert_eq!(u16::from(frame.code), 4002, "{what}");
        assert!(frame.reason.contains(reason), "{what}: {}", frame.reason);
    }
    let list: RecordingList = reeld.get_json("/api/v1/recordings").await.unwrap();
    assert!(
        list.recordings.is_empty(),
        "nothing stored: {:?}",
        list.recordings
    );
}

/// `asciinema upload FILE` with reeld as its server and a recorder token as
/// its install id: the recording is stored, and the answer names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asciinema_uploads_a_cast_file() {
    let dir = tempfile::tempdir().unwrap();
    let reeld = Reeld::start(&dir.path().join("data"), &[]).unwrap();
    let token = recorder_token(&reeld);
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("install-id"), &token).unwrap();
    let cast = dir.path().join("session.cast");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/asciinema-shell.cast"),
        &cast,
    )
    .unwrap();
    let out = Command::new(asciinema_binary())
        .arg("upload")
        .arg(&cast)
        .env("ASCIINEMA_SERVER_URL", &reeld.http)
        .env("ASCIINEMA_STATE_HOME", &state)
        .env("ASCIINEMA_CONFIG_HOME", dir.path().join("config"))
        .env("USER", "frank")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recordings = closed_recordings_of(&reeld, "frank", 1).await;
    assert!(stdout.contains(&recordings[0].id), "{stdout}");
    let stored = reeld.export_events(&recordings[0].id).await.unwrap();
    let original = reel_asciicast::parse(&std::fs::read_to_string(&cast).unwrap()).unwrap();
    assert_eq!(stored, original.events, "every event as in the file");
}

/// A malformed upload, or one without the file, is a 400 with a message
/// and stores nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_upload_is_refused_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let reeld = Reeld::start(&dir.path().join("data"), &[]).unwrap();
    let token = recorder_token(&reeld);
    let form = |name: &str, content: &str| {
        format!(
            "--XyZ\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"a.cast\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n{content}\r\n--XyZ--\r\n"
        )
    };
    let cases = [
        (
            "not a cast",
            form("file", "hello, not a cast\n"),
            "the cast file",
        ),
        (
            "events out of order",
            form(
                "file",
                "{\"version\": 2, \"width\": 80, \"height\": 24}\n[2.0, \"o\", \"b\"]\n[1.0, \"o\", \"a\"]\n",
            ),
            "backwards",
        ),
        ("no file field", form("other", "x"), "no `file` field"),
    ];
    for (what, body, message) in cases {
        let response = reqwest::Client::new()
            .post(format!("{}/api/v1/recordings", reeld.http))
            .basic_auth("frank", Some(&token))
            .header("content-type", "multipart/form-data; boundary=XyZ")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{what}");
        let text = response.text().await.unwrap();
        assert!(text.contains(message), "{what}: {text}");
    }
    let list: RecordingList = reeld.get_json("/api/v1/recordings").await.unwrap();
    assert!(
        list.recordings.is_empty(),
        "nothing stored: {:?}",
        list.recordings
    );
}
