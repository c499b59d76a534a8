//! `reel record`: runs a command (by default the user's shell) in a new
//! pseudo-terminal and records it live into reeld, the way a bastion
//! records every SSH session (sshd's `ForceCommand`).
//!
//! The recorded user is never slowed by Reel: what the command prints goes
//! to the user's terminal first and is captured after; events wait in a
//! bounded backlog (memory, then a sealed spool file) while reeld is slow
//! or unreachable, and the stream resumes the same recording when it is
//! back. With `--require-recording` the session fails closed instead: it
//! does not start without reeld, and it is ended when its events cannot be
//! made durable in time.

mod backlog;
mod log;
pub(crate) mod privileged;
mod terminal;
mod uplink;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use reel_proto::v1::{EventKind, RecordingMetadata, Terminal};
use rustix::process::Signal;
use tokio::signal::unix::{SignalKind, signal};

use crate::{Client, UsageError, grpc};
use backlog::{Backlog, Limits};
pub(crate) use log::Log;
use terminal::{RawMode, Session, Spawn};
use uplink::{Shared, Uplink};

/// The exit status when Reel ends or refuses a session (EX_TEMPFAIL).
const EXIT_RECORDING_FAILED: u8 = 75;

#[derive(Debug, Args)]
pub struct RecordArgs {
    /// The user whose session this is (default: $USER).
    #[arg(long)]
    user: Option<String>,
    /// The host or service the session is on (default: this host's name).
    #[arg(long)]
    target: Option<String>,
    /// Default: "ssh" under sshd, else "tty".
    #[arg(long)]
    protocol: Option<String>,
    /// A label, as NAME=VALUE; repeat for more.
    #[arg(long = "label", value_parser = crate::ingest::parse_label)]
    labels: Vec<(String, String)>,
    /// Default: the command line.
    #[arg(long)]
    title: Option<String>,
    /// Record what the user types too (passwords typed at a prompt
    /// included: the terminal does not echo them, the recording has them).
    #[arg(long)]
    input: bool,
    /// Fail closed: do not start the session unless reeld takes the
    /// recording, and end it when its events cannot be made durable within
    /// --require-within.
    #[arg(long, env = "REEL_REQUIRE_RECORDING")]
    require_recording: bool,
    /// How long events may wait to be made durable with --require-recording.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    require_within: Duration,
    /// The token file of this recorder (a recorder token); refused if users
    /// other than its owner and group may read it.
    #[arg(long, env = "REEL_RECORD_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Memory that events waiting for reeld may take.
    #[arg(long, default_value_t = 16 << 20)]
    memory_bytes: usize,
    /// Beyond memory, events wait in a spool file (unlinked, sealed with a
    /// key only this process holds) of at most this many bytes.
    #[arg(long, default_value_t = 256 << 20)]
    spool_bytes: u64,
    /// Where the spool file is made (default: $XDG_RUNTIME_DIR, else $TMPDIR, else /tmp).
    #[arg(long)]
    spool_dir: Option<PathBuf>,
    /// Once the command has ended, how long to wait for reeld to take the
    /// last events.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    finish_within: Duration,
    /// Append what happens to the stream (connections, reconnections,
    /// losses) to this file; nothing is written to the user's terminal.
    #[arg(long)]
    log: Option<PathBuf>,
    /// Run the command in a pseudo-terminal: when standard input is one
    /// (auto), always, or never (pipes).
    #[arg(long, value_enum, default_value_t = PtyMode::Auto)]
    pty: PtyMode,
    /// Where to send and with what token, from a file (TOML: server, grpc,
    /// token_file, ca_file, client_cert, client_key, require_recording,
    /// require_within, log). A setgid copy of reel reads only this file,
    /// /etc/reel/record.toml unless given, which root must own.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The shell run when no command is given (default: $SHELL, else /bin/sh).
    #[arg(long)]
    shell: Option<String>,
    /// The command and its arguments (default: the shell; under sshd with
    /// a command asked for, `$SHELL -c "$SSH_ORIGINAL_COMMAND"`).
    #[arg(last = true)]
    command: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PtyMode {
    Auto,
    Always,
    Never,
}

/// Runs the session; the exit status is the command's.
pub(crate) async fn run(
    client: &Client,
    grpc_flag: Option<&str>,
    server: &str,
    args: RecordArgs,
    log: Option<Log>,
) -> anyhow::Result<ExitCode> {
    let (program, program_args) = command_line(&args);
    let interactive = terminal::stdin_is_terminal();
    let pty_size = match args.pty {
        PtyMode::Never => None,
        PtyMode::Auto if !interactive => None,
        _ => Some(terminal::user_terminal_size().unwrap_or((80, 24))),
    };
    let metadata = metadata(&args, &program, &program_args, pty_size);
    let log = match log {
        Some(log) if log.is_open() => log,
        _ => Log::open(args.log.as_deref())?,
    };

    let endpoint = grpc::endpoint(client, grpc_flag, server)
        .await?
        .connect_timeout(Duration::from_secs(2))
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5));
    log.line(&format!("streaming to {}", endpoint.uri()));
    let ingest = grpc::ingest(endpoint.connect_lazy(), client)?;

    let start = Instant::now();
    let spool_dir = args.spool_dir.clone().unwrap_or_else(default_spool_dir);
    let limits = Limits {
        memory_bytes: args.memory_bytes,
        spool_bytes: args.spool_bytes,
    };
    let shared = Shared::new(Backlog::new(0, limits, &spool_dir), start);
    let (finish, finished) = tokio::sync::watch::channel(None);
    let uplink =
        tokio::spawn(Uplink::new(ingest, metadata, shared.clone(), log.clone()).run(finished));

    if args.require_recording {
        // Fail closed: no session until the server has taken the recording.
        let deadline = Instant::now() + args.require_within;
        while shared.link().recording.is_none() {
            if Instant::now() >= deadline {
                let why = shared
                    .link()
                    .last_error
                    .unwrap_or_else(|| "no answer".into());
                eprintln!(
                    "reel record: this session cannot start: recording is required and reeld did not take it within {:?} ({why})",
                    args.require_within
                );
                log.line(&format!("session refused: reeld unreachable: {why}"));
                return Ok(ExitCode::from(EXIT_RECORDING_FAILED));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    let mut raw = if interactive && pty_size.is_some() {
        Some(RawMode::enter()?)
    } else {
        None
    };
    let session = Session::start(
        Spawn {
            program: &program,
            args: &program_args,
            input: args.input,
            pty_size,
        },
        &shared,
    )?;
    let outcome = supervise(session, &shared, &args, &log).await;
    if let Some(r) = raw.as_mut() {
        r.restore();
    }
    let code = match outcome? {
        Ended::Exited(code) => code,
        Ended::RecordingFailed(why) => {
            eprintln!("\r\nreel record: this session was ended: {why}");
            log.line(&format!("session ended: {why}"));
            EXIT_RECORDING_FAILED
        }
    };
    shared.capture(EventKind::Exit, code.to_string().into_bytes());
    let _ = finish.send(Some(shared.elapsed_us()));

    // A session that must be recorded waits no longer for the end than for
    // any other event.
    let finish_within = if args.require_recording {
        args.finish_within.min(args.require_within)
    } else {
        args.finish_within
    };
    match tokio::time::timeout(finish_within, uplink).await {
        Ok(Ok(closed)) => {
            log.line(&format!(
                "closed {}: {} events{}",
                closed.recordings.join(", "),
                closed.event_count,
                if closed.lost.events > 0 {
                    format!(
                        "; {} events ({} bytes) were lost while reeld was unreachable",
                        closed.lost.events, closed.lost.bytes
                    )
                } else {
                    String::new()
                }
            ));
            if closed.lost.events > 0 {
                eprintln!(
                    "reel record: {} events of this session could not be kept (reeld was unreachable and the recorder's spool was full)",
                    closed.lost.events
                );
            }
            Ok(ExitCode::from(code))
        }
        Ok(Err(e)) => Err(anyhow::anyhow!("the stream to reeld failed: {e}")),
        Err(_) => {
            let held = {
                let b = shared.backlog();
                b.next() - b.first()
            };
            let link = shared.link();
            eprintln!(
                "reel record: reeld did not take the last {held} events of this session within {:?}; they are lost{}",
                finish_within,
                link.recording
                    .map(|id| format!(
                        " (recording {id} stays open until reeld closes it as interrupted)"
                    ))
                    .unwrap_or_default()
            );
            log.line(&format!("gave up with {held} events held"));
            Ok(ExitCode::from(if args.require_recording {
                EXIT_RECORDING_FAILED
            } else {
                code
            }))
        }
    }
}

/// How the session ended.
enum Ended {
    /// The command ended with this status.
    Exited(u8),
    /// Recording is required and failed: the session was ended.
    RecordingFailed(String),
}

/// Waits for the command to end while passing on resizes and signals, and
/// (with --require-recording) ends the session when its events wait too
/// long.
async fn supervise(
    session: Session,
    shared: &Arc<Shared>,
    args: &RecordArgs,
    log: &Log,
) -> anyhow::Result<Ended> {
    let Session { controls, waiter } = session;
    let controls = Arc::new(controls);
    let mut winch = signal(SignalKind::window_change())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let waiting = tokio::task::spawn_blocking(move || waiter.wait(Duration::from_millis(500)));
    tokio::pin!(waiting);
    let mut check = tokio::time::interval(Duration::from_millis(50));
    let mut failed: Option<String> = None;
    loop {
        tokio::select! {
            status = &mut waiting => {
                let status = status
                    .context("waiting for the command")?
                    .context("waiting for the command")?;
                return Ok(match failed {
                    Some(why) => Ended::RecordingFailed(why),
                    None => Ended::Exited(terminal::exit_code(status)),
                });
            }
            _ = winch.recv() => {
                if let Some((cols, rows)) = terminal::user_terminal_size() {
                    match controls.resize(cols, rows) {
                        Ok(()) => shared.capture(EventKind::Resize, format!("{cols}x{rows}").into_bytes()),
                        Err(e) => log.line(&format!("{e:#}")),
                    }
                }
            }
            _ = hangup.recv() => controls.signal(Signal::HUP),
            _ = terminate.recv() => controls.signal(Signal::HUP),
            // In a pty the command gets ^C as a byte; with pipes it is in
            // our process group and got SIGINT itself. Either way this
            // process stays to record the rest.
            _ = interrupt.recv() => {}
            _ = check.tick(), if args.require_recording && failed.is_none() => {
                if let Some(why) = recording_failure(shared, args.require_within) {
                    log.line(&format!("ending the session: {why}"));
                    controls.signal(Signal::HUP);
                    failed = Some(why);
                    // A command that ignores the hangup is killed.
                    let controls = controls.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        controls.signal(Signal::KILL);
                    });
                }
            }
        }
    }
}

