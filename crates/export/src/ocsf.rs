//! Audit events as OCSF 1.3 events. The field tables are in docs/audit.md; keep them in step.
//!
//! | airlock event | OCSF class |
//! | --- | --- |
//! | `command`, `command_result` | Datastore Activity (6005), "Database Activity" in the issue |
//! | `session_start`, `session_end`, `auth_failure`, `other` with `detail.login` | Authentication (3002) |
//! | `other` with `detail.token_issued` / `detail.token_revoked` / `detail.account` | Account Change (3001) |
//! | everything else (gateway start/stop, config, review steps, retention) | API Activity (6003) |

use serde_json::{json, Map, Value};

pub const OCSF_VERSION: &str = "1.3.0";

/// Maps one audit log line (`{"seq","prev","hash","event"}`, parsed) to an OCSF event.
pub fn to_ocsf(line: &Value) -> Value {
    let ev = line.get("event").cloned().unwrap_or(Value::Null);
    let s = |k: &str| ev.get(k).and_then(Value::as_str).map(str::to_owned);
    let kind = s("kind").unwrap_or_else(|| "unknown".into());
    let ts_us = ev.get("ts_us").and_then(Value::as_i64).unwrap_or(0);
    let detail = ev.get("detail").cloned().unwrap_or(Value::Null);
    let has = |k: &str| detail.get(k).is_some();

    let mut out = Map::new();
    out.insert("time".into(), json!(ts_us / 1000));
    out.insert(
        "metadata".into(),
        json!({
            "version": OCSF_VERSION,
            "product": {"name": "airlock", "vendor_name": "airlock", "version": env!("CARGO_PKG_VERSION")},
            "log_name": "audit",
            "sequence": line.get("seq").cloned().unwrap_or(Value::Null),
            "uid": line.get("hash").cloned().unwrap_or(Value::Null),
            "original_time": ts_us.to_string(),
        }),
    );
    let mut actor = Map::new();
    if let Some(identity) = s("identity") {
        actor.insert("user".into(), json!({"name": identity}));
    }
    if let Some(sid) = s("session_id") {
        actor.insert("session".into(), json!({"uid": sid}));
    }
    if !actor.is_empty() {
        out.insert("actor".into(), Value::Object(actor));
    }
    if let Some(peer) = detail.get("peer").and_then(Value::as_str) {
        out.insert("src_endpoint".into(), endpoint(peer));
    }

    let (class_uid, class_name, category_uid, category_name, activity_id, activity_name) =
        match kind.as_str() {
            "command" | "command_result" => {
                datastore(&mut out, &ev, &kind, s("connection"));
                let op = ev
                    .pointer("/command/operation")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let (id, name) = datastore_activity(op);
                (
                    6005,
                    "Datastore Activity",
                    6,
                    "Application Activity",
                    id,
                    name,
                )
            }
            "session_start" | "session_end" | "auth_failure" => {
                authentication(&mut out, &kind, s("connection"), s("identity"), &detail);
                let (id, name) = if kind == "session_end" {
                    (2, "Logoff")
                } else {
                    (1, "Logon")
                };
                (
                    3002,
                    "Authentication",
                    3,
                    "Identity & Access Management",
                    id,
                    name,
                )
            }
            "other" if has("login") => {
                authentication(&mut out, &kind, s("connection"), s("identity"), &detail);
                (
                    3002,
                    "Authentication",
                    3,
                    "Identity & Access Management",
                    1,
                    "Logon",
                )
            }
            "other" if has("token_issued") || has("token_revoked") || has("account") => {
                let (id, name) = if has("token_revoked") {
                    (6, "Delete")
                } else if has("token_issued") {
                    (1, "Create")
                } else {
                    (99, "Other")
                };
                out.insert("user".into(), json!({"name": s("identity")}));
                out.insert("status_id".into(), json!(1));
                out.insert("status".into(), json!("Success"));
                (
                    3001,
                    "Account Change",
                    3,
                    "Identity & Access Management",
                    id,
                    name,
                )
            }
            _ => {
                let operation = detail
                    .get("review_step")
                    .and_then(Value::as_str)
                    .map(|s| format!("review_{s}"))
                    .unwrap_or_else(|| kind.clone());
                out.insert(
                    "api".into(),
                    json!({"operation": operation, "service": {"name": "airlock"}}),
                );
                out.insert("status_id".into(), json!(1));
                out.insert("status".into(), json!("Success"));
                let (id, name) = match kind.as_str() {
                    "config_loaded" => (3, "Update"),
                    "gateway_start" => (1, "Create"),
                    "gateway_stop" => (4, "Delete"),
                    _ => (99, "Other"),
                };
                (6003, "API Activity", 6, "Application Activity", id, name)
            }
        };
    out.insert("class_uid".into(), json!(class_uid));
    out.insert("class_name".into(), json!(class_name));
    out.insert("category_uid".into(), json!(category_uid));
    out.insert("category_name".into(), json!(category_name));
    out.insert("activity_id".into(), json!(activity_id));
    out.insert("activity_name".into(), json!(activity_name));
    out.insert("type_uid".into(), json!(class_uid * 100 + activity_id));
    out.insert(
        "type_name".into(),
        json!(format!("{class_name}: {activity_name}")),
    );
    if !out.contains_key("severity_id") {
        out.insert("severity_id".into(), json!(1));
        out.insert("severity".into(), json!("Informational"));
    }
    // Nothing is lost: the original event rides along.
    out.insert("unmapped".into(), json!({"airlock": ev}));
    Value::Object(out)
}

