//! Times as people type them, the same in the CLI and the HTTP API:
//! offsets within a recording (`90`, `1:30`, `00:10:00.250`) and instants
//! (`2026-11-01`, `2026-11-01T10:00:00Z`, or `7d` for seven days ago).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Parses an instant: an RFC 3339 date-time (the time and zone may be left
/// out: UTC midnight), or a duration (`90m`, `7d`) meaning that long before
/// `now`. Returns microseconds since the Unix epoch.
pub fn parse_instant(text: &str, now: SystemTime) -> Result<i64, String> {
    let text = text.trim();
    let micros = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .map_err(|_| format!("invalid time {text:?}: before 1970"))
    };
    if let Ok(ago) = humantime::parse_duration(text) {
        return micros(now.checked_sub(ago).unwrap_or(UNIX_EPOCH));
    }
    let full = if text.len() == 10 {
        format!("{text}T00:00:00Z")
    } else {
        text.to_string()
    };
    match humantime::parse_rfc3339_weak(&full) {
        Ok(t) => micros(t),
        Err(_) => Err(format!(
            "invalid time {text:?}: use a date (2026-11-01), a date-time \
             (2026-11-01T10:00:00Z) or an age (90m, 7d)"
        )),
    }
}

/// `SystemTime` from microseconds since the epoch (for display).
pub fn system_time(micros: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(micros.max(0) as u64)
}

/// Parses `[[HH:]MM:]SS[.fraction]` into microseconds from the recording's
/// start. Minutes and seconds after a colon must be below 60.
pub fn parse_offset(text: &str) -> Result<u64, String> {
    let bad = |why: &str| {
        Err(format!(
            "invalid time {text:?}: {why} (use SECONDS, MM:SS or HH:MM:SS, with an optional .fraction)"
        ))
    };
    let text_trim = text.trim();
    if text_trim.is_empty() {
        return bad("empty");
    }
    let parts: Vec<&str> = text_trim.split(':').collect();
    if parts.len() > 3 {
        return bad("too many fields");
    }
    let (whole, seconds) = parts.split_at(parts.len() - 1);
    let seconds = seconds[0];
    let (int, frac) = seconds.split_once('.').unwrap_or((seconds, ""));
    if seconds.ends_with('.') {
        return bad("a fraction needs digits");
    }
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || !(frac.is_empty() || digits(frac)) || frac.len() > 6 {
        return bad("seconds must be digits, with at most 6 decimals");
    }
    let Ok(int) = int.parse::<u64>() else {
        return bad("seconds out of range");
    };
    let mut micros = int.checked_mul(1_000_000);
    let frac_us: u64 = format!("{frac:0<6}").parse().unwrap_or(0);
    micros = micros.and_then(|m| m.checked_add(frac_us));
    let mut scale = 60_000_000u64;
    for (i, field) in whole.iter().rev().enumerate() {
        if !digits(field) {
            return bad("hours and minutes must be digits");
        }
        let Ok(n) = field.parse::<u64>() else {
            return bad("field out of range");
        };
        let is_top = i + 1 == whole.len();
        if int >= 60 && i == 0 {
            return bad("seconds after a colon must be below 60");
        }
        if !is_top && n >= 60 {
            return bad("minutes must be below 60");
        }
        micros = micros.and_then(|m| n.checked_mul(scale).and_then(|v| m.checked_add(v)));
        scale *= 60;
    }
    match micros {
        Some(m) => Ok(m),
        None => bad("out of range"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants() {
        let now = UNIX_EPOCH + Duration::from_secs(10 * 86400);
        assert_eq!(parse_instant("1970-01-02", now), Ok(86_400_000_000));
        assert_eq!(parse_instant("1970-01-01T00:01:00Z", now), Ok(60_000_000));
        assert_eq!(parse_instant("7d", now), Ok(3 * 86_400_000_000));
        assert!(parse_instant("yesterday", now).is_err());
        assert!(parse_instant("2026-13-01", now).is_err());
    }

    #[test]
    fn accepts_the_usual_forms() {
        assert_eq!(parse_offset("90"), Ok(90_000_000));
        assert_eq!(parse_offset("1:30"), Ok(90_000_000));
        assert_eq!(parse_offset("00:10:00"), Ok(600_000_000));
        assert_eq!(parse_offset("00:12:30.5"), Ok(750_500_000));
        assert_eq!(parse_offset("2.000001"), Ok(2_000_001));
        assert_eq!(parse_offset("100:00:00"), Ok(360_000_000_000));
    }

    #[test]
    fn rejects_what_is_not_a_time() {
        for bad in [
            "",
            "abc",
            "-5",
            "1:2:3:4",
            "1:60",
            "1:75:00",
            "1.2.3",
            "1.",
            ":5",
            "5:",
            "1.1234567",
            "99999999999999999999",
        ] {
            let e = parse_offset(bad).unwrap_err();
            assert!(e.contains("invalid time"), "{bad:?}: {e}");
        }
    }
}
