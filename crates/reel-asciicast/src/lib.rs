//! asciicast, the asciinema recording format: reading v2 and v3, writing v2.
//!
//! - v2: a header line (`{"version": 2, "width": .., "height": ..}`), then
//!   one `[time, code, data]` line per event, `time` in seconds since the
//!   start.
//! - v3: a header line (`{"version": 3, "term": {"cols": .., "rows": ..}}`),
//!   then `[interval, code, data]` lines, `interval` in seconds since the
//!   previous event; lines starting with `#` are comments.
//!
//! Times are kept as whole microseconds (asciinema writes six decimals), so
//! a v2 file read and written again carries the same times; a v3 file comes
//! out as v2 with the same absolute times (intervals summed exactly, in
//! microseconds).

pub mod alis;
pub mod screen;

use std::fmt::Write as _;

use reel_proto::v1::{Event, EventKind, RecordingMetadata, Terminal};
use serde_json::{Map, Value};
use thiserror::Error;

pub const SOURCE_V2: &str = "asciicast-v2";
pub const SOURCE_V3: &str = "asciicast-v3";

/// Why a cast file cannot be read. Line numbers start at 1.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CastError {
    #[error("empty file: no asciicast header")]
    Empty,
    #[error("line {line}: bad asciicast header: {reason}")]
    Header { line: usize, reason: String },
    #[error("line {line}: malformed event: {reason}")]
    Event { line: usize, reason: String },
    #[error("line {line}: time goes backwards ({time}s after {previous}s)")]
    Backwards {
        line: usize,
        time: String,
        previous: String,
    },
}

/// A cast file read into Reel's terms.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedCast {
    /// 2 or 3.
    pub version: u8,
    /// Terminal, title, start time, and the header line verbatim.
    pub metadata: RecordingMetadata,
    /// Events with absolute times in microseconds.
    pub events: Vec<Event>,
}

/// Reads a whole asciicast v2 or v3 document.
pub fn parse(text: &str) -> Result<ParsedCast, CastError> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.trim().is_empty());
    let (header_line, header_text) = lines.next().ok_or(CastError::Empty)?;
    let bad_header = |reason: String| CastError::Header {
        line: header_line,
        reason,
    };
    let header: Map<String, Value> = match serde_json::from_str(header_text) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return Err(bad_header("not a JSON object".into())),
        Err(e) => return Err(bad_header(e.to_string())),
    };
    let version = match header.get("version").and_then(Value::as_u64) {
        Some(2) => 2,
        Some(3) => 3,
        Some(v) => {
            return Err(bad_header(format!(
                "unsupported version {v} (2 and 3 are supported)"
            )));
        }
        None => return Err(bad_header("missing \"version\"".into())),
    };
    let metadata = header_metadata(version, &header, header_text).map_err(bad_header)?;

    let mut events = Vec::new();
    let mut now_us: u64 = 0;
    let mut previous: Option<f64> = None;
    for (line, text) in lines {
        if version == 3 && text.trim_start().starts_with('#') {
            continue;
        }
        let bad = |reason: String| CastError::Event { line, reason };
        let (seconds, code, data) = event_fields(text).map_err(bad)?;
        let micros = seconds_to_micros(seconds)
            .ok_or_else(|| bad(format!("time {seconds} is not a valid offset")))?;
        let time_us = if version == 2 {
            if let Some(prev) = previous
                && seconds < prev
            {
                return Err(CastError::Backwards {
                    line,
                    time: seconds.to_string(),
                    previous: prev.to_string(),
                });
            }
            previous = Some(seconds);
            micros
        } else {
            now_us = now_us
                .checked_add(micros)
                .ok_or_else(|| bad("time overflows".into()))?;
            now_us
        };
        let kind = kind_of(&code).ok_or_else(|| bad(format!("unknown event code {code:?}")))?;
        events.push(Event {
            time_us,
            kind: kind as i32,
            data: data.into_bytes(),
        });
    }
    Ok(ParsedCast {
        version,
        metadata,
        events,
    })
}

