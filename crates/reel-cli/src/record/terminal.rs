//! The recorded command's side: a pseudo-terminal (or, with no terminal,
//! plain pipes) between the user and the command, every byte passed
//! through unchanged and captured on the way.
//!
//! The byte path the user feels (command → pty → this process → the
//! user's terminal) runs on its own thread with blocking reads and writes:
//! a captured chunk is written to the user first and only then handed to
//! the backlog, which never waits on the network.

use std::fs::File;
use std::io::{Read, Write};
use std::mem::ManuallyDrop;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use reel_proto::v1::EventKind;
use rustix::termios::{self, OptionalActions, Termios, Winsize};

use super::uplink::Shared;

/// Standard input, output and error, unbuffered and never closed by us.
fn std_file(fd: i32) -> ManuallyDrop<File> {
    // SAFETY: 0, 1 and 2 are open for the life of the process; the
    // ManuallyDrop keeps them from being closed here.
    ManuallyDrop::new(unsafe { File::from_raw_fd(fd) })
}

fn stdin_fd() -> BorrowedFd<'static> {
    // SAFETY: standard input stays open for the life of the process.
    unsafe { BorrowedFd::borrow_raw(0) }
}

/// Standard input is a terminal.
pub(crate) fn stdin_is_terminal() -> bool {
    termios::isatty(stdin_fd())
}

/// The size of the user's terminal (standard input's), if it has one.
pub(crate) fn user_terminal_size() -> Option<(u16, u16)> {
    let size = termios::tcgetwinsize(stdin_fd()).ok()?;
    (size.ws_col > 0 && size.ws_row > 0).then_some((size.ws_col, size.ws_row))
}

/// The user's terminal in raw mode (every key goes to the command as it
/// is typed; the command's terminal does the echoing and line editing)
/// until dropped.
pub(crate) struct RawMode(Option<Termios>);

impl RawMode {
    pub(crate) fn enter() -> anyhow::Result<RawMode> {
        let saved = termios::tcgetattr(stdin_fd()).context("reading the terminal's mode")?;
        let mut raw = saved.clone();
        raw.make_raw();
        termios::tcsetattr(stdin_fd(), OptionalActions::Drain, &raw)
            .context("setting the terminal to raw mode")?;
        Ok(RawMode(Some(saved)))
    }

    /// Puts the terminal back as it was (also done on drop).
    pub(crate) fn restore(&mut self) {
        if let Some(saved) = self.0.take() {
            let _ = termios::tcsetattr(stdin_fd(), OptionalActions::Drain, &saved);
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        self.restore();
    }
}

/// A running recorded command: [`Controls`] to resize and signal it, and
/// the [`Waiter`] that waits for its end.
pub(crate) struct Session {
    pub controls: Controls,
    pub waiter: Waiter,
}

/// Resizes and signals the recorded command.
pub(crate) struct Controls {
    pid: i32,
    /// The pty's controlling side (none in pipe mode).
    pty: Option<Arc<OwnedFd>>,
}

/// Waits for the recorded command and its output.
pub(crate) struct Waiter {
    child: Child,
    /// The threads that carry output: done once the command's side closed.
    output: Vec<std::thread::JoinHandle<()>>,
    /// Set once the session is over: later bytes are passed through but no
    /// longer captured (they would follow the exit event).
    ended: Arc<AtomicBool>,
}

/// What to run and how.
pub(crate) struct Spawn<'a> {
    pub program: &'a str,
    pub args: &'a [String],
    /// Capture what the user types too.
    pub input: bool,
    /// The pty's size; none: pipes, no terminal.
    pub pty_size: Option<(u16, u16)>,
}

impl Session {
    /// Starts the command and the threads that carry its bytes.
    pub(crate) fn start(spawn: Spawn<'_>, shared: &Arc<Shared>) -> anyhow::Result<Session> {
        let ended = Arc::new(AtomicBool::new(false));
        match spawn.pty_size {
            Some(size) => Self::start_pty(spawn, size, shared, ended),
            None => Self::start_pipes(spawn, shared, ended),
        }
    }

