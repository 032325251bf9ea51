//! `/api/v1/tokens`: runtime service-account tokens. Creating, rotating and revoking need the
//! admin role, listing the auditor role (the gate decides). A token's secret appears in the
//! response to create and rotate only, once.

use super::{caller, ApiError};
use airlock_gate::{AdminError, Gate};
use airlock_identity::{IssuedToken, NewToken, TokenRecord};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::net::SocketAddr;
use std::sync::Arc;

pub(crate) fn routes() -> Router<Arc<Gate>> {
    Router::new()
        .route("/api/v1/tokens", get(list).post(create))
        .route("/api/v1/tokens/{id}/revoke", post(revoke))
        .route("/api/v1/tokens/{id}/rotate", post(rotate))
}

fn admin_error(e: AdminError) -> ApiError {
    let status = match e {
        AdminError::Forbidden(_) => StatusCode::FORBIDDEN,
        AdminError::Invalid(_) => StatusCode::BAD_REQUEST,
        AdminError::NotFound(_) => StatusCode::NOT_FOUND,
        AdminError::Unavailable(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError(status, e.to_string())
}

async fn list(
    State(gate): State<Arc<Gate>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<Vec<TokenRecord>>, ApiError> {
    let who = caller(&gate, &headers, peer).await?;
    gate.list_tokens(&who).map(Json).map_err(admin_error)
}

async fn create(
    State(gate): State<Arc<Gate>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(spec): Json<NewToken>,
) -> Result<(StatusCode, Json<IssuedToken>), ApiError> {
    let who = caller(&gate, &headers, peer).await?;
    gate.create_token(&who, spec)
        .map(|t| (StatusCode::CREATED, Json(t)))
        .map_err(admin_error)
}

async fn revoke(
    State(gate): State<Arc<Gate>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<TokenRecord>, ApiError> {
    let who = caller(&gate, &headers, peer).await?;
    gate.revoke_token(&who, &id).map(Json).map_err(admin_error)
}

async fn rotate(
    State(gate): State<Arc<Gate>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<IssuedToken>, ApiError> {
    let who = caller(&gate, &headers, peer).await?;
    gate.rotate_token(&who, &id).map(Json).map_err(admin_error)
}
