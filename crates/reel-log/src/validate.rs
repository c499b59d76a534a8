//! Checks of decoded messages that come from outside the process: the
//! catalog rows of an archived recording (before anything of it is stored)
//! and the journal entries read back at recovery. Each failed check names
//! the field; every sum a later reader makes from the checked fields (event
//! ranges, byte ranges of blocks within an object) is known not to overflow.

use prost::Message;
use reel_proto::v1::{
    ArchiveRecording, Event, EventList, JournalEntry, RecordingState, SegmentRow,
};
use thiserror::Error;

use crate::error::InvalidField;
use crate::limits::{
    MAX_BLOCKS_PER_RECORDING, MAX_EVENTS_PER_RECORD, MAX_SEGMENT_BYTES, MAX_SEGMENTS_PER_RECORDING,
    MIN_EVENT_BYTES,
};
use crate::sealed::RecordingKey;
use crate::segment::{
    CheckedSegment, MAX_HEADER_LEN, PREFIX_LEN, SIGNATURE_LEN, check_block_layout,
};
use crate::wire;

/// Checks one segment's catalog row on its own: its size within what Reel
/// writes, its content and each of its blocks inside the object, its event
/// range and its place in a combined object without overflow.
pub fn check_segment_row(row: &SegmentRow) -> Result<(), InvalidField> {
    let bad = |field: &str, problem: String| Err(InvalidField::new(field, problem));
    if row.size > MAX_SEGMENT_BYTES {
        return bad(
            "size",
            format!(
                "{} bytes exceeds the largest segment ({MAX_SEGMENT_BYTES})",
                row.size
            ),
        );
    }
    let offsets =
        (PREFIX_LEN + 4) as u64..=(PREFIX_LEN + MAX_HEADER_LEN + 4 + SIGNATURE_LEN) as u64;
    if !offsets.contains(&row.content_offset) || row.content_offset > row.size {
        return bad(
            "content_offset",
            format!(
                "{} is not where content can start in an object of {} bytes",
                row.content_offset, row.size
            ),
        );
    }
    let content_len = row.size - row.content_offset;
    if row.sha256.len() != 32 {
        return bad("sha256", format!("{} bytes, not 32", row.sha256.len()));
    }
    if row.first_event_index.checked_add(row.event_count).is_none() {
        return bad(
            "event_count",
            format!(
                "{} events from index {} overflow",
                row.event_count, row.first_event_index
            ),
        );
    }
    if row.event_count > content_len / MIN_EVENT_BYTES {
        return bad(
            "event_count",
            format!(
                "{} events cannot fit in {content_len} content bytes",
                row.event_count
            ),
        );
    }
    if row.start_time_us > row.end_time_us {
        return bad(
            "start_time_us",
            format!(
                "{} is after end_time_us {}",
                row.start_time_us, row.end_time_us
            ),
        );
    }
    if row.data_bytes > content_len {
        return bad(
            "data_bytes",
            format!(
                "{} data bytes in {content_len} content bytes",
                row.data_bytes
            ),
        );
    }
    if let Some(offset) = row.combined_offset
        && offset.checked_add(row.size).is_none()
    {
        return bad(
            "combined_offset",
            format!("{offset} + size {} overflows", row.size),
        );
    }
    check_block_layout(
        &row.blocks,
        content_len,
        row.first_event_index,
        row.event_count,
        row.start_time_us,
        row.end_time_us,
    )
}

