//! `reel record`: real commands in a real terminal (tmux) or with none,
//! recorded live into a real reeld that is killed and restarted under them.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use reel_api::RecordingDetail;
use reel_proto::v1::{Event, EventKind};
use reel_testkit::{Reeld, bin, wait_for};

/// `reel record ARGS` against `reeld`, with its admin token file.
fn reel_record(reeld: &Reeld, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin("reel"));
    cmd.args(["--server", &reeld.http, "--grpc", &reeld.grpc, "record"])
        .args(args)
        .env_remove("REEL_TOKEN")
        .env("REEL_TOKEN_FILE", reeld.data_dir.join("admin.token"));
    cmd
}

fn output_bytes(events: &[Event]) -> Vec<u8> {
    events
        .iter()
        .filter(|e| e.kind == EventKind::Output as i32)
        .flat_map(|e| e.data.iter().copied())
        .collect()
}

fn of_kind(events: &[Event], kind: EventKind) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.kind == kind as i32)
        .map(|e| String::from_utf8_lossy(&e.data).into_owned())
        .collect()
}

/// A tmux server of its own (socket under the test's directory).
struct Tmux {
    socket: std::path::PathBuf,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> Output {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(["-f", "/dev/null"])
            .args(args)
            .output()
            .expect("tmux");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(["capture-pane", "-p", "-t", "rec"])
            .output()
            .expect("tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    async fn wait_for_screen(&self, text: &str) {
        wait_for(
            &format!("the terminal shows {text:?}"),
            Duration::from_secs(20),
            async || self.screen().contains(text),
        )
        .await;
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A shell typed at through tmux, recorded with its input: the command's
/// output reaches the terminal unchanged (the recording's output is, byte
/// for byte, what the terminal received), a resize reaches the command and
/// the recording, and the exit status is the command's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_in_a_real_terminal_keeps_what_the_terminal_showed() {
    let dir = tempfile::tempdir().unwrap();
    let reeld = Reeld::start(&dir.path().join("data"), &[]).unwrap();
    let tmux = Tmux {
        socket: dir.path().join("tmux.sock"),
    };
    let (go, status, pane) = (
        dir.path().join("go"),
        dir.path().join("status"),
        dir.path().join("pane.bytes"),
    );
    let reel = format!(
        "{} --server {} --grpc {} record --user alice --target db-1 --label ticket=T-7 --input -- bash --norc --noprofile",
        quote(bin("reel").to_str().unwrap()),
        reeld.http,
        reeld.grpc
    );
    // The command waits for `go`: the pane's bytes are piped to a file
    // from its first one.
    let script = format!(
        "while [ ! -e {go} ]; do sleep 0.02; done; {reel}; echo $? > {status}",
        go = quote(go.to_str().unwrap()),
        status = quote(status.to_str().unwrap()),
    );
    let token_file = reeld.data_dir.join("admin.token");
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "rec",
        "-x",
        "100",
        "-y",
        "30",
        "-e",
        &format!("REEL_TOKEN_FILE={}", token_file.display()),
        "-e",
        "PS1=rec> ",
        "sh",
        "-c",
        &script,
    ]);
    tmux.run(&[
        "pipe-pane",
        "-t",
        "rec",
        "-o",
        &format!("cat >> {}", quote(pane.to_str().unwrap())),
    ]);
    std::fs::write(&go, "").unwrap();
    tmux.wait_for_screen("rec>").await;
    tmux.run(&["send-keys", "-t", "rec", "echo hello-$((6*7))", "Enter"]);
    tmux.wait_for_screen("hello-42").await;
    tmux.run(&["resize-window", "-t", "rec", "-x", "120", "-y", "40"]);
    // The new size reaches the command once `reel record` has handled its
    // SIGWINCH, while keys typed at once take another path (the input
    // thread), as in any terminal: on a busy machine `stty size` may run
    // first and print the old size (a clean-clone CI run did). So it is
    // asked again until the command sees the new size.
    let mut asked: Option<Instant> = None;
    wait_for(
        "the command sees the terminal's new size",
        Duration::from_secs(30),
        async || {
            if tmux.screen().contains("40 120") {
                return true;
            }
            if asked.is_none_or(|t| t.elapsed() > Duration::from_secs(2)) {
                tmux.run(&["send-keys", "-t", "rec", "stty size", "Enter"]);
                asked = Some(Instant::now());
            }
            false
        },
    )
    .await;
    tmux.run(&["send-keys", "-t", "rec", "exit 3", "Enter"]);
    wait_for("reel record exits", Duration::from_secs(30), async || {
        std::fs::read_to_string(&status).is_ok_and(|s| s.ends_with('\n'))
    })
    .await;
    assert_eq!(
        std::fs::read_to_string(&status).unwrap().trim(),
        "3",
        "the exit status is the command's"
    );
    // tmux ends the pipe when the pane closes; the file then stops growing.
    let mut shown = Vec::new();
    wait_for(
        "the pane's pipe is drained",
        Duration::from_secs(10),
        async || {
            let now = std::fs::read(&pane).unwrap_or_default();
            let stable = !now.is_empty() && now == shown;
            shown = now;
            stable
        },
    )
    .await;