fn header_metadata(
    version: u8,
    h: &Map<String, Value>,
    verbatim: &str,
) -> Result<RecordingMetadata, String> {
    let dim = |v: Option<&Value>, what: &str| -> Result<u32, String> {
        v.and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| format!("missing or invalid {what}"))
    };
    let terminal = if version == 2 {
        Terminal {
            cols: dim(h.get("width"), "\"width\"")?,
            rows: dim(h.get("height"), "\"height\"")?,
            term_type: h
                .get("env")
                .and_then(|e| e.get("TERM"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        }
    } else {
        let term = h.get("term").ok_or("missing \"term\"")?;
        Terminal {
            cols: dim(term.get("cols"), "\"term.cols\"")?,
            rows: dim(term.get("rows"), "\"term.rows\"")?,
            term_type: term
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        }
    };
    let started_at_us = match h.get("timestamp") {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_f64()
            .map(|s| (s * 1e6).round() as i64)
            .ok_or("invalid \"timestamp\"")?,
    };
    Ok(RecordingMetadata {
        started_at_us,
        terminal: Some(terminal),
        title: h
            .get("title")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        source_format: if version == 2 { SOURCE_V2 } else { SOURCE_V3 }.to_string(),
        source_header: verbatim.trim_end().to_string(),
        ..Default::default()
    })
}

fn event_fields(text: &str) -> Result<(f64, String, String), String> {
    let value: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let Value::Array(items) = value else {
        return Err("not a JSON array".into());
    };
    match <[Value; 3]>::try_from(items) {
        Ok([Value::Number(t), Value::String(code), Value::String(data)]) => {
            let t = t.as_f64().ok_or("time is not a number")?;
            Ok((t, code, data))
        }
        Ok(_) => Err("expected [time, code, data] with a number and two strings".into()),
        Err(items) => Err(format!("expected 3 elements, found {}", items.len())),
    }
}

fn seconds_to_micros(seconds: f64) -> Option<u64> {
    (seconds.is_finite() && (0.0..1e12).contains(&seconds)).then(|| (seconds * 1e6).round() as u64)
}

fn kind_of(code: &str) -> Option<EventKind> {
    Some(match code {
        "o" => EventKind::Output,
        "i" => EventKind::Input,
        "r" => EventKind::Resize,
        "m" => EventKind::Marker,
        "x" => EventKind::Exit,
        _ => return None,
    })
}

/// The asciicast code of an event kind.
pub fn code_of(kind: i32) -> &'static str {
    match EventKind::try_from(kind) {
        Ok(EventKind::Input) => "i",
        Ok(EventKind::Resize) => "r",
        Ok(EventKind::Marker) => "m",
        Ok(EventKind::Exit) => "x",
        _ => "o",
    }
}