/// Why a session that must be recorded has to end now, if it must.
fn recording_failure(shared: &Shared, within: Duration) -> Option<String> {
    let lost = shared.backlog().lost().events;
    if lost > 0 {
        return Some(format!("{lost} events of it could not be kept"));
    }
    let waited = shared.oldest_wait().filter(|w| *w > within)?;
    Some(format!(
        "recording is required and reeld has not made its events durable for {:.1} s ({})",
        waited.as_secs_f64(),
        shared
            .link()
            .last_error
            .unwrap_or_else(|| "no acknowledgement".into())
    ))
}

/// The command to run: the one given, else the command sshd was asked
/// for, else the shell (as a login shell).
fn command_line(args: &RecordArgs) -> (String, Vec<String>) {
    if let Some((program, rest)) = args.command.split_first() {
        return (program.clone(), rest.to_vec());
    }
    let shell = args.shell.clone().unwrap_or_else(user_shell);
    match std::env::var("SSH_ORIGINAL_COMMAND") {
        Ok(c) if !c.is_empty() => (shell, vec!["-c".into(), c]),
        _ => (shell, vec!["-l".into()]),
    }
}

/// $SHELL, unless it is Reel itself (run as a login shell), else /bin/sh.
fn user_shell() -> String {
    let own = std::env::current_exe().ok();
    std::env::var("SHELL")
        .ok()
        .filter(|s| !s.is_empty())
        .filter(|s| {
            let resolved = std::fs::canonicalize(s).ok();
            resolved.is_none() || resolved != own
        })
        .unwrap_or_else(|| "/bin/sh".into())
}

