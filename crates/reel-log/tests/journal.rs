//! The journal against real files: group commit, rotation, release, and
//! recovery from a torn tail and from corruption in the middle of a file.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use reel_log::{Journal, JournalOptions, Position};

fn options(dir: &std::path::Path) -> JournalOptions {
    JournalOptions {
        file_size: 4096,
        max_record_bytes: 1 << 16,
        ..JournalOptions::new(dir)
    }
}

fn replay(dir: &std::path::Path) -> (Journal, reel_log::RecoveryReport, Vec<(Position, Bytes)>) {
    let mut seen = Vec::new();
    let (j, report) = Journal::open(options(dir), |p, b| seen.push((p, b))).unwrap();
    (j, report, seen)
}

fn payload(i: usize) -> Vec<u8> {
    format!("record-{i:05}-{}", "x".repeat(i % 50)).into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_are_durable_in_order_and_replay() {
    let dir = tempfile::tempdir().unwrap();
    let (j, report, seen) = replay(dir.path());
    assert!(seen.is_empty());
    assert_eq!(report.files, 0);
    let j = Arc::new(j);
    let mut tasks = Vec::new();
    for w in 0..50 {
        let j = j.clone();
        tasks.push(tokio::spawn(async move {
            let mut positions = Vec::new();
            for k in 0..20 {
                let i = w * 20 + k;
                positions.push((i, j.append_durable(payload(i)).await.unwrap()));
            }
            positions
        }));
    }
    let mut all = BTreeMap::new();
    for t in tasks {
        for (i, p) in t.await.unwrap() {
            assert_eq!(&j.read(p).unwrap()[..], &payload(i)[..]);
            all.insert(p, i);
        }
    }
    // Group commit: far fewer fsyncs than records.
    let stats = j.stats();
    let batches = stats.batches.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        stats.records.load(std::sync::atomic::Ordering::Relaxed),
        1000
    );
    assert!(batches < 1000, "one fsync per record ({batches} batches)");
    assert!(j.file_count() > 1, "small files must rotate");
    drop(j);

    let (_j, report, seen) = replay(dir.path());
    assert_eq!(report.records, 1000);
    assert!(report.torn_tail.is_none() && report.corrupt.is_empty());
    let replayed: BTreeMap<Position, Vec<u8>> =
        seen.into_iter().map(|(p, b)| (p, b.to_vec())).collect();
    let expected: BTreeMap<Position, Vec<u8>> =
        all.iter().map(|(p, i)| (*p, payload(*i))).collect();
    assert_eq!(replayed, expected);
}

fn last_file(dir: &std::path::Path) -> std::path::PathBuf {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    files.sort();
    files.pop().unwrap()
}

#[tokio::test]
async fn torn_tail_is_cut_and_acknowledged_records_survive() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _, _) = replay(dir.path());
    let mut acked = Vec::new();
    for i in 0..5 {
        acked.push(j.append_durable(payload(i)).await.unwrap());
    }
    drop(j);
    // A crash in the middle of the next write: half a record at the end.
    let path = last_file(dir.path());
    let mut partial = reel_log::record::encode(&payload(99));
    partial.truncate(partial.len() / 2);
    let before = std::fs::metadata(&path).unwrap().len();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(&partial);
    std::fs::write(&path, &bytes).unwrap();

    let (j, report, seen) = replay(dir.path());
    let torn = report.torn_tail.expect("torn tail reported");
    assert_eq!(torn.offset, before);
    assert!(report.corrupt.is_empty());
    assert_eq!(seen.iter().map(|(p, _)| *p).collect::<Vec<_>>(), acked);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), before, "tail cut");
    // And the journal goes on.
    let p = j.append_durable(payload(6)).await.unwrap();
    drop(j);
    let (_j, report, seen) = replay(dir.path());
    assert!(report.torn_tail.is_none());
    assert_eq!(seen.len(), 6);
    assert_eq!(seen.last().unwrap().0, p);
}

