//! Refusing a read at once, before any byte, when some of its window is
//! only on a store that is down.

use reel_catalog::RecordingId;
use reel_proto::v1::SegmentRow;
use reel_storage::{Role, StorageError, keys};

use super::{Window, clock};
use crate::Inner;
use crate::copies::{location_of, role_of};
use crate::error::{EngineError, Result};

/// Fails when some segment of the window has copies only on a store that
/// is down (or being probed after being down) and still does not answer. A store is marked down for failed
/// writes too, and may serve reads, so it gets one request (a HEAD of one
/// such object) before the read is refused; the refusal names the events
/// and times that cannot be read.
pub(super) async fn check_reachable(
    inner: &Inner,
    id: RecordingId,
    segments: &[SegmentRow],
    window: Window,
) -> Result<()> {
    let mut lost: Vec<(Role, String, object_store::path::Path)> = Vec::new();
    for seg in segments {
        if seg.event_count == 0 || seg.end_time_us < window.from_us {
            continue;
        }
        if seg.start_time_us >= window.end() {
            break;
        }
        if inner.cache.contains(id, seg.sequence) {
            continue;
        }
        let roles: Vec<Option<Role>> = seg.locations.iter().map(|&l| role_of(l)).collect();
        let only_down = match roles.as_slice() {
            [Some(role)] if !inner.store(*role).health().state().is_usable() => *role,
            _ => continue,
        };
        let key = match crate::copies::stored_copy(id, seg, location_of(only_down) as i32) {
            Some(copy) => copy.key,
            None => keys::segment(id, seg.sequence),
        };
        lost.push((
            only_down,
            format!(
                "events {}..{} ({} to {}) are only on the {only_down} store, which is down",
                seg.first_event_index,
                seg.first_event_index.saturating_add(seg.event_count),
                clock(seg.start_time_us),
                clock(seg.end_time_us),
            ),
            key,
        ));
    }
    let mut refused = Vec::new();
    for role in [Role::Primary, Role::Secondary] {
        let Some((_, _, key)) = lost.iter().find(|(r, _, _)| *r == role) else {
            continue;
        };
        match inner.store(role).head(key).await {
            Ok(_) | Err(StorageError::NotFound { .. }) => {}
            Err(_) => refused.extend(
                lost.iter()
                    .filter(|(r, _, _)| *r == role)
                    .map(|(_, text, _)| text.clone()),
            ),
        }
    }
    if refused.is_empty() {
        return Ok(());
    }
    Err(EngineError::Unavailable(format!(
        "recording {id}: {}; retry when the store is back",
        merge_ranges(&refused)
    )))
}

/// Joins messages about consecutive segments into one line.
fn merge_ranges(lost: &[String]) -> String {
    match lost {
        [one] => one.clone(),
        many => format!(
            "{} (and {} more ranges, through {})",
            many[0],
            many.len() - 1,
            many[many.len() - 1]
        ),
    }
}
