//! `/api/v1/auth/…`: the gateway's side of `airlock login` and `airlock logout`.
//!
//! The login endpoints need no airlock token (they are how a person gets one). The gateway is
//! the OIDC client: it builds the authorization URL, redeems the code the CLI's loopback
//! listener received (with the CLI's PKCE verifier), or runs the device flow, verifies the ID
//! token and answers with an airlock access token. Failures are audited and count towards the
//! source address's failed-authentication limit.

use super::ApiError;
use airlock_gate::{Gate, LoginError, LoginOutcome, LogoutOutcome};
use airlock_identity::DeviceStart;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;

pub(crate) fn routes() -> Router<Arc<Gate>> {
    Router::new()
        .route("/api/v1/auth/oidc/authorize", post(authorize))
        .route("/api/v1/auth/oidc/exchange", post(exchange))
        .route("/api/v1/auth/oidc/device", post(device_start))
        .route("/api/v1/auth/oidc/device/token", post(device_token))
        .route("/api/v1/auth/logout", post(logout))
}

fn login_error(e: LoginError) -> Response {
    let status = match &e {
        LoginError::NotConfigured => StatusCode::NOT_FOUND,
        LoginError::Invalid(_) => StatusCode::BAD_REQUEST,
        LoginError::Refused(_) => StatusCode::UNAUTHORIZED,
        LoginError::Provider(_) => StatusCode::BAD_GATEWAY,
        LoginError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
        LoginError::Unavailable(_) => StatusCode::INTERNAL_SERVER_ERROR,
        // RFC 8628 §3.5: the client keeps polling on these.
        LoginError::Pending | LoginError::SlowDown => {
            let code = if matches!(e, LoginError::Pending) {
                "authorization_pending"
            } else {
                "slow_down"
            };
            return (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({"error": code, "message": e.to_string()})),
            )
                .into_response();
        }
    };
    ApiError(status, e.to_string()).into_response()
}

#[derive(Deserialize)]
struct AuthorizeRequest {
    redirect_uri: String,
    state: String,
    nonce: String,
    code_challenge: String,
}

async fn authorize(
    State(gate): State<Arc<Gate>>,
    Json(req): Json<AuthorizeRequest>,
) -> Result<Json<serde_json::Value>, Response> {
    gate.oidc_authorization_url(
        &req.redirect_uri,
        &req.state,
        &req.nonce,
        &req.code_challenge,
    )
    .await
    .map(|url| Json(serde_json::json!({ "authorization_url": url })))
    .map_err(login_error)
}

#[derive(Deserialize)]
struct ExchangeRequest {
    code: String,
    code_verifier: String,
    redirect_uri: String,
    nonce: String,
}

async fn exchange(
    State(gate): State<Arc<Gate>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(req): Json<ExchangeRequest>,
) -> Result<Json<LoginOutcome>, Response> {
    gate.oidc_exchange(
        &req.code,
        &req.code_verifier,
        &req.redirect_uri,
        &req.nonce,
        peer,
    )
    .await
    .map(Json)
    .map_err(login_error)
}

async fn device_start(
    State(gate): State<Arc<Gate>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Result<Json<DeviceStart>, Response> {
    gate.oidc_device_start(peer)
        .await
        .map(Json)
        .map_err(login_error)
}

#[derive(Deserialize)]
struct DeviceTokenRequest {
    device_code: String,
}

async fn device_token(
    State(gate): State<Arc<Gate>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(req): Json<DeviceTokenRequest>,
) -> Result<Json<LoginOutcome>, Response> {
    gate.oidc_device_poll(&req.device_code, peer)
        .await
        .map(Json)
        .map_err(login_error)
}

async fn logout(
    State(gate): State<Arc<Gate>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<LogoutOutcome>, Response> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError(
                StatusCode::UNAUTHORIZED,
                "send `Authorization: Bearer <the access token to revoke>`".into(),
            )
            .into_response()
        })?;
    gate.logout(token.trim(), peer)
        .map(Json)
        .map_err(login_error)
}
