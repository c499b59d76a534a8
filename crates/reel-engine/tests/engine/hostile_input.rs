//! Bytes from outside the process that are not what Reel writes: archived
//! rows that disagree with their bounds or their segments, a journal record
//! whose event range overflows, combined objects planted in a bucket, a
//! recording of empty events. Each is refused (or skipped) with an error
//! naming the field, nothing of it is stored, and the engine keeps serving.

use std::path::Path;
use std::time::Duration;

use crate::common::{event, read_all, small_segments_aged};
use bytes::Bytes;
use prost::Message;
use reel_engine::{Engine, EngineError, Import, VerifyProgress};
use reel_proto::RecordingId;
use reel_proto::v1::{
    ArchiveRecording, Event, EventKind, IndexEntry, JournalEntry, RecordingIndex, RecordingMetadata,
};

/// Files under `dir`, recursively.
fn files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => files(&e.path()),
            _ => 1,
        })
        .sum()
}

/// The master key both engines of an archive's round trip hold (an
/// archive is read by a server given the master key it was written under).
const MASTER_KEY: &str = "5ee1d1f0a7c3b2e94d8f6a1b0c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d";

/// [`small_segments_aged`] without sealing by age, holding [`MASTER_KEY`].
fn archiving(dir: &Path) -> reel_engine::EngineConfig {
    let mut cfg = small_segments_aged(dir, Duration::from_secs(3600));
    cfg.master_key = Some(reel_storage::Secret::new(MASTER_KEY));
    cfg
}

/// A closed recording of `n` events, made in an engine of its own and
/// archived: its rows, its segment objects, its events.
async fn archived(n: u64) -> (ArchiveRecording, Vec<Bytes>, Vec<Event>) {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(archiving(dir.path())).await.unwrap();
    let mut w = engine.start(RecordingMetadata::default()).await.unwrap();
    let id = w.id();
    let events: Vec<Event> = (0..n).map(event).collect();
    for chunk in events.chunks(10) {
        w.append(None, chunk.to_vec()).unwrap().await.unwrap();
    }
    w.close(0).await.unwrap();
    let rec = engine.archive_entry(id).await.unwrap();
    let mut objects = Vec::new();
    for s in &rec.segments {
        objects.push(engine.segment_object(id, s.sequence).await.unwrap());
    }
    engine.shutdown().await;
    (rec, objects, events)
}