/// Formats microseconds as seconds the way asciinema does (Python's shortest
/// float repr), e.g. `1.5`, `0.123456`, `2.0`, `5e-06`.
pub fn format_seconds(micros: u64) -> String {
    let seconds = micros as f64 / 1e6;
    if micros != 0 && micros < 100 {
        let s = format!("{seconds:e}");
        let (mantissa, exp) = s.split_once('e').expect("exponent form");
        let exp: i32 = exp.parse().expect("exponent");
        return format!(
            "{mantissa}e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        );
    }
    let mut s = seconds.to_string();
    if !s.contains('.') {
        s.push_str(".0");
    }
    s
}

/// True when `text` is one line holding one JSON object of version 2: only
/// such a header is given back verbatim, so a recorder's header can never
/// add lines (fake events) to what an auditor reads.
fn is_v2_header_line(text: &str) -> bool {
    !text.contains(['\n', '\r'])
        && serde_json::from_str::<Map<String, Value>>(text)
            .is_ok_and(|h| h.get("version").and_then(Value::as_u64) == Some(2))
}

/// The v2 header line (no newline) for a recording. A recording that came
/// from a v2 file gets its header back verbatim; one from a v3 file gets the
/// v2 equivalent; anything else a header made from its metadata.
pub fn v2_header(meta: &RecordingMetadata) -> String {
    if meta.source_format == SOURCE_V2 && is_v2_header_line(&meta.source_header) {
        return meta.source_header.clone();
    }
    let source: Map<String, Value> = if meta.source_format == SOURCE_V3 {
        serde_json::from_str(&meta.source_header).unwrap_or_default()
    } else {
        Map::new()
    };
    let term = meta.terminal.clone().unwrap_or_default();
    let mut fields: Vec<(&str, Value)> = vec![
        ("version", 2.into()),
        (
            "width",
            (if term.cols == 0 { 80 } else { term.cols }).into(),
        ),
        (
            "height",
            (if term.rows == 0 { 24 } else { term.rows }).into(),
        ),
    ];
    if meta.started_at_us != 0 {
        let ts = source
            .get("timestamp")
            .cloned()
            .unwrap_or_else(|| (meta.started_at_us / 1_000_000).into());
        fields.push(("timestamp", ts));
    }
    for key in ["idle_time_limit", "command"] {
        if let Some(v) = source.get(key) {
            fields.push((key, v.clone()));
        }
    }
    if !meta.title.is_empty() {
        fields.push(("title", meta.title.clone().into()));
    }
    let mut env = source
        .get("env")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if !term.term_type.is_empty() {
        env.insert("TERM".into(), term.term_type.into());
    }
    if !env.is_empty() {
        fields.push(("env", Value::Object(env)));
    }
    let mut out = String::from("{");
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{}: {}", Value::from(*k), python_style(v));
    }
    out.push('}');
    out
}

/// JSON with Python's default separators, as asciinema writes it.
fn python_style(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let parts: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}: {}", Value::from(k.as_str()), python_style(v)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(python_style).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

