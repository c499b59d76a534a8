//! The threads seals run on, below ingest in the scheduler's eyes.
//!
//! A seal (reading a recording's records back from the journal, encoding
//! and encrypting a segment, spooling it, a synced catalog batch) is work
//! that may wait; an acknowledgement is not. A server holding ten thousand
//! recordings seals a first segment of each about a minute after they
//! start, on the same cores as the ingest path; on tokio's blocking threads
//! those seals took the cores from the acknowledgements (10,000 recordings
//! held 90 s: p99 24-27 ms, where the first minute alone gave 11 ms; on
//! these threads 12-15 ms, BENCHMARKS.md). They run at nice 10: the kernel
//! gives the ingest path's threads the cores first and the seals what is
//! left, which on a server not saturated is plenty. They are few (each
//! keeps its allocator's pages: 16 took 8 KiB more a recording at 10,000
//! than 8), and a seal waits for one.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;
use tracing::warn;

use crate::error::{EngineError, Result};

/// How much lower than the process's threads a seal thread runs.
const NICENESS: i32 = 10;

type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of threads taking seal jobs in order. The threads end once
/// the pool is dropped and the jobs queued before are done.
pub(crate) struct SealPool {
    jobs: mpsc::Sender<Job>,
}

impl SealPool {
    /// Starts `threads` threads (at least one).
    pub(crate) fn start(threads: usize) -> Result<SealPool> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("reel-seal-{i}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        // The lock is held only while waiting for the next job.
                        let job = rx.lock().expect("seal queue lock").recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => break,
                        }
                    }
                })
                .map_err(|e| EngineError::Internal(format!("starting seal thread {i}: {e}")))?;
        }
        Ok(SealPool { jobs: tx })
    }

    /// Runs `f` on one of the pool's threads and waits for it. A panic in
    /// `f` is an error here and leaves the thread serving.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            if let Ok(out) = std::panic::catch_unwind(AssertUnwindSafe(f)) {
                let _ = tx.send(out);
            }
        });
        self.jobs
            .send(job)
            .map_err(|_| EngineError::Internal("the seal threads are gone".into()))?;
        rx.await
            .map_err(|_| EngineError::Internal("a seal panicked".into()))
    }
}

/// Lowers the calling thread's priority (on Linux a thread has its own
/// nice value); where that is refused the thread runs as it is.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid has no preconditions; setpriority only reads its
        // integer arguments.
        let tid = unsafe { libc::gettid() } as libc::id_t;
        let now = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid) };
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, now + NICENESS) } != 0 {
            warn!(
                error = %std::io::Error::last_os_error(),
                "seal threads run at the process's priority"
            );
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::{NICENESS, SealPool};

    fn nice_of_this_thread() -> i32 {
        // SAFETY: as in `lower_priority`.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
    }

    #[tokio::test]
    async fn seals_run_below_the_ingest_threads_and_survive_a_panic() {
        let pool = SealPool::start(2).unwrap();
        let ours = nice_of_this_thread();
        let theirs = pool.run(nice_of_this_thread).await.unwrap();
        assert_eq!(theirs, (ours + NICENESS).min(19));
        let err = pool
            .run(|| -> u32 { panic!("a seal that panics") })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("panicked"), "{err}");
        // Both threads still serve.
        for _ in 0..4 {
            assert_eq!(pool.run(|| 7).await.unwrap(), 7);
        }
    }
}
