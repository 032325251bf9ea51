//! Sessions and their recordings: `GET /api/v1/sessions`, `/api/v1/sessions/{id}`,
//! `/api/v1/sessions/{id}/recording` (JSON lines, streamed from the compressed file: never
//! loaded whole).
//!
//! Who may read: members of the `[roles]` admins or auditors groups see every session; any
//! other identity sees only its own.

use crate::{caller, ApiError};
use airlock_core::Identity;
use airlock_gate::Gate;
use airlock_store::{Index, SessionFilter, SessionRow};
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

pub(crate) fn routes() -> Router<Arc<Gate>> {
    Router::new()
        .route("/api/v1/sessions", get(list))
        .route("/api/v1/sessions/{id}", get(show))
        .route("/api/v1/sessions/{id}/recording", get(recording))
}

#[derive(Deserialize, Default)]
struct ListQuery {
    identity: Option<String>,
    connection: Option<String>,
    since_us: Option<i64>,
    until_us: Option<i64>,
    operation: Option<String>,
    object: Option<String>,
    decision: Option<String>,
    masked: Option<String>,
    limit: Option<usize>,
}

/// Everything about one request that the blocking index work needs.
struct Paths {
    data_dir: PathBuf,
    log: PathBuf,
}

fn paths(gate: &Gate) -> Paths {
    let rt = gate.runtime();
    Paths {
        data_dir: rt.config.gateway.data_dir.clone(),
        log: rt.config.audit.path.clone(),
    }
}

/// Admins and auditors read everything; anyone else only their own sessions.
fn sees_all(gate: &Gate, who: &Identity) -> bool {
    let rt = gate.runtime();
    let roles = &rt.config.identity.roles;
    who.groups
        .iter()
        .any(|g| roles.admins.contains(g) || roles.auditors.contains(g))
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

fn open_index(p: &Paths) -> Result<Index, ApiError> {
    let index = Index::open(&p.data_dir.join("state.db"), &p.log).map_err(internal)?;
    // Reads are never staler than the log.
    index.catch_up().map_err(internal)?;
    Ok(index)
}

fn session_json(r: &SessionRow) -> serde_json::Value {
    serde_json::json!({
        "id": r.id, "identity": r.identity, "connection": r.connection,
        "started_us": r.started_us, "ended_us": r.ended_us, "peer": r.peer,
        "statements": r.statements, "denied": r.denied,
    })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(internal)?
}

async fn list(
    State(gate): State<Arc<Gate>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<serde_json::Value>>, ApiError> {
    let who = caller(&gate, &headers, peer).await?;
    let mut identity = q.identity;
    if !sees_all(&gate, &who) {
        if identity.as_deref().is_some_and(|i| i != who.name) {
            return Err(ApiError(
                StatusCode::FORBIDDEN,
                "only admins and auditors may list other identities' sessions".into(),
            ));
        }
        identity = Some(who.name.clone());
    }
    let p = paths(&gate);
    let filter = SessionFilter {
        identity,
        connection: q.connection,
        since_us: q.since_us,
        until_us: q.until_us,
        operation: q.operation,
        object: q.object,
        decision: q.decision,
        masked: q.masked,
        limit: Some(q.limit.unwrap_or(100).min(10_000)),
    };
    let rows = blocking(move || open_index(&p)?.sessions(filter).map_err(internal)).await?;
    Ok(Json(rows.iter().map(session_json).collect()))
}

/// The session's index row, if the caller may see it.
async fn visible(
    gate: &Arc<Gate>,
    headers: &HeaderMap,
    peer: SocketAddr,
    id: &str,
) -> Result<airlock_store::SessionDetail, ApiError> {
    let who = caller(gate, headers, peer).await?;
    let all = sees_all(gate, &who);
    let p = paths(gate);
    let id = id.to_owned();
    let detail = blocking(move || open_index(&p)?.session(&id).map_err(internal)).await?;
    match detail {
        Some(d) if all || d.session.identity.as_deref() == Some(who.name.as_str()) => Ok(d),
        // Not found and not yours look the same: ids of others' sessions do not leak.
        _ => Err(ApiError(StatusCode::NOT_FOUND, "no such session".into())),
    }
}

async fn show(
    State(gate): State<Arc<Gate>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let d = visible(&gate, &headers, peer, &id).await?;
    let commands: Vec<serde_json::Value> = d
        .commands
        .iter()
        .map(|c| {
            serde_json::json!({
                "seq": c.seq, "ts_us": c.ts_us, "text": c.text, "operation": c.operation,
                "reads": c.reads, "writes": c.writes, "flags": c.flags, "decision": c.decision,
                "rule": c.rule, "message": c.message, "rows": c.rows, "error": c.error,
                "duration_us": c.duration_us,
            })
        })
        .collect();
    let mut v = session_json(&d.session);
    if let Some(o) = v.as_object_mut() {
        o.insert("commands".into(), serde_json::Value::Array(commands));
    }
    Ok(Json(v))
}

/// Lines handed from the blocking reader to the response body; the bounded channel keeps
/// at most a few lines in memory whatever the recording's size.
struct Lines(tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>);

impl futures_core::Stream for Lines {
    type Item = Result<Vec<u8>, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

async fn recording(
    State(gate): State<Arc<Gate>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let d = visible(&gate, &headers, peer, &id).await?;
    let dir = paths(&gate).data_dir.join("recordings");
    let path =
        airlock_record::find_recording(&dir, &id, d.session.started_us).ok_or_else(|| {
            ApiError(
                StatusCode::NOT_FOUND,
                "this session has no recording (recording off, or expired)".into(),
            )
        })?;
    let mut reader = airlock_record::RecordingReader::open(&path).map_err(internal)?;
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::task::spawn_blocking(move || {
        while let Some(line) = reader.next_line() {
            let mut l = Vec::with_capacity(line.len() + 1);
            l.extend_from_slice(line);
            l.push(b'\n');
            if tx.blocking_send(Ok(l)).is_err() {
                return; // client went away
            }
        }
        if let Some(why) = reader.truncated() {
            // A recording cut short by a crash: say so as a last line the client can see.
            let note = serde_json::json!({"t": "truncated", "reason": why}).to_string() + "\n";
            let _ = tx.blocking_send(Ok(note.into_bytes()));
        }
    });
    Ok((
        [("content-type", "application/x-ndjson")],
        Body::from_stream(Lines(rx)),
    )
        .into_response())
}