    fn start_pty(
        spawn: Spawn<'_>,
        (cols, rows): (u16, u16),
        shared: &Arc<Shared>,
        ended: Arc<AtomicBool>,
    ) -> anyhow::Result<Session> {
        let (pty, pts) = pty_process::blocking::open().context("opening a pseudo-terminal")?;
        pty.resize(pty_process::Size::new(rows, cols))
            .context("sizing the pseudo-terminal")?;
        let child = pty_process::blocking::Command::new(spawn.program)
            .args(spawn.args)
            .spawn(pts)
            .with_context(|| format!("cannot run {}", spawn.program))?;
        let pty = Arc::new(OwnedFd::from(pty));
        let mut from_command = File::from(pty.try_clone().context("pty")?);
        let mut to_command = File::from(pty.try_clone().context("pty")?);

        let (shared_out, ended_out) = (shared.clone(), ended.clone());
        let output = std::thread::Builder::new()
            .name("reel-record-output".into())
            .spawn(move || {
                let mut user = std_file(1);
                carry(
                    &mut from_command,
                    &mut *user,
                    &shared_out,
                    &ended_out,
                    EventKind::Output,
                )
            })?;
        let (shared_in, ended_in, input) = (shared.clone(), ended.clone(), spawn.input);
        // Reads standard input until it ends; never joined (a read of a
        // terminal cannot be called off), the process exits past it.
        std::thread::Builder::new()
            .name("reel-record-input".into())
            .spawn(move || {
                let mut user = std_file(0);
                if input {
                    carry(
                        &mut *user,
                        &mut to_command,
                        &shared_in,
                        &ended_in,
                        EventKind::Input,
                    );
                } else {
                    let _ = std::io::copy(&mut *user, &mut to_command);
                }
            })?;
        Ok(Session {
            controls: Controls {
                pid: child.id() as i32,
                pty: Some(pty),
            },
            waiter: Waiter {
                child,
                output: vec![output],
                ended,
            },
        })
    }

