//! Writes the seed corpus (`fuzz/seeds/<target>/`): real encodings made by
//! Reel's own encoders, a few KB per target. Run from `fuzz/`:
//! `cargo run --example seeds`. Deterministic: run again, same files.

use std::path::Path;

use prost::Message;
use reel_keys::{Cipher, FileKeys, KeyId, WrappedKey};
use reel_log::archive::ArchiveWriter;
use reel_log::combined::CombinedBuilder;
use reel_log::{EncodedSegment, SegmentSpec, encode_segment, record};
use reel_proto::v1::{
    ArchiveRecording, AuditEntry, Event, IndexEntry, JournalEntry, Location, RecordingMetadata,
    RecordingRow, RecordingState, SegmentRow, Terminal,
};

const ID: [u8; 16] = *b"\x01\x93\x5a\x7e\x10\x00\x40\x00\x80\x00reel01";

fn events(first: u64, n: u64) -> Vec<Event> {
    (first..first + n)
        .map(|i| Event {
            time_us: i * 250_000 + (i % 3) * 7,
            kind: [1, 1, 2, 3, 4][(i % 5) as usize],
            data: match i % 5 {
                3 => b"120x40".to_vec(),
                4 => b"marker".to_vec(),
                _ => format!("$ echo {i}\r\n\x1b[1m{i}\x1b[0m\r\n").into_bytes(),
            },
        })
        .collect()
}

fn metadata() -> RecordingMetadata {
    RecordingMetadata {
        user: "alice".into(),
        target: "db-01".into(),
        protocol: "ssh".into(),
        labels: [("ticket".to_string(), "CHG-42".to_string())].into(),
        started_at_us: 1_750_000_000_000_000,
        terminal: Some(Terminal {
            cols: 120,
            rows: 40,
            term_type: "xterm-256color".into(),
        }),
        title: "maintenance".into(),
        ..Default::default()
    }
}

/// A recording of `n` segments of 6 events each.
fn segments(n: u64) -> Vec<EncodedSegment> {
    let mut out: Vec<EncodedSegment> = Vec::new();
    for seq in 0..n {
        let evs = if seq + 1 == n && n > 2 {
            Vec::new()
        } else {
            events(seq * 6, 6)
        };
        out.push(encode_segment(
            SegmentSpec {
                recording_id: ID,
                sequence: seq,
                first_event_index: seq * 6,
                prev_hash: out.last().map(|s| s.sha256),
                metadata: metadata(),
                is_final: seq + 1 == n,
                duration_us: 60_000_000,
                sealed_at_us: 1_750_000_060_000_000,
            },
            &evs,
        ));
    }
    out
}

fn row_of(s: &EncodedSegment) -> SegmentRow {
    let h = &s.header;
    SegmentRow {
        sequence: h.sequence,
        first_event_index: h.first_event_index,
        event_count: h.event_count,
        start_time_us: h.start_time_us,
        end_time_us: h.end_time_us,
        data_bytes: reel_log::decode_segment(&s.bytes, None)
            .unwrap()
            .events
            .iter()
            .map(|e| e.data.len() as u64)
            .sum(),
        size: s.bytes.len() as u64,
        sha256: s.sha256.to_vec(),
        locations: vec![Location::Primary as i32],
        sealed_at_us: h.sealed_at_us,
        uploaded_at_us: h.sealed_at_us + 1,
        r#final: h.r#final,
        content_offset: s.content_offset,
        blocks: h.blocks.clone(),
        ..Default::default()
    }
}

fn archived(segs: &[EncodedSegment]) -> ArchiveRecording {
    let rows: Vec<SegmentRow> = segs.iter().map(row_of).collect();
    let event_count = rows.iter().map(|r| r.event_count).sum();
    ArchiveRecording {
        row: Some(RecordingRow {
            id: ID.to_vec(),
            metadata: Some(metadata()),
            state: RecordingState::Closed as i32,
            created_at_us: 1_750_000_000_000_000,
            closed_at_us: 1_750_000_060_000_000,
            event_count,
            data_bytes: rows.iter().map(|r| r.data_bytes).sum(),
            segment_count: rows.len() as u64,
            stored_bytes: rows.iter().map(|r| r.size).sum(),
            last_segment_hash: rows.last().map(|r| r.sha256.clone()).unwrap_or_default(),
            next_event_index: rows
                .last()
                .map_or(0, |r| r.first_event_index + r.event_count),
            close_reason: "closed".into(),
            ..Default::default()
        }),
        segments: rows,
    }
}