#[tokio::test]
async fn corruption_in_the_middle_is_reported_not_dropped_silently() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _, _) = replay(dir.path());
    let mut acked = Vec::new();
    for i in 0..6 {
        acked.push(j.append_durable(payload(i)).await.unwrap());
    }
    drop(j);
    // Flip a byte inside the third record's payload.
    let victim = acked[2];
    let path = dir.path().join(format!("{:016x}.wal", victim.file));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[victim.offset as usize + 12] ^= 0x5a;
    std::fs::write(&path, &bytes).unwrap();

    let (_j, report, seen) = replay(dir.path());
    assert_eq!(report.corrupt.len(), 1, "{report:?}");
    let damage = &report.corrupt[0];
    assert_eq!((damage.file, damage.offset), (victim.file, victim.offset));
    assert_eq!(damage.len, victim.framed_len());
    assert!(report.torn_tail.is_none());
    let got: Vec<Position> = seen.iter().map(|(p, _)| *p).collect();
    let expected: Vec<Position> = acked.iter().copied().filter(|p| *p != victim).collect();
    assert_eq!(got, expected, "every other record is replayed");
    // The damaged file is left in place for inspection.
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

#[tokio::test]
async fn released_files_are_gone_and_reads_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _, _) = replay(dir.path());
    let first = j.append_durable(vec![1; 3000]).await.unwrap();
    let second = j.append_durable(vec![2; 3000]).await.unwrap();
    assert!(second.file > first.file);
    let freed = j.release_before(second.file).unwrap();
    assert!(freed >= 3000);
    assert!(matches!(
        j.read(first),
        Err(reel_log::JournalError::Released { .. })
    ));
    assert_eq!(&j.read(second).unwrap()[..], &[2; 3000][..]);
    // The file being written is never released.
    j.release_before(u64::MAX).unwrap();
    assert_eq!(&j.read(second).unwrap()[..], &[2; 3000][..]);
}

/// The bytes and files of the journal as the filesystem sees them.
fn on_disk(dir: &std::path::Path) -> (u64, usize) {
    let mut bytes = 0;
    let mut files = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name().to_string_lossy().ends_with(".wal") {
            bytes += entry.metadata().unwrap().len();
            files += 1;
        }
    }
    (bytes, files)
}

#[tokio::test]
async fn the_byte_count_follows_the_files_through_a_lifetime_of_releases() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _, _) = replay(dir.path());
    // Some fifty times more than is ever held at once goes through.
    for round in 0..200 {
        for k in 0..4 {
            j.append_durable(payload(round * 4 + k).repeat(20))
                .await
                .unwrap();
        }
        j.release_before(j.current_file()).unwrap();
        assert_eq!(
            (j.disk_bytes(), j.file_count()),
            on_disk(dir.path()),
            "after round {round}"
        );
    }
    assert!(j.stats().bytes.load(std::sync::atomic::Ordering::Relaxed) > 50 * j.disk_bytes());
    drop(j);
    // A reopened journal counts the same files.
    let (j, _, _) = replay(dir.path());
    assert_eq!((j.disk_bytes(), j.file_count()), on_disk(dir.path()));
}

#[tokio::test]
async fn oversized_and_empty_records_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _, _) = replay(dir.path());
    let too_big = j.append_durable(vec![0; (1 << 16) + 1]).await;
    assert!(matches!(
        too_big,
        Err(reel_log::JournalError::RecordTooLarge { .. })
    ));
    assert!(j.append_durable(Vec::new()).await.is_err());
    j.shutdown();
    assert!(matches!(
        j.append_durable(vec![1]).await,
        Err(reel_log::JournalError::Closed)
    ));
}

