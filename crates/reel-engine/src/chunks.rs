//! Where an open recording's unsealed events sit in the journal: one
//! [`Chunk`] per durable journal record, in event order, until a seal
//! takes them.
//!
//! A recorder at a terminal's pace sends about one event a message, so a
//! recording holds one chunk an event until its segment is sealed (a
//! minute at most by default: some 600 at 10 events/s), and ten thousand
//! open recordings hold theirs at once. [`Chunks`] keeps each in 20 bytes
//! (the event index follows from the counts before it) and grows by a
//! quarter at a time rather than doubling: at 600 chunks about 15 KiB a
//! recording, where a `VecDeque<Chunk>` took 32 KiB.

use std::collections::VecDeque;

use reel_log::Position;

/// One durable journal record of a recording's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Chunk {
    pub file: u32,
    pub offset: u32,
    pub len: u32,
    pub count: u32,
    pub data_bytes: u32,
    pub first_index: u64,
}

impl Chunk {
    pub(crate) fn new(pos: Position, first_index: u64, count: u32, data_bytes: u32) -> Chunk {
        Chunk {
            file: u32::try_from(pos.file).expect("journal file ids fit in u32"),
            offset: u32::try_from(pos.offset).expect("journal files stay under 4 GiB"),
            len: pos.len,
            count,
            data_bytes,
            first_index,
        }
    }

    pub(crate) fn position(&self) -> Position {
        Position {
            file: self.file as u64,
            offset: self.offset as u64,
            len: self.len,
        }
    }

    pub(crate) fn end(&self) -> u64 {
        self.first_index + self.count as u64
    }
}

/// A chunk without its first index; `len` 0 marks a gap of `count` events
/// that no record holds (events recovery found lost), never first or last.
#[derive(Debug, Clone, Copy)]
struct Entry {
    file: u32,
    offset: u32,
    len: u32,
    count: u32,
    data_bytes: u32,
}

impl Entry {
    fn is_gap(&self) -> bool {
        self.len == 0
    }
}

/// A recording's unsealed chunks, in order; each chunk starts where the one
/// before it ends, or later (a gap).
#[derive(Debug, Default)]
pub(crate) struct Chunks {
    entries: VecDeque<Entry>,
    /// The first index of the front chunk (of the next one pushed, when empty).
    start: u64,
    /// The index after the back chunk.
    end: u64,
    /// Chunks, gaps not counted.
    len: usize,
}

impl Chunks {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `c`, which must start at or after the back chunk's end.
    pub(crate) fn push_back(&mut self, c: Chunk) {
        assert!(c.len > 0, "a journal record is never empty");
        if self.entries.is_empty() {
            self.start = c.first_index;
        } else {
            assert!(
                c.first_index >= self.end,
                "chunk at event {} pushed behind the end {}",
                c.first_index,
                self.end
            );
            let mut gap = c.first_index - self.end;
            while gap > 0 {
                let count = gap.min(u32::MAX as u64) as u32;
                self.push_entry(Entry {
                    file: 0,
                    offset: 0,
                    len: 0,
                    count,
                    data_bytes: 0,
                });
                gap -= count as u64;
            }
        }
        self.push_entry(Entry {
            file: c.file,
            offset: c.offset,
            len: c.len,
            count: c.count,
            data_bytes: c.data_bytes,
        });
        self.end = c.end();
        self.len += 1;
    }

    fn push_entry(&mut self, e: Entry) {
        let n = self.entries.len();
        if n == self.entries.capacity() {
            // A quarter more, not twice: what is reserved and unused is
            // held by every open recording.
            self.entries.reserve_exact((n / 4).max(8));
        }
        self.entries.push_back(e);
    }

    pub(crate) fn front(&self) -> Option<Chunk> {
        self.entries.front().map(|e| chunk(e, self.start))
    }

    pub(crate) fn back(&self) -> Option<Chunk> {
        self.entries
            .back()
            .map(|e| chunk(e, self.end - e.count as u64))
    }

    pub(crate) fn pop_front(&mut self) -> Option<Chunk> {
        let e = self.entries.pop_front()?;
        let c = chunk(&e, self.start);
        self.start = c.end();
        while let Some(gap) = self.entries.front().filter(|e| e.is_gap()) {
            self.start += gap.count as u64;
            self.entries.pop_front();
        }
        self.len -= 1;
        Some(c)
    }