fn metadata(
    args: &RecordArgs,
    program: &str,
    program_args: &[String],
    pty_size: Option<(u16, u16)>,
) -> RecordingMetadata {
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    let ssh = std::env::var("SSH_CONNECTION").ok();
    let mut labels: HashMap<String, String> = HashMap::new();
    // "client_ip client_port server_ip server_port", as sshd sets it.
    if let Some(parts) = ssh
        .as_deref()
        .map(|s| s.split_whitespace().collect::<Vec<_>>())
        && parts.len() == 4
    {
        labels.insert("source_address".into(), parts[0].into());
        labels.insert("source_port".into(), parts[1].into());
    }
    if let Ok(c) = std::env::var("SSH_ORIGINAL_COMMAND")
        && !c.is_empty()
        && args.command.is_empty()
    {
        labels.insert("ssh_command".into(), c);
    }
    labels.insert("host".into(), host.clone());
    labels.extend(args.labels.iter().cloned());
    let user = args
        .user
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| format!("uid:{}", rustix::process::getuid().as_raw()));
    let title = args.title.clone().unwrap_or_else(|| {
        std::iter::once(program)
            .chain(program_args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    });
    RecordingMetadata {
        user,
        target: args.target.clone().unwrap_or(host),
        protocol: args
            .protocol
            .clone()
            .unwrap_or_else(|| if ssh.is_some() { "ssh" } else { "tty" }.into()),
        labels,
        started_at_us: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0),
        terminal: pty_size.map(|(cols, rows)| Terminal {
            cols: cols.into(),
            rows: rows.into(),
            term_type: std::env::var("TERM").unwrap_or_default(),
        }),
        title,
        source_format: "reel-record".into(),
        source_header: String::new(),
    }
}

