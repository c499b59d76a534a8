//! Finding recordings: filters, sort orders and cursor paging, answered from
//! the catalog alone (no store is read).
//!
//! A query scans the `recordings` family once and sorts what matches: a
//! page costs a pass over the catalog's recording rows (a few hundred bytes
//! each), which stays in the tens of milliseconds up to about 10^5
//! recordings. A cursor names the last row of a page by its sort value and
//! id, so pages stay stable while recordings are added.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use std::sync::Arc;

use reel_proto::v1::{RecordingRow, RecordingState, SegmentRow};
use rocksdb::IteratorMode;

use crate::{CF_RECORDINGS, Catalog, RecordingId, Result, cf_handle, decode};

/// What a recording must match to be listed. Text filters match whole
/// values; `*` matches any run of characters (`db-*`, `*@corp`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub user: Option<String>,
    pub target: Option<String>,
    pub protocol: Option<String>,
    /// `(key, None)`: the label is set; `(key, Some(v))`: it is `v`.
    pub labels: Vec<(String, Option<String>)>,
    /// Session start, microseconds since the epoch: `from <= start < to`.
    pub started_from_us: Option<i64>,
    pub started_to_us: Option<i64>,
    /// Received by reeld before this (microseconds since the epoch): what
    /// "older than" means for purges and archives, since a recorder chooses
    /// its start time but not when reeld received it.
    pub received_before_us: Option<i64>,
    pub state: Option<StateFilter>,
    /// Only recordings whose every segment can (`true`) or cannot
    /// (`false`) be read right now, as [`Filter::reachable`] judges.
    pub readable: Option<bool>,
    /// Which segments can be read right now, for `readable`. The engine
    /// fills it in when it runs the query (from the stores' health and its
    /// read cache).
    pub reachable: Reachable,
    /// The scopes of the identity that asks: nothing outside them matches.
    pub scope: Scope,
}

/// Whether a segment can be read right now (see [`Filter::readable`]):
/// the engine's judgement. The default counts every segment with a copy.
#[derive(Clone)]
pub struct Reachable(Arc<ReachableFn>);

type ReachableFn = dyn Fn(RecordingId, &SegmentRow) -> bool + Send + Sync;

impl Reachable {
    pub fn new(f: impl Fn(RecordingId, &SegmentRow) -> bool + Send + Sync + 'static) -> Self {
        Reachable(Arc::new(f))
    }

    pub fn segment(&self, id: RecordingId, seg: &SegmentRow) -> bool {
        (self.0)(id, seg)
    }
}

impl Default for Reachable {
    fn default() -> Self {
        Reachable::new(|_, seg| !seg.locations.is_empty())
    }
}

impl fmt::Debug for Reachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Reachable(..)")
    }
}

impl PartialEq for Reachable {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// Which recordings an identity reaches (its token's scopes): each kind
/// given must match one of its patterns; a kind not given does not limit.
/// Patterns are globs as in [`Filter`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scope {
    pub users: Vec<String>,
    pub targets: Vec<String>,
    pub protocols: Vec<String>,
    /// `(key, value)`: the label has this value.
    pub labels: Vec<(String, String)>,
}

impl Scope {
    /// Parses `user=GLOB`, `target=GLOB`, `protocol=GLOB`, `label=K=V`.
    pub fn parse(texts: &[String]) -> std::result::Result<Scope, String> {
        let mut s = Scope::default();
        for text in texts {
            let (kind, value) = text.split_once('=').ok_or_else(|| {
                format!("scope {text:?}: use user=GLOB, target=GLOB, protocol=GLOB or label=K=V")
            })?;
            match kind {
                "user" => s.users.push(value.into()),
                "target" => s.targets.push(value.into()),
                "protocol" => s.protocols.push(value.into()),
                "label" => {
                    let (k, v) = value
                        .split_once('=')
                        .ok_or_else(|| format!("scope {text:?}: a label scope is label=K=V"))?;
                    s.labels.push((k.into(), v.into()));
                }
                other => return Err(format!("scope {text:?}: unknown kind {other:?}")),
            }
        }
        Ok(s)
    }

