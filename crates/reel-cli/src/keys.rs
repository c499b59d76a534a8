//! `reel keys`: the key a server signs recordings with, and the rotation
//! of the master keys that wrap each recording's data key.

use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use reel_api::{MasterKeys, PublicKeyInfo, RetiredMasterKeys};

use crate::Client;

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Print the public key recordings are signed with (PEM), for checking
    /// recordings and archives without trusting the server. Get it once,
    /// over a channel you trust, and keep it.
    Public {
        /// Read it from this stopped server's data directory instead of
        /// asking the server.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The key's id, algorithm and PEM as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// The master keys the server holds (by id, never the keys) and how far
    /// a rotation is.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Make a new master key current and wrap every recording's data key
    /// with it (catalog rows, the spool, key objects on both stores);
    /// recordings are not rewritten. Waits until every data key is wrapped
    /// again, then `reel keys rotate --finish` destroys the older keys.
    Rotate {
        /// Retire (destroy) the older master keys; refused while anything is
        /// still wrapped by one of them or a store cannot be checked.
        #[arg(long)]
        finish: bool,
        /// Return once the new key is current; the rewrapping goes on.
        #[arg(long, conflicts_with = "finish")]
        no_wait: bool,
        #[arg(long)]
        json: bool,
    },
}

pub(crate) async fn run(client: &Client, command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Public { data_dir, json } => {
            let info = match data_dir {
                Some(dir) => {
                    let key = reel_keys::FileKeys::public_key_in(&dir.join("keys"))?;
                    PublicKeyInfo {
                        id: key.id().to_string(),
                        algorithm: "ed25519".into(),
                        pem: key.to_pem(),
                    }
                }
                None => client.get_json("/api/v1/keys/public").await?,
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                print!("{}", info.pem);
                eprintln!("key {} ({})", info.id, info.algorithm);
            }
            Ok(())
        }
        KeysCommand::Status { json } => {
            let keys: MasterKeys = client.get_json("/api/v1/keys").await?;
            print_master_keys(&keys, json)
        }
        KeysCommand::Rotate {
            finish: true, json, ..
        } => {
            let retired: RetiredMasterKeys = client.post_json("/api/v1/keys/rotate/finish").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&retired)?);
                return Ok(());
            }
            if retired.retired.is_empty() && retired.in_environment.is_empty() {
                println!("only the current master key is held: nothing to retire");
            }
            for id in &retired.retired {
                println!("master key {id} destroyed");
            }
            for id in &retired.in_environment {
                println!("master key {id} is no longer used: remove it from REEL_MASTER_KEY");
            }
            Ok(())
        }
        KeysCommand::Rotate { no_wait, json, .. } => {
            let mut keys: MasterKeys = client.post_json("/api/v1/keys/rotate").await?;
            if !json {
                eprintln!("master key {} is current", keys.current);
            }
            if !no_wait {
                keys = wait_for_rewrapping(client, keys, json).await?;
            }
            print_master_keys(&keys, json)?;
            if !json && !keys.rewrapping {
                eprintln!(
                    "the older master keys are no longer needed: `reel keys rotate --finish` destroys them"
                );
            }
            Ok(())
        }
    }
}

/// Polls the server until no data key is left to wrap again, with a
/// spinner on a terminal.
async fn wait_for_rewrapping(
    client: &Client,
    mut keys: MasterKeys,
    quiet: bool,
) -> anyhow::Result<MasterKeys> {
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new_spinner()
    };
    bar.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("a valid template"));
    bar.enable_steady_tick(Duration::from_millis(120));
    while keys.rewrapping {
        let waiting = keys
            .waiting
            .as_deref()
            .map(|w| format!(" (waiting: {w})"))
            .unwrap_or_default();
        bar.set_message(format!(
            "{} data keys wrapped again{waiting}",
            keys.rewrapped
        ));
        tokio::time::sleep(Duration::from_millis(300)).await;
        keys = client.get_json("/api/v1/keys").await?;
    }
    bar.finish_and_clear();
    Ok(keys)
}

fn print_master_keys(keys: &MasterKeys, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(keys)?);
        return Ok(());
    }
    println!("current master key  {}", keys.current);
    let older: Vec<&str> = keys
        .held
        .iter()
        .filter(|id| **id != keys.current)
        .map(String::as_str)
        .collect();
    if !older.is_empty() {
        println!("older master keys   {}", older.join(", "));
    }
    let state = if keys.rewrapping {
        "rewrapping data keys"
    } else {
        "every data key wrapped by the current key"
    };
    println!("state               {state}");
    println!("rewrapped           {}", keys.rewrapped);
    if keys.remaining > 0 {
        println!(
            "left                {} (their keys do not open)",
            keys.remaining
        );
    }
    if let Some(why) = &keys.waiting {
        println!("waiting             {why}");
    }
    Ok(())
}
