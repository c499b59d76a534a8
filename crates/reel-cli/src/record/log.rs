//! Where `reel record` says what happened to the stream. Never the
//! recorded user's terminal: the session's screen is the user's, and a
//! bastion's operator reads a log file (`--log`) instead.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
pub(crate) struct Log(Option<Arc<Mutex<std::fs::File>>>);

impl Log {
    /// Appends to `path`; none: lines are dropped.
    pub(crate) fn open(path: Option<&Path>) -> anyhow::Result<Log> {
        let Some(path) = path else {
            return Ok(Log(None));
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| anyhow::anyhow!("cannot open the log file {}: {e}", path.display()))?;
        Ok(Log(Some(Arc::new(Mutex::new(file)))))
    }

    /// Lines go somewhere.
    pub(crate) fn is_open(&self) -> bool {
        self.0.is_some()
    }

    /// One line, with the time and the process id.
    pub(crate) fn line(&self, text: &str) {
        if let Some(file) = &self.0 {
            let now = humantime::format_rfc3339_millis(std::time::SystemTime::now());
            let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
            let _ = writeln!(file, "{now} reel record[{}]: {text}", std::process::id());
        }
    }
}
