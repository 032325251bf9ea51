//! `airlock tokens create / list / revoke / rotate`: runtime service-account tokens, managed
//! through the running gateway's REST API with an admin token (AIRLOCK_TOKEN). Going through
//! the API rather than editing `data_dir` directly means a revocation reaches the sessions the
//! gateway holds open at once, and every change is in the audit log under the admin's name.

use crate::commands::fmt_time;
use crate::reviews::Api;
use crate::ApiArgs;
use serde_json::Value;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum TokensCommand {
    /// Mint a token for a service account; the token is printed once, on stdout.
    Create {
        /// The account the token authenticates as (a [[service_accounts]] name, or a new one).
        #[arg(long)]
        service_account: String,
        /// How long the token lives (e.g. 30d, 12h); without it the token does not expire.
        #[arg(long)]
        ttl: Option<String>,
        /// Groups of an account that is not in the config (repeatable; ignored for config accounts).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Mark a new account as an AI agent.
        #[arg(long)]
        agent: bool,
        /// Limit the token to these connections (repeatable).
        #[arg(long = "connection")]
        connections: Vec<String>,
        /// Print the token and its record as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Tokens with their state; never their secrets.
    List {
        /// Include revoked and expired tokens.
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Revoke a token: it stops working at once, and sessions opened with it are closed.
    Revoke {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Replace a token by a new one (same account, limits and lifetime); the old one is revoked.
    Rotate {
        id: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
}

pub fn run(command: TokensCommand) -> anyhow::Result<ExitCode> {
    match command {
        TokensCommand::Create {
            service_account,
            ttl,
            groups,
            agent,
            connections,
            json,
            api,
        } => {
            let ttl_secs = ttl
                .as_deref()
                .map(airlock_identity::parse_ttl)
                .transpose()
                .map_err(|e| anyhow::anyhow!("--ttl {e}"))?;
            let body = serde_json::json!({
                "account": service_account,
                "groups": groups,
                "agent": agent,
                "ttl_secs": ttl_secs,
                "connections": (!connections.is_empty()).then_some(connections),
            });
            let issued = Api::from(&api)?.call("POST", "/api/v1/tokens", Some(body))?;
            print_issued(&issued, json, "created")
        }
        TokensCommand::List { all, json, api } => {
            let tokens = Api::from(&api)?.call("GET", "/api/v1/tokens", None)?;
            let now = airlock_identity::now_us();
            let items: Vec<&Value> = tokens
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|t| all || state(t, now) == "active")
                        .collect()
                })
                .unwrap_or_default();
            if json {
                println!("{}", serde_json::to_string_pretty(&items)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<14} {:<20} {:<8} {:<12} {:<19} {:<19} CONNECTIONS",
                "ID", "ACCOUNT", "STATE", "HINT", "CREATED", "EXPIRES"
            );
            for t in &items {
                println!(
                    "{:<14} {:<20} {:<8} {:<12} {:<19} {:<19} {}",
                    t["id"].as_str().unwrap_or("?"),
                    t["account"].as_str().unwrap_or("?"),
                    state(t, now),
                    t["hint"].as_str().unwrap_or(""),
                    t["created_us"].as_i64().map(fmt_time).unwrap_or_default(),
                    t["expires_us"]
                        .as_i64()
                        .map(fmt_time)
                        .unwrap_or_else(|| "never".into()),
                    limits(t),
                );
            }
            if items.is_empty() {
                println!("(no {}tokens)", if all { "" } else { "active " });
            }
            Ok(ExitCode::SUCCESS)
        }
        TokensCommand::Revoke { id, api } => {
            let t = Api::from(&api)?.call("POST", &format!("/api/v1/tokens/{id}/revoke"), None)?;
            println!(
                "token {id} of `{}` is revoked; sessions opened with it are being closed",
                t["account"].as_str().unwrap_or("?")
            );
            Ok(ExitCode::SUCCESS)
        }
        TokensCommand::Rotate { id, json, api } => {
            let issued =
                Api::from(&api)?.call("POST", &format!("/api/v1/tokens/{id}/rotate"), None)?;
            print_issued(
                &issued,
                json,
                &format!("rotated (replaces {id}, now revoked)"),
            )
        }
    }
}

fn state(t: &Value, now_us: i64) -> &'static str {
    if !t["revoked_us"].is_null() {
        "revoked"
    } else if t["expires_us"].as_i64().is_some_and(|e| e <= now_us) {
        "expired"
    } else {
        "active"
    }
}

fn limits(t: &Value) -> String {
    match t["connections"].as_array() {
        Some(list) => list
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(","),
        None => "any allowed".into(),
    }
}

/// The token alone on stdout (so `TOKEN=$(airlock tokens create …)` works), the rest on stderr.
fn print_issued(issued: &Value, json: bool, what: &str) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(issued)?);
        return Ok(ExitCode::SUCCESS);
    }
    let r = &issued["record"];
    eprintln!(
        "token {} {what} for `{}`; expires {}; connections: {}",
        r["id"].as_str().unwrap_or("?"),
        r["account"].as_str().unwrap_or("?"),
        r["expires_us"]
            .as_i64()
            .map(fmt_time)
            .unwrap_or_else(|| "never".into()),
        limits(r)
    );
    eprintln!("shown once: airlock keeps only its SHA-256");
    println!("{}", issued["token"].as_str().unwrap_or(""));
    Ok(ExitCode::SUCCESS)
}
