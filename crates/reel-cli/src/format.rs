//! Human-readable output of `reel ls`, `reel show` and `reel status`.

use reel_api::{RecordingDetail, RecordingSummary, ServerStatus, StorageStatus, StoreStatus};
use std::fmt::Write as _;

pub(crate) use reel_api::display::{bytes, duration, time};

pub(crate) fn table(recordings: &[RecordingSummary]) -> String {
    let mut out = format!(
        "{:<26}  {:<12}  {:<16}  {:<20}  {:>10}  {:>10}  {:<11}  {}\n",
        "ID", "USER", "TARGET", "START", "DURATION", "SIZE", "STATE", "WHERE"
    );
    for r in recordings {
        let state = if r.state == "closed" && r.close_reason == "interrupted" {
            "interrupted"
        } else {
            r.state.as_str()
        };
        let _ = writeln!(
            out,
            "{:<26}  {:<12}  {:<16}  {:<20}  {:>10}  {:>10}  {:<11}  {}{}",
            r.id,
            r.user,
            r.target,
            time(r.started_at_us),
            duration(r.duration_us),
            bytes(r.data_bytes),
            state,
            r.placement,
            if r.damage.is_empty() {
                ""
            } else {
                "  (damaged)"
            }
        );
    }
    out
}

pub(crate) fn detail(d: &RecordingDetail) -> String {
    let s = &d.summary;
    let mut out = String::new();
    let _ = writeln!(out, "recording  {}", s.id);
    let _ = writeln!(out, "user       {}", s.user);
    let _ = writeln!(out, "target     {} ({})", s.target, s.protocol);
    if !s.labels.is_empty() {
        let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(out, "labels     {}", labels.join(" "));
    }
    if !d.title.is_empty() {
        let _ = writeln!(out, "title      {}", d.title);
    }
    if let Some(t) = &d.terminal {
        let _ = writeln!(out, "terminal   {t}");
    }
    let _ = writeln!(out, "started    {}", time(s.started_at_us));
    let _ = writeln!(out, "duration   {}", duration(s.duration_us));
    let state = match (s.state.as_str(), s.close_reason.as_str()) {
        ("closed", "" | "closed") => "closed".to_string(),
        ("closed", reason) => format!("closed ({reason})"),
        (state, _) if s.attached => format!("{state}, recorder attached"),
        (state, _) => format!("{state}, no recorder attached"),
    };
    let _ = writeln!(out, "state      {state}");
    if let Some(h) = &d.legal_hold {
        let _ = writeln!(
            out,
            "legal hold {} (by {}, since {})",
            h.reason,
            h.by,
            time(h.at_us)
        );
    }
    let _ = writeln!(
        out,
        "events     {} ({})",
        s.event_count,
        bytes(s.data_bytes)
    );
    let _ = writeln!(out, "where      {}", s.placement);
    match &s.unreadable {
        Some(hidden) => {
            let _ = writeln!(out, "readable   NO, not now: {hidden}");
        }
        None => {
            let _ = writeln!(out, "readable   yes, from {}", s.read_from);
        }
    }
    match (&d.object, &d.recombine) {
        (Some(o), _) => {
            let _ = writeln!(
                out,
                "object     1 object on {}: {} ({}, SHA-256 {})",
                if o.stores.is_empty() {
                    "primary".to_string()
                } else {
                    o.stores.join(" and ")
                },
                o.key,
                bytes(o.size),
                &o.sha256[..16.min(o.sha256.len())]
            );
        }
        (None, Some(why)) => {
            let _ = writeln!(out, "recombine  waiting ({why})");
        }
        (None, None) => {}
    }
    for damage in &s.damage {
        let _ = writeln!(out, "DAMAGE     {damage}");
    }
    let _ = writeln!(
        out,
        "\n{:>5}  {:>10}  {:>8}  {:>21}  {:>10}  {:<17}  SHA-256",
        "SEQ", "FIRST", "EVENTS", "TIME", "SIZE", "LOCATION"
    );
    for seg in &d.segments {
        let _ = writeln!(
            out,
            "{:>5}  {:>10}  {:>8}  {:>21}  {:>10}  {:<17}  {}{}",
            seg.sequence,
            seg.first_event_index,
            seg.event_count,
            format!(
                "{}-{}",
                duration(seg.start_time_us),
                duration(seg.end_time_us)
            ),
            bytes(seg.size),
            match seg.combined_offset {
                Some(offset) => format!("primary@{offset}"),
                None => seg.locations.join("+"),
            },
            &seg.sha256[..16.min(seg.sha256.len())],
            if seg.is_final { "  final" } else { "" }
        );
    }
    if d.unsealed_events > 0 {
        let _ = writeln!(
            out,
            "{:>5}  {:>10}  {:>8}  {:>21}  {:>10}  {:<17}",
            "-",
            s.event_count - d.unsealed_events,
            d.unsealed_events,
            "",
            bytes(d.unsealed_bytes),
            "local (journal)"
        );
    }
    out
}

