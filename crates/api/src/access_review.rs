//! `/api/v1/access-review`: the access-review report over the gateway's own audit log, and
//! recertification decisions (keep / revoke a grant), which are audit events. Readable by the
//! admin, auditor and reviewer roles and by human members of reviewer groups: the report shows
//! every identity's activity.

use super::{caller, ApiError};
use airlock_core::Identity;
use airlock_gate::{Gate, Role};
use airlock_report::recert::{self, RecertError, RecertStore, Verdict};
use airlock_report::render::{render, Format};
use airlock_report::{Filter, Options};
use airlock_store::{AuditEvent, EventKind};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;

pub(crate) fn routes() -> Router<Arc<Gate>> {
    Router::new()
        .route("/api/v1/access-review", get(report))
        .route(
            "/api/v1/access-review/recertifications",
            get(list_decisions).post(recertify),
        )
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

async fn reviewer(
    gate: &Gate,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> Result<Identity, ApiError> {
    let who = caller(gate, headers, peer).await?;
    let rt = gate.runtime();
    if gate.role(&who) >= Role::Reviewer || airlock_report::is_human_reviewer(&who, &rt.config) {
        Ok(who)
    } else {
        Err(ApiError(
            StatusCode::FORBIDDEN,
            format!(
                "access reviews are for reviewers: `{}` needs the reviewer, auditor or admin role, or to be a human in a reviewer group",
                who.name
            ),
        ))
    }
}

#[derive(Deserialize)]
struct ReportQuery {
    since: Option<String>,
    until: Option<String>,
    identity: Option<String>,
    group: Option<String>,
    #[serde(default)]
    agents: bool,
    format: Option<String>,
    inactive_days: Option<u64>,
    rotation_days: Option<u64>,
}

async fn report(
    State(gate): State<Arc<Gate>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<ReportQuery>,
) -> Result<Response, ApiError> {
    reviewer(&gate, &headers, peer).await?;
    let format_name = q.format.as_deref().unwrap_or("json");
    let format = Format::parse(format_name).ok_or_else(|| {
        bad(format!(
            "unknown format `{format_name}`; use md, csv, json or html"
        ))
    })?;
    let filter = match (q.identity, q.group, q.agents) {
        (None, None, false) => Filter::All,
        (Some(i), None, false) => Filter::Identity(i),
        (None, Some(g), false) => Filter::Group(g),
        (None, None, true) => Filter::Agents,
        _ => return Err(bad("choose one of identity, group and agents")),
    };
    let now = AuditEvent::now_us();
    let since = q
        .since
        .as_deref()
        .map(|s| airlock_report::time::parse_time(s, now))
        .transpose()
        .map_err(|e| bad(e.to_string()))?;
    let until = q
        .until
        .as_deref()
        .map(|s| airlock_report::time::parse_time(s, now))
        .transpose()
        .map_err(|e| bad(e.to_string()))?;
    // Command results are deferred writes: flush them so the report sees every one so far.
    gate.audit().flush().map_err(internal)?;
    let log = gate.audit().path().to_owned();
    let rt = gate.runtime();
    let body = tokio::task::spawn_blocking(move || {
        let config = &rt.config;
        let mut opts = Options::new(config, now);
        opts.policy = Some(&rt.policy);
        if let Some(s) = since {
            opts.since_us = s;
        }
        if let Some(u) = until {
            opts.until_us = u;
        }
        if opts.since_us >= opts.until_us {
            return Err(bad("since must be before until"));
        }
        opts.filter = filter;
        opts.inactive_days = q.inactive_days.unwrap_or(opts.inactive_days);
        opts.rotation_days = q.rotation_days.unwrap_or(opts.rotation_days);
        opts.tokens = airlock_report::token_info(config);
        opts.recertifications = RecertStore::new(&config.gateway.data_dir)
            .load()
            .map_err(internal)?;
        let report = airlock_report::generate(opts, &log).map_err(internal)?;
        Ok(render(&report, format))
    })
    .await
    .map_err(internal)??;
    Ok(([("content-type", format.content_type())], body).into_response())
}

async fn list_decisions(
    State(gate): State<Arc<Gate>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<Vec<recert::Recertification>>, ApiError> {
    reviewer(&gate, &headers, peer).await?;
    let dir = gate.runtime().config.gateway.data_dir.clone();
    RecertStore::new(&dir).load().map(Json).map_err(internal)
}

#[derive(Deserialize)]
struct Decision {
    identity: String,
    connection: String,
    decision: String,
    comment: String,
}

async fn recertify(
    State(gate): State<Arc<Gate>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(d): Json<Decision>,
) -> Result<(StatusCode, Json<recert::Recertification>), ApiError> {
    let who = reviewer(&gate, &headers, peer).await?;
    let verdict = Verdict::parse(&d.decision)
        .ok_or_else(|| bad(format!("decision `{}`: use keep or revoke", d.decision)))?;
    let rt = gate.runtime();
    let config = &rt.config;
    // The diff is against the file as it is now (config is the source of truth).
    let text = (config.origin != "<embedded>")
        .then(|| std::fs::read_to_string(&config.origin).ok())
        .flatten();
    let mut decision = recert::prepare(
        config,
        text.as_deref(),
        airlock_report::recert::Ask {
            identity: &d.identity,
            connection: &d.connection,
            decision: verdict,
            comment: &d.comment,
            reviewer: &who.name,
        },
        AuditEvent::now_us(),
    )
    .map_err(|e| match e {
        RecertError::UnknownIdentity(_) | RecertError::UnknownConnection(_) => {
            ApiError(StatusCode::NOT_FOUND, e.to_string())
        }
        RecertError::SelfReview(_) => ApiError(StatusCode::FORBIDDEN, e.to_string()),
        RecertError::NoComment => bad(e.to_string()),
        other => internal(other),
    })?;
    // Audited first: a decision that is not in the audit trail is not recorded at all.
    let mut ev = AuditEvent::new(EventKind::Other);
    ev.identity = Some(who.name.clone());
    ev.connection = Some(decision.connection.clone());
    ev.detail = Some(serde_json::json!({ "recertification": decision }));
    let seq = gate.audit().append(&[ev]).map_err(internal)?;
    decision.audit_seq = Some(seq);
    RecertStore::new(&config.gateway.data_dir)
        .append(decision.clone())
        .map_err(internal)?;
    tracing::info!(
        identity = %decision.identity,
        connection = %decision.connection,
        decision = decision.decision.as_str(),
        reviewer = %who.name,
        "recertification"
    );
    Ok((StatusCode::CREATED, Json(decision)))
}