fn default_spool_dir() -> PathBuf {
    ["XDG_RUNTIME_DIR", "TMPDIR"]
        .iter()
        .filter_map(std::env::var_os)
        .map(PathBuf::from)
        .find(|p| p.is_dir())
        .unwrap_or_else(|| PathBuf::from("/tmp"))
}

impl RecordArgs {
    pub(crate) fn token_file(&self) -> Option<&Path> {
        self.token_file.as_deref()
    }

    pub(crate) fn config(&self) -> Option<&Path> {
        self.config.as_deref()
    }

    /// What the configuration file decides over the command line.
    pub(crate) fn apply(&mut self, settings: &privileged::Settings) {
        self.require_recording |= settings.require_recording;
        if let Some(within) = settings.require_within {
            self.require_within = within;
        }
    }
}

/// The recorder's token: `--token` (or `REEL_TOKEN`), else the token file
/// (`--token-file`, else `REEL_TOKEN_FILE`), which is refused if every user
/// may read it.
pub(crate) fn token(flag: Option<String>, file: Option<&Path>) -> anyhow::Result<Option<String>> {
    if let Some(token) = flag.filter(|t| !t.trim().is_empty()) {
        return Ok(Some(token.trim().to_string()));
    }
    let file = file
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("REEL_TOKEN_FILE").map(PathBuf::from));
    let Some(file) = file else {
        return crate::token::resolve(None);
    };
    check_token_file(&file)?;
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read the token file {}", file.display()))?;
    Ok(Some(text.trim().to_string()))
}

/// Refuses a token file that users other than its owner and group may
/// read or change: on a bastion the recorded users must not get the
/// recorder's token.
pub(crate) fn check_token_file(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read the token file {}", path.display()))?;
    let mode = meta.mode() & 0o777;
    if mode & 0o007 != 0 {
        return Err(UsageError(format!(
            "the token file {} can be read or changed by every user (mode {mode:03o}); \
             make it readable by its owner (and the recorder's group) only: chmod o-rwx {}",
            path.display(),
            path.display()
        ))
        .into());
    }
    Ok(())
}
