//! The REST API (JSON over HTTP on `[gateway] api_listen`): reviews and access requests, with
//! an OpenAPI document at `/api/v1/openapi.json`. Every call authenticates with
//! `Authorization: Bearer <airlock token>`; what the caller may do is decided by the gate and the
//! review state machine (reviewer groups, no self-approval), never here.

use airlock_core::review::{Review, ReviewState};
use airlock_core::Identity;
use airlock_gate::reviews::ReviewBookError;
use airlock_gate::{Gate, GateError};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;

/// The OpenAPI 3.1 description of this API, served as-is.
pub const OPENAPI: &str = include_str!("openapi.json");

mod access_review;
mod auth;
mod console;
mod sessions;
mod tokens;

pub fn router(gate: Arc<Gate>) -> Router {
    Router::new()
        .route(
            "/api/v1/health",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/reviews", get(list_reviews))
        .route("/api/v1/reviews/{id}", get(show_review))
        .route("/api/v1/reviews/{id}/approve", post(approve))
        .route("/api/v1/reviews/{id}/deny", post(deny))
        .route("/api/v1/access-requests", post(request_access))
        .merge(tokens::routes())
        .merge(auth::routes())
        .merge(sessions::routes())
        .merge(access_review::routes())
        .with_state(gate.clone())
        .merge(console::routes(gate))
}

/// Serves the API until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, gate: Arc<Gate>) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(gate).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}

struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = match self.0 {
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::CONFLICT => "conflict",
            StatusCode::BAD_REQUEST => "bad_request",
            _ => "error",
        };
        (
            self.0,
            Json(serde_json::json!({"error": code, "message": self.1})),
        )
            .into_response()
    }
}

async fn caller(gate: &Gate, headers: &HeaderMap, peer: SocketAddr) -> Result<Identity, ApiError> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError(
                StatusCode::UNAUTHORIZED,
                "send `Authorization: Bearer <airlock token>`".into(),
            )
        })?;
    gate.authenticate_bearer(token.trim(), peer)
        .await
        .map(|p| p.identity)
        .map_err(|e| match e {
            GateError::RateLimited { .. } => ApiError(StatusCode::TOO_MANY_REQUESTS, e.to_string()),
            _ => ApiError(
                StatusCode::UNAUTHORIZED,
                "the airlock token is not valid".into(),
            ),
        })
}

fn book_error(e: ReviewBookError) -> ApiError {
    match e {
        ReviewBookError::NotFound(_) => ApiError(StatusCode::NOT_FOUND, e.to_string()),
        ReviewBookError::Transition { .. } => ApiError(StatusCode::CONFLICT, e.to_string()),
        ReviewBookError::Save { .. } => ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn openapi() -> Response {
    ([("content-type", "application/json")], OPENAPI).into_response()
}

async fn whoami(
    State(gate): State<Arc<Gate>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<Identity>, ApiError> {
    Ok(Json(caller(&gate, &headers, peer).await?))
}

#[derive(Deserialize)]
struct ListQuery {
    state: Option<String>,
}

async fn list_reviews(
    State(gate): State<Arc<Gate>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<Review>>, ApiError> {
    caller(&gate, &headers, peer).await?;
    let state = match q.state.as_deref() {
        None | Some("all") => None,
        Some(s) => Some(parse_state(s).ok_or_else(|| {
            ApiError(
                StatusCode::BAD_REQUEST,
                format!(
                    "unknown state `{s}`; use pending, approved, denied, expired, executed or all"
                ),
            )
        })?),
    };
    Ok(Json(gate.reviews().list(state)))
}

fn parse_state(s: &str) -> Option<ReviewState> {
    [
        ReviewState::Pending,
        ReviewState::Approved,
        ReviewState::Denied,
        ReviewState::Expired,
        ReviewState::Executed,
    ]
    .into_iter()
    .find(|st| st.as_str() == s)
}

async fn show_review(
    State(gate): State<Arc<Gate>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Review>, ApiError> {
    caller(&gate, &headers, peer).await?;
    gate.reviews()
        .get(&id)
        .map(Json)
        .ok_or_else(|| book_error(ReviewBookError::NotFound(id)))
}

async fn approve(
    State(gate): State<Arc<Gate>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Review>, ApiError> {
    let who = caller(&gate, &headers, peer).await?;
    gate.approve_review(&id, &who).map(Json).map_err(book_error)
}

async fn deny(
    State(gate): State<Arc<Gate>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Review>, ApiError> {
    let who = caller(&gate, &headers, peer).await?;
    gate.deny_review(&id, &who).map(Json).map_err(book_error)
}

#[derive(Deserialize)]
struct AccessRequest {
    connection: String,
    duration_secs: u64,
    reason: String,
}

async fn request_access(
    State(gate): State<Arc<Gate>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(req): Json<AccessRequest>,
) -> Result<(StatusCode, Json<Review>), ApiError> {
    let who = caller(&gate, &headers, peer).await?;
    if req.duration_secs == 0 || req.duration_secs > 30 * 86_400 {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "duration_secs must be between 1 and 30 days".into(),
        ));
    }
    gate.request_access(&who, &req.connection, req.duration_secs, &req.reason)
        .map(|r| (StatusCode::CREATED, Json(r)))
        .map_err(|e| match e {
            GateError::UnknownConnection { .. } => ApiError(StatusCode::NOT_FOUND, e.to_string()),
            other => ApiError(StatusCode::BAD_REQUEST, other.to_string()),
        })
}
