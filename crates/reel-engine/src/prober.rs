//! Background probes of both stores: a small object written, read back and
//! deleted, often while a store is suspect or down and now and then while it
//! is healthy. Probes are what bring a down store back (failback), and what
//! notice a failure when no upload is running. Each tick also applies the
//! time-driven transitions (a suspect store that stays silent goes down) and
//! lets the router register a change of the store written to.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reel_storage::{Role, StoreState, Transition};
use tracing::warn;

use crate::Inner;

const TICK: Duration = Duration::from_millis(100);

fn log(t: Option<Transition>) {
    if let Some(t) = t {
        warn!(store = %t.role, from = %t.from, to = %t.to, reason = %t.reason, "store state changed");
    }
}

pub(crate) async fn run(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(TICK);
    let node = reel_proto::RecordingId::generate();
    let busy = [
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    ];
    let mut last = [tokio::time::Instant::now(); 2];
    let mut probes = tokio::task::JoinSet::new();
    let mut count = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = inner.stopped() => break,
        }
        while probes.try_join_next().is_some() {}
        for (i, role) in [Role::Primary, Role::Secondary].into_iter().enumerate() {
            let health = inner.router.health(role).clone();
            log(health.tick());
            let config = health.config();
            let every = if health.state() == StoreState::Healthy {
                config.healthy_probe_interval
            } else {
                config.probe_interval
            };
            if busy[i].load(Ordering::Acquire) || last[i].elapsed() < every {
                continue;
            }
            busy[i].store(true, Ordering::Release);
            last[i] = tokio::time::Instant::now();
            count += 1;
            let token = format!("{node}-{role}-{count}");
            let inner = inner.clone();
            let busy = busy[i].clone();
            probes.spawn(async move {
                log(health.probe_started());
                let result = inner.store(role).probe(&token).await;
                log(health.probe_finished(result));
                busy.store(false, Ordering::Release);
                inner.route_changed.notify_waiters();
            });
        }
        let before = inner.router.current();
        if inner.router.pick() != before {
            inner.route_changed.notify_waiters();
        }
    }
    probes.shutdown().await;
}
