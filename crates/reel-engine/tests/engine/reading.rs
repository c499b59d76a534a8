//! Reading on real local-directory stores behind the fault-injecting
//! wrapper: time windows in every state agree with slicing the full read; a
//! seek into a large recombined recording is one store read; lost segments
//! and blocks become gaps; bytes only on a down store give an error naming
//! them; what is local reads with both stores down.

use std::time::Duration;

use crate::common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use reel_engine::{Engine, EngineError, Window};
use reel_proto::RecordingId;
use reel_proto::v1::{Event, EventKind, Location, RecordingMetadata};
use reel_storage::faults::{Fault, Ops};
use reel_storage::{Role, StoreState, keys};

async fn read(engine: &Engine, id: RecordingId, window: Window) -> reel_engine::Result<Vec<Event>> {
    engine.read(id, window).await?.collect_all().await
}

fn slice(events: &[Event], window: Window) -> Vec<Event> {
    events
        .iter()
        .filter(|e| window.contains(e.time_us))
        .cloned()
        .collect()
}

/// Random windows (and open-ended ones) of `id` read exactly the events of
/// the full read that fall inside them.
fn check_windows(engine: &Engine, id: RecordingId, all: &[Event], cases: u32) {
    let end = all.last().map_or(0, |e| e.time_us);
    let mut runner = TestRunner::new(Config::with_cases(cases));
    let handle = tokio::runtime::Handle::current();
    runner
        .run(
            &(0..=end, 1..end + 2, any::<bool>()),
            |(from, len, open_ended)| {
                let window = Window::new(from, (!open_ended).then_some(from + len)).unwrap();
                let got = tokio::task::block_in_place(|| {
                    handle.block_on(async {
                        read(engine, id, window).await.map_err(|e| e.to_string())
                    })
                })
                .unwrap();
                prop_assert_eq!(got, slice(all, window), "window {:?}", window);
                Ok(())
            },
        )
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_agree_with_slicing_the_full_read_in_every_state() {
    let rig = rig(|c| c.segment_max_age = Duration::from_secs(600)).await;
    let engine = &rig.engine;

    let (split, split_events) = split_recording(&rig, 300).await;
    let (combined, combined_events) = split_recording(&rig, 300).await;
    compact_until_done(engine, combined).await;

    let mut w = engine.start(RecordingMetadata::default()).await.unwrap();
    let segmented = w.id();
    write(&mut w, 0..300).await;
    w.close(0).await.unwrap();
    wait_for("segmented on the primary", Duration::from_secs(10), || {
        all_uploaded(engine, segmented)
    })
    .await;

    // Open: uploaded segments, then a tail still only in the journal.
    let mut w = engine.start(RecordingMetadata::default()).await.unwrap();
    let open = w.id();
    write(&mut w, 0..200).await;
    wait_for("uploaded", Duration::from_secs(10), || {
        all_uploaded(engine, open)
    })
    .await;
    write(&mut w, 200..230).await;
    let info = engine.recording(open).await.unwrap();
    assert!(
        info.unsealed_events > 0,
        "part of it is only in the journal"
    );

    let cases: [(&str, RecordingId, Vec<Event>); 4] = [
        ("split", split, split_events),
        ("recombined", combined, combined_events),
        ("segmented", segmented, (0..300).map(event).collect()),
        ("open", open, (0..230).map(event).collect()),
    ];
    for (state, id, events) in &cases {
        let all = read(engine, *id, Window::ALL).await.unwrap();
        assert_eq!(&all, events, "{state}: the full read is what was written");
        check_windows(engine, *id, &all, 48);
    }
    drop(w);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seek_into_a_large_recombined_recording_is_one_store_read() {
    let rig = rig(|c| {
        c.segment_target_bytes = 4 << 20;
        // Health probes are store calls too: none while counting.
        c.health.healthy_probe_interval = Duration::from_secs(3600);
    })
    .await;
    let engine = &rig.engine;
    let mut w = engine.start(RecordingMetadata::default()).await.unwrap();
    let id = w.id();
    // 24 MiB in 4 KiB events, a tenth of a second apart: 6 segments of
    // about 64 blocks each, 10 minutes long.
    let big = |i: u64| Event {
        time_us: i * 100_000,
        kind: EventKind::Output as i32,
        data: format!("{i:08}").repeat(512).into_bytes(),
    };
    let events: Vec<Event> = (0..6144).map(big).collect();
    for chunk in events.chunks(64) {
        w.append(None, chunk.to_vec()).unwrap().await.unwrap();
    }
    w.close(0).await.unwrap();
    wait_for("uploaded", Duration::from_secs(30), || {
        all_uploaded(engine, id)
    })
    .await;
    compact_until_done(engine, id).await;
    let info = engine.recording(id).await.unwrap();
    assert!(info.segments.len() >= 5, "{} segments", info.segments.len());
    assert!(info.segments.iter().all(|s| s.combined_offset.is_some()));

    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut below = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let end = events.last().unwrap().time_us;
    for _ in 0..20 {
        let from = below(end);
        let to = from + 1 + below(120_000_000);
        let window = Window::new(from, Some(to)).unwrap();
        rig.primary.reset_counts();
        rig.secondary.reset_counts();
        let got = read(engine, id, window).await.unwrap();
        assert_eq!(got, slice(&events, window));
        let reads = rig.primary.count(Ops::ALL) + rig.secondary.count(Ops::ALL);
        assert!(reads <= 3, "window {window:?} cost {reads} store calls");
        assert_eq!(rig.primary.count(Ops::GET), 1, "one ranged read");
    }
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_segments_and_blocks_become_gaps_and_the_rest_reads() {
    let rig = rig(|c| c.segment_target_bytes = 256 << 10).await;
    let engine = &rig.engine;
    let w = engine.start(RecordingMetadata::default()).await.unwrap();
    let id = w.id();
    let big = |i: u64| Event {
        data: format!("{i:08}").repeat(256).into_bytes(),
        ..event(i)
    };
    let events: Vec<Event> = (0..1000).map(big).collect();
    let info = closed_and_uploaded(engine, w, &events).await;
    assert!(info.segments.len() >= 5);

    // An operator deletes segment 1 from the bucket, and a disk flips a
    // byte inside the third block of segment 3.
    let seg1 = &info.segments[1];
    let store = reel_storage::DurableLocalStore::new(rig.dir.path().join("primary")).unwrap();
    use object_store::ObjectStoreExt;
    store.delete(&keys::segment(id, 1)).await.unwrap();
    let seg3 = &info.segments[3];
    let block = &seg3.blocks[2];
    let key = keys::segment(id, 3);
    let mut bytes = store
        .get(&key)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    bytes[(seg3.content_offset + block.offset + 100) as usize] ^= 0x20;
    store.put(&key, bytes.into()).await.unwrap();

    let (got, gaps) = engine
        .events(id)
        .await
        .unwrap()
        .collect_with_gaps()
        .await
        .unwrap();
    assert_eq!(gaps.len(), 2, "{gaps:#?}");
    assert_eq!(
        (
            gaps[0].sequence,
            gaps[0].first_event_index,
            gaps[0].event_count
        ),
        (1, seg1.first_event_index, seg1.event_count),
        "the deleted segment is one gap"
    );
    assert!(gaps[0].reason.contains("not found"), "{}", gaps[0].reason);
    let block_events = seg3.blocks[3].first_event_index - block.first_event_index;
    assert_eq!(
        (
            gaps[1].sequence,
            gaps[1].first_event_index,
            gaps[1].event_count
        ),
        (3, block.first_event_index, block_events),
        "the corrupt block, and only it, is a gap"
    );
    assert!(gaps[1].reason.contains("CRC32C"), "{}", gaps[1].reason);
    let lost = |e: &Event| {
        let i = e.time_us / 1000;
        gaps.iter()
            .any(|g| (g.first_event_index..g.first_event_index + g.event_count).contains(&i))
    };
    let want: Vec<Event> = events.iter().filter(|e| !lost(e)).cloned().collect();
    assert_eq!(got, want, "everything else reads");
    assert!(engine.metrics().contains("read_gaps_total 2"));
    assert!(matches!(
        engine.events(id).await.unwrap().collect_all().await,
        Err(EngineError::Gap { .. })
    ));
    engine.shutdown().await;
}

async fn wait_for_state(engine: &Engine, role: Role, state: StoreState) {
    wait_for("store state", Duration::from_secs(10), || async {
        let s = engine.storage_status();
        let h = if role == Role::Primary {
            s.primary.health
        } else {
            s.secondary.health
        };
        h.state == state
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_only_on_a_down_store_give_an_error_that_names_them() {
    let rig = rig(|c| c.segment_max_age = Duration::from_secs(600)).await;
    let engine = &rig.engine;
    let (id, events) = split_recording(&rig, 300).await;
    let info = engine.recording(id).await.unwrap();
    let on_secondary = info
        .segments
        .iter()
        .find(|s| s.locations == [Location::Secondary as i32])
        .expect("a segment on the secondary")
        .clone();

    rig.primary.fail_always(Ops::ALL, Fault::Error);
    // A recording made during the outage, all on the secondary.
    let mut w = engine.start(RecordingMetadata::default()).await.unwrap();
    let during = w.id();
    write(&mut w, 0..100).await;
    w.close(0).await.unwrap();
    wait_for("stored", Duration::from_secs(10), || {
        all_uploaded(engine, during)
    })
    .await;
    wait_for_state(engine, Role::Primary, StoreState::Down).await;

    let err = read(engine, id, Window::ALL).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, EngineError::Unavailable(_)), "{err:?}");
    assert!(
        text.contains("only on the primary store, which is down") && text.contains("events 0.."),
        "{text}"
    );
    // The part on the secondary still reads.
    let window = Window::new(on_secondary.start_time_us, None).unwrap();
    assert_eq!(
        read(engine, id, window).await.unwrap(),
        slice(&events, window)
    );
    assert_eq!(
        read(engine, during, Window::ALL).await.unwrap(),
        (0..100).map(event).collect::<Vec<_>>()
    );

    // Both down: what is still local reads.
    rig.secondary.fail_always(Ops::ALL, Fault::Error);
    let mut w = engine.start(RecordingMetadata::default()).await.unwrap();
    let local = w.id();
    write(&mut w, 0..150).await;
    let info = engine.recording(local).await.unwrap();
    assert!(info.placement().local, "{}", info.placement());
    assert_eq!(
        read(engine, local, Window::ALL).await.unwrap(),
        (0..150).map(event).collect::<Vec<_>>()
    );
    let window = Window::new(20_000, Some(120_000)).unwrap();
    assert_eq!(
        read(engine, local, window).await.unwrap(),
        slice(&(0..150).map(event).collect::<Vec<_>>(), window)
    );
    drop(w);
    rig.primary.clear();
    rig.secondary.clear();
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_windows_and_ids_are_refused_before_any_read() {
    let rig = rig(|_| {}).await;
    let engine = &rig.engine;
    let id = closed_recording(engine, 10).await;
    assert!(matches!(
        Window::new(5, Some(5)),
        Err(EngineError::InvalidArgument(_))
    ));
    let past = engine
        .read(id, Window::new(3_600_000_000, None).unwrap())
        .await;
    assert!(
        matches!(&past, Err(EngineError::OutOfRange(m)) if m.contains("after the recording's end")),
        "{:?}",
        past.err()
    );
    let unknown = RecordingId::generate();
    assert!(matches!(
        engine.read(unknown, Window::ALL).await,
        Err(EngineError::NotFound(_))
    ));
    engine.shutdown().await;
}

/// Someone with write access to the bucket changes what a session showed
/// and mends the block's CRC32C, so that the CRC the catalog holds still
/// matches. The block is sealed (the default): it does not open with the
/// recording's data key; it is a gap naming the failed integrity check. No
/// altered byte is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_block_changed_with_its_crc_kept_is_a_gap_and_never_served() {
    block_changed_with_its_crc_kept(true).await;
}

/// The same with the recording stored in the clear (`[keys] encrypt =
/// false`): the block's SHA-256, kept in the catalog since it was sealed,
/// does not match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clear_block_changed_with_its_crc_kept_is_a_gap_and_never_served() {
    block_changed_with_its_crc_kept(false).await;
}

async fn block_changed_with_its_crc_kept(encrypt: bool) {
    let rig = rig(|c| {
        c.segment_target_bytes = 256 << 10;
        c.encrypt = encrypt;
    })
    .await;
    let engine = &rig.engine;
    let w = engine.start(RecordingMetadata::default()).await.unwrap();
    let id = w.id();
    let line = |i: u64| Event {
        data: format!("{i:06} $ ls -la /home/alice {}\r\n", ".".repeat(200)).into_bytes(),
        ..event(i)
    };
    let events: Vec<Event> = (0..600).map(line).collect();
    let info = closed_and_uploaded(engine, w, &events).await;
    let seg = &info.segments[0];
    let block = &seg.blocks[1];
    assert_eq!(
        block.sha256.len(),
        32,
        "the catalog keeps each block's hash"
    );

    let store = reel_storage::DurableLocalStore::new(rig.dir.path().join("primary")).unwrap();
    use object_store::ObjectStoreExt;
    let key = keys::segment(id, seg.sequence);
    let mut bytes = store
        .get(&key)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let start = (seg.content_offset + block.offset) as usize;
    let end = start + block.len as usize;
    // Six bytes well inside the block (blind, if it is sealed).
    assert!(end - start > 200, "a block of {} bytes", end - start);
    let at = start + 100;
    bytes[at..at + 6].copy_from_slice(b"rm -rf");
    // Mend the CRC a few bytes further on.
    let mut block_bytes = bytes[start..end].to_vec();
    reel_testkit::attack::forge_crc32c(&mut block_bytes, at - start + 40, block.crc32c);
    bytes[start..end].copy_from_slice(&block_bytes);
    store.put(&key, bytes.into()).await.unwrap();

    let (got, gaps) = engine
        .events(id)
        .await
        .unwrap()
        .collect_with_gaps()
        .await
        .unwrap();
    assert_eq!(gaps.len(), 1, "{gaps:#?}");
    assert_eq!(
        (gaps[0].sequence, gaps[0].first_event_index),
        (seg.sequence, block.first_event_index)
    );
    assert!(
        gaps[0].reason.contains("failed its integrity check"),
        "{}",
        gaps[0].reason
    );
    assert!(
        !got.iter()
            .any(|e| e.data.windows(6).any(|w| w == b"rm -rf")),
        "an altered byte was served"
    );
    let lost = block.first_event_index..gaps[0].first_event_index + gaps[0].event_count;
    let want: Vec<Event> = events
        .iter()
        .filter(|e| !lost.contains(&(e.time_us / 1000)))
        .cloned()
        .collect();
    assert_eq!(got, want, "everything else reads");
    engine.shutdown().await;
}

/// `events` written through `w` in batches of 50, the recording closed and
/// every segment uploaded; what the engine then says of it.
async fn closed_and_uploaded(
    engine: &Engine,
    mut w: reel_engine::RecordingWriter,
    events: &[Event],
) -> reel_engine::RecordingInfo {
    let id = w.id();
    for chunk in events.chunks(50) {
        w.append(None, chunk.to_vec()).unwrap().await.unwrap();
    }
    w.close(0).await.unwrap();
    wait_for("uploaded", Duration::from_secs(30), || {
        all_uploaded(engine, id)
    })
    .await;
    engine.recording(id).await.unwrap()
}

/// Recordings whose data keys are for XChaCha20-Poly1305 (every recording
/// written before XAES-256-GCM, or with `[keys] cipher` set to it) read as
/// before once the engine makes XAES-256-GCM keys: one closed and uploaded,
/// one whose events were still in the journal at the restart (recovery
/// opens their records and seals them with the old key). Each wrapped key's
/// version names its cipher, and recordings of both read byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_of_either_cipher_read_alike_after_the_cipher_changes() {
    use reel_engine::Cipher;
    let rig = rig(|c| c.cipher = Cipher::XChaCha20Poly1305).await;
    let closed = closed_recording(&rig.engine, 300).await;
    let mut w = rig
        .engine
        .start(RecordingMetadata::default())
        .await
        .unwrap();
    let unsealed = w.id();
    write(&mut w, 0..40).await;
    drop(w);
    let rig = restart_with(rig, |c| c.cipher = Cipher::Xaes256Gcm).await;
    let new = closed_recording(&rig.engine, 300).await;
    let expected: Vec<Event> = (0..300).map(event).collect();
    for (id, version, events) in [
        (closed, 1u8, &expected[..]),
        (unsealed, 1u8, &expected[..40]),
        (new, 2u8, &expected[..]),
    ] {
        let info = rig.engine.recording(id).await.unwrap();
        assert_eq!(info.row.wrapped_key.first(), Some(&version), "{id}");
        assert_eq!(read_all(&rig.engine, id).await, events, "{id}");
    }
    rig.engine.shutdown().await;
}
