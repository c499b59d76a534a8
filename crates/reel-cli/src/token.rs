//! `reel token create|ls|revoke`, and where `reel` finds its own token.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use reel_api::{NewToken, TokenInfo, TokenRequest};

use crate::{Client, format};

/// Where the embedded default (`make run`) writes its bootstrap token.
const DEFAULT_TOKEN_FILE: &str = "reel-data/admin.token";

/// The token `reel` sends: `--token`, then `REEL_TOKEN` (both through
/// clap), then the file `REEL_TOKEN_FILE` names, then
/// `./reel-data/admin.token` when it exists. None: requests go without one
/// (and get 401).
pub(crate) fn resolve(flag: Option<String>) -> anyhow::Result<Option<String>> {
    if let Some(token) = flag.filter(|t| !t.trim().is_empty()) {
        return Ok(Some(token.trim().to_string()));
    }
    let file = match std::env::var_os("REEL_TOKEN_FILE") {
        Some(path) => PathBuf::from(path),
        None => {
            let default = PathBuf::from(DEFAULT_TOKEN_FILE);
            if !default.exists() {
                return Ok(None);
            }
            default
        }
    };
    let text = std::fs::read_to_string(&file)
        .map_err(|e| anyhow::anyhow!("cannot read the token file {}: {e}", file.display()))?;
    Ok(Some(text.trim().to_string()))
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Make a token; prints it once, alone on the last line.
    Create(CreateArgs),
    /// List tokens (names, roles, scopes, expiry; never a secret).
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token: it stops working at once.
    Revoke { name: String },
}

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    #[arg(long)]
    name: String,
    /// recorder, viewer, auditor, custodian or admin; repeatable.
    #[arg(long = "role", required = true)]
    roles: Vec<String>,
    /// Limit it to some recordings: user=GLOB, target=GLOB, protocol=GLOB
    /// or label=K=V; repeatable.
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// A lifetime, e.g. 30d (default: none).
    #[arg(long)]
    expires: Option<String>,
}

pub(crate) async fn run(client: &Client, command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create(args) => {
            let req = TokenRequest {
                name: args.name,
                roles: args.roles,
                scopes: args.scopes,
                expires: args.expires,
            };
            let made: NewToken = client
                .send_json(reqwest::Method::POST, "/api/v1/tokens", &req)
                .await?;
            println!(
                "token {} (roles {}{}{})",
                made.info.name,
                made.info.roles.join(", "),
                scopes_text(&made.info),
                expiry_text(&made.info)
            );
            println!("it is shown this once; keep it secret:");
            println!("{}", made.token);
        }
        TokenCommand::Ls { json } => {
            let tokens: Vec<TokenInfo> = client.get_json("/api/v1/tokens").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&tokens)?);
                return Ok(());
            }
            println!(
                "{:<20}  {:<24}  {:<20}  {:<20}  SCOPES",
                "NAME", "ROLES", "CREATED", "EXPIRES"
            );
            for t in tokens {
                println!(
                    "{:<20}  {:<24}  {:<20}  {:<20}  {}",
                    t.name,
                    t.roles.join(","),
                    format::time(t.created_at_us),
                    t.expires_at_us.map_or("never".into(), format::time),
                    t.scopes.join(" ")
                );
            }
        }
        TokenCommand::Revoke { name } => {
            let _: serde_json::Value = client
                .send_json(
                    reqwest::Method::DELETE,
                    &format!("/api/v1/tokens/{name}"),
                    &(),
                )
                .await?;
            println!("revoked {name}");
        }
    }
    Ok(())
}

fn scopes_text(t: &TokenInfo) -> String {
    if t.scopes.is_empty() {
        String::new()
    } else {
        format!("; scopes {}", t.scopes.join(" "))
    }
}

fn expiry_text(t: &TokenInfo) -> String {
    t.expires_at_us
        .map(|at| format!("; expires {}", format::time(at)))
        .unwrap_or_default()
}
