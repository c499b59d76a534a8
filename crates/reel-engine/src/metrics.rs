//! Prometheus metrics of the engine, served by reeld at `/metrics`.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use reel_storage::{Role, StoreState};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StoreLabel {
    store: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ErrorLabel {
    store: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StateLabel {
    store: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CatalogPart {
    part: &'static str,
}

fn store(role: Role) -> StoreLabel {
    StoreLabel {
        store: role.to_string(),
    }
}

fn upload_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

pub(crate) struct Metrics {
    registry: Mutex<Registry>,
    uploaded_bytes: Family<StoreLabel, Counter>,
    uploaded_segments: Family<StoreLabel, Counter>,
    upload_errors: Family<ErrorLabel, Counter>,
    upload_seconds: Family<StoreLabel, Histogram, fn() -> Histogram>,
    backlog_bytes: Gauge,
    backlog_segments: Gauge,
    store_state: Family<StateLabel, Gauge>,
    catalog_bytes: Family<CatalogPart, Gauge>,
    mirror_backlog: Family<StoreLabel, Gauge>,
    failovers: Counter,
    recombined_recordings: Counter,
    recombined_bytes: Counter,
    bad_copies: Family<StoreLabel, Counter>,
    read_gaps: Counter,
    read_bytes: Family<StoreLabel, Counter>,
    acknowledged_events: Counter,
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::with_prefix("reel");
        let m = Metrics {
            registry: Mutex::new(Registry::default()),
            uploaded_bytes: Family::default(),
            uploaded_segments: Family::default(),
            upload_errors: Family::default(),
            upload_seconds: Family::new_with_constructor(upload_histogram),
            backlog_bytes: Gauge::default(),
            backlog_segments: Gauge::default(),
            store_state: Family::default(),
            catalog_bytes: Family::default(),
            mirror_backlog: Family::default(),
            failovers: Counter::default(),
            acknowledged_events: Counter::default(),
            recombined_recordings: Counter::default(),
            recombined_bytes: Counter::default(),
            bad_copies: Family::default(),
            read_gaps: Counter::default(),
            read_bytes: Family::default(),
        };
        registry.register(
            "uploaded_bytes",
            "Segment bytes uploaded, per store",
            m.uploaded_bytes.clone(),
        );
        registry.register(
            "uploaded_segments",
            "Segments uploaded, per store",
            m.uploaded_segments.clone(),
        );
        registry.register(
            "upload_errors",
            "Failed segment uploads, per store and kind (timeout, backend)",
            m.upload_errors.clone(),
        );
        registry.register(
            "upload_duration_seconds",
            "Time of successful segment uploads, per store",
            m.upload_seconds.clone(),
        );
        registry.register(
            "local_backlog_bytes",
            "Bytes held locally (journal and spool) until a store takes them",
            m.backlog_bytes.clone(),
        );
        registry.register(
            "local_backlog_segments",
            "Sealed segments waiting in the local spool",
            m.backlog_segments.clone(),
        );
        registry.register(
            "store_state",
            "1 for the state each store is in (healthy, suspect, down, probing)",
            m.store_state.clone(),
        );
        registry.register(
            "catalog_bytes",
            "The catalog's bytes: table files (tables; the audit log's apart, audit), memtables, write-ahead log (wal)",
            m.catalog_bytes.clone(),
        );
        registry.register(
            "mirror_backlog_segments",
            "Mirror mode: queued segments each store does not hold yet",
            m.mirror_backlog.clone(),
        );
        registry.register(
            "failovers",
            "Switches of uploads from the primary to the secondary",
            m.failovers.clone(),
        );
        registry.register(
            "acknowledged_events",
            "Events acknowledged as durable",
            m.acknowledged_events.clone(),
        );
        registry.register(
            "recombined_recordings",
            "Recordings recombined into one object on the primary",
            m.recombined_recordings.clone(),
        );
        registry.register(
            "recombined_bytes",
            "Bytes of the combined objects written",
            m.recombined_bytes.clone(),
        );
        registry.register(
            "bad_segment_copies",
            "Segment copies found not matching their SHA-256 (never used), per store",
            m.bad_copies.clone(),
        );
        registry.register(
            "read_gaps",
            "Runs of events a read could not find or verify in any copy, shown as gaps",
            m.read_gaps.clone(),
        );
        registry.register(
            "read_bytes",
            "Bytes of stored objects asked for by reads (exports, playback), per store",
            m.read_bytes.clone(),
        );
        *m.registry.lock().expect("registry lock") = registry;
        m
    }

    pub(crate) fn uploaded(&self, role: Role, bytes: u64, took: Duration) {
        self.uploaded_bytes
            .get_or_create(&store(role))
            .inc_by(bytes);
        self.uploaded_segments.get_or_create(&store(role)).inc();
        self.upload_seconds
            .get_or_create(&store(role))
            .observe(took.as_secs_f64());
    }

    pub(crate) fn recombined(&self, bytes: u64) {
        self.recombined_recordings.inc();
        self.recombined_bytes.inc_by(bytes);
    }

    pub(crate) fn bad_copy(&self, role: Role) {
        self.bad_copies.get_or_create(&store(role)).inc();
    }

    pub(crate) fn read_gap(&self) {
        self.read_gaps.inc();
    }

    pub(crate) fn read_from(&self, role: Role, bytes: u64) {
        self.read_bytes.get_or_create(&store(role)).inc_by(bytes);
    }

    pub(crate) fn upload_failed(&self, role: Role, kind: &str) {
        self.upload_errors
            .get_or_create(&ErrorLabel {
                store: role.to_string(),
                kind: kind.to_string(),
            })
            .inc();
    }

    /// The counter of acknowledged events, for the journal's completions.
    pub(crate) fn acknowledged_counter(&self) -> Counter {
        self.acknowledged_events.clone()
    }

    /// The text exposition, with the gauges set to the given current values.
    pub(crate) fn render(
        &self,
        backlog_bytes: u64,
        backlog_segments: u64,
        states: &[(Role, StoreState)],
        failovers: u64,
        catalog: Option<reel_catalog::CatalogSizes>,
        mirror: Option<crate::MirrorBacklog>,
    ) -> String {
        // The router counts failovers; the counter catches up at each scrape.
        self.failovers
            .inc_by(failovers.saturating_sub(self.failovers.get()));
        self.backlog_bytes.set(backlog_bytes as i64);
        self.backlog_segments.set(backlog_segments as i64);
        if let Some(c) = catalog {
            for (part, bytes) in [
                ("tables", c.table_bytes),
                ("audit", c.audit_table_bytes),
                ("memtables", c.memtable_bytes),
                ("wal", c.wal_bytes),
            ] {
                self.catalog_bytes
                    .get_or_create(&CatalogPart { part })
                    .set(bytes as i64);
            }
        }
        if let Some(m) = mirror {
            for (role, lacking) in [
                (Role::Primary, m.primary_segments),
                (Role::Secondary, m.secondary_segments),
            ] {
                self.mirror_backlog
                    .get_or_create(&store(role))
                    .set(lacking as i64);
            }
        }
        for (role, current) in states {
            for state in [
                StoreState::Healthy,
                StoreState::Suspect,
                StoreState::Down,
                StoreState::Probing,
            ] {
                self.store_state
                    .get_or_create(&StateLabel {
                        store: role.to_string(),
                        state: state.as_str().to_string(),
                    })
                    .set(i64::from(state == *current));
            }
        }
        let mut out = String::new();
        let registry = self.registry.lock().expect("registry lock");
        prometheus_client::encoding::text::encode(&mut out, &registry)
            .expect("encoding to a String");
        out
    }
}