    fn start_pipes(
        spawn: Spawn<'_>,
        shared: &Arc<Shared>,
        ended: Arc<AtomicBool>,
    ) -> anyhow::Result<Session> {
        let mut command = std::process::Command::new(spawn.program);
        command
            .args(spawn.args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Without input capture the command reads our standard input
        // itself: it sees its end exactly as it would without Reel.
        if spawn.input {
            command.stdin(Stdio::piped());
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot run {}", spawn.program))?;
        let mut output = Vec::new();
        let streams: [(Box<dyn Read + Send>, i32); 2] = [
            (Box::new(child.stdout.take().expect("piped")), 1),
            (Box::new(child.stderr.take().expect("piped")), 2),
        ];
        for (mut from, fd) in streams {
            let (shared, ended) = (shared.clone(), ended.clone());
            output.push(
                std::thread::Builder::new()
                    .name("reel-record-output".into())
                    .spawn(move || {
                        let mut user = std_file(fd);
                        carry(&mut from, &mut *user, &shared, &ended, EventKind::Output)
                    })?,
            );
        }
        if let Some(mut to_command) = child.stdin.take() {
            let (shared, ended) = (shared.clone(), ended.clone());
            std::thread::Builder::new()
                .name("reel-record-input".into())
                .spawn(move || {
                    let mut user = std_file(0);
                    carry(
                        &mut *user,
                        &mut to_command,
                        &shared,
                        &ended,
                        EventKind::Input,
                    );
                    // Dropping the pipe: the command sees the end of input.
                })?;
        }
        Ok(Session {
            controls: Controls {
                pid: child.id() as i32,
                pty: None,
            },
            waiter: Waiter {
                child,
                output,
                ended,
            },
        })
    }
}

impl Controls {
    /// The user's terminal changed size: the command's follows.
    pub(crate) fn resize(&self, cols: u16, rows: u16) -> anyhow::Result<()> {
        if let Some(pty) = &self.pty {
            termios::tcsetwinsize(
                pty.as_fd(),
                Winsize {
                    ws_row: rows,
                    ws_col: cols,
                    ws_xpixel: 0,
                    ws_ypixel: 0,
                },
            )
            .context("resizing the pseudo-terminal")?;
        }
        Ok(())
    }

    /// Sends `signal` to the command (in pty mode to its whole process
    /// group, as a terminal's hangup does).
    pub(crate) fn signal(&self, signal: rustix::process::Signal) {
        let Some(pid) = rustix::process::Pid::from_raw(self.pid) else {
            return;
        };
        if self.pty.is_some() {
            let _ = rustix::process::kill_process_group(pid, signal);
        } else {
            let _ = rustix::process::kill_process(pid, signal);
        }
    }
}

impl Waiter {
    /// Waits for the command to end, then for its output to drain (for at
    /// most `drain` once it has ended: a background process may keep the
    /// terminal open), and stops capturing.
    pub(crate) fn wait(mut self, drain: std::time::Duration) -> std::io::Result<ExitStatus> {
        let status = self.child.wait()?;
        let deadline = std::time::Instant::now() + drain;
        for thread in self.output {
            while !thread.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
        self.ended.store(true, Ordering::SeqCst);
        Ok(status)
    }
}

/// Copies `from` to `to` until `from` ends, capturing each chunk as an
/// event of `kind`. A write that fails (the user's terminal went away)
/// stops the passing on, not the capture.
///
/// Input is captured before the command is given it: the input thread is
/// never joined, so a chunk captured only after it was written could come
/// after the command read it, exited and the capture ended (`exit` typed
/// and missing from the recording on a busy machine). Output is captured
/// after the user's terminal has it, and its thread is drained before the
/// capture ends.
fn carry(
    from: &mut dyn Read,
    to: &mut dyn Write,
    shared: &Shared,
    ended: &AtomicBool,
    kind: EventKind,
) {
    let mut buf = vec![0u8; 32 * 1024];
    let mut passing = true;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // EIO: the command's side of the pty closed.
            Err(_) => return,
        };
        let capture = || {
            if !ended.load(Ordering::SeqCst) {
                shared.capture(kind, buf[..n].to_vec());
            }
        };
        if kind == EventKind::Input {
            capture();
        }
        if passing && to.write_all(&buf[..n]).is_err() {
            passing = false;
        }
        if kind != EventKind::Input {
            capture();
        }
    }
}

/// An exit status as a shell reports it: the code, or 128 + the signal.
pub(crate) fn exit_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(signal)) => (128 + signal) as u8,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::backlog::{Backlog, Limits};

    /// The command's side: takes what it is given and, as a command that
    /// reads `exit` does, ends the session at once (the capture ends).
    struct ExitsOnInput<'a>(&'a AtomicBool);

    impl Write for ExitsOnInput<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.store(true, Ordering::SeqCst);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What the command was given is in the recording even when the
    /// command ends, and the capture with it, the instant it has it.
    #[test]
    fn input_the_command_was_given_is_captured_even_if_it_ends_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            memory_bytes: 1 << 20,
            spool_bytes: 0,
        };
        let shared = Shared::new(
            Backlog::new(0, limits, dir.path()),
            std::time::Instant::now(),
        );
        let ended = AtomicBool::new(false);
        let mut typed: &[u8] = b"exit 3\r";
        carry(
            &mut typed,
            &mut ExitsOnInput(&ended),
            &shared,
            &ended,
            EventKind::Input,
        );
        let events = shared.backlog().batch(0, 10, 1 << 20);
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].kind, EventKind::Input as i32);
        assert_eq!(events[0].data, b"exit 3\r");
    }
}