async fn import(
    engine: &Engine,
    rec: ArchiveRecording,
    objects: &[Bytes],
) -> Result<RecordingId, EngineError> {
    let mut import = engine.import(rec, "test".into()).await?;
    for o in objects {
        import.segment(o)?;
    }
    import.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archived_rows_are_checked_against_their_bounds_and_their_segments() {
    let (rec, objects, events) = archived(300).await;
    assert!(rec.segments.len() >= 3, "{} segments", rec.segments.len());
    let id = RecordingId::from_slice(&rec.row.as_ref().unwrap().id).unwrap();
    // A server without the master key the archive was written under
    // refuses it at once: it could never read it.
    let elsewhere = tempfile::tempdir().unwrap();
    let other = Engine::open(small_segments_aged(
        elsewhere.path(),
        Duration::from_secs(3600),
    ))
    .await
    .unwrap();
    let err = import(&other, rec.clone(), &objects).await.unwrap_err();
    assert!(
        matches!(&err, EngineError::FailedPrecondition(m) if m.contains("master key")),
        "{err}"
    );
    assert!(matches!(
        other.recording(id).await,
        Err(EngineError::NotFound(_))
    ));
    other.shutdown().await;
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(archiving(dir.path())).await.unwrap();
    type Tamper = fn(&mut ArchiveRecording);
    let cases: [(&str, Tamper); 7] = [
        // Before: a block's length became a read's range end and the
        // capacity of its buffer; the sum overflowed in the reader.
        ("segments[1].blocks[0].len", |r| {
            r.segments[1].blocks[0].len = u64::MAX - 4
        }),
        ("segments[0].content_offset", |r| {
            r.segments[0].content_offset = u64::MAX - 8
        }),
        ("segments[2].event_count", |r| {
            r.segments[2].first_event_index = u64::MAX - 1
        }),
        ("segments[0].size", |r| r.segments[0].size = 1 << 50),
        // Valid alone, but not what the segment object holds.
        ("segments[0].blocks[0]", |r| {
            r.segments[0].blocks[0].crc32c ^= 1
        }),
        ("segments[1].data_bytes", |r| r.segments[1].data_bytes -= 1),
        ("segments[2].end_time_us", |r| {
            r.segments[2].end_time_us += 1
        }),
    ];
    for (field, tamper) in cases {
        let mut bad = rec.clone();
        tamper(&mut bad);
        let err = import(&engine, bad, &objects).await.expect_err(field);
        assert!(
            matches!(err, EngineError::InvalidArgument(_)),
            "{field}: {err}"
        );
        assert!(err.to_string().contains(field), "{field}: {err}");
        // Nothing of it was kept.
        assert!(matches!(
            engine.recording(id).await,
            Err(EngineError::NotFound(_))
        ));
        assert_eq!(files(&dir.path().join("spool")), 0, "{field}");
    }
    // The archive as written imports and reads back.
    assert_eq!(import(&engine, rec, &objects).await.unwrap(), id);
    assert_eq!(read_all(&engine, id).await, events);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_record_whose_event_range_overflows_is_skipped_at_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_segments_aged(dir.path(), Duration::from_secs(3600));
    let events: Vec<Event> = (0..30).map(event).collect();
    let id = {
        let engine = Engine::open(cfg.clone()).await.unwrap();
        let mut w = engine.start(RecordingMetadata::default()).await.unwrap();
        for chunk in events[..20].chunks(10) {
            w.append(None, chunk.to_vec()).unwrap().await.unwrap();
        }
        let id = w.id();
        drop(w);
        engine.shutdown().await;
        id
    };
    // A record that passes its CRC32C but names events u64::MAX - 1 and
    // on. Before, recovery added first index and count and overflowed: a
    // panic at every start.
    {
        let options = reel_log::JournalOptions {
            file_size: cfg.journal_file_size,
            max_record_bytes: 8 << 20,
            ..reel_log::JournalOptions::new(cfg.journal_dir())
        };
        let (journal, _) = reel_log::Journal::open(options, |_, _| {}).unwrap();
        let entry = JournalEntry {
            recording_id: id.to_bytes().to_vec(),
            first_index: u64::MAX - 1,
            events: vec![event(100), event(101)],
            ..Default::default()
        };
        journal.append_durable(entry.encode_to_vec()).await.unwrap();
        journal.shutdown();
    }
    let engine = Engine::open(cfg).await.unwrap();
    assert_eq!(engine.recording(id).await.unwrap().durable_events, 20);
    assert_eq!(read_all(&engine, id).await, events[..20]);
    // Still serving: the recorder resumes where it was.
    let mut w = engine.resume(id).await.unwrap();
    w.append(Some(20), events[20..].to_vec())
        .unwrap()
        .await
        .unwrap();
    w.close(0).await.unwrap();
    assert_eq!(read_all(&engine, id).await, events);
    engine.shutdown().await;
}

/// CRC32C (Castagnoli), bit by bit: enough for a few hundred bytes.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A combined object's tail: `index` then its footer, the CRC right.
fn combined_tail(index: &[u8], claimed_len: u64) -> Vec<u8> {
    let mut out = index.to_vec();
    out.extend_from_slice(reel_log::combined::INDEX_MAGIC);
    out.extend_from_slice(&claimed_len.to_le_bytes());
    out.extend_from_slice(&crc32c(index).to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_combined_objects_are_skipped_by_a_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_segments_aged(dir.path(), Duration::from_secs(3600));
    let events: Vec<Event> = (0..100).map(event).collect();
    let id = stored_then_catalog_lost(&cfg, &events).await;
    let plant = |name: &str, bytes: Vec<u8>| {
        let key = reel_storage::keys::recording_object(name);
        let path = dir.path().join("primary").join(key.as_ref());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    };
    // A footer naming an index of nearly 2^64 bytes: before, the rebuild
    // added the footer's length to it and overflowed.
    plant(
        &RecordingId::generate().to_string(),
        combined_tail(b"", u64::MAX - 3),
    );
    // An index whose CRC is right and whose entries overflow.
    let index = RecordingIndex {
        recording_id: RecordingId::generate().to_bytes().to_vec(),
        segments: vec![
            IndexEntry {
                sequence: 0,
                offset: 0,
                size: u64::MAX - 1,
                sha256: vec![0; 32],
                ..Default::default()
            },
            IndexEntry {
                sequence: 1,
                offset: u64::MAX - 1,
                size: 10,
                sha256: vec![0; 32],
                ..Default::default()
            },
        ],
        content_sha256: vec![0; 32],
        ..Default::default()
    }
    .encode_to_vec();
    let len = index.len() as u64;
    plant(
        &RecordingId::generate().to_string(),
        combined_tail(&index, len),
    );
    let engine = Engine::open(cfg).await.unwrap();
    let report = engine
        .rebuild_catalog(&VerifyProgress::default(), false)
        .await
        .unwrap();
    assert_eq!(report.recordings, 1, "{report:?}");
    assert_eq!(report.skipped.len(), 2, "{report:?}");
    assert!(
        report
            .skipped
            .iter()
            .any(|s| s.contains("combined object index of")),
        "{report:?}"
    );
    assert!(
        report
            .skipped
            .iter()
            .any(|s| s.contains("index.segments[0].size")),
        "{report:?}"
    );
    assert_eq!(read_all(&engine, id).await, events);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_of_empty_events_is_cut_into_bounded_segments() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_segments_aged(dir.path(), Duration::from_secs(3600));
    let engine = Engine::open(cfg.clone()).await.unwrap();
    let mut w = engine.start(RecordingMetadata::default()).await.unwrap();
    let id = w.id();
    let empty = |i: u64| Event {
        time_us: i,
        kind: EventKind::Marker as i32,
        data: Vec::new(),
    };
    let mut largest_record = 0u64;
    for b in 0..60u64 {
        let batch: Vec<Event> = (b * 500..(b + 1) * 500).map(empty).collect();
        let record = JournalEntry {
            recording_id: id.to_bytes().to_vec(),
            first_index: b * 500,
            events: batch.clone(),
            ..Default::default()
        };
        largest_record = largest_record.max(record.encoded_len() as u64);
        w.append(None, batch).unwrap().await.unwrap();
    }
    w.close(0).await.unwrap();
    // Before, a segment was cut by its events' data only: all 30,000 empty
    // events went into one segment of ~200 KB, past any bound readers
    // check segments against.
    let info = engine.recording(id).await.unwrap();
    assert!(info.segments.len() > 10, "{} segments", info.segments.len());
    let bound = reel_log::limits::segment_object_bound(cfg.segment_target_bytes, largest_record);
    for s in &info.segments {
        assert!(
            s.size <= bound,
            "segment {}: {} > {bound}",
            s.sequence,
            s.size
        );
    }
    assert!(
        Import::max_segment_bytes(&cfg) >= bound,
        "what this engine writes, its imports accept"
    );
    assert_eq!(read_all(&engine, id).await.len(), 30_000);
    engine.shutdown().await;
}

/// After a catalog loss the stores are the only truth, and anyone who can
/// write to a bucket can put a well-formed segment there: a rebuild adopts
/// only segments signed by this server's key. A forged unsigned recording
/// and one signed by another key are named and left out; the real one comes
/// back. With `accept_unsigned` (for data older than signing) the unsigned
/// one is adopted, and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_adopts_only_segments_this_server_signed() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_segments_aged(dir.path(), Duration::from_secs(3600));
    let events: Vec<Event> = (0..40).map(event).collect();
    let id = stored_then_catalog_lost(&cfg, &events).await;
    let forged = |keys: Option<&dyn reel_keys::KeyProvider>| {
        let spec = reel_log::SegmentSpec {
            recording_id: RecordingId::generate().to_bytes(),
            sequence: 0,
            first_event_index: 0,
            prev_hash: None,
            metadata: RecordingMetadata {
                user: "alice".into(),
                ..Default::default()
            },
            is_final: true,
            duration_us: 1000,
            sealed_at_us: 1,
        };
        let fake = [Event {
            data: b"a session that never happened".to_vec(),
            ..event(0)
        }];
        let seg = match keys {
            Some(k) => reel_log::encode_signed_segment(spec.clone(), &fake, k),
            None => reel_log::encode_segment(spec.clone(), &fake),
        };
        let forged_id = RecordingId::from_slice(&spec.recording_id).unwrap();
        let key = reel_storage::keys::segment(forged_id, 0);
        let path = dir.path().join("primary").join(key.as_ref());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, &seg.bytes).unwrap();
        forged_id
    };
    let unsigned = forged(None);
    let other = reel_keys::FileKeys::ephemeral().unwrap();
    let foreign = forged(Some(&other));

    let engine = Engine::open(cfg.clone()).await.unwrap();
    let report = engine
        .rebuild_catalog(&VerifyProgress::default(), false)
        .await
        .unwrap();
    assert_eq!(report.recordings, 1, "{report:?}");
    assert_eq!(report.unsigned_segments, 0);
    let named = |what: &str, id: RecordingId| {
        report
            .skipped
            .iter()
            .any(|s| s.contains(&id.to_string()) && s.contains(what))
    };
    assert!(named("unsigned segment", unsigned), "{report:?}");
    assert!(named("not one this server trusts", foreign), "{report:?}");
    assert_eq!(read_all(&engine, id).await, events);
    assert!(engine.recording(unsigned).await.is_err());
    assert!(engine.recording(foreign).await.is_err());
    engine.shutdown().await;

    // For data sealed before signing, unsigned segments can be let in.
    std::fs::remove_dir_all(cfg.catalog_dir()).unwrap();
    let engine = Engine::open(cfg).await.unwrap();
    let report = engine
        .rebuild_catalog(&VerifyProgress::default(), true)
        .await
        .unwrap();
    assert_eq!(
        (report.recordings, report.unsigned_segments),
        (2, 1),
        "{report:?}"
    );
    assert!(engine.recording(unsigned).await.is_ok());
    assert!(
        engine.recording(foreign).await.is_err(),
        "never another key"
    );
    engine.shutdown().await;
}