/// One v2 event line (no newline): `[time, "code", "data"]`. Bytes that are
/// not UTF-8 are replaced (asciicast data is text).
pub fn v2_event_line(event: &Event) -> String {
    let data = String::from_utf8_lossy(&event.data);
    format!(
        "[{}, \"{}\", {}]",
        format_seconds(event.time_us),
        code_of(event.kind),
        Value::from(data.as_ref())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const V2: &str = "{\"version\": 2, \"width\": 80, \"height\": 24, \"timestamp\": 1700000000, \"env\": {\"TERM\": \"xterm-256color\"}}\n\
[0.5, \"o\", \"$ \"]\n\
[1.234567, \"i\", \"l\"]\n\
[2.0, \"r\", \"100x30\"]\n\
[3600.000001, \"o\", \"\\u001b[0m\\r\\n\u{1F600}\"]\n";

    #[test]
    fn v2_reads_and_writes_back_identically() {
        let cast = parse(V2).unwrap();
        assert_eq!(cast.version, 2);
        let t = cast.metadata.terminal.as_ref().unwrap();
        assert_eq!(
            (t.cols, t.rows, t.term_type.as_str()),
            (80, 24, "xterm-256color")
        );
        assert_eq!(cast.metadata.started_at_us, 1_700_000_000_000_000);
        let times: Vec<u64> = cast.events.iter().map(|e| e.time_us).collect();
        assert_eq!(times, vec![500_000, 1_234_567, 2_000_000, 3_600_000_001]);
        let mut out = v2_header(&cast.metadata) + "\n";
        for e in &cast.events {
            out += &(v2_event_line(e) + "\n");
        }
        assert_eq!(out, V2);
    }

    #[test]
    fn a_header_that_is_not_one_v2_object_line_is_never_given_back_verbatim() {
        let injected = "{\"version\": 2, \"width\": 80, \"height\": 24}\n[0.1, \"o\", \"rm -rf / typed by nobody\"]";
        for header in [
            injected,
            "{\"version\": 2, \"width\": 80, \"height\": 24}\r[0.1, \"o\", \"x\"]",
            "{\"version\": 2} trailing",
            "[0.1, \"o\", \"x\"]",
            "{\"version\": 3}",
        ] {
            let meta = RecordingMetadata {
                source_format: SOURCE_V2.into(),
                source_header: header.into(),
                ..Default::default()
            };
            let line = v2_header(&meta);
            assert!(!line.contains(['\n', '\r']), "{line:?}");
            assert!(is_v2_header_line(&line), "{line:?}");
            assert_ne!(line, header);
        }
    }

    #[test]
    fn v3_intervals_become_absolute_times() {
        let v3 = "{\"version\": 3, \"term\": {\"cols\": 100, \"rows\": 40, \"type\": \"xterm\"}, \"timestamp\": 1700000000, \"idle_time_limit\": 2}\n\
# a comment\n\
[0.1, \"o\", \"a\"]\n\
[0.2, \"o\", \"b\"]\n\
[0.300001, \"x\", \"0\"]\n";
        let cast = parse(v3).unwrap();
        assert_eq!(cast.version, 3);
        let times: Vec<u64> = cast.events.iter().map(|e| e.time_us).collect();
        assert_eq!(times, vec![100_000, 300_000, 600_001]);
        assert_eq!(cast.events[2].kind, EventKind::Exit as i32);
        let header = v2_header(&cast.metadata);
        let h: Value = serde_json::from_str(&header).unwrap();
        assert_eq!(h["version"], 2);
        assert_eq!(h["width"], 100);
        assert_eq!(h["height"], 40);
        assert_eq!(h["idle_time_limit"], 2);
        assert_eq!(h["env"]["TERM"], "xterm");
    }

    #[test]
    fn bad_files_get_clear_errors_with_line_numbers() {
        let cases = [
            ("", "empty file"),
            ("not json\n", "line 1: bad asciicast header"),
            ("{\"version\": 1}\n", "unsupported version 1"),
            ("{\"version\": 2, \"height\": 3}\n", "\"width\""),
            (
                "{\"version\": 2, \"width\": 80, \"height\": 24}\n[1.0, \"o\", \"a\"]\n[0.5, \"o\", \"b\"]\n",
                "line 3: time goes backwards",
            ),
            (
                "{\"version\": 2, \"width\": 80, \"height\": 24}\n[1.0, \"o\", \"a\"]\n[2.0, \"o\", \"tr",
                "line 3: malformed event",
            ),
            (
                "{\"version\": 2, \"width\": 80, \"height\": 24}\n[1.0, \"q\", \"a\"]\n",
                "unknown event code",
            ),
            (
                "{\"version\": 2, \"width\": 80, \"height\": 24}\n[-1.0, \"o\", \"a\"]\n",
                "not a valid offset",
            ),
            (
                "{\"version\": 2, \"width\": 80, \"height\": 24}\n[1.0, \"o\"]\n",
                "expected 3 elements",
            ),
        ];
        for (text, want) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn seconds_format_like_asciinema() {
        assert_eq!(format_seconds(0), "0.0");
        assert_eq!(format_seconds(5), "5e-06");
        assert_eq!(format_seconds(12), "1.2e-05");
        assert_eq!(format_seconds(100), "0.0001");
        assert_eq!(format_seconds(2_000_000), "2.0");
        assert_eq!(format_seconds(123_456_789), "123.456789");
    }

    proptest! {
        #[test]
        fn written_v2_reads_back(raw in proptest::collection::vec((0u64..10_000_000, 1i32..6, ".{0,20}"), 0..30)) {
            let mut t = 0;
            let events: Vec<Event> = raw.into_iter().map(|(dt, kind, data)| {
                t += dt;
                Event { time_us: t, kind, data: data.into_bytes() }
            }).collect();
            let meta = RecordingMetadata { terminal: Some(Terminal { cols: 90, rows: 30, term_type: String::new() }), ..Default::default() };
            let mut text = v2_header(&meta) + "\n";
            for e in &events {
                text += &(v2_event_line(e) + "\n");
            }
            let back = parse(&text).unwrap();
            prop_assert_eq!(back.events, events);
        }

        #[test]
        fn arbitrary_text_never_panics(text in ".{0,200}") {
            let _ = parse(&text);
        }
    }
}
