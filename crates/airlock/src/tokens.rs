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
                    t.get("id").and_then(Value::as_str).unwrap_or("?"),
                    t.get("account").and_then(Value::as_str).unwrap_or("?"),
                    state(t, now),
                    t.get("hint").and_then(Value::as_str).unwrap_or(""),
                    t.get("created_us")
                        .and_then(Value::as_i64)
                        .map(fmt_time)
                        .unwrap_or_default(),
                    t.get("expires_us")
                        .and_then(Value::as_i64)
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
                t.get("account").and_then(Value::as_str).unwrap_or("?")
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
    if t.get("revoked_us").is_some_and(|v| !v.is_null()) {
        "revoked"
    } else if t
        .get("expires_us")
        .and_then(Value::as_i64)
        .is_some_and(|e| e <= now_us)
    {
        "expired"
    } else {
        "active"
    }
}

fn limits(t: &Value) -> String {
    match t.get("connections").and_then(Value::as_array) {
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
    let r = issued.get("record").unwrap_or(&Value::Null);
    eprintln!(
        "token {} {what} for `{}`; expires {}; connections: {}",
        r.get("id").and_then(Value::as_str).unwrap_or("?"),
        r.get("account").and_then(Value::as_str).unwrap_or("?"),
        r.get("expires_us")
            .and_then(Value::as_i64)
            .map(fmt_time)
            .unwrap_or_else(|| "never".into()),
        limits(r)
    );
    eprintln!("shown once: airlock keeps only its SHA-256");
    println!(
        "{}",
        issued.get("token").and_then(Value::as_str).unwrap_or("")
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The listing reads the gateway's answer with `.get()`: a record missing fields, or an
    /// answer that is not an object at all, prints the fallbacks instead of failing.
    #[test]
    fn state_and_limits_read_missing_fields_as_absent() {
        assert_eq!(state(&json!({"revoked_us": 5}), 10), "revoked");
        assert_eq!(
            state(&json!({"revoked_us": null, "expires_us": 10}), 10),
            "expired"
        );
        assert_eq!(state(&json!({"expires_us": 11}), 10), "active");
        assert_eq!(state(&json!({}), 10), "active");
        assert_eq!(state(&json!([1, 2]), 10), "active");
        assert_eq!(limits(&json!({"connections": ["a", 1, "b"]})), "a,b");
        assert_eq!(limits(&json!({})), "any allowed");
        assert_eq!(limits(&json!("not an object")), "any allowed");
    }
}
