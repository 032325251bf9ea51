//! The web console: a static single page (`/console/`) over the REST API, and its OIDC login.
//!
//! The page holds no secrets and renders every value with `textContent`; it calls the API with
//! the caller's airlock token as a bearer token kept in `sessionStorage` (no cookie, so no
//! CSRF surface). People get that token by logging in with the same `[oidc]` client as
//! `airlock login`: the gateway runs the code flow with PKCE itself, with
//! `Gate::console_redirect_uri` as the redirect, keeps the verifier and nonce server-side under
//! the `state` for ten minutes, and hands the access token to the page in the URL fragment of
//! the final redirect (fragments are never sent to a server or in a `Referer`). Service
//! accounts and the bootstrap admin can paste a token instead.

use airlock_gate::{Gate, LoginError};
use airlock_identity::oidc;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const INDEX: &str = include_str!("../console/index.html");
const APP_JS: &str = include_str!("../console/app.js");
const STYLE: &str = include_str!("../console/style.css");
const ICON: &str = include_str!("../console/icon.svg");
/// A login must come back within this.
const PENDING_TTL: Duration = Duration::from_secs(600);
/// Logins in flight at once; beyond it the oldest are forgotten (a flood cannot grow memory).
const MAX_PENDING: usize = 1024;
/// Only the page's own script and styles, only API calls to this origin, never framed.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

struct PendingLogin {
    verifier: String,
    nonce: String,
    started: Instant,
}

#[derive(Clone)]
struct ConsoleState {
    gate: Arc<Gate>,
    pending: Arc<Mutex<HashMap<String, PendingLogin>>>,
}

pub(crate) fn routes(gate: Arc<Gate>) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/") }))
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route(
            "/console/",
            get(|| async { page("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/console/app.js",
            get(|| async { page("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/console/icon.svg",
            get(|| async { page("image/svg+xml", ICON) }),
        )
        // Browsers ask for it on their own; answer instead of logging a 404 in the console.
        .route(
            "/favicon.ico",
            get(|| async { Redirect::permanent("/console/icon.svg") }),
        )
        .route(
            "/console/style.css",
            get(|| async { page("text/css; charset=utf-8", STYLE) }),
        )
        .route("/console/login", get(login))
        .route("/console/callback", get(callback))
        .with_state(ConsoleState {
            gate,
            pending: Arc::default(),
        })
}

fn secured(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

fn page(content_type: &'static str, body: &'static str) -> Response {
    secured(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

/// A small HTML page for a failed login, with a way back.
fn login_failed(status: StatusCode, message: &str) -> Response {
    let escaped = message
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;");
    let body = format!(
        "<!doctype html><meta charset=utf-8><title>airlock: login failed</title>\
         <link rel=stylesheet href=/console/style.css><main><h1>Login failed</h1>\
         <p class=error id=login-error>{escaped}</p><p><a href=/console/>Back to the console</a></p></main>"
    );
    let mut response = secured(
        (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body,
        )
            .into_response(),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn login_status(e: &LoginError) -> StatusCode {
    match e {
        LoginError::NotConfigured => StatusCode::NOT_FOUND,
        LoginError::Invalid(_) => StatusCode::BAD_REQUEST,
        LoginError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
        LoginError::Provider(_) => StatusCode::BAD_GATEWAY,
        LoginError::Refused(_) | LoginError::Pending | LoginError::SlowDown => {
            StatusCode::UNAUTHORIZED
        }
        LoginError::Unavailable(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

async fn login(State(s): State<ConsoleState>) -> Response {
    let (verifier, challenge) = oidc::pkce_pair();
    let state = oidc::random_string(32);
    let nonce = oidc::random_string(32);
    let redirect = s.gate.console_redirect_uri();
    match s
        .gate
        .oidc_authorization_url(&redirect, &state, &nonce, &challenge)
        .await
    {
        Ok(url) => {
            if let Ok(mut pending) = s.pending.lock() {
                pending.retain(|_, p| p.started.elapsed() < PENDING_TTL);
                if pending.len() >= MAX_PENDING {
                    if let Some(oldest) = pending
                        .iter()
                        .min_by_key(|(_, p)| p.started)
                        .map(|(k, _)| k.clone())
                    {
                        pending.remove(&oldest);
                    }
                }
                pending.insert(
                    state,
                    PendingLogin {
                        verifier,
                        nonce,
                        started: Instant::now(),
                    },
                );
            }
            Redirect::to(&url).into_response()
        }
        Err(e) => login_failed(login_status(&e), &e.to_string()),
    }
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

async fn callback(
    State(s): State<ConsoleState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<CallbackQuery>,
) -> Response {
    // One use per state: a replayed or forged redirect finds nothing.
    let pending = q
        .state
        .as_deref()
        .and_then(|st| s.pending.lock().ok()?.remove(st))
        .filter(|p| p.started.elapsed() < PENDING_TTL);
    let Some(pending) = pending else {
        return login_failed(
            StatusCode::BAD_REQUEST,
            "this answer does not belong to a login in progress (expired or already used); log in again",
        );
    };
    if let Some(error) = q.error {
        let description = q.error_description.unwrap_or_default();
        return login_failed(
            StatusCode::UNAUTHORIZED,
            &format!("the identity provider refused the login: {error} {description}"),
        );
    }
    let Some(code) = q.code.filter(|c| !c.is_empty()) else {
        return login_failed(
            StatusCode::BAD_REQUEST,
            "the provider's answer holds no code",
        );
    };
    let redirect = s.gate.console_redirect_uri();
    match s
        .gate
        .oidc_exchange(&code, &pending.verifier, &redirect, &pending.nonce, peer)
        .await
    {
        Ok(outcome) => {
            let mut response =
                Redirect::to(&format!("/console/#token={}", outcome.token)).into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            secured(response)
        }
        Err(e) => login_failed(login_status(&e), &e.to_string()),
    }
}