/// Checks that a segment object (checked whole by
/// [`check_segment`](crate::check_segment)) of `object_len` bytes is the one
/// `row` describes, field by field.
pub fn check_row_matches_segment(
    row: &SegmentRow,
    segment: &CheckedSegment,
    object_len: u64,
) -> Result<(), InvalidField> {
    let h = &segment.header;
    let pairs = [
        ("sequence", row.sequence, h.sequence),
        (
            "first_event_index",
            row.first_event_index,
            h.first_event_index,
        ),
        ("event_count", row.event_count, h.event_count),
        ("start_time_us", row.start_time_us, h.start_time_us),
        ("end_time_us", row.end_time_us, h.end_time_us),
        ("size", row.size, object_len),
        ("content_offset", row.content_offset, segment.content_offset),
        ("data_bytes", row.data_bytes, segment.data_bytes),
        ("final", u64::from(row.r#final), u64::from(h.r#final)),
    ];
    for (field, in_row, in_object) in pairs {
        if in_row != in_object {
            return Err(InvalidField::new(
                field,
                format!("{in_row} in the row, {in_object} in the segment object"),
            ));
        }
    }
    if row.blocks.len() != h.blocks.len() {
        return Err(InvalidField::new(
            "blocks",
            format!(
                "{} in the row, {} in the segment object",
                row.blocks.len(),
                h.blocks.len()
            ),
        ));
    }
    if let Some(i) = row.blocks.iter().zip(&h.blocks).position(|(a, b)| a != b) {
        return Err(InvalidField::new(
            format!("blocks[{i}]"),
            "differs from the segment object's header",
        ));
    }
    Ok(())
}

/// Checks an archived recording's rows, before anything of it is stored:
/// a closed recording with a valid id, each segment row valid on its own,
/// segments in order with event ranges that do not overlap, and a
/// recording row whose counts are those of its segments.
pub fn check_archive_recording(rec: &ArchiveRecording) -> Result<(), InvalidField> {
    let row = rec
        .row
        .as_ref()
        .ok_or_else(|| InvalidField::new("row", "missing"))?;
    if row.id.len() != 16 {
        return Err(InvalidField::new(
            "row.id",
            format!("{} bytes, not 16", row.id.len()),
        ));
    }
    if row.state != RecordingState::Closed as i32 {
        return Err(InvalidField::new(
            "row.state",
            format!("{}: only closed recordings are archived", row.state),
        ));
    }
    if rec.segments.len() as u64 > MAX_SEGMENTS_PER_RECORDING {
        return Err(InvalidField::new(
            "segments",
            format!(
                "{} rows, more than the {MAX_SEGMENTS_PER_RECORDING} a recording may have",
                rec.segments.len()
            ),
        ));
    }
    if row.segment_count != rec.segments.len() as u64 {
        return Err(InvalidField::new(
            "row.segment_count",
            format!(
                "{} but the archive holds {} segment rows",
                row.segment_count,
                rec.segments.len()
            ),
        ));
    }
    let mut events = 0u64;
    let mut blocks = 0u64;
    let mut end: Option<u64> = None;
    let mut prev: Option<u64> = None;
    for (i, seg) in rec.segments.iter().enumerate() {
        let within = format!("segments[{i}]");
        check_segment_row(seg).map_err(|e| e.within(&within))?;
        if prev.is_some_and(|p| seg.sequence <= p) {
            return Err(InvalidField::new(
                format!("{within}.sequence"),
                format!("{} does not follow {}", seg.sequence, prev.unwrap_or(0)),
            ));
        }
        if end.is_some_and(|e| seg.first_event_index < e) {
            return Err(InvalidField::new(
                format!("{within}.first_event_index"),
                format!(
                    "{} overlaps the segment before (its events end at {})",
                    seg.first_event_index,
                    end.unwrap_or(0)
                ),
            ));
        }
        prev = Some(seg.sequence);
        // check_segment_row checked the sum.
        end = Some(seg.first_event_index + seg.event_count);
        events = events.checked_add(seg.event_count).ok_or_else(|| {
            InvalidField::new(format!("{within}.event_count"), "the sum overflows")
        })?;
        blocks += seg.blocks.len() as u64;
        if blocks > MAX_BLOCKS_PER_RECORDING {
            return Err(InvalidField::new(
                format!("{within}.blocks"),
                format!("more than {MAX_BLOCKS_PER_RECORDING} blocks in one recording"),
            ));
        }
    }
    if row.event_count != events {
        return Err(InvalidField::new(
            "row.event_count",
            format!("{} but its segments hold {events}", row.event_count),
        ));
    }
    if let Some(end) = end
        && row.next_event_index != end
    {
        return Err(InvalidField::new(
            "row.next_event_index",
            format!(
                "{} but its last segment ends at {end}",
                row.next_event_index
            ),
        ));
    }
    Ok(())
}

/// Why a journal record's payload is not an entry Reel wrote.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EntryError {
    #[error("journal entry is not well-formed protobuf: {0}")]
    Wire(String),
    #[error("journal entry holds {count} events, more than the {max} a record can")]
    TooManyEvents { count: u64, max: u64 },
    #[error("journal entry does not decode: {0}")]
    Decode(String),
    #[error("journal entry field {0}")]
    Invalid(InvalidField),
    #[error("journal entry is sealed and its recording's data key was not given")]
    KeyNeeded,
    #[error("sealed journal entry: {0}")]
    Sealed(&'static str),
}

/// Decodes a journal record's payload and checks it: a 16-byte recording
/// id, an event range that does not overflow (with a count and data size
/// that fit the engine's 32-bit chunk fields), times that never go back;
/// for a sealed record, what it states in the clear (its events are
/// checked when [`open_entry`] opens them).
pub fn decode_journal_entry(payload: &[u8]) -> Result<JournalEntry, EntryError> {
    let count = wire::count(payload, 3, false).map_err(|e| EntryError::Wire(e.to_string()))?;
    if count as u64 > MAX_EVENTS_PER_RECORD {
        return Err(EntryError::TooManyEvents {
            count: count as u64,
            max: MAX_EVENTS_PER_RECORD,
        });
    }
    let entry = JournalEntry::decode(payload).map_err(|e| EntryError::Decode(e.to_string()))?;
    let bad = |field: String, problem: String| {
        Err(EntryError::Invalid(InvalidField::new(field, problem)))
    };
    if entry.recording_id.len() != 16 {
        return bad(
            "recording_id".into(),
            format!("{} bytes, not 16", entry.recording_id.len()),
        );
    }
    if !entry.sealed_events.is_empty() {
        if !entry.events.is_empty() {
            return bad(
                "events".into(),
                "events in the clear beside sealed ones".into(),
            );
        }
        if entry.event_count == 0 || u64::from(entry.event_count) > MAX_EVENTS_PER_RECORD {
            return bad(
                "event_count".into(),
                format!("{} events in a sealed record", entry.event_count),
            );
        }
        if entry.sealed_events.len() < crate::sealed::SEAL_OVERHEAD {
            return bad(
                "sealed_events".into(),
                format!("{} bytes cannot be a sealed box", entry.sealed_events.len()),
            );
        }
    } else if entry.event_count != 0 && entry.event_count as usize != entry.events.len() {
        return bad(
            "event_count".into(),
            format!("{} for {} events", entry.event_count, entry.events.len()),
        );
    }
    let summary = entry_summary(&entry);
    if entry
        .first_index
        .checked_add(u64::from(summary.count))
        .is_none()
    {
        return bad(
            "first_index".into(),
            format!("{} + {} events overflows", entry.first_index, summary.count),
        );
    }
    if summary.data_bytes > u64::from(u32::MAX) {
        return bad(
            "events".into(),
            format!("{} bytes of data", summary.data_bytes),
        );
    }
    check_event_times(&entry.events)?;
    Ok(entry)
}

fn check_event_times(events: &[Event]) -> Result<(), EntryError> {
    if let Some(i) = events.windows(2).position(|w| w[1].time_us < w[0].time_us) {
        return Err(EntryError::Invalid(InvalidField::new(
            format!("events[{}].time_us", i + 1),
            format!(
                "{} goes back from {}",
                events[i + 1].time_us,
                events[i].time_us
            ),
        )));
    }
    Ok(())
}

/// What a journal record holds, as recovery needs it: readable without the
/// recording's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntrySummary {
    pub count: u32,
    pub data_bytes: u64,
    pub last_time_us: u64,
}

/// The summary of a record [`decode_journal_entry`] accepted.
pub fn entry_summary(entry: &JournalEntry) -> EntrySummary {
    if !entry.sealed_events.is_empty() {
        return EntrySummary {
            count: entry.event_count,
            data_bytes: entry.data_bytes,
            last_time_us: entry.last_time_us,
        };
    }
    EntrySummary {
        count: entry.events.len() as u32,
        data_bytes: entry.events.iter().map(|e| e.data.len() as u64).sum(),
        last_time_us: entry.events.last().map_or(0, |e| e.time_us),
    }
}

/// The bytes of the journal record (an encoded [`JournalEntry`]) of
/// `events` (indices from `first_index`) of the recording `key` opens:
/// sealed under it, with the summary in the clear; in the clear without a
/// key.
pub fn seal_entry(
    recording_id: [u8; 16],
    key: Option<&RecordingKey>,
    first_index: u64,
    events: Vec<Event>,
) -> Result<Vec<u8>, reel_keys::KeyError> {
    let Some(key) = key else {
        return Ok(JournalEntry {
            recording_id: recording_id.to_vec(),
            first_index,
            events,
            ..Default::default()
        }
        .encode_to_vec());
    };
    let count = events.len() as u32;
    let summary = JournalEntry {
        recording_id: recording_id.to_vec(),
        first_index,
        events: Vec::new(),
        event_count: count,
        data_bytes: events.iter().map(|e| e.data.len() as u64).sum(),
        last_time_us: events.last().map_or(0, |e| e.time_us),
        sealed_events: Vec::new(),
    };
    // The record is written as prost would encode the whole entry (its
    // last field, `sealed_events`, after the others), but the events are
    // encoded straight into the box's place and sealed there: one buffer
    // per event, as in the clear, instead of three.
    let plain = EventList { events };
    let plain_len = plain.encoded_len();
    let box_len = plain_len + crate::sealed::SEAL_OVERHEAD;
    let mut out = Vec::with_capacity(
        summary.encoded_len() + 1 + prost::encoding::encoded_len_varint(box_len as u64) + box_len,
    );
    summary.encode(&mut out).expect("a Vec grows");
    prost::encoding::encode_key(7, prost::encoding::WireType::LengthDelimited, &mut out);
    prost::encoding::encode_varint(box_len as u64, &mut out);
    key.seal_record_appending(first_index, count, &mut out, plain_len, |out| {
        plain.encode(out).expect("a Vec grows")
    })?;
    Ok(out)
}

/// The events of a record [`decode_journal_entry`] accepted: opened with
/// `key` if sealed, and checked against what the record states.
pub fn open_entry(
    entry: JournalEntry,
    key: Option<&RecordingKey>,
) -> Result<Vec<Event>, EntryError> {
    if entry.sealed_events.is_empty() {
        return Ok(entry.events);
    }
    let key = key.ok_or(EntryError::KeyNeeded)?;
    if key.recording_id()[..] != entry.recording_id[..] {
        return Err(EntryError::Sealed("the key given is another recording's"));
    }
    let plain = zeroize::Zeroizing::new(
        key.open_record(entry.first_index, entry.event_count, &entry.sealed_events)
            .ok_or(EntryError::Sealed(
                "its events do not open with the recording's data key",
            ))?,
    );
    // Counted on the wire before decoding: an empty event is 2 bytes there.
    let count = wire::count(&plain, 1, false).map_err(|e| EntryError::Wire(e.to_string()))?;
    if count as u64 != u64::from(entry.event_count) {
        return Err(EntryError::Sealed(
            "its sealed events differ from what it states in the clear",
        ));
    }
    let list = EventList::decode(&plain[..]).map_err(|e| EntryError::Decode(e.to_string()))?;
    let opened = JournalEntry {
        events: list.events,
        ..JournalEntry::default()
    };
    let summary = entry_summary(&opened);
    if summary.count != entry.event_count
        || summary.data_bytes != entry.data_bytes
        || summary.last_time_us != entry.last_time_us
    {
        return Err(EntryError::Sealed(
            "its sealed events differ from what it states in the clear",
        ));
    }
    check_event_times(&opened.events)?;
    Ok(opened.events)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::segment::{SegmentSpec, check_segment, encode_segment};
    use reel_proto::v1::{ContentBlock, Event, Location, RecordingMetadata, RecordingRow};

    fn events(n: u64, size: usize) -> Vec<Event> {
        (0..n)
            .map(|i| Event {
                time_us: i * 10,
                kind: 1,
                data: vec![b'a' + (i % 26) as u8; size],
            })
            .collect()
    }

    /// A closed recording of two segments, as the catalog and an archive
    /// hold it, with the segment objects.
    pub(crate) fn archived() -> (ArchiveRecording, Vec<Vec<u8>>) {
        archived_by(None)
    }

    /// A closed recording of two segments, signed by `keys` if given.
    pub(crate) fn archived_by(
        keys: Option<&dyn reel_keys::KeyProvider>,
    ) -> (ArchiveRecording, Vec<Vec<u8>>) {
        let mut segments = Vec::new();
        let mut objects = Vec::new();
        let mut prev = None;
        for seq in 0..2u64 {
            let evs = events(40, 4000);
            let spec = SegmentSpec {
                recording_id: [7; 16],
                sequence: seq,
                first_event_index: seq * 40,
                prev_hash: prev,
                metadata: RecordingMetadata::default(),
                is_final: seq == 1,
                duration_us: 0,
                sealed_at_us: 1,
            };
            let enc = match keys {
                Some(k) => crate::segment::encode_signed_segment(spec, &evs, k),
                None => encode_segment(spec, &evs),
            };
            prev = Some(enc.sha256);
            segments.push(SegmentRow {
                sequence: seq,
                first_event_index: enc.header.first_event_index,
                event_count: enc.header.event_count,
                start_time_us: enc.header.start_time_us,
                end_time_us: enc.header.end_time_us,
                data_bytes: 40 * 4000,
                size: enc.bytes.len() as u64,
                sha256: enc.sha256.to_vec(),
                locations: vec![Location::Primary as i32],
                r#final: enc.header.r#final,
                content_offset: enc.content_offset,
                blocks: enc.header.blocks.clone(),
                ..Default::default()
            });
            objects.push(enc.bytes);
        }
        let row = RecordingRow {
            id: vec![7; 16],
            state: RecordingState::Closed as i32,
            event_count: 80,
            segment_count: 2,
            next_event_index: 80,
            ..Default::default()
        };
        (
            ArchiveRecording {
                row: Some(row),
                segments,
            },
            objects,
        )
    }

    #[test]
    fn rows_reel_writes_pass_and_match_their_objects() {
        let (rec, objects) = archived();
        assert!(rec.segments[0].blocks.len() > 1, "several blocks");
        check_archive_recording(&rec).unwrap();
        for (row, bytes) in rec.segments.iter().zip(&objects) {
            let checked = check_segment(bytes).unwrap();
            check_row_matches_segment(row, &checked, bytes.len() as u64).unwrap();
        }
    }

    #[test]
    fn rows_that_would_overflow_or_allocate_are_refused_by_field() {
        type Tamper = fn(&mut ArchiveRecording);
        let cases: Vec<(&str, Tamper)> = vec![
            ("segments[1].blocks[0].len", |r| {
                r.segments[1].blocks[0].len = u64::MAX - 3
            }),
            ("segments[0].content_offset", |r| {
                r.segments[0].content_offset = u64::MAX - 1
            }),
            ("segments[0].size", |r| r.segments[0].size = 1 << 40),
            ("segments[1].event_count", |r| {
                r.segments[1].first_event_index = u64::MAX - 1
            }),
            ("segments[0].combined_offset", |r| {
                r.segments[0].combined_offset = Some(u64::MAX - 10)
            }),
            ("segments[0].blocks[1].offset", |r| {
                r.segments[0].blocks[1].offset += 1
            }),
            ("segments[0].blocks", |r| {
                r.segments[0].blocks.push(ContentBlock::default())
            }),
            ("segments[1].sequence", |r| r.segments[1].sequence = 0),
            ("segments[1].first_event_index", |r| {
                r.segments[1].first_event_index -= 30;
                for b in &mut r.segments[1].blocks {
                    b.first_event_index -= 30;
                }
            }),
            ("row.segment_count", |r| {
                r.row.as_mut().unwrap().segment_count = 3
            }),
            ("row.event_count", |r| {
                r.row.as_mut().unwrap().event_count = 3
            }),
            ("row.state", |r| {
                r.row.as_mut().unwrap().state = RecordingState::Open as i32
            }),
            ("row", |r| r.row = None),
        ];
        for (field, tamper) in cases {
            let (mut rec, _) = archived();
            tamper(&mut rec);
            let err = check_archive_recording(&rec).unwrap_err();
            assert_eq!(err.field, field, "{err}");
        }
    }

    #[test]
    fn a_row_that_is_valid_alone_but_not_its_object_is_refused() {
        let (mut rec, objects) = archived();
        rec.segments[0].blocks[0].crc32c ^= 1;
        let checked = check_segment(&objects[0]).unwrap();
        let err = check_row_matches_segment(&rec.segments[0], &checked, objects[0].len() as u64)
            .unwrap_err();
        assert_eq!(err.field, "blocks[0]");
        let err = check_row_matches_segment(&rec.segments[1], &checked, objects[0].len() as u64)
            .unwrap_err();
        assert_eq!(err.field, "sequence");
    }

    #[test]
    fn journal_entries_are_checked() {
        let good = JournalEntry {
            recording_id: vec![1; 16],
            first_index: 5,
            events: events(3, 2),
            ..Default::default()
        };
        assert_eq!(decode_journal_entry(&good.encode_to_vec()).unwrap(), good);
        let mut overflow = good.clone();
        overflow.first_index = u64::MAX - 1;
        let err = decode_journal_entry(&overflow.encode_to_vec()).unwrap_err();
        assert!(
            matches!(&err, EntryError::Invalid(f) if f.field == "first_index"),
            "{err}"
        );
        let mut backwards = good.clone();
        backwards.events[2].time_us = 0;
        let err = decode_journal_entry(&backwards.encode_to_vec()).unwrap_err();
        assert!(
            matches!(&err, EntryError::Invalid(f) if f.field == "events[2].time_us"),
            "{err}"
        );
        let mut short_id = good.clone();
        short_id.recording_id.pop();
        assert!(decode_journal_entry(&short_id.encode_to_vec()).is_err());
        assert!(decode_journal_entry(&[0x1a, 0x05, 0x00]).is_err());
    }

    fn key(id: [u8; 16]) -> RecordingKey {
        RecordingKey::new(id, reel_keys::DataKey::generate().unwrap())
    }

    #[test]
    fn sealed_entries_hide_their_events_and_open_only_with_their_key() {
        let id = [7u8; 16];
        let k = key(id);
        let mut evs = events(4, 3);
        evs[2].data = b"hunter2-secret".to_vec();
        let bytes = seal_entry(id, Some(&k), 10, evs.clone()).unwrap();
        assert!(
            !bytes.windows(14).any(|w| w == b"hunter2-secret"),
            "the record's bytes hold the plaintext"
        );
        let decoded = decode_journal_entry(&bytes).unwrap();
        assert_eq!(
            decoded.encode_to_vec(),
            bytes,
            "written as prost encodes the entry"
        );
        assert_eq!(
            entry_summary(&decoded),
            EntrySummary {
                count: 4,
                data_bytes: evs.iter().map(|e| e.data.len() as u64).sum(),
                last_time_us: evs[3].time_us,
            }
        );
        assert_eq!(open_entry(decoded.clone(), Some(&k)).unwrap(), evs);
        assert_eq!(
            open_entry(decoded.clone(), None),
            Err(EntryError::KeyNeeded)
        );
        // Another recording's key, or the same key under another id.
        assert!(open_entry(decoded.clone(), Some(&key(id))).is_err());
        assert!(open_entry(decoded.clone(), Some(&key([8; 16]))).is_err());
        // What the record states in the clear is bound to the box.
        let mut moved = decoded.clone();
        moved.first_index = 11;
        assert!(open_entry(moved, Some(&k)).is_err());
        let mut lied = decoded.clone();
        lied.data_bytes += 1;
        assert!(open_entry(lied, Some(&k)).is_err());
        let mut flipped = decoded;
        flipped.sealed_events[30] ^= 1;
        assert!(open_entry(flipped, Some(&k)).is_err());
        // Without a key, the entry is written in the clear as before.
        let plain = decode_journal_entry(&seal_entry(id, None, 10, evs.clone()).unwrap()).unwrap();
        assert_eq!(plain.events, evs);
        assert!(plain.sealed_events.is_empty());
    }

    #[test]
    fn sealed_entries_that_contradict_themselves_are_refused() {
        let id = [7u8; 16];
        let k = key(id);
        let entry =
            decode_journal_entry(&seal_entry(id, Some(&k), 0, events(2, 1)).unwrap()).unwrap();
        let mut both = entry.clone();
        both.events = events(1, 1);
        assert!(decode_journal_entry(&both.encode_to_vec()).is_err());
        let mut none = entry.clone();
        none.event_count = 0;
        assert!(decode_journal_entry(&none.encode_to_vec()).is_err());
        let mut short = entry;
        short.sealed_events.truncate(10);
        assert!(decode_journal_entry(&short.encode_to_vec()).is_err());
    }
}
