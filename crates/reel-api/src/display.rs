//! How people read times, durations and sizes, the same in `reel`'s output
//! and reeld's web pages.

use std::time::{Duration, UNIX_EPOCH};

/// A wall-clock time (microseconds since the epoch), RFC 3339 to the
/// second; `-` when unknown.
pub fn time(us: i64) -> String {
    if us <= 0 {
        return "-".into();
    }
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_micros(us as u64)).to_string()
}

/// A length of time: `4.2s`, `3m07s`, `2h00m05s`.
pub fn duration(us: u64) -> String {
    let s = us / 1_000_000;
    match s {
        0..60 => format!("{:.1}s", us as f64 / 1e6),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m{:02}s", s / 3600, (s / 60) % 60, s % 60),
    }
}

/// A size in bytes: `512 B`, `1.5 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}