    pub fn is_unlimited(&self) -> bool {
        *self == Scope::default()
    }

    /// Whether a recording with this metadata is within the scope.
    pub fn admits(&self, meta: &reel_proto::v1::RecordingMetadata) -> bool {
        let any = |patterns: &[String], value: &str| {
            patterns.is_empty() || patterns.iter().any(|p| glob_match(p, value))
        };
        any(&self.users, &meta.user)
            && any(&self.targets, &meta.target)
            && any(&self.protocols, &meta.protocol)
            && (self.labels.is_empty()
                || self
                    .labels
                    .iter()
                    .any(|(k, v)| meta.labels.get(k).is_some_and(|have| have == v)))
    }
}

/// When reeld received a recording, microseconds since the epoch: the row's
/// `created_at_us`, which reeld sets, or the time in its id (which reeld
/// generated too) for rows that lack it.
pub fn received_at_us(row: &RecordingRow) -> i64 {
    if row.created_at_us > 0 {
        return row.created_at_us;
    }
    RecordingId::from_slice(&row.id).map_or(0, |id| id.timestamp_ms() as i64 * 1000)
}

/// The states `reel ls --state` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateFilter {
    /// Still recording.
    Open,
    /// Closed, by its recorder or by the server.
    Closed,
    /// Closed by the server after its recorder went away.
    Interrupted,
    /// With damage noted (events lost to local corruption, ...).
    Damaged,
    /// Recombined into one object on the primary.
    Recombined,
}

impl FromStr for StateFilter {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Ok(match s {
            "open" => StateFilter::Open,
            "closed" => StateFilter::Closed,
            "interrupted" => StateFilter::Interrupted,
            "damaged" => StateFilter::Damaged,
            "recombined" => StateFilter::Recombined,
            other => {
                return Err(format!(
                    "unknown state {other:?}: use open, closed, interrupted, damaged or recombined"
                ));
            }
        })
    }
}

/// What a page is sorted by; ties are broken by id (creation order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    /// Creation order (ids are time-ordered ULIDs).
    #[default]
    Created,
    /// Session start time.
    Started,
    Duration,
    /// Event payload bytes.
    Size,
    User,
}

impl SortKey {
    fn name(self) -> &'static str {
        match self {
            SortKey::Created => "created",
            SortKey::Started => "started",
            SortKey::Duration => "duration",
            SortKey::Size => "size",
            SortKey::User => "user",
        }
    }
}

impl FromStr for SortKey {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        [
            SortKey::Created,
            SortKey::Started,
            SortKey::Duration,
            SortKey::Size,
            SortKey::User,
        ]
        .into_iter()
        .find(|k| k.name() == s)
        .ok_or_else(|| {
            format!("unknown sort key {s:?}: use created, started, duration, size or user")
        })
    }
}

/// A sort key and direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sort {
    pub key: SortKey,
    pub descending: bool,
}

/// Where the previous page ended. Opaque to clients: its text form is
/// `sort:direction:value:id`, or for the default order just the last id (so
/// an id works as a cursor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    sort: Sort,
    value: SortValue,
    id: RecordingId,
}

impl Cursor {
    /// Parses a cursor for a query sorted by `sort`; a cursor from another
    /// order is an error.
    pub fn parse(text: &str, sort: Sort) -> std::result::Result<Cursor, String> {
        let bad = |why: &str| format!("invalid cursor {text:?}: {why}");
        let default_order = sort == Sort::default();
        if default_order && let Ok(id) = text.parse::<RecordingId>() {
            return Ok(Cursor {
                sort,
                value: SortValue::Id,
                id,
            });
        }
        let mut parts = text.splitn(4, ':');
        let (Some(key), Some(dir), Some(value), Some(id)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("not a cursor this server made"));
        };
        let key: SortKey = key.parse().map_err(|e: String| bad(&e))?;
        let descending = match dir {
            "asc" => false,
            "desc" => true,
            _ => return Err(bad("bad direction")),
        };
        if (Sort { key, descending }) != sort {
            return Err(bad("it belongs to a listing in another order"));
        }
        let id = id.parse::<RecordingId>().map_err(|e| bad(&e.to_string()))?;
        let value = match key {
            SortKey::Created => SortValue::Id,
            SortKey::User => SortValue::Text(
                hex::decode(value)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| bad("bad value"))?,
            ),
            _ => SortValue::Number(value.parse().map_err(|_| bad("bad value"))?),
        };
        Ok(Cursor { sort, value, id })
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.sort == Sort::default() {
            return write!(f, "{}", self.id);
        }
        let dir = if self.sort.descending { "desc" } else { "asc" };
        let value = match &self.value {
            SortValue::Id => String::new(),
            SortValue::Number(n) => n.to_string(),
            SortValue::Text(t) => hex::encode(t),
        };
        write!(f, "{}:{dir}:{value}:{}", self.sort.key.name(), self.id)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum SortValue {
    Id,
    Number(i128),
    Text(String),
}