fn with_mode(mode: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![mode];
    out.extend_from_slice(bytes);
    out
}

fn pair(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = (a.len() as u16).to_le_bytes().to_vec();
    out.extend_from_slice(a);
    out.extend_from_slice(b);
    out
}

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    // Targets that take the same inputs as another get its seeds too.
    let same_input = match target {
        "archive" => Some("archive_verify"),
        "journal_entry" => Some("sealed_entry"),
        _ => None,
    };
    for t in std::iter::once(target).chain(same_input) {
        let d = dir.join(t);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(name), bytes).unwrap();
    }
}

/// The targets whose seeds this writes; the others' (`alis`, `keyframe`)
/// were written by hand and are kept.
const MADE_HERE: [&str; 13] = [
    "api_time",
    "archive",
    "archive_recording",
    "archive_verify",
    "asciicast",
    "audit_copy",
    "combined",
    "journal_entry",
    "journal_record",
    "sealed_entry",
    "segment",
    "segment_header",
    "wrapped_key",
];

/// An Ed25519 signing key from a fixed seed (PKCS#8, as `FileKeys` keeps
/// it): Ed25519 signatures are deterministic, so the signed seeds are the
/// same on every run.
const SIGNING_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIAcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcH
-----END PRIVATE KEY-----
";

/// Keys for the signed formats (combined indexes, archives), the same on
/// every run: the signing key above and a fixed master key.
fn keys() -> FileKeys {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = std::env::temp_dir().join(format!("reel-fuzz-seeds-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dir.join("signing.pem"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, SIGNING_PEM.as_bytes()))
        .unwrap();
    let keys = FileKeys::open(&dir, Some(&"07".repeat(32))).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    keys
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    for target in MADE_HERE {
        let _ = std::fs::remove_dir_all(dir.join(target));
    }
    let keys = keys();
    let segs = segments(3);

    // Journal records and entries.
    for (name, entry) in [
        (
            "six-events",
            JournalEntry {
                recording_id: ID.to_vec(),
                first_index: 0,
                events: events(0, 6),
                ..Default::default()
            },
        ),
        (
            "one-event",
            JournalEntry {
                recording_id: ID.to_vec(),
                first_index: 41,
                events: events(41, 1),
                ..Default::default()
            },
        ),
    ] {
        let payload = entry.encode_to_vec();
        write(&dir, "journal_entry", name, &payload);
        let mut framed = record::encode(&payload);
        write(&dir, "journal_record", name, &framed);
        framed.extend_from_slice(&[0u8; 16]);
        write(
            &dir,
            "journal_record",
            &format!("{name}-zero-tail"),
            &framed,
        );
    }

    // Segment objects, headers, and the same as header | content.
    for (i, s) in segs.iter().enumerate() {
        write(
            &dir,
            "segment",
            &format!("object-{i}"),
            &with_mode(0, &s.bytes),
        );
        let (header, at) = reel_log::decode_header(&s.bytes).unwrap();
        let header_bytes = header.encode_to_vec();
        write(
            &dir,
            "segment_header",
            &format!("header-{i}"),
            &header_bytes,
        );
        write(
            &dir,
            "segment",
            &format!("parts-{i}"),
            &with_mode(1, &pair(&header_bytes, &s.bytes[at..])),
        );
    }

    // A combined object of the three, and its index alone.
    let mut builder = CombinedBuilder::new(ID.to_vec());
    let mut object = Vec::new();
    for s in &segs {
        let h = &s.header;
        builder.add_segment(
            IndexEntry {
                sequence: h.sequence,
                sha256: s.sha256.to_vec(),
                first_event_index: h.first_event_index,
                event_count: h.event_count,
                start_time_us: h.start_time_us,
                end_time_us: h.end_time_us,
                ..Default::default()
            },
            &s.bytes,
        );
        object.extend_from_slice(&s.bytes);
    }
    let (tail, index) = builder.finish(&keys);
    object.extend_from_slice(&tail);
    write(&dir, "combined", "tail", &with_mode(0, &tail));
    write(
        &dir,
        "combined",
        "index",
        &with_mode(1, &index.encode_to_vec()),
    );

    // Archives: one recording of three segments, read whole and in chunks;
    // and the same as frame descriptions.
    let rec = archived(&segs);
    write(
        &dir,
        "archive_recording",
        "three-segments",
        &rec.encode_to_vec(),
    );
    let single = archived(&segments(1));
    write(
        &dir,
        "archive_recording",
        "one-segment",
        &single.encode_to_vec(),
    );
    let mut w = ArchiveWriter::new();
    let mut file = w.head();
    file.extend(w.recording(&rec));
    for s in &segs {
        file.extend(w.segment(&s.bytes));
    }
    file.extend(w.end(&keys));
    write(
        &dir,
        "archive",
        "whole",
        &with_mode(0, &pair(&[255], &file)),
    );
    write(
        &dir,
        "archive",
        "chunked",
        &with_mode(0, &pair(&[1, 7, 130, 13], &file)),
    );
    let mut frames = Vec::new();
    let mut describe = |kind: u8, payload: &[u8]| {
        frames.push(kind);
        frames.extend_from_slice(&(payload.len() as u16).to_le_bytes());
        frames.extend_from_slice(payload);
    };
    describe(1, &single.encode_to_vec());
    describe(2, &segments(1)[0].bytes);
    describe(3, &[]);
    write(
        &dir,
        "archive",
        "frames",
        &with_mode(1, &pair(&[64], &frames)),
    );

    // Audit copies: a chain of three entries, and one cut short.
    let mut prev = Vec::new();
    let mut chain = Vec::new();
    for seq in 1..=3u64 {
        let entry = AuditEntry {
            at_us: 1_750_000_000_000_000 + seq as i64,
            by: "alice".into(),
            action: ["export", "purge", "hold"][seq as usize - 1].into(),
            recordings: vec!["01JZ5T0000000000000000REEL".into()],
            reason: "ticket CHG-42".into(),
            client: "127.0.0.1:51000".into(),
            detail: "GET /api/v1/recordings/01JZ5T0000000000000000REEL/export".into(),
            seq,
            prev_sha256: prev.clone(),
        };
        let bytes = entry.encode_to_vec();
        prev = reel_log::sha256(&bytes).to_vec();
        chain.push(bytes);
    }
    let copy = reel_log::audit::encode_copy(&chain);
    write(&dir, "audit_copy", "three-entries", &copy);
    write(&dir, "audit_copy", "cut-short", &copy[..copy.len() - 5]);

    // Cast files.
    write(
        &dir,
        "asciicast",
        "v2",
        b"{\"version\": 2, \"width\": 80, \"height\": 24, \"timestamp\": 1700000000, \"env\": {\"TERM\": \"xterm-256color\"}}\n\
[0.5, \"o\", \"$ \"]\n[1.234567, \"i\", \"l\"]\n[2.0, \"r\", \"100x30\"]\n[3600.000001, \"o\", \"\\u001b[0m\\r\\n\"]\n",
    );
    write(
        &dir,
        "asciicast",
        "v3",
        b"{\"version\": 3, \"term\": {\"cols\": 100, \"rows\": 40, \"type\": \"xterm\"}, \"timestamp\": 1700000000, \"idle_time_limit\": 2}\n\
# a comment\n[0.1, \"o\", \"a\"]\n[0.2, \"m\", \"b\"]\n[0.300001, \"x\", \"0\"]\n",
    );

    // Times.
    for (i, t) in [
        "90",
        "1:30",
        "00:12:30.5",
        "2.000001",
        "100:00:00",
        "2026-11-01",
        "2026-11-01T10:00:00Z",
        "2026-11-01T10:00:00.123+00:00",
        "7d",
        "90m 30s",
    ]
    .iter()
    .enumerate()
    {
        write(&dir, "api_time", &format!("t{i}"), t.as_bytes());
    }
    // Wrapped data keys, one of each version: their fields fixed (a real
    // wrapping draws its nonce), as the target only reads the layout.
    for cipher in Cipher::ALL {
        let wrapped = WrappedKey {
            cipher,
            master_key_id: KeyId([7; 8]),
            nonce: [9; reel_keys::NONCE_LEN],
            ciphertext: vec![5; 32 + reel_keys::TAG_LEN],
        };
        write(&dir, "wrapped_key", cipher.name(), &wrapped.to_bytes());
    }
    println!("seeds written to {}", dir.display());
}
