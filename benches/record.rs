//! What `reel record` costs the recorded user: the time from a command's
//! write to the user's terminal receiving it, with and without `reel
//! record` in between, in the same run; and `reel record`'s own CPU for a
//! session printing 1 MB/s, recorded into a real reeld.
//!
//! The "user's terminal" is a pseudo-terminal this bench holds: `reel
//! record` (or, for the baseline, the command alone) runs with its other
//! side as its controlling terminal, as under sshd. The command is this
//! bench binary itself (`REEL_BENCH_WRITER`), which writes lines holding
//! the CLOCK_MONOTONIC time of their write; the bench reads them from its
//! side and takes the difference.
//!
//! Run: `cargo bench --bench record` (`-- --quick`: fewer lines, 5 s of CPU
//! measure). Goal (issue 14): p99 added latency at most 1 ms; CPU under 5%
//! of one core at 1 MB/s.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use reel_testkit::{Reeld, bench_dir, bin};

const WRITER: &str = "REEL_BENCH_WRITER";

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The command: `lines LINES INTERVAL_US` (stamped lines) or `rate
/// BYTES_PER_SECOND SECONDS` (terminal-like output at a rate).
fn writer(args: &[String]) {
    let mut out = std::io::stdout().lock();
    match args.first().map(String::as_str) {
        Some("lines") => {
            let n: u64 = args[1].parse().unwrap();
            let interval = Duration::from_micros(args[2].parse().unwrap());
            for _ in 0..n {
                std::thread::sleep(interval);
                let _ = writeln!(out, "T {}", monotonic_ns());
                let _ = out.flush();
            }
        }
        Some("rate") => {
            let rate: u64 = args[1].parse().unwrap();
            let seconds: u64 = args[2].parse().unwrap();
            let chunk = rate / 100;
            let line = "0123456789abcdefghijklmnopqrstuvwxyz ls -la /var/log \x1b[32mok\x1b[0m\r\n";
            let block: String =
                line.repeat(chunk as usize / line.len() + 1)[..chunk as usize].into();
            let start = Instant::now();
            for i in 0..seconds * 100 {
                let due = start + Duration::from_millis(i * 10);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let _ = out.write_all(block.as_bytes());
                let _ = out.flush();
            }
        }
        _ => panic!("writer: lines N US | rate BYTES SECONDS"),
    }
}

/// Runs `program args` with a new pseudo-terminal as its terminal; returns
/// the child and this side of the terminal.
fn in_terminal(
    program: &std::path::Path,
    args: &[String],
    envs: &[(&str, String)],
) -> (std::process::Child, std::fs::File) {
    let (pty, pts) = pty_process::blocking::open().unwrap();
    pty.resize(pty_process::Size::new(24, 80)).unwrap();
    let child = pty_process::blocking::Command::new(program)
        .args(args)
        .envs(envs.iter().map(|(k, v)| (k.to_string(), v.clone())))
        .spawn(pts)
        .unwrap();
    (child, std::fs::File::from(OwnedFd::from(pty)))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Latencies (ms) of stamped lines through `program args`.
fn latencies(program: &std::path::Path, args: Vec<String>, envs: &[(&str, String)]) -> Vec<f64> {
    let (mut child, terminal) = in_terminal(program, &args, envs);
    let mut lat = Vec::new();
    for line in BufReader::new(terminal).lines() {
        let Ok(line) = line else { break };
        let now = monotonic_ns();
        if let Some(stamp) = line
            .trim()
            .strip_prefix("T ")
            .and_then(|s| s.parse::<u64>().ok())
        {
            lat.push(now.saturating_sub(stamp) as f64 / 1e6);
        }
    }
    let _ = child.wait();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    lat
}

/// CPU seconds (user + system) of a process so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // After the command name: state is field 0, utime 11, stime 12.
    // SAFETY: sysconf reads a constant of the system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if std::env::var_os(WRITER).is_some() {
        return writer(&args[1..]);
    }
    let quick = args.iter().any(|a| a == "--quick");
    let (lines, seconds) = if quick { (500u64, 5u64) } else { (3000, 10) };
    let dir = bench_dir();
    let reeld = Reeld::start(&dir.path().join("data"), &[]).unwrap();
    let me = std::env::current_exe().unwrap();
    let env = [(WRITER, "1".to_string())];
    let reel_args = |command: Vec<String>| {
        let mut a = vec![
            "--server".to_string(),
            reeld.http.clone(),
            "--grpc".into(),
            reeld.grpc.clone(),
            "--token".into(),
            reeld.token().unwrap(),
            "record".into(),
            "--user".into(),
            "bench".into(),
            "--".into(),
            me.to_str().unwrap().into(),
        ];
        a.extend(command);
        a
    };
    let stamped = vec!["lines".to_string(), lines.to_string(), "2000".into()];

    println!("reel record: command write -> user's terminal, {lines} lines, 2 ms apart");
    let mut rows = Vec::new();
    for round in 0..2 {
        let direct = latencies(&me, stamped.clone(), &env);
        let recorded = latencies(&bin("reel"), reel_args(stamped.clone()), &env);
        for (what, l) in [("direct", &direct), ("reel record", &recorded)] {
            println!(
                "  round {round} {what:12} n={:5} p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
                l.len(),
                percentile(l, 0.5),
                percentile(l, 0.99),
                l.last().copied().unwrap_or(0.0)
            );
        }
        rows.push(percentile(&recorded, 0.99) - percentile(&direct, 0.99));
    }
    println!(
        "  p99 added by reel record: {} ms (goal <= 1 ms)",
        rows.iter()
            .map(|d| format!("{d:+.3}"))
            .collect::<Vec<_>>()
            .join(", ")
    );

    let rate = 1_000_000u64;
    let (mut child, terminal) = in_terminal(
        &bin("reel"),
        &reel_args(vec!["rate".into(), rate.to_string(), seconds.to_string()]),
        &env,
    );
    let reader = std::thread::spawn(move || {
        let mut t = terminal;
        let _ = std::io::copy(&mut t, &mut std::io::sink());
    });
    let pid = child.id();
    std::thread::sleep(Duration::from_secs(1));
    let (c0, t0) = (cpu_seconds(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(seconds - 2));
    let (c1, t1) = (cpu_seconds(pid), Instant::now());
    let _ = child.wait();
    let _ = reader.join();
    let share = (c1 - c0) / (t1 - t0).as_secs_f64();
    println!(
        "reel record at {} MB/s of output: {:.1}% of one core (goal < 5%)",
        rate / 1_000_000,
        share * 100.0
    );
}
