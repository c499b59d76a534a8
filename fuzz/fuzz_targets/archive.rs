//! The archive reader fed as an HTTP import feeds it: in chunks of any
//! size. Read whole or in the chunking the input picks, the frames and the
//! outcome are the same; every recording frame passes the row checks, and
//! every segment frame goes through what an import checks against its row.
//! Odd first byte: the file is built from frame descriptions, with CRCs and
//! the end frame right.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reel_log::archive::{ArchiveError, ArchiveReader, Frame};
use reel_log::check_segment;
use reel_log::validate::{check_archive_recording, check_row_matches_segment};
use reel_proto::v1::ArchiveRecording;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (sizes, body) = reel_fuzz::split(rest);
    let file = if mode & 1 == 0 {
        body.to_vec()
    } else {
        reel_fuzz::archive_from_frames(body)
    };
    let whole = read(&[&file[..]]);
    let chunked = read(&reel_fuzz::chunks(&file, sizes));
    assert_eq!(whole, chunked);
});

fn read(parts: &[&[u8]]) -> (Vec<Frame>, Option<ArchiveError>, bool) {
    let mut reader = ArchiveReader::with_max_segment_bytes(1 << 20);
    let mut frames = Vec::new();
    let mut rows: Option<(ArchiveRecording, usize)> = None;
    for part in parts {
        reader.push(part);
        loop {
            match reader.next_frame() {
                Ok(Some(frame)) => {
                    match &frame {
                        Frame::Recording(rec) => {
                            check_archive_recording(rec).expect("the reader checked the rows");
                            rows = Some(((**rec).clone(), 0));
                        }
                        Frame::Segment(bytes) => {
                            let (rec, i) = rows.as_mut().expect("a recording frame came first");
                            let row = rec.segments.get(*i).expect("no more segments than rows");
                            *i += 1;
                            if let Ok(checked) = check_segment(bytes) {
                                let _ =
                                    check_row_matches_segment(row, &checked, bytes.len() as u64);
                            }
                        }
                        Frame::End(_) => {
                            assert!(rows.as_ref().is_none_or(|(r, i)| r.segments.len() == *i));
                        }
                    }
                    frames.push(frame);
                }
                Ok(None) => break,
                Err(e) => {
                    assert_eq!(reader.next_frame(), Err(e.clone()));
                    return (frames, Some(e), reader.complete());
                }
            }
        }
    }
    (frames, None, reader.complete())
}
