//! asciicast files through a real reeld and the reel CLI, and back: real
//! recordings made with asciinema (tests/data) and generated ones with
//! unicode, resizes, input, markers, long idle gaps and big outputs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reel_api::RecordingDetail;
use reel_proto::v1::EventKind;
use reel_testkit::{Reeld, Rng};

fn stdout(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "reel failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("utf-8 output")
}

fn escape(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// A v2 cast with everything a terminal session can throw at a recorder.
fn generated_cast(seed: u64, events: usize) -> String {
    let mut rng = Rng::new(seed);
    let pieces = [
        "plain ascii ",
        "ünïcödé ",
        "日本語のテキスト ",
        "emoji 🚀🔥✓ ",
        "combining e\u{301} ",
        "\u{1b}[1;32mgreen\u{1b}[0m ",
        "\r\n",
        "\t\"quoted\" \\ back ",
        "\u{7f}\u{8}",
        "zero\u{0}width\u{200b} ",
    ];
    let mut text = String::from(
        "{\"version\": 2, \"width\": 132, \"height\": 43, \"timestamp\": 1732000000, \"title\": \"generated\", \"env\": {\"TERM\": \"xterm-256color\", \"SHELL\": \"/bin/zsh\"}}\n",
    );
    let mut t: u64 = 0;
    for i in 0..events {
        t += match rng.range(0..100) {
            0 => rng.range(3_600_000_000..7_200_000_000), // an idle gap of an hour or two
            1..=5 => rng.range(1_000_000..30_000_000),
            _ => rng.range(0..50_000),
        };
        let seconds = reel_asciicast::format_seconds(t);
        let line = match rng.range(0..20) {
            0 => format!(
                "[{seconds}, \"r\", \"{}x{}\"]",
                rng.range(20..300),
                rng.range(5..100)
            ),
            1 => format!("[{seconds}, \"m\", {}]", escape(&format!("marker {i}"))),
            2..=4 => format!(
                "[{seconds}, \"i\", {}]",
                escape(pieces[rng.range(0..pieces.len() as u64) as usize])
            ),
            5 => {
                // A big burst, e.g. `cat` of a large file.
                let n = rng.range(10_000..120_000) as usize;
                format!(
                    "[{seconds}, \"o\", {}]",
                    escape(&"0123456789abcdef".repeat(n / 16))
                )
            }
            _ => {
                let mut s = String::new();
                for _ in 0..rng.range(1..6) {
                    s.push_str(pieces[rng.range(0..pieces.len() as u64) as usize]);
                }
                format!("[{seconds}, \"o\", {}]", escape(&s))
            }
        };
        text.push_str(&line);
        text.push('\n');
    }
    text
}

fn ingest(reeld: &Reeld, path: &Path) -> String {
    stdout(&reeld.reel(&[
        "ingest",
        path.to_str().unwrap(),
        "--user",
        "alice",
        "--target",
        "web-01",
    ]))
    .trim()
    .to_string()
}

fn show(reeld: &Reeld, id: &str) -> RecordingDetail {
    serde_json::from_str(&stdout(&reeld.reel(&["show", id, "--json"]))).expect("show --json")
}

fn wait_for_primary(reeld: &Reeld, id: &str) -> RecordingDetail {
    for _ in 0..200 {
        let d = show(reeld, id);
        if d.summary.state == "closed" && d.segments.iter().all(|s| s.locations == ["primary"]) {
            return d;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "recording {id} never reached the primary: {:?}",
        show(reeld, id)
    );
}

#[test]
fn casts_round_trip_through_reeld_identically() {
    let dir = tempfile::tempdir().unwrap();
    let reeld = Reeld::start(
        &dir.path().join("data"),
        &["--segment-max-age", "1s", "--segment-target-bytes", "65536"],
    )
    .unwrap();
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut casts: Vec<PathBuf> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cast"))
        .collect();
    casts.sort();
    assert!(casts.len() >= 4, "real recordings in tests/data");
    for (seed, events) in [(1, 50), (2, 2_000), (3, 400)] {
        let path = dir.path().join(format!("generated-{seed}.cast"));
        std::fs::write(&path, generated_cast(seed, events)).unwrap();
        casts.push(path);
    }

    for path in &casts {
        let input = std::fs::read_to_string(path).unwrap();
        let parsed = reel_asciicast::parse(&input).unwrap();
        let id = ingest(&reeld, path);
        let detail = wait_for_primary(&reeld, &id);
        assert_eq!(
            detail.summary.event_count,
            parsed.events.len() as u64,
            "{}",
            path.display()
        );
        assert_eq!(detail.summary.placement, "primary");
        assert_eq!(detail.summary.user, "alice");

        let exported = stdout(&reeld.reel(&["export", &id, "--format", "cast"]));
        let back = reel_asciicast::parse(&exported).unwrap();
        assert_eq!(
            back.events,
            parsed.events,
            "{}: events differ",
            path.display()
        );
        if parsed.version == 2 {
            // asciinema's own files come back byte for byte.
            assert_eq!(exported, input, "{}: text differs", path.display());
        } else {
            let header: serde_json::Value =
                serde_json::from_str(exported.lines().next().unwrap()).unwrap();
            assert_eq!(header["version"], 2);
        }

        let raw = reeld.reel(&["export", &id, "--format", "raw"]);
        assert!(raw.status.success());
        let expected_raw: Vec<u8> = parsed
            .events
            .iter()
            .filter(|e| e.kind == EventKind::Output as i32)
            .flat_map(|e| e.data.clone())
            .collect();
        assert_eq!(raw.stdout, expected_raw, "{}: raw export", path.display());
    }

    let ls = stdout(&reeld.reel(&["ls"]));
    assert_eq!(ls.lines().count(), casts.len() + 1, "{ls}");
    assert!(
        ls.lines()
            .skip(1)
            .all(|l| l.contains("closed") && l.contains("primary")),
        "{ls}"
    );
}

#[test]
fn segments_move_from_local_to_primary() {
    let dir = tempfile::tempdir().unwrap();
    let primary = dir.path().join("primary");
    let secondary = dir.path().join("secondary");
    let reeld = Reeld::start(
        &dir.path().join("data"),
        &[
            "--primary-dir",
            primary.to_str().unwrap(),
            "--secondary-dir",
            secondary.to_str().unwrap(),
            "--segment-target-bytes",
            "4096",
            // The segment objects are checked below: no recombination.
            "--no-compactor",
        ],
    )
    .unwrap();
    // Both stores go away (their directories replaced by files): uploads
    // fail and the segments wait in the local spool.
    for store in [&primary, &secondary] {
        // reeld may be writing a probe object into it at that moment (the
        // removal then finds the directory not empty): try again.
        let mut tries = 0;
        while let Err(e) = std::fs::remove_dir_all(store) {
            tries += 1;
            assert!(tries < 50, "cannot remove {}: {e}", store.display());
            std::thread::sleep(Duration::from_millis(20));
        }
        std::fs::write(store, b"not a directory").unwrap();
    }

    let path = dir.path().join("g.cast");
    std::fs::write(&path, generated_cast(7, 300)).unwrap();
    let id = ingest(&reeld, &path);
    std::thread::sleep(Duration::from_millis(500));
    let before = show(&reeld, &id);
    assert!(!before.segments.is_empty(), "{before:?}");
    assert!(
        before.segments.iter().all(|s| s.locations == ["local"]),
        "{:?}",
        before.segments
    );
    assert_eq!(before.summary.placement, "local");
    let human = stdout(&reeld.reel(&["show", &id]));
    assert!(human.contains("local"), "{human}");
    // Readable from the spool.
    let parsed = reel_asciicast::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let exported = stdout(&reeld.reel(&["export", &id]));
    assert_eq!(
        reel_asciicast::parse(&exported).unwrap().events,
        parsed.events
    );

    // The primary returns: the probes see it, and the uploads waiting for
    // a store move every segment there.
    std::fs::remove_file(&primary).unwrap();
    std::fs::create_dir(&primary).unwrap();
    let after = wait_for_primary(&reeld, &id);
    assert_eq!(after.segments.len(), before.segments.len());
    for s in &after.segments {
        let object = primary
            .join("recordings")
            .join(&id)
            .join("segments")
            .join(format!("{:010}.seg", s.sequence));
        assert_eq!(std::fs::metadata(&object).unwrap().len(), s.size);
    }
    let spool = dir.path().join("data/spool");
    let segments = std::fs::read_dir(&spool)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        .count();
    assert_eq!(segments, 0, "local bytes released");
    let exported = stdout(&reeld.reel(&["export", &id]));
    assert_eq!(
        reel_asciicast::parse(&exported).unwrap().events,
        parsed.events
    );
}