fn endpoint(peer: &str) -> Value {
    match peer.parse::<std::net::SocketAddr>() {
        Ok(addr) => json!({"ip": addr.ip().to_string(), "port": addr.port()}),
        Err(_) => json!({"name": peer}),
    }
}

fn datastore_activity(op: &str) -> (i64, &'static str) {
    match op {
        "select" | "show" => (4, "Query"),
        "insert" | "copy" => (5, "Write"),
        "update" | "merge" | "alter" => (2, "Update"),
        "delete" | "truncate" | "drop" => (7, "Delete"),
        "create" => (6, "Create"),
        "connect" => (3, "Connect"),
        "" | "unknown" => (0, "Unknown"),
        _ => (99, "Other"),
    }
}

fn datastore(out: &mut Map<String, Value>, ev: &Value, kind: &str, connection: Option<String>) {
    let cmd = ev.get("command").cloned().unwrap_or(Value::Null);
    let g = |k: &str| cmd.get(k).cloned().unwrap_or(Value::Null);
    out.insert(
        "database".into(),
        json!({"name": connection, "type": "PostgreSQL"}),
    );
    let tables: Vec<Value> = ["reads", "writes"]
        .iter()
        .flat_map(|k| {
            cmd.get(*k)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    if let Some(first) = tables.first() {
        out.insert("table".into(), json!({"name": first}));
    }
    if let Some(text) = cmd.get("text") {
        out.insert("query_info".into(), json!({"query_string": text}));
    }
    let decision = cmd.get("decision").and_then(Value::as_str);
    match decision {
        Some("allow") => {
            out.insert("disposition_id".into(), json!(1));
            out.insert("disposition".into(), json!("Allowed"));
        }
        Some("deny") => {
            out.insert("disposition_id".into(), json!(2));
            out.insert("disposition".into(), json!("Blocked"));
            out.insert("severity_id".into(), json!(3));
            out.insert("severity".into(), json!("Medium"));
        }
        Some(other) => {
            out.insert("disposition_id".into(), json!(99));
            out.insert("disposition".into(), json!(other));
        }
        None => {}
    }
    if let Some(rule) = cmd.get("rule").and_then(Value::as_str) {
        out.insert("policy".into(), json!({"name": rule, "desc": g("message")}));
    }
    if kind == "command_result" {
        let failed = cmd.get("error").is_some_and(|e| !e.is_null());
        out.insert("status_id".into(), json!(if failed { 2 } else { 1 }));
        out.insert(
            "status".into(),
            json!(if failed { "Failure" } else { "Success" }),
        );
        if failed {
            out.insert("status_detail".into(), g("error"));
        }
        if let Some(d) = cmd.get("duration_us").and_then(Value::as_u64) {
            out.insert("duration".into(), json!(d / 1000));
        }
        if let Some(rows) = cmd.get("rows") {
            out.insert("count".into(), rows.clone());
        }
    }
}

fn authentication(
    out: &mut Map<String, Value>,
    kind: &str,
    connection: Option<String>,
    identity: Option<String>,
    detail: &Value,
) {
    out.insert("user".into(), json!({"name": identity}));
    if let Some(c) = connection {
        out.insert("service".into(), json!({"name": c}));
    }
    let failed = kind == "auth_failure";
    out.insert("status_id".into(), json!(if failed { 2 } else { 1 }));
    out.insert(
        "status".into(),
        json!(if failed { "Failure" } else { "Success" }),
    );
    if failed {
        out.insert(
            "status_detail".into(),
            detail.get("reason").cloned().unwrap_or(Value::Null),
        );
        out.insert("severity_id".into(), json!(3));
        out.insert("severity".into(), json!("Medium"));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn line(event: Value) -> Value {
        json!({"seq": 7, "prev": "00", "hash": "ab", "event": event})
    }

    #[test]
    fn commands_map_to_datastore_activity() {
        let o = to_ocsf(&line(json!({
            "ts_us": 1_700_000_000_123_456i64, "kind": "command", "session_id": "s1",
            "identity": "claude-agent", "connection": "pg-prod",
            "command": {"seq": 1, "text": "drop table users", "operation": "drop",
                        "writes": ["users"], "decision": "deny", "rule": "no-ddl", "message": "no"}
        })));
        assert_eq!(o["class_uid"], 6005);
        assert_eq!(o["activity_id"], 7);
        assert_eq!(o["type_uid"], 600507);
        assert_eq!(o["time"], 1_700_000_000_123i64);
        assert_eq!(o["actor"]["user"]["name"], "claude-agent");
        assert_eq!(o["actor"]["session"]["uid"], "s1");
        assert_eq!(o["database"]["name"], "pg-prod");
        assert_eq!(o["table"]["name"], "users");
        assert_eq!(o["query_info"]["query_string"], "drop table users");
        assert_eq!(o["disposition_id"], 2);
        assert_eq!(o["policy"]["name"], "no-ddl");
        assert_eq!(o["metadata"]["sequence"], 7);
        assert_eq!(o["metadata"]["uid"], "ab");
        assert_eq!(o["unmapped"]["airlock"]["kind"], "command");
    }

    #[test]
    fn sessions_and_auth_map_to_authentication() {
        let o = to_ocsf(&line(
            json!({"ts_us": 0, "kind": "auth_failure", "identity": "x",
            "detail": {"peer": "10.0.0.1:5555", "reason": "bad token"}}),
        ));
        assert_eq!(o["class_uid"], 3002);
        assert_eq!(o["status_id"], 2);
        assert_eq!(o["src_endpoint"]["ip"], "10.0.0.1");
        let o = to_ocsf(&line(
            json!({"ts_us": 0, "kind": "session_end", "session_id": "s"}),
        ));
        assert_eq!(
            (o["class_uid"].as_i64(), o["activity_id"].as_i64()),
            (Some(3002), Some(2))
        );
    }

    #[test]
    fn tokens_and_the_rest() {
        let o = to_ocsf(&line(
            json!({"ts_us": 0, "kind": "other", "identity": "admin",
            "detail": {"token_revoked": "t-1"}}),
        ));
        assert_eq!(
            (o["class_uid"].as_i64(), o["activity_id"].as_i64()),
            (Some(3001), Some(6))
        );
        let o = to_ocsf(&line(json!({"ts_us": 0, "kind": "other",
            "detail": {"review_step": "approved"}})));
        assert_eq!(o["class_uid"], 6003);
        assert_eq!(o["api"]["operation"], "review_approved");
        let o = to_ocsf(&line(json!({"ts_us": 0, "kind": "something_new"})));
        assert_eq!(o["class_uid"], 6003);
        assert_eq!(o["activity_id"], 99);
    }
}
