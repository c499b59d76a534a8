//! A setgid copy of `reel` on a bastion: the recorder's token is readable
//! by the recorder's group only, never by the users being recorded.
//!
//! sshd runs `reel record` as the user who logs in, so a token the recorder
//! could read with the user's own rights, the user could read too, and use
//! to write forged recordings or to send elsewhere. As tlog does, the
//! bastion installs a copy of `reel` setgid to a group of its own (say
//! `reel-rec`) that alone may read the token file. Run that way, `reel`:
//! - only records (every other command is refused);
//! - takes where to send and with what token from a configuration file
//!   owned by root and writable by no one else (default
//!   `/etc/reel/record.toml`), never from the command line or the
//!   environment, which the user controls (else the user points the
//!   recorder at a server of their own and receives the token);
//! - reads the token, TLS files and opens its log while it has the group,
//!   then gives the group up for good, before any thread starts and before
//!   the command runs, and stays non-dumpable (the user cannot attach a
//!   debugger to it or read its memory through /proc).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

use super::log::Log;
use crate::{TlsFiles, UsageError};

/// Where a setgid recorder reads its configuration unless told otherwise.
pub(crate) const DEFAULT_CONFIG: &str = "/etc/reel/record.toml";

/// The configuration file of a setgid recorder.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    /// reeld's HTTP API.
    server: String,
    /// reeld's gRPC ingest endpoint (default: the one the server advertises).
    grpc: Option<String>,
    /// The recorder token's file: root-owned, readable by the group only.
    token_file: PathBuf,
    ca_file: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
    /// Sessions fail closed (the users cannot turn it off).
    #[serde(default)]
    require_recording: bool,
    #[serde(default, with = "humantime_serde_opt")]
    require_within: Option<Duration>,
    /// The recorder's log, opened with the group's rights.
    log: Option<PathBuf>,
}

mod humantime_serde_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| humantime::parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// What a setgid recorder got from its configuration while it had the
/// group.
pub(crate) struct Settings {
    pub server: String,
    pub grpc: Option<String>,
    pub token: String,
    pub tls: TlsFiles,
    pub require_recording: bool,
    pub require_within: Option<Duration>,
    pub log: Log,
}

/// This process runs with a group (or user) other than the one that
/// started it: it is a setgid (or setuid) copy.
pub(crate) fn is_privileged() -> bool {
    use rustix::process::{getegid, geteuid, getgid, getuid};
    getegid() != getgid() || geteuid() != getuid()
}

/// For a setgid copy: reads the configuration and the secrets, then drops
/// the extra group and user for good. Must run before any other thread
/// exists (the change of credentials is made for the calling thread only).
/// An ordinary `reel` reads `config` if it is given (`reel record
/// --config`), else `None`.
pub(crate) fn prepare(record: bool, config: Option<&Path>) -> anyhow::Result<Option<Settings>> {
    if !is_privileged() {
        return config.map(|c| load(c, false)).transpose();
    }
    // Not dumpable: no debugger, no /proc/<pid>/mem for the user, even
    // after the group is given up.
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .context("making the recorder non-dumpable")?;
    let result = if record {
        load(config.unwrap_or(Path::new(DEFAULT_CONFIG)), true)
    } else {
        Err(UsageError(
            "this copy of reel is setgid (a bastion's recorder): it only runs `reel record`".into(),
        )
        .into())
    };
    drop_privileges()?;
    result.map(Some)
}

fn load(path: &Path, privileged: bool) -> anyhow::Result<Settings> {
    if privileged {
        check_owned_by_root(path)?;
    }
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read the recorder's configuration {}",
            path.display()
        )
    })?;
    let file: ConfigFile =
        toml::from_str(&text).map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
    super::check_token_file(&file.token_file)?;
    let token = std::fs::read_to_string(&file.token_file)
        .with_context(|| format!("cannot read the token file {}", file.token_file.display()))?
        .trim()
        .to_string();
    let read =
        |p: &PathBuf| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
    let tls = TlsFiles {
        ca: file.ca_file.as_ref().map(read).transpose()?,
        identity: match (&file.client_cert, &file.client_key) {
            (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
            (None, None) => None,
            _ => bail!("{}: client_cert and client_key go together", path.display()),
        },
    };
    Ok(Settings {
        server: file.server,
        grpc: file.grpc,
        token,
        tls,
        require_recording: file.require_recording,
        require_within: file.require_within,
        log: Log::open(file.log.as_deref())?,
    })
}

/// The configuration decides where the token goes: only root may have
/// written it.
fn check_owned_by_root(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).with_context(|| {
        format!(
            "cannot read the recorder's configuration {}",
            path.display()
        )
    })?;
    if meta.uid() != 0 || meta.mode() & 0o022 != 0 {
        return Err(UsageError(format!(
            "the recorder's configuration {} must be owned by root and writable by no one else (it is owned by uid {}, mode {:03o})",
            path.display(),
            meta.uid(),
            meta.mode() & 0o777
        ))
        .into());
    }
    Ok(())
}

/// Gives up the effective and saved group and user: the recorded command
/// runs with the user's own rights, and this process cannot get the group
/// back.
fn drop_privileges() -> anyhow::Result<()> {
    use rustix::process::{getgid, getuid};
    use rustix::thread::{set_thread_res_gid, set_thread_res_uid};
    let (gid, uid) = (getgid(), getuid());
    set_thread_res_gid(gid, gid, gid).context("giving up the recorder's group")?;
    set_thread_res_uid(uid, uid, uid).context("giving up the recorder's user")?;
    if is_privileged() {
        bail!("the recorder's group could not be given up");
    }
    Ok(())
}
