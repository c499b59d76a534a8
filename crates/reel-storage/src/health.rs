//! Health of the stores and the choice of where uploads go.
//!
//! Each store has a [`Health`]: a small state machine fed by the outcome of
//! every operation (and of background probes):
//!
//! ```text
//!            failure                 failures >= threshold, or
//!  Healthy ───────────▶ Suspect ───  no success for suspect_window ──▶ Down
//!     ▲                    │                                          │ probe starts
//!     │      success       │                                          ▼
//!     └────────────────────┘◀─── recovery_successes probes in a row ─ Probing
//!                                                  (a failed probe: back to Down)
//! ```
//!
//! The [`Router`] sends uploads to the primary while it is usable (healthy
//! or suspect), to the secondary while the primary is down, and nowhere when
//! both are down (segments then wait in the local log). Every change of the
//! store written to is a failover or a failback, logged at WARN with its
//! reason and kept in a short history.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use reel_clock::Clock;
use serde::Serialize;

use crate::Role;

/// How quickly a store is judged.
#[derive(Debug, Clone)]
pub struct HealthConfig {
    /// Every store call is abandoned (and counted as a failure) after this.
    pub op_timeout: Duration,
    /// Extra time per MiB for calls that move data.
    pub op_timeout_per_mib: Duration,
    /// Consecutive failures that make a store down.
    pub failure_threshold: u32,
    /// A suspect store with no success for this long is down, however few
    /// calls it failed. With `op_timeout` this bounds the switch time.
    pub suspect_window: Duration,
    /// Probes of a suspect or down store run this often.
    pub probe_interval: Duration,
    /// Probes of a healthy store run this often (to notice failures with no
    /// traffic).
    pub healthy_probe_interval: Duration,
    /// Successful probes in a row that bring a down store back.
    pub recovery_successes: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            op_timeout: Duration::from_secs(2),
            op_timeout_per_mib: Duration::from_millis(500),
            failure_threshold: 3,
            suspect_window: Duration::from_secs(2),
            probe_interval: Duration::from_millis(500),
            healthy_probe_interval: Duration::from_secs(10),
            recovery_successes: 2,
        }
    }
}

impl HealthConfig {
    /// The time-out of a call that moves `bytes`.
    pub fn timeout_for(&self, bytes: u64) -> Duration {
        self.op_timeout
            + self
                .op_timeout_per_mib
                .mul_f64(bytes as f64 / (1 << 20) as f64)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreState {
    Healthy,
    Suspect,
    Down,
    Probing,
}

impl StoreState {
    /// Uploads may go to a store in this state.
    pub fn is_usable(self) -> bool {
        matches!(self, StoreState::Healthy | StoreState::Suspect)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StoreState::Healthy => "healthy",
            StoreState::Suspect => "suspect",
            StoreState::Down => "down",
            StoreState::Probing => "probing",
        }
    }
}

impl fmt::Display for StoreState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug)]
struct HealthState {
    state: StoreState,
    since: Instant,
    since_wall: SystemTime,
    consecutive_failures: u32,
    probe_successes: u32,
    last_error: Option<String>,
}

/// One store's health.
#[derive(Debug)]
pub struct Health {
    role: Role,
    config: HealthConfig,
    clock: Arc<dyn Clock>,
    inner: Mutex<HealthState>,
}

/// A snapshot of one store's health.
#[derive(Debug, Clone, Serialize)]
pub struct HealthSnapshot {
    pub role: Role,
    pub state: StoreState,
    /// How long it has been in this state.
    #[serde(serialize_with = "seconds")]
    pub for_duration: Duration,
    /// Since when, seconds since the Unix epoch.
    pub since_unix: f64,
    pub consecutive_failures: u32,
    pub last_error: Option<String>,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// What a call outcome did to a store's state.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub role: Role,
    pub from: StoreState,
    pub to: StoreState,
    pub reason: String,
}

impl Health {
    /// A healthy store's health, timed by `clock`.
    pub fn new(role: Role, config: HealthConfig, clock: Arc<dyn Clock>) -> Health {
        Health {
            role,
            config,
            inner: Mutex::new(HealthState {
                state: StoreState::Healthy,
                since: clock.instant(),
                since_wall: clock.now(),
                consecutive_failures: 0,
                probe_successes: 0,
                last_error: None,
            }),
            clock,
        }
    }

