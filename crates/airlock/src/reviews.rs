//! `airlock reviews …` and `airlock request-access`: clients of the gateway's REST API.

use crate::ApiArgs;
use anyhow::{anyhow, Context};
use serde_json::Value;
use std::process::ExitCode;

pub(crate) struct Api {
    pub(crate) base: String,
    pub(crate) token: String,
}

impl Api {
    pub(crate) fn from(args: &ApiArgs) -> anyhow::Result<Api> {
        let base = match (&args.api, &args.config) {
            (Some(url), _) => url.trim_end_matches('/').to_owned(),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let value: toml::Value =
                    toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
                let listen = value
                    .get("gateway")
                    .and_then(|g| g.get("api_listen"))
                    .and_then(|v| v.as_str())
                    .unwrap_or("127.0.0.1:7700");
                format!("http://{listen}")
            }
            (None, None) => "http://127.0.0.1:7700".to_owned(),
        };
        // After `airlock login`, the stored access token is the default.
        let token = match args.token.clone() {
            Some(t) => t,
            None => crate::login::stored_token()?.ok_or_else(|| {
                anyhow!("no token: run `airlock login`, or set AIRLOCK_TOKEN (or pass --token) to your airlock token")
            })?,
        };
        Ok(Api { base, token })
    }

    pub(crate) fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let auth = format!("Bearer {}", self.token);
        let response = match (method, body) {
            ("GET", _) => agent.get(&url).header("authorization", &auth).call(),
            (_, Some(b)) => agent.post(&url).header("authorization", &auth).send_json(b),
            (_, None) => agent.post(&url).header("authorization", &auth).send_empty(),
        }
        .map_err(|e| anyhow!("cannot reach the airlock API at {}: {e} (is `airlock serve` running? set --api or AIRLOCK_API)", self.base))?;
        let status = response.status().as_u16();
        let value: Value = response
            .into_body()
            .read_json()
            .unwrap_or_else(|_| serde_json::json!({"message": "(no JSON body)"}));
        if status >= 400 {
            return Err(anyhow!(
                "{} (HTTP {status})",
                value
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("request failed")
            ));
        }
        Ok(value)
    }
}

fn line(r: &Value) -> String {
    format!(
        "{:<12} {:<8} {:<9} {:<16} {:<14} {}",
        r.get("id").and_then(Value::as_str).unwrap_or("?"),
        r.get("kind").and_then(Value::as_str).unwrap_or("?"),
        r.get("state").and_then(Value::as_str).unwrap_or("?"),
        r.get("requester").and_then(Value::as_str).unwrap_or("?"),
        r.get("connection").and_then(Value::as_str).unwrap_or("?"),
        r.get("statement")
            .and_then(Value::as_str)
            .or(r.get("reason").and_then(Value::as_str))
            .unwrap_or("")
            .replace('\n', " ")
    )
}

pub fn list(args: &ApiArgs, state: &str, json: bool) -> anyhow::Result<ExitCode> {
    let api = Api::from(args)?;
    let reviews = api.call("GET", &format!("/api/v1/reviews?state={state}"), None)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&reviews)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<12} {:<8} {:<9} {:<16} {:<14} STATEMENT / REASON",
        "ID", "KIND", "STATE", "REQUESTER", "CONNECTION"
    );
    let items = reviews.as_array().cloned().unwrap_or_default();
    for r in &items {
        println!("{}", line(r));
    }
    if items.is_empty() {
        println!("(no {state} reviews)");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn show(args: &ApiArgs, id: &str) -> anyhow::Result<ExitCode> {
    let api = Api::from(args)?;
    let r = api.call("GET", &format!("/api/v1/reviews/{id}"), None)?;
    println!("{}", serde_json::to_string_pretty(&r)?);
    Ok(ExitCode::SUCCESS)
}

pub fn decide(args: &ApiArgs, id: &str, verb: &str) -> anyhow::Result<ExitCode> {
    let api = Api::from(args)?;
    let r = api.call("POST", &format!("/api/v1/reviews/{id}/{verb}"), None)?;
    println!(
        "review {id} is now {}",
        r.get("state").and_then(Value::as_str).unwrap_or("?")
    );
    Ok(ExitCode::SUCCESS)
}

pub fn request_access(
    args: &ApiArgs,
    connection: &str,
    duration: &str,
    reason: &str,
) -> anyhow::Result<ExitCode> {
    let secs = crate::commands::parse_duration_secs(duration)?;
    let api = Api::from(args)?;
    let r = api.call(
        "POST",
        "/api/v1/access-requests",
        Some(
            serde_json::json!({"connection": connection, "duration_secs": secs, "reason": reason}),
        ),
    )?;
    let id = r.get("id").and_then(Value::as_str).unwrap_or("?");
    println!("access request {id} is pending; a reviewer approves it with `airlock reviews approve {id}`");
    Ok(ExitCode::SUCCESS)
}
