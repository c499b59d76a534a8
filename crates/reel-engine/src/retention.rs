//! Retention: rules from the configuration that purge closed recordings
//! once they are old enough, applied on a schedule through the same purge
//! path as a purge by hand (so a legal hold stops them too).
//!
//! A recording's age is the time since reeld received it (never the start
//! time its recorder claims, which could make a fresh recording look old). A recording is
//! purged when at least one rule matches it and it is older than the
//! longest `older_than` of the rules that match (the longest retention
//! wins), and never before `min_age`.

use std::sync::Arc;
use std::time::Duration;

use reel_catalog::{Filter, RecordingId, StateFilter, glob_match, received_at_us};
use reel_proto::v1::RecordingRow;
use tracing::{debug, info, warn};

use crate::Inner;
use crate::error::Result;
use crate::purger::{self, Actor};

/// One retention rule: which recordings (all its filters must match) and
/// how long they are kept.
#[derive(Debug, Clone, PartialEq)]
pub struct RetentionRule {
    pub older_than: Duration,
    /// `*` matches any run of characters.
    pub user: Option<String>,
    pub target: Option<String>,
    pub protocol: Option<String>,
    /// `(key, None)`: has the label; `(key, Some(v))`: its value matches `v`.
    pub label: Option<(String, Option<String>)>,
}

impl RetentionRule {
    fn matches(&self, row: &RecordingRow) -> bool {
        let meta = row.metadata.clone().unwrap_or_default();
        let text = |p: &Option<String>, v: &str| p.as_deref().is_none_or(|p| glob_match(p, v));
        text(&self.user, &meta.user)
            && text(&self.target, &meta.target)
            && text(&self.protocol, &meta.protocol)
            && self.label.as_ref().is_none_or(|(k, v)| {
                meta.labels
                    .get(k)
                    .is_some_and(|have| v.as_deref().is_none_or(|want| glob_match(want, have)))
            })
    }
}

/// The `[retention]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct RetentionConfig {
    /// How often the rules are applied.
    pub interval: Duration,
    /// No rule purges a recording younger than this.
    pub min_age: Duration,
    pub rules: Vec<RetentionRule>,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            interval: Duration::from_secs(3600),
            min_age: Duration::from_secs(24 * 3600),
            rules: Vec::new(),
        }
    }
}

impl RetentionConfig {
    /// How long `row` is kept, if any rule applies to it.
    fn keep_for(&self, row: &RecordingRow) -> Option<Duration> {
        self.rules
            .iter()
            .filter(|r| r.matches(row))
            .map(|r| r.older_than)
            .max()
            .map(|d| d.max(self.min_age))
    }
}

pub(crate) async fn run(inner: Arc<Inner>) {
    if inner.config.retention.rules.is_empty() {
        return;
    }
    loop {
        match apply(&inner, false).await {
            Ok(ids) if !ids.is_empty() => {
                info!(recordings = ids.len(), "retention purged recordings")
            }
            Ok(_) => debug!("retention: nothing expired"),
            Err(e) => warn!(error = %e, "retention: will retry"),
        }
        tokio::select! {
            _ = tokio::time::sleep(inner.config.retention.interval) => {}
            _ = inner.stopped() => return,
        }
    }
}

/// Purges (or with `dry_run` lists) the closed recordings the rules have
/// expired; recordings under legal hold are skipped.
pub(crate) async fn apply(inner: &Arc<Inner>, dry_run: bool) -> Result<Vec<RecordingId>> {
    let config = inner.config.retention.clone();
    let now = inner.now_us();
    let expired = inner
        .catalog(move |c| {
            let mut expired: Vec<(RecordingId, Duration)> = Vec::new();
            let closed = Filter {
                state: Some(StateFilter::Closed),
                ..Default::default()
            };
            for row in c.find_all(&closed)? {
                let Ok(id) = RecordingId::from_slice(&row.id) else {
                    continue;
                };
                let received = received_at_us(&row);
                let age = Duration::from_micros(now.saturating_sub(received).max(0) as u64);
                if let Some(keep) = config.keep_for(&row)
                    && age >= keep
                    && c.hold(id)?.is_none()
                {
                    expired.push((id, keep));
                }
            }
            Ok(expired)
        })
        .await?;
    let mut purged = Vec::new();
    for (id, keep) in expired {
        let actor = Actor {
            by: "retention".into(),
            reason: format!("retention: kept {}", humantime::format_duration(keep)),
        };
        let outcome = purger::purge(inner, vec![id], actor, dry_run).await?;
        purged.extend(outcome.purged);
    }
    Ok(purged)
}