    pub fn config(&self) -> &HealthConfig {
        &self.config
    }

    pub fn state(&self) -> StoreState {
        self.lock().state
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HealthState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn snapshot(&self) -> HealthSnapshot {
        let s = self.lock();
        HealthSnapshot {
            role: self.role,
            state: s.state,
            for_duration: self.clock.elapsed(s.since),
            since_unix: s
                .since_wall
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
            consecutive_failures: s.consecutive_failures,
            last_error: s.last_error.clone(),
        }
    }

    fn set(&self, s: &mut HealthState, to: StoreState, reason: String) -> Option<Transition> {
        if s.state == to {
            return None;
        }
        let from = s.state;
        s.state = to;
        s.since = self.clock.instant();
        s.since_wall = self.clock.now();
        Some(Transition {
            role: self.role,
            from,
            to,
            reason,
        })
    }

    /// A regular call succeeded. A down store is not trusted again by one
    /// lucky call: only probes bring it back.
    pub fn record_success(&self) -> Option<Transition> {
        let mut s = self.lock();
        s.consecutive_failures = 0;
        match s.state {
            StoreState::Suspect => self.set(&mut s, StoreState::Healthy, "a call succeeded".into()),
            _ => None,
        }
    }

    /// A regular call failed (an error or a time-out).
    pub fn record_failure(&self, error: &str) -> Option<Transition> {
        let mut s = self.lock();
        s.consecutive_failures += 1;
        s.last_error = Some(error.to_string());
        let failures = s.consecutive_failures;
        let down = failures >= self.config.failure_threshold;
        match s.state {
            StoreState::Healthy | StoreState::Suspect if down => self.set(
                &mut s,
                StoreState::Down,
                format!("{failures} failures in a row: {error}"),
            ),
            StoreState::Healthy => self.set(
                &mut s,
                StoreState::Suspect,
                format!("a call failed: {error}"),
            ),
            _ => None,
        }
    }

    /// Time-driven transitions: a suspect store that has not recovered within
    /// the window is down.
    pub fn tick(&self) -> Option<Transition> {
        let mut s = self.lock();
        let waited = self.clock.elapsed(s.since);
        if s.state == StoreState::Suspect && waited >= self.config.suspect_window {
            let last = s.last_error.clone().unwrap_or_default();
            let reason = format!(
                "no successful call for {:.1}s after a failure: {last}",
                waited.as_secs_f64()
            );
            return self.set(&mut s, StoreState::Down, reason);
        }
        None
    }

    /// A probe is starting.
    pub fn probe_started(&self) -> Option<Transition> {
        let mut s = self.lock();
        if s.state == StoreState::Down {
            return self.set(&mut s, StoreState::Probing, "probing".into());
        }
        None
    }

    /// A probe (write, read back, delete) finished.
    pub fn probe_finished(&self, result: Result<(), String>) -> Option<Transition> {
        match result {
            Ok(()) => {
                let mut s = self.lock();
                s.consecutive_failures = 0;
                match s.state {
                    StoreState::Probing | StoreState::Down => {
                        s.probe_successes += 1;
                        if s.probe_successes >= self.config.recovery_successes {
                            s.probe_successes = 0;
                            let reason = format!(
                                "{} probes in a row succeeded",
                                self.config.recovery_successes
                            );
                            self.set(&mut s, StoreState::Healthy, reason)
                        } else {
                            None
                        }
                    }
                    StoreState::Suspect => {
                        self.set(&mut s, StoreState::Healthy, "a probe succeeded".into())
                    }
                    StoreState::Healthy => None,
                }
            }
            Err(error) => {
                {
                    let mut s = self.lock();
                    s.probe_successes = 0;
                    if s.state == StoreState::Probing {
                        s.last_error = Some(error.clone());
                        return self.set(
                            &mut s,
                            StoreState::Down,
                            format!("probe failed: {error}"),
                        );
                    }
                }
                self.record_failure(&format!("probe failed: {error}"))
            }
        }
    }
}

/// What a change of upload target was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RouteChange {
    /// From the primary to the secondary.
    Failover,
    /// Back to the primary.
    Failback,
    /// Neither store takes uploads: segments wait in the local log.
    BothDown,
    /// The secondary takes uploads again after both were down.
    StoreBack,
}

