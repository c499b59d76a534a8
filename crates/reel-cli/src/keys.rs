//! `reel keys public`: the key a server signs recordings with.

use std::path::PathBuf;

use clap::Subcommand;
use reel_api::PublicKeyInfo;

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
    }
}