/// A recombined recording whose combined object's index a bucket writer
/// then rewrote: one event fewer in the index and in its last entry, the
/// CRC mended, the object's size unchanged (so that only the signature
/// can tell). The engine is stopped; the recording's id.
async fn verify_content(engine: &Engine) -> reel_engine::VerifyReport {
    let options = reel_engine::VerifyOptions {
        content: true,
        ..Default::default()
    };
    engine
        .verify(options, &VerifyProgress::default())
        .await
        .unwrap()
}

async fn recombined_then_index_forged(dir: &Path, cfg: &reel_engine::EngineConfig) -> RecordingId {
    // Several segments of 4 KiB, so that there is something to recombine.
    let events: Vec<Event> = (0..400).map(event).collect();
    let engine = Engine::open(cfg.clone()).await.unwrap();
    let id = stored(&engine, &events).await;
    crate::common::compact_until_done(&engine, id).await;
    while engine.drain_deletions().await.unwrap() > 0 {}
    let clean = verify_content(&engine).await;
    assert!(clean.problems.is_empty(), "{clean:?}");
    engine.shutdown().await;

    let path = dir
        .join("primary")
        .join(reel_storage::keys::recording_object(id).as_ref());
    let object = std::fs::read(&path).unwrap();
    let mut index = reel_log::combined::decode_index(&object).unwrap();
    let content = reel_log::combined::index_content_len(&index) as usize;
    assert!(index.segments.len() > 1, "{index:?}");
    // One event fewer in the index and in a segment's entry, each count
    // keeping its encoded length (the final segment may hold none).
    let same_length = |n: u64| n >= 2 && n != 128 && n != 1 << 14;
    assert!(same_length(index.event_count), "{index:?}");
    index.event_count -= 1;
    index
        .segments
        .iter_mut()
        .find(|s| same_length(s.event_count))
        .expect("a segment of several events")
        .event_count -= 1;
    let encoded = index.encode_to_vec();
    let mut forged = object[..content].to_vec();
    forged.extend_from_slice(&encoded);
    forged.extend_from_slice(reel_log::combined::INDEX_MAGIC);
    forged.extend_from_slice(&(encoded.len() as u64).to_le_bytes());
    forged.extend_from_slice(&crc32c::crc32c(&encoded).to_le_bytes());
    forged.extend_from_slice(&1u32.to_le_bytes());
    assert_eq!(forged.len(), object.len());
    std::fs::write(&path, &forged).unwrap();
    id
}