/// Appends racing a shutdown: each is answered, durable or `Closed`, none
/// waits forever, every durable one is there when the journal is opened
/// again, and each thread's durable records are a prefix of what it sent
/// (nothing durable after a refused one). Four threads append without
/// pause until they see a refusal; the shutdown comes once 500 are durable.
#[test]
fn appends_racing_a_shutdown_are_each_answered_durable_or_closed() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let (j, _, _) = replay(dir.path());
    let j = Arc::new(j);
    let durable_count = Arc::new(AtomicUsize::new(0));
    let refused_seen = Arc::new(AtomicBool::new(false));
    const LIMIT: std::time::Duration = std::time::Duration::from_secs(20);
    let start = std::time::Instant::now();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (j, durable_count, refused_seen) =
                (j.clone(), durable_count.clone(), refused_seen.clone());
            std::thread::spawn(move || {
                let answer = |(i, rx): (usize, std::sync::mpsc::Receiver<_>)| {
                    let r = rx
                        .recv_timeout(std::time::Duration::from_secs(30))
                        .expect("every append is answered");
                    (i, r)
                };
                // At most 256 unanswered a thread, so that the queue the
                // shutdown lets the writer finish stays short.
                let mut pending = std::collections::VecDeque::new();
                let mut answers = Vec::new();
                let mut k = 0;
                // A journal that never refused after its shutdown ends the
                // loop by time, and the test below fails rather than hangs.
                while !refused_seen.load(Ordering::Acquire) && start.elapsed() < LIMIT {
                    if pending.len() == 256 {
                        answers.push(answer(pending.pop_front().unwrap()));
                    }
                    let (tx, rx) = std::sync::mpsc::channel();
                    let (durable_count, refused_seen) =
                        (durable_count.clone(), refused_seen.clone());
                    j.append(
                        payload(t * 1_000_000 + k),
                        Box::new(move |r| {
                            if r.is_ok() {
                                durable_count.fetch_add(1, Ordering::Release);
                            } else {
                                refused_seen.store(true, Ordering::Release);
                            }
                            drop(tx.send(r));
                        }),
                    );
                    pending.push_back((t * 1_000_000 + k, rx));
                    k += 1;
                }
                answers.extend(pending.into_iter().map(answer));
                answers
            })
        })
        .collect();
    while durable_count.load(Ordering::Acquire) < 500 {
        assert!(
            start.elapsed() < LIMIT,
            "500 appends not durable in {LIMIT:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    j.shutdown();
    let mut durable = std::collections::BTreeSet::new();
    let mut refused = 0;
    for t in threads {
        let answers = t.join().unwrap();
        let ok = answers.iter().take_while(|(_, r)| r.is_ok()).count();
        for (i, r) in &answers[ok..] {
            assert!(
                matches!(r, Err(reel_log::JournalError::Closed)),
                "append {i} after a refused one: {r:?}"
            );
        }
        refused += answers.len() - ok;
        durable.extend(answers[..ok].iter().map(|(i, _)| *i));
    }
    assert!(refused > 0 && durable.len() >= 500);
    drop(j);
    let (_, _, seen) = replay(dir.path());
    let replayed: std::collections::BTreeSet<Vec<u8>> =
        seen.iter().map(|(_, b)| b.to_vec()).collect();
    for i in durable {
        assert!(replayed.contains(&payload(i)), "durable record {i} lost");
    }
}

#[test]
fn unwritable_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let err = Journal::open(options(&file.join("wal")), |_, _| {})
        .err()
        .expect("must fail");
    assert!(err.to_string().contains("not usable"), "{err}");
}

/// Files after the first are written with zeros to their full size before
/// they take records; their zero tails are the end of their records, not
/// damage, and the byte count is what the files take on disk.
#[tokio::test]
async fn files_after_the_first_are_prepared_at_full_size_and_replay_past_their_zeros() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _, _) = replay(dir.path());
    let mut positions = Vec::new();
    for i in 0..200 {
        positions.push(j.append_durable(payload(i).repeat(4)).await.unwrap());
    }
    let first = positions[0].file;
    assert!(positions.last().unwrap().file >= first + 5, "{positions:?}");
    let size = options(dir.path()).file_size;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(hex) = name.strip_suffix(".wal") else {
            continue;
        };
        let id = u64::from_str_radix(hex, 16).unwrap();
        let len = entry.metadata().unwrap().len();
        if id == first {
            assert!(len < size, "the first file is made as it goes: {len}");
        } else {
            assert_eq!(len, size, "file {id} was not prepared");
        }
    }
    assert_eq!((j.disk_bytes(), j.file_count()), on_disk(dir.path()));
    drop(j);

    // As a crash in the middle of preparing a file leaves it.
    let stray = dir.path().join(format!("{:016x}.prep", first + 1000));
    std::fs::write(&stray, [0u8; 100]).unwrap();
    let (j, report, seen) = replay(dir.path());
    assert!(!stray.exists());
    assert!(report.corrupt.is_empty(), "{:?}", report.corrupt);
    assert!(report.torn_tail.is_none(), "{:?}", report.torn_tail);
    let replayed: Vec<Position> = seen.iter().map(|(p, _)| *p).collect();
    assert_eq!(replayed, positions);
    for (i, (_, bytes)) in seen.iter().enumerate() {
        assert_eq!(&bytes[..], &payload(i).repeat(4)[..]);
    }
    assert_eq!((j.disk_bytes(), j.file_count()), on_disk(dir.path()));
    // A closed journal leaves no prepared file behind (one a crash left is
    // deleted at the next start).
    drop(j);
    let prepared = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().ends_with(".prep")
        })
        .count();
    assert_eq!(prepared, 0);
}