fn store_line(name: &str, s: &StoreStatus) -> String {
    let h = &s.health;
    let mut line = format!(
        "{name:<10} {:<8} since {} ({} ago)  {}",
        h.state,
        time((h.since_unix * 1e6) as i64),
        duration((h.for_duration * 1e6) as u64),
        s.description
    );
    if h.state != "healthy"
        && let Some(e) = &h.last_error
    {
        line += &format!("\n           last error: {e}");
    }
    line
}

pub(crate) fn status(s: &ServerStatus, storage: &StorageStatus) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "reeld {}  data {}  ingest {}",
        s.version, s.data_dir, s.grpc_listen
    );
    let _ = writeln!(out, "{}", store_line("primary", &storage.primary));
    let _ = writeln!(out, "{}", store_line("secondary", &storage.secondary));
    let _ = writeln!(
        out,
        "writing to {}",
        storage
            .writing_to
            .as_deref()
            .unwrap_or("nothing: both stores are down, segments wait locally")
    );
    let _ = writeln!(
        out,
        "backlog    {} segments, {} waiting for a store; journal {} in {} files; capacity {}",
        storage.backlog_segments,
        bytes(storage.backlog_bytes),
        bytes(s.journal_bytes),
        s.journal_files,
        bytes(storage.local_capacity_bytes)
    );
    match &s.mirror_backlog {
        Some(m) => {
            let _ = writeln!(
                out,
                "uploads    {} queued; mirror mode: the primary lacks {} segments, the secondary {}{}",
                s.upload_queue,
                m.primary_segments,
                m.secondary_segments,
                if m.scanned {
                    ""
                } else {
                    " (so far: still scanning for copies a store lacks)"
                }
            );
        }
        None => {
            let _ = writeln!(out, "uploads    {} queued", s.upload_queue);
        }
    }
    if s.cache_max_bytes > 0 {
        let _ = writeln!(
            out,
            "cache      {} segments, {} of {} (stored segments kept for reads)",
            s.cache_segments,
            bytes(s.cache_bytes),
            bytes(s.cache_max_bytes)
        );
    }
    let _ = writeln!(
        out,
        "catalog    {} in files and {} of log, audit log {}, {} in memory",
        bytes(s.catalog_bytes),
        bytes(s.catalog_log_bytes),
        bytes(s.audit_log_bytes),
        bytes(s.catalog_memory_bytes)
    );
    let _ = writeln!(out, "open       {} recordings", s.open_recordings);
    match s.unreadable_recordings {
        0 => {
            let _ = writeln!(out, "readable   every recording, now");
        }
        n => {
            let _ = writeln!(
                out,
                "UNREADABLE {n} recordings have bytes only on a store that is down (reel ls --unreadable)"
            );
        }
    }
    if let Some(why) = &s.low_disk {
        let _ = writeln!(out, "WARNING    {why}");
    }
    if !storage.events.is_empty() {
        let _ = writeln!(out, "\nrecent failovers and failbacks:");
        for e in &storage.events {
            let _ = writeln!(
                out,
                "  {}  {:<10} {} -> {}  {}",
                time((e.at_unix * 1e6) as i64),
                e.kind,
                e.from,
                e.to,
                e.reason
            );
        }
    }
    out
}
