//! A bastion as the README sets one up: a real OpenSSH server (started by
//! the test on a loopback port, its own host key and configuration) whose
//! `ForceCommand` runs a setgid copy of `reel record` for every session,
//! with the recorder's token readable by the recorder's group only. Logins
//! as a real (test) user, with and without a terminal.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use reel_proto::v1::{Event, EventKind};
use reel_testkit::{Reeld, Rng, bin, wait_for};

fn run(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program).args(args).output().expect(program);
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A Unix user and the recorder's group, made for the test and removed
/// after it.
struct Accounts {
    user: String,
    group: String,
}

impl Accounts {
    fn create(home: &Path) -> Accounts {
        let n = Rng::from_env("bastion").range(0..1_000_000);
        let accounts = Accounts {
            user: format!("reelssh{n}"),
            group: format!("reelrec{n}"),
        };
        run("groupadd", &[&accounts.group]);
        // '*': no password, and not locked (sshd refuses locked accounts).
        run(
            "useradd",
            &[
                "-M",
                "-d",
                home.to_str().unwrap(),
                "-s",
                "/bin/sh",
                "-p",
                "*",
                &accounts.user,
            ],
        );
        std::fs::create_dir_all(home).unwrap();
        run("chown", &[&accounts.user, home.to_str().unwrap()]);
        accounts
    }
}

impl Drop for Accounts {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.user).output();
        let _ = Command::new("groupdel").arg(&self.group).output();
    }
}

struct Sshd {
    child: Child,
    port: u16,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bastion: accounts, the setgid recorder, its root-owned
/// configuration and group-only token, and sshd forcing it on every login.
struct Bastion {
    dir: PathBuf,
    accounts: Accounts,
    sshd: Sshd,
    token_file: PathBuf,
    recorder: PathBuf,
}

impl Bastion {
    fn start(dir: &Path, reeld: &Reeld) -> Bastion {
        // Everything here must be reachable by the test user.
        std::fs::create_dir_all(dir).unwrap();
        for d in dir.ancestors().take(2) {
            chmod(d, 0o755);
        }
        let accounts = Accounts::create(&dir.join("home"));
        let group = accounts.group.as_str();

        let out = reeld.reel(&["token", "create", "--name", "bastion", "--role", "recorder"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let token = String::from_utf8(out.stdout).unwrap();
        let token = token.lines().last().unwrap().trim().to_string();
        let token_file = dir.join("recorder.token");
        std::fs::write(&token_file, format!("{token}\n")).unwrap();
        run("chgrp", &[group, token_file.to_str().unwrap()]);
        chmod(&token_file, 0o640);

        // The recorder: a copy of reel, setgid to the recorder's group.
        let recorder = dir.join("reel-record");
        std::fs::copy(bin("reel"), &recorder).unwrap();
        run("chgrp", &[group, recorder.to_str().unwrap()]);
        chmod(&recorder, 0o2755);
        let log = dir.join("record.log");
        std::fs::write(&log, "").unwrap();
        run("chgrp", &[group, log.to_str().unwrap()]);
        chmod(&log, 0o660);
        let config = dir.join("record.toml");
        std::fs::write(
            &config,
            format!(
                "server = \"{}\"\ngrpc = \"{}\"\ntoken_file = \"{}\"\nlog = \"{}\"\n",
                reeld.http,
                reeld.grpc,
                token_file.display(),
                log.display()
            ),
        )
        .unwrap();
        chmod(&config, 0o644);

        let keygen = |path: &Path| {
            run(
                "ssh-keygen",
                &[
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-f",
                    path.to_str().unwrap(),
                ],
            )
        };
        keygen(&dir.join("host_key"));
        keygen(&dir.join("user_key"));
        std::fs::copy(dir.join("user_key.pub"), dir.join("authorized_keys")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let sshd_config = dir.join("sshd_config");
        std::fs::write(
            &sshd_config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {dir}/host_key\nPidFile {dir}/sshd.pid\n\
                 AuthorizedKeysFile {dir}/authorized_keys\nStrictModes no\nUsePAM no\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin no\n\
                 PrintMotd no\nPrintLastLog no\nAllowUsers {user}\n\
                 ForceCommand {dir}/reel-record record --config {dir}/record.toml\n",
                dir = dir.display(),
                user = accounts.user
            ),
        )
        .unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&sshd_config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("sshd.log")).unwrap())
            .spawn()
            .expect("start sshd (scripts/setup test installs openssh-server)");
        Bastion {
            dir: dir.to_path_buf(),
            accounts,
            sshd: Sshd { child, port },
            token_file,
            recorder,
        }
    }

