//! Where Reel's time comes from.
//!
//! The engine and the store health tracker read the time only through a
//! [`Clock`] given in their configuration: [`SystemClock`] in `reeld`, a
//! [`ManualClock`] in tests that must move time forward (a recording left
//! detached for ten minutes, a store silent past its suspect window) without
//! waiting for it. `reel-engine` and `reel-storage` forbid the direct calls
//! (`Instant::now`, `SystemTime::now`, `Instant::elapsed`) with clippy's
//! `disallowed-methods` (their `clippy.toml`), so no reading of the time
//! slips past the clock.
//!
//! Timers (`tokio::time::sleep`, time-outs on store calls) are not read
//! through the clock: they pace work, and a test shortens them through the
//! configuration instead.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A source of wall-clock and monotonic time.
pub trait Clock: fmt::Debug + Send + Sync {
    /// The wall-clock time (timestamps kept in the catalog and the audit
    /// log, ages measured against them).
    fn now(&self) -> SystemTime;

    /// The monotonic time (how long something has waited).
    fn instant(&self) -> Instant;

    /// Microseconds since the Unix epoch (0 for a clock set before it).
    fn now_us(&self) -> i64 {
        self.now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0)
    }

    /// Monotonic time since `earlier` (zero if `earlier` is later).
    fn elapsed(&self, earlier: Instant) -> Duration {
        self.instant().saturating_duration_since(earlier)
    }
}

/// The clocks of the operating system.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

#[allow(clippy::disallowed_methods)] // the one place that reads them
impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn instant(&self) -> Instant {
        Instant::now()
    }
}

/// The clock of `reeld`, shared.
pub fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// A clock that stands still until [`ManualClock::advance`] moves it: both
/// its wall and its monotonic time move by exactly what was advanced.
#[derive(Debug)]
pub struct ManualClock {
    wall: SystemTime,
    start: Instant,
    advanced: Mutex<Duration>,
}

impl ManualClock {
    /// A clock that reads `wall` now.
    #[allow(clippy::disallowed_methods)] // an origin for the monotonic time
    pub fn new(wall: SystemTime) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            wall,
            start: Instant::now(),
            advanced: Mutex::new(Duration::ZERO),
        })
    }

    /// A clock that starts at the system's wall-clock time.
    #[allow(clippy::disallowed_methods)]
    pub fn starting_now() -> Arc<ManualClock> {
        ManualClock::new(SystemTime::now())
    }

    /// Moves both times forward by `by`.
    pub fn advance(&self, by: Duration) {
        *self.advanced.lock().expect("clock lock") += by;
    }

    fn advanced(&self) -> Duration {
        *self.advanced.lock().expect("clock lock")
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        self.wall + self.advanced()
    }

    fn instant(&self) -> Instant {
        self.start + self.advanced()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_advanced() {
        let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(100));
        let (wall, mono) = (clock.now(), clock.instant());
        assert_eq!(clock.now_us(), 100_000_000);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!((clock.now(), clock.instant()), (wall, mono));
        clock.advance(Duration::from_secs(600));
        assert_eq!(clock.now_us(), 700_000_000);
        assert_eq!(clock.elapsed(mono), Duration::from_secs(600));
        // Time before the epoch reads as 0, not as a negative wrap.
        let before = ManualClock::new(UNIX_EPOCH - Duration::from_secs(1));
        assert_eq!(before.now_us(), 0);
    }

    #[test]
    fn the_system_clock_moves_forward() {
        let clock = SystemClock;
        let t = clock.instant();
        std::thread::sleep(Duration::from_millis(2));
        assert!(clock.elapsed(t) >= Duration::from_millis(2));
        assert!(clock.now_us() > 1_700_000_000_000_000);
    }
}