    let recordings = reeld.recordings_of("alice").await;
    assert_eq!(recordings.len(), 1, "{recordings:?}");
    let r = &recordings[0];
    assert_eq!(r.state, "closed");
    assert_eq!((r.target.as_str(), r.protocol.as_str()), ("db-1", "tty"));
    assert_eq!(r.labels.get("ticket").map(String::as_str), Some("T-7"));
    let detail: RecordingDetail = reeld
        .get_json(&format!("/api/v1/recordings/{}", r.id))
        .await
        .unwrap();
    let terminal = detail.terminal.unwrap_or_default();
    assert!(terminal.starts_with("100x30"), "{terminal}");
    let events = reeld.export_events(&r.id).await.unwrap();
    assert_eq!(
        output_bytes(&events),
        shown,
        "the recording's output is exactly what the terminal received"
    );
    assert_eq!(of_kind(&events, EventKind::Resize), vec!["120x40"]);
    assert_eq!(of_kind(&events, EventKind::Exit), vec!["3"]);
    let typed = of_kind(&events, EventKind::Input).concat();
    assert!(typed.contains("echo hello-$((6*7))\r"), "{typed:?}");
    assert!(typed.contains("exit 3\r"), "{typed:?}");
}

/// A session with no terminal (as under `ssh -T`): reeld is SIGKILLed
/// three times while the command prints; the command never notices (its
/// output and status are untouched, nothing is printed to it), and the
/// recording holds every line once, in order, in one recording.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reeld_killed_under_a_session_loses_nothing_and_the_command_never_notices() {
    let dir = tempfile::tempdir().unwrap();
    let mut reeld = Reeld::start(&dir.path().join("data"), &[]).unwrap();
    reeld.pin_ports();
    let log = dir.path().join("record.log");
    const LINES: usize = 300;
    let script = format!(
        "i=0; while [ $i -lt {LINES} ]; do echo \"line $i of the session\"; i=$((i+1)); sleep 0.01; done; exit 7"
    );
    let child = reel_record(
        &reeld,
        &[
            "--user",
            "bob",
            // Small memory: events wait in the spool file while reeld is down.
            "--memory-bytes",
            "2048",
            "--log",
            log.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            &script,
        ],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let started = Instant::now();
    let output = tokio::task::spawn_blocking(move || child.wait_with_output());
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        reeld.kill9();
        tokio::time::sleep(Duration::from_millis(400)).await;
        tokio::task::block_in_place(|| reeld.restart()).unwrap();
    }
    let output = output.await.unwrap().unwrap();
    let expected: String = (0..LINES)
        .map(|i| format!("line {i} of the session\n"))
        .collect();
    assert_eq!(output.status.code(), Some(7), "the command's exit status");
    assert_eq!(String::from_utf8_lossy(&output.stdout), expected);
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "",
        "nothing said to the user"
    );
    assert!(
        started.elapsed() > Duration::from_secs(3),
        "the kills landed during the session"
    );

    let recordings = reeld.recordings_of("bob").await;
    assert_eq!(recordings.len(), 1, "one recording: {recordings:?}");
    assert_eq!(recordings[0].state, "closed");
    let events = reeld.export_events(&recordings[0].id).await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output_bytes(&events)),
        expected,
        "every line once, in order"
    );
    assert_eq!(of_kind(&events, EventKind::Exit), vec!["7"]);
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        log.matches("resumed recording").count() >= 3,
        "each restart was resumed: {log}"
    );
}

/// `--require-recording` fails closed: no session without reeld, and a
/// session whose events stop being made durable is ended within the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_recording_fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    let mut reeld = Reeld::start(&dir.path().join("data"), &[]).unwrap();

    // No server where the recorder points: the command never runs.
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("http://{}", unused.local_addr().unwrap());
    drop(unused);
    let out = Command::new(bin("reel"))
        .args(["--server", &nowhere, "--grpc", &nowhere, "--token", "t"])
        .args(["record", "--require-recording", "--require-within", "1s"])
        .args(["--", "sh", "-c", "echo the-command-ran"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(75));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("the-command-ran"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("this session cannot start"), "{stderr}");

    // The server dies under a running session: ended within 2 s (plus the
    // time to notice and to hang up), with a message.
    let mut child = reel_record(
        &reeld,
        &[
            "--user",
            "carol",
            "--require-recording",
            "--require-within",
            "2s",
            "--",
            "sh",
            "-c",
            "while true; do echo tick; sleep 0.05; done",
        ],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    reeld.kill9();
    let killed = Instant::now();
    let status = tokio::task::spawn_blocking(move || {
        let status = child.wait().unwrap();
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        (status, stderr)
    })
    .await
    .unwrap();
    let took = killed.elapsed();
    assert_eq!(status.0.code(), Some(75), "{}", status.1);
    assert!(status.1.contains("this session was ended"), "{}", status.1);
    // The budget: the 2 s limit, the check's tick, then the hang-up and
    // the last attempt to close the recording (at most `finish_within`, 2 s
    // here, with reeld gone); the rest is room for a loaded machine (the
    // end-to-end suite runs a browser beside this test).
    assert!(
        took < Duration::from_secs(9),
        "ended {took:?} after the server died (limit 2 s)"
    );

    // What was acknowledged before is kept.
    tokio::task::block_in_place(|| reeld.restart()).unwrap();
    let recordings = reeld.recordings_of("carol").await;
    assert_eq!(recordings.len(), 1);
    let events = reeld.export_events(&recordings[0].id).await.unwrap();
    assert!(String::from_utf8_lossy(&output_bytes(&events)).starts_with("tick\n"));
}

/// A token file every user can read is refused before anything runs.
#[test]
fn a_token_file_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("recorder.token");
    std::fs::write(&file, "reel_secret_token\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(bin("reel"))
        .args([
            "--server",
            "http://127.0.0.1:9",
            "--grpc",
            "http://127.0.0.1:9",
        ])
        .args(["record", "--token-file"])
        .arg(&file)
        .args(["--", "sh", "-c", "echo the-command-ran"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("the-command-ran"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("can be read or changed by every user"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("reel_secret_token"),
        "the token is never printed"
    );
    assert!(Path::new(&file).exists());
}