    /// `ssh` as the test user with `options`, `stdin` fed to it.
    fn ssh(&self, options: &[&str], command: Option<&str>, stdin: &str) -> Output {
        let mut child = Command::new("ssh")
            .args(["-F", "/dev/null", "-i"])
            .arg(self.dir.join("user_key"))
            .args(["-p", &self.sshd.port.to_string()])
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "LogLevel=ERROR",
            ])
            .args(options)
            .arg(format!("{}@127.0.0.1", self.accounts.user))
            .args(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        std::io::Write::write_all(&mut input, stdin.as_bytes()).unwrap();
        // ssh -tt sends the input as typed; the shell needs it open until
        // it has read `exit`.
        std::thread::sleep(Duration::from_millis(300));
        drop(input);
        child.wait_with_output().unwrap()
    }
}

fn output_of(events: &[Event]) -> String {
    events
        .iter()
        .filter(|e| e.kind == EventKind::Output as i32)
        .map(|e| String::from_utf8_lossy(&e.data).into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sshd_records_every_login_through_a_setgid_recorder() {
    let dir = tempfile::tempdir().unwrap();
    let reeld = Reeld::start(&dir.path().join("data"), &[]).unwrap();
    let bastion = Bastion::start(&dir.path().join("bastion"), &reeld);
    let port = bastion.sshd.port;
    wait_for("sshd listens", Duration::from_secs(20), async || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;
    let token = std::fs::read_to_string(&bastion.token_file).unwrap();
    let token = token.trim();

    // 1. A command asked for (SSH_ORIGINAL_COMMAND), no terminal. It tries
    // to read the recorder's token, directly and through the recorder's
    // process.
    let command = format!(
        "echo from-$((40+2)); cat {token_file}; ls /proc/$PPID/fd >/dev/null 2>&1 && echo fd-readable || echo fd-denied",
        token_file = bastion.token_file.display()
    );
    let out = tokio::task::block_in_place(|| bastion.ssh(&[], Some(&command), ""));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(stdout.contains("from-42"), "{stdout} / {stderr}");
    assert!(stderr.contains("Permission denied"), "{stderr}");
    assert!(stdout.contains("fd-denied"), "{stdout}");
    assert!(!stdout.contains(token) && !stderr.contains(token));

    // 2. `ssh -T`: a shell reading commands from standard input.
    let out =
        tokio::task::block_in_place(|| bastion.ssh(&["-T"], None, "echo typed-$((1+1))\nexit 4\n"));
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("typed-2"));

    // 3. `ssh -tt`: an interactive login in a terminal.
    let out = tokio::task::block_in_place(|| {
        bastion.ssh(&["-tt"], None, "echo tty-$((2+3)); tty\nexit 5\n")
    });
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("tty-5"));

    // 4. The recorded user cannot point the recorder elsewhere, nor use it
    // for anything but recording.
    let evil = format!(
        "printf 'server = \"http://127.0.0.1:9\"\\ntoken_file = \"{token_file}\"\\n' > $HOME/evil.toml; \
         {recorder} record --config $HOME/evil.toml -- true; echo rc=$?; \
         {recorder} ls; echo rc=$?",
        token_file = bastion.token_file.display(),
        recorder = bastion.recorder.display()
    );
    let out = tokio::task::block_in_place(|| bastion.ssh(&[], Some(&evil), ""));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert_eq!(stdout.matches("rc=2").count(), 2, "{stdout} / {stderr}");
    assert!(stderr.contains("must be owned by root"), "{stderr}");
    assert!(stderr.contains("only runs `reel record`"), "{stderr}");

    let user = bastion.accounts.user.clone();
    let recordings = reeld.recordings_of(&user).await;
    assert_eq!(
        recordings.len(),
        4,
        "one recording per login: {recordings:?}"
    );
    for r in &recordings {
        assert_eq!(r.state, "closed");
        assert_eq!(r.protocol, "ssh");
        assert_eq!(
            r.labels.get("source_address").map(String::as_str),
            Some("127.0.0.1"),
            "{r:?}"
        );
    }
    assert_eq!(
        recordings[0].labels.get("ssh_command").map(String::as_str),
        Some(command.as_str())
    );
    let outputs = {
        let mut v = Vec::new();
        for r in &recordings {
            v.push(output_of(&reeld.export_events(&r.id).await.unwrap()));
        }
        v
    };
    assert!(outputs[0].contains("from-42") && outputs[0].contains("Permission denied"));
    assert!(!outputs[0].contains(token), "the token is in no recording");
    assert!(outputs[1].contains("typed-2"));
    assert!(
        outputs[2].contains("tty-5") && outputs[2].contains("/dev/pts/"),
        "{:?}",
        outputs[2]
    );
    let log = std::fs::read_to_string(bastion.dir.join("record.log")).unwrap();
    assert!(log.contains(&recordings[0].id), "{log}");
    assert!(!log.contains(token), "the token is in no log");
}
