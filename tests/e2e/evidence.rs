//! A bucket writer's attacks, each made through the S3 API of a real Garage
//! server, without any of reeld's keys: one block's bytes changed with its
//! CRC32C kept; segments made anew with the recording's hash chain
//! recomputed; one recording's object copied over another's key; a
//! recording's last segment deleted. Each is caught by an export (a gap, no
//! altered byte served), by `reel verify --content`, and by a catalog
//! rebuilt from the stores (the forged objects named and left out, the
//! damage noted), and no altered byte is served after the rebuild either.

use std::time::Duration;

use object_store::ObjectStoreExt;
use reel_api::{RecordingDetail, VerifyReport};
use reel_proto::RecordingId;
use reel_proto::v1::{Event, EventKind, RecordingMetadata};
use reel_storage::keys;
use reel_testkit::{Recorder, Reeld, drained, terminal_event, wait_for};

const EVENTS: u64 = 300;

async fn record(reeld: &Reeld, slot: usize) -> String {
    let mut rec = Recorder::start(&reeld.grpc, RecordingMetadata::default())
        .await
        .unwrap();
    let events: Vec<Event> = (0..EVENTS).map(|i| terminal_event(slot, i)).collect();
    for batch in events.chunks(25) {
        rec.append(batch.to_vec()).await.unwrap();
    }
    let id = rec.id.clone();
    rec.close().await.unwrap();
    id
}

fn verify(reeld: &Reeld) -> (Option<i32>, VerifyReport) {
    let out = reeld.reel(&["verify", "--json", "--content"]);
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code(), report)
}

/// A recording's export, split into gap markers and events.
async fn export(reeld: &Reeld, id: &str) -> (Vec<String>, Vec<Event>) {
    let (markers, events): (Vec<Event>, Vec<Event>) = reeld
        .export_events(id)
        .await
        .unwrap()
        .into_iter()
        .partition(|e| e.kind == EventKind::Marker as i32);
    let markers = markers
        .iter()
        .map(|m| String::from_utf8_lossy(&m.data).to_string())
        .collect();
    (markers, events)
}

/// Every event of an export is one the recorder of `slot` sent.
fn only_sent(slot: usize, events: &[Event]) -> bool {
    events.iter().all(|e| {
        let i = e.time_us / 1000;
        i < EVENTS && e.data == terminal_event(slot, i).data
    })
}