/// A query: filter, order, and where to start.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub filter: Filter,
    pub sort: Sort,
    pub after: Option<Cursor>,
    pub limit: usize,
}

/// One page of a query.
#[derive(Debug, Clone)]
pub struct Page {
    pub rows: Vec<RecordingRow>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<Cursor>,
}

impl Filter {
    pub fn matches(&self, row: &RecordingRow) -> bool {
        let meta = row.metadata.clone().unwrap_or_default();
        let text_ok = |pattern: &Option<String>, value: &str| {
            pattern.as_deref().is_none_or(|p| glob_match(p, value))
        };
        let closed = row.state == RecordingState::Closed as i32;
        let state_ok = self.state.is_none_or(|s| match s {
            StateFilter::Open => !closed,
            StateFilter::Closed => closed,
            StateFilter::Interrupted => closed && row.close_reason == "interrupted",
            StateFilter::Damaged => !row.damage.is_empty(),
            StateFilter::Recombined => row.combined_size > 0,
        });
        text_ok(&self.user, &meta.user)
            && text_ok(&self.target, &meta.target)
            && text_ok(&self.protocol, &meta.protocol)
            && self.labels.iter().all(|(k, v)| match meta.labels.get(k) {
                Some(have) => v.as_deref().is_none_or(|want| glob_match(want, have)),
                None => false,
            })
            && self
                .started_from_us
                .is_none_or(|from| meta.started_at_us >= from)
            && self.started_to_us.is_none_or(|to| meta.started_at_us < to)
            && self
                .received_before_us
                .is_none_or(|before| received_at_us(row) < before)
            && state_ok
            && self.scope.admits(&meta)
    }
}

fn sort_value(key: SortKey, row: &RecordingRow) -> SortValue {
    let meta = row.metadata.as_ref();
    match key {
        SortKey::Created => SortValue::Id,
        SortKey::Started => SortValue::Number(meta.map_or(0, |m| m.started_at_us) as i128),
        SortKey::Duration => SortValue::Number(row.duration_us.max(row.last_time_us) as i128),
        SortKey::Size => SortValue::Number(row.data_bytes as i128),
        SortKey::User => SortValue::Text(meta.map(|m| m.user.clone()).unwrap_or_default()),
    }
}

/// `*` matches any run of characters; everything else matches itself.
pub fn glob_match(pattern: &str, value: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        return pattern == value;
    };
    // Prefix and suffix are taken off in turn, so they never overlap and
    // never cut a character (a byte-length slice could).
    let Some(rest) = value
        .strip_prefix(first)
        .and_then(|rest| rest.strip_suffix(last))
    else {
        return false;
    };
    let mut rest = rest;
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

impl Catalog {
    /// Every recording `filter` matches, in creation order: one scan (a
    /// page-by-page loop over [`Catalog::find`] would scan once a page).
    pub fn find_all(&self, filter: &Filter) -> Result<Vec<RecordingRow>> {
        let query = Query {
            filter: filter.clone(),
            limit: usize::MAX,
            ..Default::default()
        };
        Ok(self.find(&query)?.rows)
    }