    pub(crate) fn pop_back(&mut self) -> Option<Chunk> {
        let e = self.entries.pop_back()?;
        self.end -= e.count as u64;
        let c = chunk(&e, self.end);
        while let Some(gap) = self.entries.back().filter(|e| e.is_gap()) {
            self.end -= gap.count as u64;
            self.entries.pop_back();
        }
        if self.entries.is_empty() {
            self.start = self.end;
        }
        self.len -= 1;
        Some(c)
    }

    pub(crate) fn clear(&mut self) {
        self.entries = VecDeque::new();
        self.start = self.end;
        self.len = 0;
    }

    /// Gives back memory a seal freed, keeping room for as many chunks
    /// again as are left and a quarter.
    pub(crate) fn shrink(&mut self) {
        let keep = self.entries.len() + (self.entries.len() / 4).max(8);
        if self.entries.capacity() > keep * 2 {
            self.entries.shrink_to(keep);
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = Chunk> + '_ {
        let mut index = self.start;
        self.entries.iter().filter_map(move |e| {
            let first = index;
            index += e.count as u64;
            (!e.is_gap()).then(|| chunk(e, first))
        })
    }
}

fn chunk(e: &Entry, first_index: u64) -> Chunk {
    Chunk {
        file: e.file,
        offset: e.offset,
        len: e.len,
        count: e.count,
        data_bytes: e.data_bytes,
        first_index,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use proptest::prelude::*;

    use super::{Chunk, Chunks};

    #[derive(Debug, Clone)]
    enum Op {
        /// Push a chunk of `count` events, `gap` events after the end.
        Push {
            gap: u64,
            count: u32,
        },
        PopFront,
        PopBack,
        Shrink,
        Clear,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (prop_oneof![4 => Just(0u64), 1 => 1u64..1000, 1 => Just(u32::MAX as u64 + 5)], 1u32..50)
                .prop_map(|(gap, count)| Op::Push { gap, count }),
            2 => Just(Op::PopFront),
            1 => Just(Op::PopBack),
            1 => Just(Op::Shrink),
            1 => Just(Op::Clear),
        ]
    }

    proptest! {
        /// Whatever is pushed and popped, the compact list reads back as the
        /// plain list of chunks it replaces: same chunks, same indices.
        #[test]
        fn reads_back_as_a_plain_list(ops in proptest::collection::vec(op(), 1..300)) {
            let mut model: VecDeque<Chunk> = VecDeque::new();
            let mut chunks = Chunks::default();
            let mut end = 0u64;
            for (i, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Push { gap, count } => {
                        let c = Chunk {
                            file: i as u32 % 3,
                            offset: i as u32 * 100,
                            len: 40 + i as u32,
                            count,
                            data_bytes: count * 7,
                            first_index: end + gap,
                        };
                        end = c.end();
                        model.push_back(c);
                        chunks.push_back(c);
                    }
                    Op::PopFront => prop_assert_eq!(chunks.pop_front(), model.pop_front()),
                    Op::PopBack => {
                        prop_assert_eq!(chunks.pop_back(), model.pop_back());
                        end = model.back().map_or(end, |c| c.end());
                    }
                    Op::Shrink => chunks.shrink(),
                    Op::Clear => {
                        chunks.clear();
                        model.clear();
                    }
                }
                prop_assert_eq!(chunks.len(), model.len());
                prop_assert_eq!(chunks.is_empty(), model.is_empty());
                prop_assert_eq!(chunks.front(), model.front().copied());
                prop_assert_eq!(chunks.back(), model.back().copied());
                prop_assert!(chunks.iter().eq(model.iter().copied()));
            }
        }
    }

    #[test]
    fn a_minute_of_one_event_batches_takes_well_under_a_plain_list() {
        let mut chunks = Chunks::default();
        for i in 0..600u64 {
            chunks.push_back(Chunk {
                file: 1,
                offset: i as u32 * 200,
                len: 190,
                count: 1,
                data_bytes: 128,
                first_index: i,
            });
        }
        let plain = 600usize.next_power_of_two() * std::mem::size_of::<Chunk>();
        let compact = chunks.entries.capacity() * std::mem::size_of::<super::Entry>();
        assert!(
            compact * 2 <= plain,
            "600 chunks take {compact} bytes, a plain list {plain}"
        );
        for _ in 0..590 {
            chunks.pop_front();
        }
        chunks.shrink();
        assert!(
            chunks.entries.capacity() < 64,
            "a seal's chunks are given back"
        );
        assert_eq!(chunks.front().map(|c| c.first_index), Some(590));
    }
}