async fn detail(reeld: &Reeld, id: &str) -> RecordingDetail {
    reeld
        .get_json(&format!("/api/v1/recordings/{id}"))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_writers_changes_are_caught_by_export_verify_and_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    // The secondary is only kept running.
    let crate::TwoStores {
        primary,
        secondary: _secondary,
        cfg,
        mut reeld,
    } = crate::two_stores_small_segments(dir.path());
    // a: a block changed, b: re-made segments, c: overwritten by a's
    // object, d: its last segment deleted.
    let mut ids = Vec::new();
    for slot in 0..4 {
        ids.push(record(&reeld, slot).await);
    }
    wait_for("uploaded", Duration::from_secs(60), async || {
        drained(&reeld).await
    })
    .await;
    let (code, clean) = verify(&reeld);
    assert_eq!(code, Some(0), "{clean:?}");
    let id = |slot: usize| ids[slot].parse::<RecordingId>().unwrap();
    let segments = detail(&reeld, &ids[1]).await.segments.len() as u64;
    assert!(segments >= 3, "{segments} segments");
    let p = primary.object_store();
    let get = async |key: &object_store::path::Path| -> Vec<u8> {
        p.get(key).await.unwrap().bytes().await.unwrap().to_vec()
    };

    // a: inside segment 1's first block (sealed: the attacker cannot read
    // it), eight bytes changed, and four bytes further on chosen so that
    // the block's CRC32C is unchanged.
    let a1 = keys::segment(id(0), 1);
    let mut bytes = get(&a1).await;
    let (header, content_at) = reel_log::decode_header(&bytes).unwrap();
    assert!(header.encrypted, "recordings are encrypted at rest");
    let block = &header.blocks[0];
    let start = content_at + block.offset as usize;
    let end = start + block.len as usize;
    let at = start + 30;
    assert!(at + 8 + 24 + 4 <= end, "block of {} bytes", block.len);
    bytes[at..at + 8].copy_from_slice(b"rec 6666");
    let mut block_bytes = bytes[start..end].to_vec();
    reel_testkit::attack::forge_crc32c(&mut block_bytes, at - start + 24, block.crc32c);
    bytes[start..end].copy_from_slice(&block_bytes);
    p.put(&a1, bytes.into()).await.unwrap();

    // b: every segment from 1 on made anew with a command slipped in, and
    // the chain recomputed so that each links to the one before.
    let mut prev = reel_log::sha256(&get(&keys::segment(id(1), 0)).await);
    let mut forged_b = Vec::new();
    for seq in 1..segments {
        let key = keys::segment(id(1), seq);
        // The header is readable (signed, not encrypted): the forger
        // knows the events' indices and times, not what they held, and
        // writes his own.
        let (h, _) = reel_log::decode_header(&get(&key).await).unwrap();
        let events: Vec<Event> = (0..h.event_count)
            .map(|i| Event {
                time_us: if i + 1 == h.event_count {
                    h.end_time_us
                } else {
                    h.start_time_us
                },
                kind: EventKind::Output as i32,
                data: b"rm -rf /srv/evidence\r\n".to_vec(),
            })
            .collect();
        let spec = reel_log::SegmentSpec {
            recording_id: h.recording_id.as_slice().try_into().unwrap(),
            sequence: h.sequence,
            first_event_index: h.first_event_index,
            prev_hash: Some(prev),
            metadata: h.metadata.unwrap_or_default(),
            is_final: h.r#final,
            duration_us: h.duration_us,
            sealed_at_us: h.sealed_at_us,
        };
        let made = reel_log::encode_segment(spec, &events);
        prev = made.sha256;
        p.put(&key, made.bytes.into()).await.unwrap();
        forged_b.push(key);
    }

    // c: recording a's first segment copied over c's.
    let c0 = keys::segment(id(2), 0);
    let a0 = get(&keys::segment(id(0), 0)).await;
    p.put(&c0, a0.into()).await.unwrap();

    // d: the last segment deleted.
    let d_segments = detail(&reeld, &ids[3]).await.segments.len() as u64;
    let d_last = keys::segment(id(3), d_segments - 1);
    p.delete(&d_last).await.unwrap();

    // Exports: a gap where the bytes are not the ones sealed, and no byte
    // an attacker wrote.
    for (slot, id) in ids.iter().enumerate() {
        let (markers, events) = export(&reeld, id).await;
        assert!(!markers.is_empty(), "recording {slot}: no gap");
        assert!(
            only_sent(slot, &events),
            "recording {slot}: a forged event served"
        );
    }
    let (markers, _) = export(&reeld, &ids[0]).await;
    assert!(
        markers
            .iter()
            .any(|m| m.contains("failed its integrity check")),
        "{markers:?}"
    );
    let (markers, _) = export(&reeld, &ids[3]).await;
    assert!(
        markers.iter().any(|m| m.contains("not found")),
        "{markers:?}"
    );

    // verify --content names every changed object.
    let (code, found) = verify(&reeld);
    assert_eq!(code, Some(1));
    let has = |kind: &str, key: &object_store::path::Path| {
        found
            .problems
            .iter()
            .any(|p| p.kind == kind && p.store == "primary" && p.key == key.to_string())
    };
    assert!(has("corrupt", &a1), "{found:#?}");
    for key in &forged_b {
        assert!(has("corrupt", key), "{key}: {found:#?}");
    }
    assert!(has("corrupt", &c0), "{found:#?}");
    assert!(has("missing", &d_last), "{found:#?}");

    // The catalog is lost: the rebuild trusts only what this server signed.
    let report = crate::lose_and_rebuild_catalog(&mut reeld, &cfg);
    let tails = report["tails_removed"].to_string();
    assert!(
        tails.contains(&ids[1]) && tails.contains(&ids[3]),
        "{tails}"
    );
    let skipped: Vec<String> = report["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    let skipped_for = |key: &object_store::path::Path| {
        skipped
            .iter()
            .find(|s| s.contains(&key.to_string()))
            .cloned()
    };
    assert!(skipped_for(&a1).is_some(), "{skipped:#?}");
    for key in &forged_b {
        let why = skipped_for(key).unwrap_or_default();
        assert!(why.contains("unsigned"), "{key}: {skipped:#?}");
    }

    reeld.restart().unwrap();
    let damage = async |slot: usize| detail(&reeld, &ids[slot]).await.summary.damage.join("; ");
    assert!(
        damage(0).await.contains("segments 1..2 not found"),
        "{}",
        damage(0).await
    );
    // Its final segment is gone, and the audit log's manifest (copied to
    // the stores) tells the removed tail from an interrupted recording.
    assert!(
        damage(1)
            .await
            .contains("its last segments were removed from the stores"),
        "{}",
        damage(1).await
    );
    assert_eq!(detail(&reeld, &ids[1]).await.summary.close_reason, "closed");
    assert!(
        damage(2).await.contains("segments 0..1 not found"),
        "{}",
        damage(2).await
    );
    // Its final segment is gone, and the audit log's manifest (copied to
    // the stores) tells the removed tail from an interrupted recording.
    assert!(
        damage(3)
            .await
            .contains("its last segments were removed from the stores"),
        "{}",
        damage(3).await
    );
    assert_eq!(detail(&reeld, &ids[3]).await.summary.close_reason, "closed");
    for (slot, id) in ids.iter().enumerate() {
        let (_, events) = export(&reeld, id).await;
        assert!(
            only_sent(slot, &events),
            "recording {slot}: a forged event after the rebuild"
        );
        assert!(!events.is_empty());
    }
}