    /// One page of the recordings matching `query`, in its order.
    pub fn find(&self, query: &Query) -> Result<Page> {
        let key = query.sort.key;
        // Recordings being purged are gone for listings from the mark on.
        let purging: std::collections::HashSet<RecordingId> =
            self.purging()?.into_iter().map(|(id, _)| id).collect();
        let mut hits: Vec<(SortValue, RecordingId, RecordingRow)> = self.with_db(|db| {
            let mut hits = Vec::new();
            for item in db.iterator_cf(cf_handle(db, CF_RECORDINGS), IteratorMode::Start) {
                let (k, v) = item?;
                let row: RecordingRow = decode(&k, &v)?;
                if !query.filter.matches(&row)
                    || RecordingId::from_slice(&row.id).is_ok_and(|id| purging.contains(&id))
                {
                    continue;
                }
                let Ok(id) = RecordingId::from_slice(&row.id) else {
                    continue;
                };
                if let Some(want) = query.filter.readable {
                    let segments = self.segments(id)?;
                    let readable = segments
                        .iter()
                        .all(|s| query.filter.reachable.segment(id, s));
                    if readable != want {
                        continue;
                    }
                }
                hits.push((sort_value(key, &row), id, row));
            }
            Ok(hits)
        })?;
        let order = |a: (&SortValue, &RecordingId), b: (&SortValue, &RecordingId)| {
            let o = a.cmp(&b);
            if query.sort.descending {
                o.reverse()
            } else {
                o
            }
        };
        hits.sort_by(|a, b| order((&a.0, &a.1), (&b.0, &b.1)));
        if let Some(c) = &query.after {
            hits.retain(|h| order((&h.0, &h.1), (&c.value, &c.id)) == Ordering::Greater);
        }
        let more = hits.len() > query.limit;
        hits.truncate(query.limit);
        let next = more.then(|| {
            let (value, id, _) = hits.last().expect("a full page");
            Cursor {
                sort: query.sort,
                value: value.clone(),
                id: *id,
            }
        });
        Ok(Page {
            rows: hits.into_iter().map(|(_, _, row)| row).collect(),
            next,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("db-*", "db-1"));
        assert!(glob_match("*@corp", "alice@corp"));
        assert!(glob_match("a*c*e", "abcde"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("db-*", "web-1"));
        assert!(!glob_match("a*a", "a"));
        assert!(glob_match("alice", "alice"));
        assert!(!glob_match("alice", "alice2"));
        // Multi-byte characters where a byte count would cut one.
        assert!(!glob_match("a*b", "aé"));
        assert!(glob_match("é*", "éa"));
        assert!(glob_match("*é", "aé"));
        assert!(!glob_match("é*é", "é"));
    }

    /// The matcher the catalog's is checked against: plain recursion over
    /// characters, too slow for listings, obviously right.
    fn reference(pattern: &[char], value: &[char]) -> bool {
        match pattern.split_first() {
            None => value.is_empty(),
            Some(('*', rest)) => (0..=value.len()).any(|i| reference(rest, &value[i..])),
            Some((c, rest)) => value.first() == Some(c) && reference(rest, &value[1..]),
        }
    }

    proptest::proptest! {
        #[test]
        fn globs_agree_with_the_reference(
            pattern in "[ab*é€]{0,8}",
            value in "[abé€]{0,10}",
        ) {
            let p: Vec<char> = pattern.chars().collect();
            let v: Vec<char> = value.chars().collect();
            proptest::prop_assert_eq!(glob_match(&pattern, &value), reference(&p, &v));
        }
    }

    #[test]
    fn cursors_round_trip_and_refuse_other_orders() {
        let id: RecordingId = "01JAAAAAAAAAAAAAAAAAAAAAAA".parse().unwrap();
        let by_user = Sort {
            key: SortKey::User,
            descending: true,
        };
        let c = Cursor {
            sort: by_user,
            value: SortValue::Text("bob:x".into()),
            id,
        };
        assert_eq!(Cursor::parse(&c.to_string(), by_user), Ok(c.clone()));
        assert!(Cursor::parse(&c.to_string(), Sort::default()).is_err());
        assert!(Cursor::parse("nonsense", by_user).is_err());
        let plain = Cursor::parse(&id.to_string(), Sort::default()).unwrap();
        assert_eq!(plain.to_string(), id.to_string());
    }
}