impl RouteChange {
    /// `failover`, `failback`, `both-down`, `store-back`.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteChange::Failover => "failover",
            RouteChange::Failback => "failback",
            RouteChange::BothDown => "both-down",
            RouteChange::StoreBack => "store-back",
        }
    }
}

impl fmt::Display for RouteChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failover, a failback, or the loss or return of every store.
#[derive(Debug, Clone, Serialize)]
pub struct RouteEvent {
    /// Seconds since the Unix epoch.
    pub at_unix: f64,
    pub kind: RouteChange,
    /// The store written to before and after (`none` when both are down).
    pub from: String,
    pub to: String,
    pub reason: String,
}

/// Picks the store each upload goes to and remembers the recent switches.
#[derive(Debug)]
pub struct Router {
    pub primary: Arc<Health>,
    pub secondary: Arc<Health>,
    current: Mutex<Option<Role>>,
    history: Mutex<VecDeque<RouteEvent>>,
    failovers: AtomicU64,
    clock: Arc<dyn Clock>,
}

const HISTORY: usize = 50;

fn name(role: Option<Role>) -> String {
    role.map_or_else(|| "none".to_string(), |r| r.to_string())
}

impl Router {
    /// Both stores healthy, uploads to the primary; every state change and
    /// switch is timed by `clock`.
    pub fn new(config: HealthConfig, clock: Arc<dyn Clock>) -> Router {
        Router {
            primary: Arc::new(Health::new(Role::Primary, config.clone(), clock.clone())),
            secondary: Arc::new(Health::new(Role::Secondary, config, clock.clone())),
            clock,
            current: Mutex::new(Some(Role::Primary)),
            history: Mutex::new(VecDeque::new()),
            failovers: AtomicU64::new(0),
        }
    }

    pub fn health(&self, role: Role) -> &Arc<Health> {
        match role {
            Role::Primary => &self.primary,
            Role::Secondary => &self.secondary,
        }
    }

    /// The store an upload should go to now; `None` when both are down.
    pub fn pick(&self) -> Option<Role> {
        let pick = if self.primary.state().is_usable() {
            Some(Role::Primary)
        } else if self.secondary.state().is_usable() {
            Some(Role::Secondary)
        } else {
            None
        };
        self.note(pick);
        pick
    }

    /// The store written to, as of the last pick.
    pub fn current(&self) -> Option<Role> {
        *self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a change of the store written to.
    fn note(&self, pick: Option<Role>) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if *current == pick {
            return;
        }
        let kind = match (*current, pick) {
            (Some(Role::Primary), Some(Role::Secondary)) => RouteChange::Failover,
            (_, Some(Role::Primary)) => RouteChange::Failback,
            (_, None) => RouteChange::BothDown,
            // From none (the same store twice returned above).
            (_, Some(Role::Secondary)) => RouteChange::StoreBack,
        };
        let reason = match pick {
            Some(Role::Primary) => "primary is healthy again".to_string(),
            Some(Role::Secondary) => format!(
                "primary is {}: {}",
                self.primary.state(),
                self.primary.snapshot().last_error.unwrap_or_default()
            ),
            None => format!(
                "primary is {} ({}), secondary is {} ({}); segments wait in the local log",
                self.primary.state(),
                self.primary.snapshot().last_error.unwrap_or_default(),
                self.secondary.state(),
                self.secondary.snapshot().last_error.unwrap_or_default()
            ),
        };
        tracing::warn!(kind = kind.as_str(), from = %name(*current), to = %name(pick), %reason, "upload target changed");
        if kind == RouteChange::Failover {
            self.failovers.fetch_add(1, Ordering::Relaxed);
        }
        let event = RouteEvent {
            at_unix: self
                .clock
                .now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
            kind,
            from: name(*current),
            to: name(pick),
            reason,
        };
        *current = pick;
        let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        if history.len() == HISTORY {
            history.pop_front();
        }
        history.push_back(event);
    }

