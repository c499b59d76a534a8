//! The events `reel record` has captured and reeld has not yet made
//! durable: held in memory, then in a bounded spool file, so that the
//! recorded session never waits for the server.
//!
//! Events are numbered from 0 over the whole recording, as the ingest
//! protocol numbers them. The backlog holds `[first, next)`: everything
//! below `first` is durable on the server (acknowledged), everything from
//! `first` on may still have to be sent again after a reconnection. The
//! oldest events are in memory; once memory is full, newer ones go to the
//! spool file, and come back into memory, in order, as acknowledgements
//! make room. When both are full, events are dropped and counted, and the
//! next event that fits is preceded by a marker saying how many were lost
//! (a gap a reviewer sees, never a silent one).
//!
//! The spool file is unlinked as soon as it is created (nothing of it
//! outlives the process) and every record in it is sealed with a key that
//! exists only in this process's memory: what the recorded user typed is
//! never in plain text on the bastion's disk.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use prost::Message;
use reel_keys::DataKey;
use reel_proto::v1::{Event, EventKind};

/// How much the backlog may hold.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Bytes of event data held in memory.
    pub memory_bytes: usize,
    /// Bytes the spool file may grow to (0: no spool file).
    pub spool_bytes: u64,
}

/// Events dropped because memory and spool were full.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lost {
    pub events: u64,
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum BacklogError {
    #[error("the recorder's spool file {path}: {source}")]
    Spool {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the recorder's spool file was changed under it (record {index} does not open)")]
    SpoolCorrupt { index: u64 },
    #[error("sealing a spooled event: {0}")]
    Seal(#[from] reel_keys::KeyError),
}

pub(crate) struct Backlog {
    first: u64,
    memory: VecDeque<Event>,
    memory_bytes: usize,
    spool: Option<Spool>,
    spool_dir: PathBuf,
    limits: Limits,
    /// Dropped and not yet reported by a marker.
    unreported: Lost,
    /// Dropped over the whole session.
    lost: Lost,
    /// Why the spool failed, until someone asks.
    failure: Option<BacklogError>,
}

/// Events `[first + memory.len(), next)`, sealed, one record each:
/// a u32 (little endian) length, then the box.
struct Spool {
    file: File,
    key: DataKey,
    /// Where the next record is read from, and written to.
    read_at: u64,
    write_at: u64,
    /// The index of the record at `read_at`, and how many are held.
    read_index: u64,
    count: u64,
}

/// What an event costs the backlog: its data, and a little for the rest.
fn cost(event: &Event) -> usize {
    event.data.len() + 16
}

impl Backlog {
    /// An empty backlog whose next event is number `first`. The spool file,
    /// if one is needed, is made in `spool_dir`.
    pub(crate) fn new(first: u64, limits: Limits, spool_dir: &Path) -> Backlog {
        Backlog {
            first,
            memory: VecDeque::new(),
            memory_bytes: 0,
            spool: None,
            spool_dir: spool_dir.to_path_buf(),
            limits,
            unreported: Lost::default(),
            lost: Lost::default(),
            failure: None,
        }
    }

    /// The index the next event pushed gets.
    pub(crate) fn next(&self) -> u64 {
        self.first + self.memory.len() as u64 + self.spool.as_ref().map_or(0, |s| s.count)
    }

    /// The first event not yet acknowledged.
    pub(crate) fn first(&self) -> u64 {
        self.first
    }

    /// Nothing is waiting for the server.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.next() == self.first
    }

    /// The oldest event not acknowledged (its time says how long it has
    /// waited).
    pub(crate) fn oldest(&self) -> Option<&Event> {
        self.memory.front()
    }

    /// Events dropped over the session.
    pub(crate) fn lost(&self) -> Lost {
        self.lost
    }

    /// Bytes held in the spool file now.
    #[cfg(test)]
    pub(crate) fn spooled_bytes(&self) -> u64 {
        self.spool.as_ref().map_or(0, |s| s.write_at - s.read_at)
    }

    /// Adds an event. It is dropped (and counted, to be reported by a
    /// marker before the next event that fits) when memory and the spool
    /// are full, or the spool file cannot be written.
    pub(crate) fn push(&mut self, event: Event) {
        if self.unreported.events > 0 {
            let marker = lost_marker(self.unreported, event.time_us);
            if !self.try_push(marker) {
                return self.drop_event(&event);
            }
            self.unreported = Lost::default();
        }
        if !self.try_push(event.clone()) {
            self.drop_event(&event);
        }
    }

    fn drop_event(&mut self, event: &Event) {
        self.count_lost(1, event.data.len() as u64);
    }

    fn count_lost(&mut self, events: u64, bytes: u64) {
        for lost in [&mut self.unreported, &mut self.lost] {
            lost.events += events;
            lost.bytes += bytes;
        }
    }

    /// The first failure of the spool file since the last call: its events
    /// were counted as lost.
    pub(crate) fn take_failure(&mut self) -> Option<BacklogError> {
        self.failure.take()
    }

    /// The spool failed: what it held is lost (and marked), and a new file
    /// is tried for what comes next.
    fn spool_failed(&mut self, error: BacklogError) {
        if let Some(spool) = self.spool.take() {
            self.count_lost(spool.count, spool.write_at - spool.read_at);
        }
        self.failure.get_or_insert(error);
    }

    fn try_push(&mut self, event: Event) -> bool {
        let spooling = self.spool.as_ref().is_some_and(|s| s.count > 0);
        // An empty memory takes any one event, however large: the limit
        // bounds what waits, it never refuses an event outright.
        if !spooling
            && (self.memory.is_empty()
                || self.memory_bytes + cost(&event) <= self.limits.memory_bytes)
        {
            self.memory_bytes += cost(&event);
            self.memory.push_back(event);
            return true;
        }
        if self.limits.spool_bytes == 0 {
            return false;
        }
        let index = self.next();
        let spool = match &mut self.spool {
            Some(s) => s,
            None => match Spool::create(&self.spool_dir) {
                Ok(s) => self.spool.insert(s),
                Err(e) => {
                    self.failure.get_or_insert(e);
                    return false;
                }
            },
        };
        match spool.append(index, &event, self.limits.spool_bytes) {
            Ok(fits) => fits,
            Err(e) => {
                self.spool_failed(e);
                false
            }
        }
    }

    /// Up to `max_events` events (and about `max_bytes`; at least one) from
    /// number `from` on, from memory; fewer (or none) when the rest are
    /// still in the spool, waiting for room.
    pub(crate) fn batch(&self, from: u64, max_events: usize, max_bytes: usize) -> Vec<Event> {
        let start = from.saturating_sub(self.first) as usize;
        let mut out = Vec::new();
        let mut bytes = 0;
        for event in self.memory.iter().skip(start) {
            if out.len() >= max_events || (!out.is_empty() && bytes + event.data.len() > max_bytes)
            {
                break;
            }
            bytes += event.data.len();
            out.push(event.clone());
        }
        out
    }

    /// The server holds every event below `durable`: they are let go, and
    /// the room they leave is filled from the spool.
    pub(crate) fn acknowledge(&mut self, durable: u64) {
        while self.first < durable {
            let Some(event) = self.memory.pop_front() else {
                break;
            };
            self.memory_bytes -= cost(&event);
            self.first += 1;
        }
        // Acknowledged beyond memory: only after a resume whose server
        // already held spooled events (sent before a disconnection).
        while self.first < durable
            && let Some(spool) = self.spool.as_mut().filter(|s| s.count > 0)
        {
            if let Err(e) = spool.read() {
                self.spool_failed(e);
                break;
            }
            self.first += 1;
        }
        self.refill();
    }

    fn refill(&mut self) {
        while let Some(spool) = self.spool.as_mut().filter(|s| s.count > 0) {
            if self.memory_bytes >= self.limits.memory_bytes && !self.memory.is_empty() {
                break;
            }
            match spool.read() {
                Ok(event) => {
                    self.memory_bytes += cost(&event);
                    self.memory.push_back(event);
                }
                Err(e) => self.spool_failed(e),
            }
        }
    }
}

/// The marker put where events were dropped.
fn lost_marker(lost: Lost, time_us: u64) -> Event {
    Event {
        time_us,
        kind: EventKind::Marker as i32,
        data: format!(
            "reel record: {} events ({} bytes) lost here: reeld could not be reached and the recorder's memory and spool were full",
            lost.events, lost.bytes
        )
        .into_bytes(),
    }
}

impl Spool {
    fn create(dir: &Path) -> Result<Spool, BacklogError> {
        let error = |source| BacklogError::Spool {
            path: dir.to_path_buf(),
            source,
        };
        // Unlinked at once (O_TMPFILE where the filesystem has it).
        let file = tempfile::tempfile_in(dir).map_err(error)?;
        Ok(Spool {
            file,
            key: DataKey::generate()?,
            read_at: 0,
            write_at: 0,
            read_index: 0,
            count: 0,
        })
    }

    fn io_error(&self, source: std::io::Error) -> BacklogError {
        BacklogError::Spool {
            path: PathBuf::from("(unlinked)"),
            source,
        }
    }

    /// Appends event number `index`; false when it would pass `limit`.
    fn append(&mut self, index: u64, event: &Event, limit: u64) -> Result<bool, BacklogError> {
        let sealed = reel_keys::seal(&self.key, &index.to_le_bytes(), &event.encode_to_vec())?;
        let len = 4 + sealed.len() as u64;
        if self.write_at - self.read_at + len > limit {
            return Ok(false);
        }
        if self.count == 0 {
            self.read_index = index;
        }
        let mut record = Vec::with_capacity(len as usize);
        record.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
        record.extend_from_slice(&sealed);
        let result = self
            .file
            .seek(SeekFrom::Start(self.write_at))
            .and_then(|_| self.file.write_all(&record));
        result.map_err(|e| self.io_error(e))?;
        self.write_at += len;
        self.count += 1;
        Ok(true)
    }

    /// Takes the oldest record out.
    fn read(&mut self) -> Result<Event, BacklogError> {
        let mut len = [0u8; 4];
        let result = self
            .file
            .seek(SeekFrom::Start(self.read_at))
            .and_then(|_| self.file.read_exact(&mut len));
        result.map_err(|e| self.io_error(e))?;
        let len = u32::from_le_bytes(len) as u64;
        let corrupt = BacklogError::SpoolCorrupt {
            index: self.read_index,
        };
        if self.read_at + 4 + len > self.write_at {
            return Err(corrupt);
        }
        let mut sealed = vec![0u8; len as usize];
        self.file
            .read_exact(&mut sealed)
            .map_err(|e| self.io_error(e))?;
        let plain =
            reel_keys::open(&self.key, &self.read_index.to_le_bytes(), &sealed).map_err(|_| {
                BacklogError::SpoolCorrupt {
                    index: self.read_index,
                }
            })?;
        let event = Event::decode(plain.as_slice()).map_err(|_| corrupt)?;
        self.read_at += 4 + len;
        self.read_index += 1;
        self.count -= 1;
        if self.count == 0 {
            // Empty: start over, so the file never grows past the limit.
            self.read_at = 0;
            self.write_at = 0;
            self.file.set_len(0).map_err(|e| self.io_error(e))?;
        }
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn event(i: u64, len: usize) -> Event {
        Event {
            time_us: i * 10,
            kind: EventKind::Output as i32,
            data: vec![b'a' + (i % 26) as u8; len],
        }
    }

    /// Everything pushed comes out once, in order, whatever the limits and
    /// the pattern of batches and acknowledgements; nothing is dropped
    /// while there is room.
    #[test]
    fn events_pass_through_memory_and_spool_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            memory_bytes: 200,
            spool_bytes: 1 << 20,
        };
        let mut backlog = Backlog::new(0, limits, dir.path());
        for i in 0..100 {
            backlog.push(event(i, 30));
        }
        assert!(
            backlog.spooled_bytes() > 0,
            "memory of 200 bytes overflowed"
        );
        let mut received = Vec::new();
        while !backlog.is_empty() {
            let from = backlog.first();
            let batch = backlog.batch(from, 3, 1 << 20);
            assert!(!batch.is_empty(), "memory refilled from the spool");
            received.extend(batch.iter().cloned());
            backlog.acknowledge(from + batch.len() as u64);
        }
        assert_eq!(received, (0..100).map(|i| event(i, 30)).collect::<Vec<_>>());
        assert_eq!(backlog.lost(), Lost::default());
        assert_eq!(backlog.spooled_bytes(), 0);
    }

    /// With memory and spool full, events are dropped, counted, and a
    /// marker saying so comes before the next one that fits.
    #[test]
    fn a_full_backlog_drops_and_marks_the_gap() {
        let dir = tempfile::tempdir().unwrap();
        // Two events of 100 bytes fit (each costs 116), not three; the
        // marker and a small event do.
        let limits = Limits {
            memory_bytes: 240,
            spool_bytes: 0,
        };
        let mut backlog = Backlog::new(5, limits, dir.path());
        backlog.push(event(0, 100));
        backlog.push(event(1, 100));
        backlog.push(event(2, 100)); // full: dropped
        assert_eq!(
            backlog.lost(),
            Lost {
                events: 1,
                bytes: 100
            }
        );
        backlog.acknowledge(7);
        backlog.push(event(3, 10));
        let batch = backlog.batch(7, 10, 1 << 20);
        assert_eq!(batch.len(), 2);
        assert_eq!(batch[0].kind, EventKind::Marker as i32);
        let text = String::from_utf8(batch[0].data.clone()).unwrap();
        assert!(text.contains("1 events (100 bytes) lost"), "{text}");
        assert_eq!(batch[1], event(3, 10));
    }

    /// A resume may find the server already holding events that were sent
    /// from the spool's range: they are let go from the spool too.
    #[test]
    fn an_acknowledgement_past_memory_drains_the_spool() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            memory_bytes: 60,
            spool_bytes: 1 << 20,
        };
        let mut backlog = Backlog::new(0, limits, dir.path());
        for i in 0..10 {
            backlog.push(event(i, 20));
        }
        backlog.acknowledge(8);
        assert_eq!(backlog.first(), 8);
        assert_eq!(
            backlog.batch(8, 10, 1 << 20),
            vec![event(8, 20), event(9, 20)]
        );
    }

    /// Bytes of the spool changed on disk are refused, not replayed: what
    /// the spool held is counted lost and marked.
    #[test]
    fn a_changed_spool_record_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            memory_bytes: 20,
            spool_bytes: 1 << 20,
        };
        let mut backlog = Backlog::new(0, limits, dir.path());
        // One event in memory (its cost passes 20 bytes), three spooled.
        for i in 0..4 {
            backlog.push(event(i, 10));
        }
        let record = backlog.spooled_bytes() / 3;
        let spool = backlog.spool.as_mut().unwrap();
        // Flip the bits of one ciphertext byte: writing a fixed byte would be
        // no change at all once in 256 runs.
        let mut byte = [0u8; 1];
        spool.file.seek(SeekFrom::Start(record + 10)).unwrap();
        spool.file.read_exact(&mut byte).unwrap();
        spool.file.seek(SeekFrom::Start(record + 10)).unwrap();
        spool.file.write_all(&[!byte[0]]).unwrap();
        backlog.acknowledge(1);
        assert_eq!(backlog.batch(1, 10, 1 << 20), vec![event(1, 10)]);
        assert!(backlog.take_failure().is_none());
        backlog.acknowledge(2);
        let error = backlog.take_failure().expect("the change is noticed");
        assert!(
            matches!(error, BacklogError::SpoolCorrupt { index: 2 }),
            "{error}"
        );
        assert_eq!(backlog.lost().events, 2);
        backlog.push(event(9, 1));
        let batch = backlog.batch(2, 10, 1 << 20);
        assert_eq!(batch[0].kind, EventKind::Marker as i32);
        backlog.acknowledge(3);
        assert_eq!(backlog.batch(3, 10, 1 << 20), vec![event(9, 1)]);
    }

    /// No byte of a spooled event's data is in the file in the clear.
    #[test]
    fn the_spool_holds_no_plain_text() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            memory_bytes: 0,
            spool_bytes: 1 << 20,
        };
        let mut backlog = Backlog::new(0, limits, dir.path());
        let secret = b"hunter2-the-password".to_vec();
        // The first event is always taken into memory; the second is spooled.
        backlog.push(event(0, 1));
        backlog.push(Event {
            time_us: 1,
            kind: EventKind::Input as i32,
            data: secret.clone(),
        });
        let spool = backlog.spool.as_mut().unwrap();
        let mut bytes = Vec::new();
        spool.file.seek(SeekFrom::Start(0)).unwrap();
        spool.file.read_to_end(&mut bytes).unwrap();
        assert!(!bytes.is_empty());
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_slice()));
        assert!(
            std::fs::read_dir(dir.path()).unwrap().next().is_none(),
            "the spool file has no name"
        );
    }

    proptest! {
        /// Against a model (a plain list): whatever the sizes, limits,
        /// batches and acknowledgements, what is sent is exactly what was
        /// pushed (with markers for what was dropped), in order, once.
        #[test]
        fn backlog_matches_a_list(
            sizes in prop::collection::vec(0usize..80, 1..200),
            memory in 0usize..400,
            spool in prop_oneof![Just(0u64), 0u64..2000, Just(1u64 << 20)],
            steps in prop::collection::vec((1usize..6, any::<bool>()), 1..400),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let limits = Limits { memory_bytes: memory, spool_bytes: spool };
            let mut backlog = Backlog::new(0, limits, dir.path());
            let mut pushed = 0usize;
            let mut received: Vec<Event> = Vec::new();
            let mut steps = steps.into_iter().cycle();
            loop {
                let (n, push) = steps.next().unwrap();
                // Pushes run ahead of the sending (that is what fills the
                // backlog), except when there is nothing to send.
                while pushed < sizes.len() && (push || backlog.is_empty()) {
                    backlog.push(event(pushed as u64, sizes[pushed]));
                    pushed += 1;
                    if !push { break; }
                    if pushed.is_multiple_of(7) { break; }
                }
                if backlog.is_empty() && pushed == sizes.len() {
                    break;
                }
                let from = backlog.first();
                let batch = backlog.batch(from, n, 1 << 20);
                prop_assert!(!batch.is_empty(), "stuck with {} held", backlog.next() - from);
                received.extend(batch.iter().cloned());
                backlog.acknowledge(from + batch.len() as u64);
            }
            // Outputs in order, the markers standing for what was dropped.
            let outputs: Vec<&Event> = received
                .iter()
                .filter(|e| e.kind == EventKind::Output as i32)
                .collect();
            let mut expected = (0..sizes.len() as u64).map(|i| event(i, sizes[i as usize]));
            let mut dropped = 0u64;
            let mut it = outputs.iter().peekable();
            for e in expected.by_ref() {
                match it.peek() {
                    Some(got) if **got == &e => { it.next(); }
                    _ => dropped += 1,
                }
            }
            prop_assert!(it.next().is_none(), "an event out of order or twice");
            prop_assert_eq!(dropped, backlog.lost().events);
            if spool >= 1 << 20 {
                prop_assert_eq!(dropped, 0, "nothing is dropped with room to spare");
            }
        }
    }
}