/// A combined object's index is signed: one rewritten by a bucket writer
/// is named by a rebuild and not adopted, and the recording it held is not
/// made up from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_refuses_a_combined_object_whose_index_was_changed() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_segments_aged(dir.path(), Duration::from_secs(3600));
    let id = recombined_then_index_forged(dir.path(), &cfg).await;
    std::fs::remove_dir_all(cfg.catalog_dir()).unwrap();

    let engine = Engine::open(cfg).await.unwrap();
    let report = engine
        .rebuild_catalog(&VerifyProgress::default(), false)
        .await
        .unwrap();
    assert_eq!(report.recordings, 0, "{report:?}");
    assert!(
        report
            .skipped
            .iter()
            .any(|s| s.contains("recording.reel") && s.contains("index signature does not check")),
        "{report:?}"
    );
    assert!(engine.recording(id).await.is_err());
    engine.shutdown().await;
}

/// The same forgery is found by `verify --content` with the catalog in
/// place: the object's size and every segment's bytes are right, only its
/// index's signature is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_content_names_a_combined_object_whose_index_was_changed() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_segments_aged(dir.path(), Duration::from_secs(3600));
    let id = recombined_then_index_forged(dir.path(), &cfg).await;

    let engine = Engine::open(cfg).await.unwrap();
    let report = verify_content(&engine).await;
    let named: Vec<_> = report
        .problems
        .iter()
        .map(|p| (p.kind.to_string(), p.key.clone(), p.detail.clone()))
        .collect();
    assert_eq!(named.len(), 1, "{report:?}");
    assert_eq!(named[0].0, "corrupt");
    assert_eq!(
        named[0].1,
        reel_storage::keys::recording_object(id).to_string()
    );
    assert!(
        named[0].2.contains("index signature does not check"),
        "{report:?}"
    );
    assert_eq!(report.unsigned_indexes, 0);
    engine.shutdown().await;
}

/// A closed recording of `events` stored (its uploads drained), then the
/// engine stopped and its catalog directory lost; the recording's id.
async fn stored_then_catalog_lost(
    cfg: &reel_engine::EngineConfig,
    events: &[Event],
) -> RecordingId {
    let engine = Engine::open(cfg.clone()).await.unwrap();
    let id = stored(&engine, events).await;
    engine.shutdown().await;
    std::fs::remove_dir_all(cfg.catalog_dir()).unwrap();
    id
}

/// A closed recording of `events`, its uploads drained; its id.
async fn stored(engine: &Engine, events: &[Event]) -> RecordingId {
    let mut w = engine.start(RecordingMetadata::default()).await.unwrap();
    for chunk in events.chunks(10) {
        w.append(None, chunk.to_vec()).unwrap().await.unwrap();
    }
    let id = w.id();
    w.close(0).await.unwrap();
    for _ in 0..400 {
        if engine.local_status().unwrap().upload_queue == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    id
}