    /// Failovers (primary to secondary) since start.
    pub fn failovers(&self) -> u64 {
        self.failovers.load(Ordering::Relaxed)
    }

    /// Recent switches, oldest first.
    pub fn history(&self) -> Vec<RouteEvent> {
        self.history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reel_clock::ManualClock;

    fn quick() -> HealthConfig {
        HealthConfig {
            suspect_window: Duration::from_millis(30),
            ..HealthConfig::default()
        }
    }

    #[test]
    fn every_transition_of_one_store() {
        let clock = ManualClock::starting_now();
        let h = Health::new(Role::Primary, quick(), clock.clone());
        assert_eq!(h.state(), StoreState::Healthy);
        // healthy -> suspect -> healthy
        let t = h.record_failure("boom").unwrap();
        assert_eq!((t.from, t.to), (StoreState::Healthy, StoreState::Suspect));
        assert_eq!(h.record_success().unwrap().to, StoreState::Healthy);
        // suspect -> down by count
        h.record_failure("1");
        assert!(h.record_failure("2").is_none());
        let t = h.record_failure("3").unwrap();
        assert_eq!((t.from, t.to), (StoreState::Suspect, StoreState::Down));
        assert!(t.reason.contains("3 failures in a row"));
        // a lucky call does not bring a down store back
        assert!(h.record_success().is_none());
        assert_eq!(h.state(), StoreState::Down);
        // down -> probing -> down (failed probe)
        assert_eq!(h.probe_started().unwrap().to, StoreState::Probing);
        assert_eq!(
            h.probe_finished(Err("refused".into())).unwrap().to,
            StoreState::Down
        );
        // down -> probing -> (1 success) probing -> (2nd) healthy
        h.probe_started();
        assert!(h.probe_finished(Ok(())).is_none());
        assert_eq!(h.state(), StoreState::Probing);
        assert_eq!(h.probe_finished(Ok(())).unwrap().to, StoreState::Healthy);
        // suspect -> down by time
        h.record_failure("slow");
        clock.advance(Duration::from_millis(29));
        assert!(h.tick().is_none());
        clock.advance(Duration::from_millis(1));
        let t = h.tick().unwrap();
        assert_eq!((t.from, t.to), (StoreState::Suspect, StoreState::Down));
        assert!(
            t.reason.contains("no successful call for 0.0s"),
            "{}",
            t.reason
        );
        assert_eq!(h.snapshot().for_duration, Duration::ZERO);
        clock.advance(Duration::from_secs(5));
        assert_eq!(h.snapshot().for_duration, Duration::from_secs(5));
        // healthy -> down at once when the threshold is one failure
        let h1 = Health::new(
            Role::Secondary,
            HealthConfig {
                failure_threshold: 1,
                ..quick()
            },
            clock.clone(),
        );
        assert_eq!(h1.record_failure("x").unwrap().to, StoreState::Down);
        // a failed probe of a healthy store makes it suspect
        let h2 = Health::new(Role::Primary, quick(), clock);
        assert_eq!(
            h2.probe_finished(Err("x".into())).unwrap().to,
            StoreState::Suspect
        );
    }

    #[test]
    fn router_fails_over_back_and_to_none() {
        let r = Router::new(
            HealthConfig {
                failure_threshold: 1,
                recovery_successes: 1,
                ..quick()
            },
            reel_clock::system(),
        );
        assert_eq!(r.pick(), Some(Role::Primary));
        r.primary.record_failure("primary gone");
        assert_eq!(r.pick(), Some(Role::Secondary));
        r.secondary.record_failure("secondary gone");
        assert_eq!(r.pick(), None);
        r.secondary.probe_started();
        r.secondary.probe_finished(Ok(()));
        assert_eq!(r.pick(), Some(Role::Secondary));
        r.primary.probe_started();
        r.primary.probe_finished(Ok(()));
        assert_eq!(r.pick(), Some(Role::Primary));
        let kinds: Vec<&str> = r.history().into_iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["failover", "both-down", "store-back", "failback"]);
        assert!(r.history()[0].reason.contains("primary gone"));
    }
}
