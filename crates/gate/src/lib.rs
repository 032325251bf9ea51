//! The gate: the one path every protocol adapter takes.
//!
//! listener → [`Gate::authenticate`] (token → identity) → [`Gate::open_session`] (may this
//! identity use this connection?) → for each command [`SessionGate::admit`] (classify, decide,
//! the adapter's guards, hold for review) → [`SessionGate::record`] (audit event appended
//! *before* forwarding) → forward → [`SessionGate::record_result`].
//!
//! Adapters turn bytes into commands and results back into bytes; they never decide. The gate
//! holds the configuration behind an [`ArcSwap`] so a reload takes effect for the next command of
//! every open session without dropping any.

use airlock_config::{Config, Connection};
use airlock_core::policy::{ConnectionRef, Decision, PolicySet, Request};
use airlock_core::{Action, Classification, ConnectionType, Identity};
use airlock_store::{
    AuditEvent, AuditEventRef, AuditLog, CommandRecordRef, EventKind, MaskedCounts,
};
use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod admission;
mod auth;
pub mod capacity;
mod classifiers;
mod compile;
pub mod masking;
pub mod ratelog;
pub mod reviews;
pub use admission::{heavy, Admission};
use airlock_core::review::{Review, ReviewState};
pub use auth::{
    AdminError, Credential, CredentialKind, LoginError, LoginOutcome, LogoutOutcome, Principal,
    Role, SessionEnd,
};
pub use classifiers::Classifiers;
pub use compile::compile_policy;
use reviews::{ReviewBook, ReviewBookError};

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// Each adapter words this as its protocol's clients expect (PostgreSQL's "password
    /// authentication failed", MySQL's "Access denied"); this text is the neutral one.
    #[error("authentication failed for `{user}`: the airlock token is not valid")]
    BadCredentials { user: String },
    /// `identity` set: the claimed identity hit its limit (from any source), not the address.
    #[error("{}", match identity {
        Some(name) => format!("too many failed authentications for identity `{name}`; try again in a minute"),
        None => format!("too many failed authentications from {source_ip}; try again in a minute"),
    })]
    RateLimited {
        source_ip: IpAddr,
        identity: Option<String>,
    },
    #[error("connection `{name}` not found; known: {}", if known.is_empty() { "none (add a [[connections]] entry)".to_string() } else { known.join(", ") })]
    UnknownConnection { name: String, known: Vec<String> },
    #[error("identity `{identity}` may not use connection `{connection}` (allowed groups: {})", if allowed_groups.is_empty() { "none".to_string() } else { allowed_groups.join(", ") })]
    NotAllowed {
        identity: String,
        connection: String,
        allowed_groups: Vec<String>,
    },
    #[error("connection `{connection}` is a {actual} connection, not {expected}")]
    WrongProtocol {
        connection: String,
        actual: &'static str,
        expected: &'static str,
    },
    /// Fails closed: a command nothing can classify is never judged as harmless.
    #[error("connection `{connection}` is a {kind} connection, and this gateway has no classifier for {kind} commands")]
    NoClassifier {
        connection: String,
        kind: &'static str,
    },
    #[error("the audit log cannot be written, so airlock refuses the command: {0}")]
    AuditUnavailable(String),
    #[error("airlock cannot mask data for this session, so it refuses it: {0}")]
    MaskingUnavailable(String),
}

/// What a configuration compiles into: looked up on every command, swapped on reload.
pub struct Runtime {
    pub config: Arc<Config>,
    pub policy: PolicySet,
    pub masking: masking::MaskingSet,
    /// View definitions per connection, for lineage (refreshed after a minute).
    tokens: HashMap<[u8; 32], usize>,
}

impl Runtime {
    pub fn new(config: Config) -> Runtime {
        let tokens = config
            .service_accounts
            .iter()
            .enumerate()
            .map(|(i, sa)| (token_digest(sa.token.value.expose()), i))
            .collect();
        Runtime {
            policy: compile_policy(&config),
            masking: masking::MaskingSet::compile(&config),
            config: Arc::new(config),
            tokens,
        }
    }
}

/// Where `airlock serve` keeps the digest of the bootstrap admin token.
pub const ADMIN_TOKEN_FILE: &str = "admin-token.sha256";

/// Creates the bootstrap admin token on first start: returns the token (to print once) when it
/// was just created, `None` when one exists. Only its SHA-256 is stored.
pub fn ensure_admin_token(data_dir: &std::path::Path) -> std::io::Result<Option<String>> {
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    if path.exists() {
        return Ok(None);
    }
    let token = format!(
        "alk_admin_{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    );
    let hex = hex_string(&token_digest(&token));
    std::fs::write(&path, hex)?;
    Ok(Some(token))
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex32(hex: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if hex.len() != 64 {
        return None;
    }
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

pub struct Gate {
    runtime: ArcSwap<Runtime>,
    /// One per connection type, registered by the binary.
    classifiers: Classifiers,
    audit: AuditLog,
    /// Failed authentications: limits and their aggregated audit events.
    auth_failures: auth::FailureBook,
    /// Set once at shutdown: every session ends (see [`Gate::begin_shutdown`]).
    closing: tokio::sync::watch::Sender<bool>,
    /// Runtime service-account tokens (`data_dir/tokens.json`).
    tokens: airlock_identity::TokenStore,
    /// `[[trusted_issuers]]` with their JWKS caches; rebuilt on reload.
    federation: ArcSwap<airlock_identity::Federation>,
    /// Bumped when a credential may have stopped being valid; open sessions re-check theirs.
    credentials: tokio::sync::watch::Sender<u64>,
    /// `[oidc]` login and the access tokens it issues (`data_dir/access-token.key`).
    humans: auth::Humans,
    reviews: ReviewBook,
    /// The bootstrap admin (`data_dir/admin-token.sha256`): only the token's digest is kept.
    admin_digest: Option<[u8; 32]>,
    /// Webhooks from `[[notifications]]` at start (a reload does not change them).
    notifier: airlock_notify::Notifier,
    /// Sessions served at once (set by the binary from the open-file limit).
    capacity: Arc<capacity::Capacity>,
    /// Connections in their handshake, per source address.
    handshakes: Arc<capacity::Handshakes>,
}

impl Gate {
    /// Fails when the persisted reviews in `data_dir` cannot be read. Sessions of a connection
    /// type without a registered classifier are refused ([`GateError::NoClassifier`]).
    pub fn new(
        config: Config,
        audit: AuditLog,
        classifiers: Classifiers,
    ) -> Result<Arc<Gate>, String> {
        let reviews = ReviewBook::open(&config.gateway.data_dir)?;
        let tokens = airlock_identity::TokenStore::open(&config.gateway.data_dir)
            .map_err(|e| e.to_string())?;
        let federation = ArcSwap::from_pointee(airlock_identity::Federation::new(
            &config.identity.trusted_issuers,
        ));
        let humans = auth::Humans::open(&config)?;
        let hooks: Vec<airlock_notify::WebhookConfig> = config
            .notifications
            .iter()
            .map(|n| airlock_notify::WebhookConfig {
                name: n.name.clone(),
                url: n.url.clone(),
                secret: n.secret.as_ref().map(|s| s.value.expose().to_owned()),
                format: if n.format == "slack" {
                    airlock_notify::PayloadFormat::Slack
                } else {
                    airlock_notify::PayloadFormat::Json
                },
                events: n.events.clone(),
            })
            .collect();
        airlock_notify::validate_hooks(&hooks).map_err(|e| format!("[[notifications]]: {e}"))?;
        let notifier = airlock_notify::Notifier::start(hooks);
        let admin_digest = std::fs::read_to_string(config.gateway.data_dir.join(ADMIN_TOKEN_FILE))
            .ok()
            .and_then(|hex| decode_hex32(hex.trim()));
        Ok(Arc::new(Gate {
            admin_digest,
            notifier,
            capacity: Arc::default(),
            handshakes: Arc::default(),
            runtime: ArcSwap::from_pointee(Runtime::new(config)),
            classifiers,
            audit,
            auth_failures: auth::FailureBook::new(),
            closing: tokio::sync::watch::Sender::new(false),
            tokens,
            federation,
            credentials: tokio::sync::watch::Sender::new(0),
            humans,
            reviews,
        }))
    }

    /// Sets how many connections are served at once (see [`capacity`]).
    pub fn set_capacity(&self, sessions: usize) {
        self.capacity.set_limit(sessions);
        self.handshakes.set_capacity(sessions);
    }

    pub fn capacity(&self) -> &capacity::Capacity {
        &self.capacity
    }

    /// A place for one accepted connection, held until it ends; `None` at capacity (the
    /// adapter refuses the client at once, in its protocol).
    pub fn admit_connection(&self) -> Option<capacity::Permit> {
        let permit = self.capacity.try_admit();
        if permit.is_none() {
            static AT_CAPACITY: ratelog::RateLog =
                ratelog::RateLog::new(std::time::Duration::from_secs(10));
            if let Some(held) = AT_CAPACITY.allow("capacity") {
                tracing::warn!(
                    limit = self.capacity.limit(),
                    held_back = held,
                    "at session capacity: new clients are refused ([gateway] max_sessions, open-file limit)"
                );
            }
        }
        permit
    }

    /// A place for one connection's handshake from `source`, held until it has authenticated;
    /// `None` when that address has too many handshakes in progress (the adapter refuses it).
    pub fn begin_handshake(&self, source: std::net::IpAddr) -> Option<capacity::HandshakePermit> {
        self.handshakes.begin(source)
    }

    pub fn reviews(&self) -> &ReviewBook {
        &self.reviews
    }

    pub fn approve_review(&self, id: &str, who: &Identity) -> Result<Review, ReviewBookError> {
        let review = self.reviews.approve(id, who, AuditEvent::now_us())?;
        self.review_step(
            if review.state == ReviewState::Approved {
                "review_approved"
            } else {
                "review_vote"
            },
            &review,
            Some(&who.name),
        );
        Ok(review)
    }

    pub fn deny_review(&self, id: &str, who: &Identity) -> Result<Review, ReviewBookError> {
        let review = self.reviews.deny(id, who, AuditEvent::now_us())?;
        self.review_step("review_denied", &review, Some(&who.name));
        Ok(review)
    }

    /// An identity asks for time-bound access to a connection it may not use by default.
    pub fn request_access(
        &self,
        who: &Identity,
        connection: &str,
        grant_secs: u64,
        reason: &str,
    ) -> Result<Review, GateError> {
        let rt = self.runtime.load();
        let Some(conn) = rt.config.connection(connection) else {
            return Err(unknown_connection(&rt.config, connection, |_| true));
        };
        let reviewers = rt.config.reviews.access_reviewers.clone();
        if reviewers.is_empty() {
            return Err(GateError::AuditUnavailable(
                "access requests need reviewers: set [reviews] access_reviewers".into(),
            ));
        }
        let mut review = Review::access(
            new_review_id(),
            &who.name,
            &conn.name,
            reviewers,
            1,
            AuditEvent::now_us(),
            rt.config.reviews.access_timeout_secs,
        );
        review.grant_secs = Some(grant_secs);
        review.reason = Some(reason.to_owned());
        self.reviews
            .insert(review.clone())
            .map_err(|e| GateError::AuditUnavailable(e.to_string()))?;
        self.review_step("review_created", &review, Some(&who.name));
        Ok(review)
    }

    /// Best-effort delivery of queued notifications at shutdown.
    pub fn shutdown(&self) {
        self.flush_auth_failures(true);
        self.notifier.shutdown(Duration::from_secs(5));
    }

    /// Expires due reviews and grants, writes aggregated failed logins; call about once a second.
    pub fn tick(&self) {
        self.flush_auth_failures(false);
        for review in self.reviews.expire_due(AuditEvent::now_us()) {
            self.review_step("review_expired", &review, None);
        }
    }

    /// Audits a review step (an `other` event with `detail.review_step`).
    fn review_step(&self, step: &str, review: &Review, actor: Option<&str>) {
        let mut ev = AuditEvent::new(EventKind::Other);
        ev.identity = actor
            .map(str::to_owned)
            .or_else(|| Some(review.requester.clone()));
        ev.connection = Some(review.connection.clone());
        ev.detail = Some(serde_json::json!({
            "review_step": step,
            "review": review,
        }));
        if let Err(e) = self.audit.append(&[ev]) {
            tracing::error!(error = %e, review = %review.id, "could not audit a review step");
        }
        tracing::info!(review = %review.id, step, state = review.state.as_str(), "review");
        if step != "review_vote" {
            let summary = match step {
                "review_created" => format!(
                    "airlock: {} asks to run on `{}`: {} (review {}; approve with `airlock reviews approve {}`)",
                    review.requester,
                    review.connection,
                    review.statement.as_deref().or(review.reason.as_deref()).unwrap_or("access"),
                    review.id,
                    review.id
                ),
                _ => format!("airlock: review {} is {}", review.id, review.state.as_str()),
            };
            self.notifier.notify(airlock_notify::Notification::now(
                step,
                summary,
                serde_json::to_value(review).unwrap_or_default(),
            ));
        }
    }

    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// Applies a new configuration to every session from its next command on.
    pub fn reload(&self, config: Config) {
        let mut ev = AuditEvent::new(EventKind::ConfigLoaded);
        ev.detail = Some(serde_json::json!({
            "origin": config.origin,
            "connections": config.connections.len(),
            "rules": config.rules.len(),
            "service_accounts": config.service_accounts.len(),
        }));
        self.federation
            .store(Arc::new(airlock_identity::Federation::new(
                &config.identity.trusted_issuers,
            )));
        self.humans.reload(&config);
        self.runtime.store(Arc::new(Runtime::new(config)));
        // A reload may have removed a token that open sessions were opened with.
        self.credentials_changed();
        if let Err(e) = self.audit.append(&[ev]) {
            tracing::error!(error = %e, "could not audit the configuration reload");
        }
    }

    /// May `identity` use `connection` over `protocol`? On success the session is open and its
    /// start is in the audit log.
    pub fn open_session(
        self: &Arc<Self>,
        principal: impl Into<Principal>,
        connection: &str,
        protocol: ConnectionType,
        peer: SocketAddr,
        tls: bool,
    ) -> Result<SessionGate, GateError> {
        let Principal {
            identity,
            credential,
        } = principal.into();
        let rt = self.runtime.load_full();
        let Some(conn) = rt.config.connection(connection) else {
            // Only the connections this identity may use are named.
            return Err(unknown_connection(&rt.config, connection, |c| {
                c.allows(&identity)
            }));
        };
        if conn.kind() != protocol {
            return Err(GateError::WrongProtocol {
                connection: conn.name.clone(),
                actual: conn.kind().as_str(),
                expected: protocol.as_str(),
            });
        }
        let Some(classifier) = self.classifiers.get(conn.kind()).cloned() else {
            return Err(GateError::NoClassifier {
                connection: conn.name.clone(),
                kind: conn.kind().as_str(),
            });
        };
        let limited = rt
            .config
            .service_account(&identity.name)
            .is_some_and(|sa| !sa.limited_to(&conn.name))
            || credential
                .connections
                .as_ref()
                .is_some_and(|only| !only.contains(&conn.name));
        let grant = if limited || !conn.allows(&identity) {
            self.reviews
                .grant(&identity.name, &conn.name, AuditEvent::now_us())
        } else {
            None
        };
        if (limited || !conn.allows(&identity)) && grant.is_none() {
            let mut ev = AuditEvent::new(EventKind::Other);
            ev.identity = Some(identity.name.clone());
            ev.connection = Some(conn.name.clone());
            ev.detail = Some(
                serde_json::json!({"refused": "connection not allowed", "peer": peer.to_string()}),
            );
            if let Err(e) = self.audit.append(&[ev]) {
                tracing::error!(error = %e, "could not audit a refused session");
            }
            return Err(GateError::NotAllowed {
                identity: identity.name,
                connection: conn.name.clone(),
                allowed_groups: conn.allow_groups.clone(),
            });
        }
        let (masking, masking_note) = match rt.masking.for_session(&identity, conn) {
            masking::Applies::None => (None, serde_json::Value::Null),
            masking::Applies::Exempt(names) => (None, serde_json::json!({ "exempt": names })),
            masking::Applies::Mask(m, exempt) => {
                let note = serde_json::json!({ "policies": m.policies, "exempt": exempt });
                (Some(m), note)
            }
            masking::Applies::Broken(why) => {
                return Err(GateError::MaskingUnavailable(why));
            }
        };
        let read_only = rt.policy.denies_all_writes(
            &identity,
            &ConnectionRef {
                name: &conn.name,
                tags: Some(&conn.tags),
            },
        );
        let Some(database) = conn.target.database() else {
            // Only database targets have adapters (and classifiers) today; a registered
            // classifier for another type without its upstream spec is refused the same way.
            return Err(GateError::NoClassifier {
                connection: conn.name.clone(),
                kind: conn.kind().as_str(),
            });
        };
        let upstream = UpstreamSpec::for_database(conn, database, read_only);
        let id = new_session_id();
        let mut ev = AuditEvent::new(EventKind::SessionStart);
        ev.session_id = Some(id.clone());
        ev.identity = Some(identity.name.clone());
        ev.connection = Some(conn.name.clone());
        ev.detail = Some(serde_json::json!({
            "peer": peer.to_string(),
            "protocol": protocol.as_str(),
            "tls": tls,
            "identity_kind": identity.kind.as_str(),
            "agent": identity.agent,
            "groups": identity.groups,
            "grant": grant.as_ref().map(|g| &g.review_id),
            "credential": credential.kind.as_str(),
            "credential_id": credential.id,
            "masking": masking_note,
            "upstream_user": upstream.user,
            "read_only": read_only,
        }));
        self.audit
            .append(&[ev])
            .map_err(|e| GateError::AuditUnavailable(e.to_string()))?;
        Ok(SessionGate {
            gate: self.clone(),
            upstream,
            connection: conn.clone(),
            identity,
            id,
            next_seq: AtomicU64::new(1),
            statements: AtomicU64::new(0),
            grant_until_us: grant.map(|g| g.until_us),
            credential,
            masking,
            classifier,
        })
    }
}

fn unknown_connection(
    config: &Config,
    name: &str,
    listed: impl Fn(&Connection) -> bool,
) -> GateError {
    GateError::UnknownConnection {
        name: name.to_owned(),
        known: config
            .connections
            .iter()
            .filter(|c| listed(c))
            .map(|c| c.name.clone())
            .collect(),
    }
}

fn new_review_id() -> String {
    format!("r-{:08x}", rand::random::<u32>())
}

fn new_session_id() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    format!("s-{ms:011x}{:08x}", rand::random::<u32>())
}

/// How to reach the upstream of a session, with the held credential.
#[derive(Clone)]
pub struct UpstreamSpec {
    pub address: String,
    pub database: String,
    pub user: String,
    /// The held secret. Never logged, never sent to the client.
    pub password: Option<String>,
    pub sslmode: airlock_core::SslMode,
    pub ca_file: Option<PathBuf>,
    /// The identity's rules deny every write on this connection: the adapter opens the upstream
    /// session in the database's read-only mode (PostgreSQL `default_transaction_read_only`,
    /// MySQL `SET SESSION TRANSACTION READ ONLY`) and refuses statements that would turn it off,
    /// so a write the classifier missed still fails at the database. With a configured
    /// `readonly_user`, `user`/`password` above are that role's.
    pub read_only: bool,
}

impl std::fmt::Debug for UpstreamSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamSpec")
            .field("address", &self.address)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("sslmode", &self.sslmode)
            .field("read_only", &self.read_only)
            .finish()
    }
}

impl UpstreamSpec {
    /// The database a `postgres`/`mysql` connection reaches, as this session connects to it.
    fn for_database(c: &Connection, d: &airlock_config::DatabaseTarget, read_only: bool) -> Self {
        let (user, password) = match (&d.readonly_user, read_only) {
            (Some(role), true) => (role.clone(), d.readonly_password.as_ref()),
            _ => (
                d.user.clone().unwrap_or_else(|| {
                    airlock_config::DatabaseTarget::default_user(c.kind()).to_owned()
                }),
                d.password.as_ref(),
            ),
        };
        UpstreamSpec {
            address: d.address.clone(),
            database: d.database.clone().unwrap_or_else(|| c.name.clone()),
            user,
            password: password.map(|p| p.value.expose().to_owned()),
            sslmode: d.sslmode,
            ca_file: d.ca_file.clone(),
            read_only,
        }
    }
}

/// A command with its classification and the gate's decision.
#[derive(Debug, Clone)]
pub struct Judged {
    pub classification: Arc<Classification>,
    pub decision: Decision,
}

impl Judged {
    /// The statement runs because review `review` approved it.
    pub fn approved_by(&mut self, review: &Review) {
        let by: Vec<&str> = review
            .approvals
            .iter()
            .map(|v| v.reviewer.as_str())
            .collect();
        self.decision = Decision {
            action: Action::Allow,
            message: Some(format!(
                "approved in review {} by {}",
                review.id,
                by.join(", ")
            )),
            ..self.decision.clone()
        };
    }

    /// The statement does not run: the review was denied, expired or is still pending.
    pub fn refused(&mut self, message: &str) {
        self.decision = Decision {
            action: Action::Deny,
            message: Some(message.to_owned()),
            ..self.decision.clone()
        };
    }

    /// Overrides the decision: used by adapters for protocol features that carry no judgeable
    /// command (e.g. PostgreSQL's FunctionCall message).
    pub fn force_deny(&mut self, message: &str) {
        self.decision = Decision {
            action: Action::Deny,
            rule: Some("protocol".into()),
            message: Some(message.to_owned()),
            ..self.decision.clone()
        };
    }
}

/// One open session: judges and records its commands.
pub struct SessionGate {
    gate: Arc<Gate>,
    id: String,
    identity: Identity,
    connection: Connection,
    upstream: UpstreamSpec,
    next_seq: AtomicU64,
    statements: AtomicU64,
    /// Set when the session exists only through an access grant: it is cut when that ends.
    grant_until_us: Option<i64>,
    /// The token it was opened with: the session ends when it expires or is revoked.
    credential: Credential,
    /// The masking policies that apply, fixed when the session opens.
    masking: Option<Arc<masking::SessionMasking>>,
    /// The connection type's classifier.
    classifier: Arc<dyn airlock_core::Classifier>,
}

/// The outcome of a statement a rule sent to review.
#[derive(Debug, Clone)]
pub enum ReviewOutcome {
    /// Approved (now, or earlier for exactly this statement): run it, once.
    Run(Review),
    /// Not to run: the message says why and what to do.
    Refuse {
        review: Option<Review>,
        message: String,
    },
}

impl SessionGate {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    pub fn connection_name(&self) -> &str {
        &self.connection.name
    }

    pub fn upstream(&self) -> &UpstreamSpec {
        &self.upstream
    }

    /// When an access grant this session depends on ends (unix micros).
    pub fn grant_until_us(&self) -> Option<i64> {
        self.grant_until_us
    }

    /// A held statement: reuses a still-valid approval of exactly this statement, or opens a
    /// review. `on_hold` is called once with the review when the session starts waiting, so the
    /// adapter can tell the client (a PostgreSQL NoticeResponse).
    pub async fn hold_for_review(
        &self,
        text: &str,
        judged: &Judged,
        on_hold: impl AsyncFnOnce(&Review, u64),
    ) -> ReviewOutcome {
        let book = &self.gate.reviews;
        let now = AuditEvent::now_us();
        match book.take_approved(&self.identity.name, &self.connection.name, text, now) {
            Ok(Some(review)) => return ReviewOutcome::Run(review),
            Ok(None) => {}
            Err(e) => {
                return ReviewOutcome::Refuse {
                    review: None,
                    message: format!("airlock: the review book is unavailable: {e}"),
                }
            }
        }
        let rt = self.gate.runtime.load();
        let hold_secs = rt.config.reviews.hold_secs;
        let review = Review::command(
            new_review_id(),
            &self.identity.name,
            &self.connection.name,
            text,
            &judged.decision,
            now,
            600,
        );
        if let Err(e) = book.insert(review.clone()) {
            return ReviewOutcome::Refuse {
                review: None,
                message: format!("airlock: cannot open a review: {e}"),
            };
        }
        self.gate.review_step("review_created", &review, None);
        let mut changes = book.subscribe();
        on_hold(&review, hold_secs).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(hold_secs);
        loop {
            let current = book.get(&review.id).unwrap_or_else(|| review.clone());
            match current.state {
                ReviewState::Approved => {
                    return match book.mark_executed(&review.id, AuditEvent::now_us()) {
                        Ok(r) => ReviewOutcome::Run(r),
                        // Someone else ran it (a re-run from another session): it runs once.
                        Err(e) => ReviewOutcome::Refuse {
                            review: Some(current),
                            message: format!("airlock: {e}"),
                        },
                    };
                }
                ReviewState::Denied => {
                    let by: Vec<&str> = current
                        .denials
                        .iter()
                        .map(|v| v.reviewer.as_str())
                        .collect();
                    return ReviewOutcome::Refuse {
                        message: format!(
                            "airlock: review {} was denied by {}; the statement was not run",
                            current.id,
                            by.join(", ")
                        ),
                        review: Some(current),
                    };
                }
                ReviewState::Expired => {
                    return ReviewOutcome::Refuse {
                        message: format!("airlock: review {} expired without a decision; the statement was not run", current.id),
                        review: Some(current),
                    };
                }
                ReviewState::Executed => {
                    return ReviewOutcome::Refuse {
                        message: format!(
                            "airlock: review {} was already used to run this statement once",
                            current.id
                        ),
                        review: Some(current),
                    };
                }
                ReviewState::Pending => {}
            }
            let expires_in = Duration::from_micros(
                u64::try_from(current.expires_us - AuditEvent::now_us()).unwrap_or(0),
            );
            let wake = deadline.min(tokio::time::Instant::now() + expires_in);
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                _ = tokio::time::sleep_until(wake) => {
                    self.gate.tick();
                    if tokio::time::Instant::now() >= deadline {
                        break;
                    }
                }
            }
        }
        let current = book.get(&review.id).unwrap_or(review);
        if current.state == ReviewState::Approved {
            if let Ok(r) = book.mark_executed(&current.id, AuditEvent::now_us()) {
                return ReviewOutcome::Run(r);
            }
        }
        ReviewOutcome::Refuse {
            message: format!(
                "airlock: pending approval, review id {id}; the statement was not run. A reviewer approves it with `airlock reviews approve {id}`; then run the same statement again",
                id = current.id
            ),
            review: Some(current),
        }
    }

    /// The masking that applies to this session, if any.
    pub fn masking(&self) -> Option<&Arc<masking::SessionMasking>> {
        self.masking.as_ref()
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Classifies and decides; writes nothing.
    pub fn judge(&self, text: &str) -> Judged {
        let classification = self.classifier.classify(text);
        let rt = self.gate.runtime.load();
        let (minute_of_day, weekday) = clock();
        let decision = rt.policy.decide(&Request {
            identity: &self.identity,
            connection: ConnectionRef {
                name: &self.connection.name,
                tags: Some(&self.connection.tags),
            },
            classification: &classification,
            text,
            minute_of_day,
            weekday,
        });
        Judged {
            classification,
            decision,
        }
    }

    /// Appends one `command` event per entry; returns only when they are written (and synced,
    /// with `[audit] fsync`). The adapter forwards nothing of the batch if this fails.
    pub fn record(&self, commands: &[(u64, &str, &Judged)]) -> Result<(), GateError> {
        let with: Vec<(u64, &str, &Judged, &[Option<String>])> = commands
            .iter()
            .map(|(seq, text, j)| (*seq, *text, *j, &[][..]))
            .collect();
        self.record_with_params(&with)
    }

    /// A statement's bound parameter as its audit event carries it: NULL stays `None`; text is
    /// cut at [`AUDIT_MAX_PARAM_BYTES`]; binary values are hex (cut the same way). In a session
    /// a masking policy applies to, only the length is recorded: detectors miss values glued to
    /// other text and cannot read binary encodings (a card as a binary `int8`), and an audit
    /// trail must not become a copy of the values masking protects.
    pub fn audit_param(&self, value: Option<&[u8]>, binary: bool) -> Option<String> {
        let value = value?;
        if self.masking.is_some() {
            return Some(format!(
                "<{} bytes, not recorded under masking>",
                value.len()
            ));
        }
        let cut = value.len().min(AUDIT_MAX_PARAM_BYTES);
        let head = value.get(..cut).unwrap_or_default();
        let mut out = if binary {
            format!("\\x{}", hex_string(head))
        } else {
            String::from_utf8_lossy(head).into_owned()
        };
        if value.len() > cut {
            out.push_str(&format!("… ({} bytes)", value.len()));
        }
        Some(out)
    }

    /// [`Self::record`] with each command's bound parameters (see [`Self::audit_param`]).
    pub fn record_with_params(
        &self,
        commands: &[(u64, &str, &Judged, &[Option<String>])],
    ) -> Result<(), GateError> {
        self.statements
            .fetch_add(commands.len() as u64, Ordering::Relaxed);
        for (_, text, j, _) in commands
            .iter()
            .filter(|(_, _, j, _)| j.decision.action == Action::Deny)
        {
            self.gate.notifier.notify(airlock_notify::Notification::now(
                "command_denied",
                format!(
                    "airlock: denied for {} on `{}`: {}",
                    self.identity.name,
                    self.connection.name,
                    j.decision.message.as_deref().unwrap_or("denied")
                ),
                serde_json::json!({
                    "session_id": self.id,
                    "identity": self.identity.name,
                    "connection": self.connection.name,
                    "statement": text,
                    "rule": j.decision.rule,
                }),
            ));
        }
        // Borrowed events: the same lines as owned `AuditEvent`s, without copying the session's
        // strings and the statement into every event (this runs for every statement).
        let texts: Vec<std::borrow::Cow<'_, str>> = commands
            .iter()
            .map(|(_, text, _, _)| audit_text(text))
            .collect();
        let events: Vec<AuditEventRef<'_>> = commands
            .iter()
            .zip(&texts)
            .map(|((seq, _, j, params), text)| {
                let mut ev = self.command_event(*seq, text, j);
                if let Some(c) = ev.command.as_mut() {
                    c.params = params;
                }
                ev
            })
            .collect();
        self.gate
            .audit
            .append_refs(&events)
            .map(|_| ())
            .map_err(|e| GateError::AuditUnavailable(e.to_string()))
    }

    fn command_event<'a>(&'a self, seq: u64, text: &'a str, j: &'a Judged) -> AuditEventRef<'a> {
        let c = &j.classification;
        let mut ev = self.event_ref(EventKind::Command);
        ev.command = Some(CommandRecordRef {
            seq,
            text: Some(text),
            operation: Some(c.primary_operation().as_str()),
            operations: if c.statements.len() > 1 {
                c.statements.iter().map(|s| s.operation.as_str()).collect()
            } else {
                Vec::new()
            },
            reads: c.reads().collect(),
            writes: c.writes().collect(),
            flags: c.flags(),
            decision: Some(j.decision.action.as_str()),
            rule: j.decision.rule.as_deref(),
            message: j.decision.message.as_deref(),
            ..CommandRecordRef::default()
        });
        ev
    }

    /// The outcome of a forwarded command. It does not have to precede anything, so it is
    /// queued and written with the next append (or within 200 ms).
    pub fn record_result(
        &self,
        seq: u64,
        rows: Option<u64>,
        error: Option<String>,
        elapsed: Duration,
    ) {
        self.record_result_masked(seq, rows, error, elapsed, MaskedCounts::default());
    }

    /// [`Self::record_result`] with the counts of values masked in the result.
    pub fn record_result_masked(
        &self,
        seq: u64,
        rows: Option<u64>,
        error: Option<String>,
        elapsed: Duration,
        masked: MaskedCounts,
    ) {
        // The command event carries identity and connection; its result refers to it by
        // session and statement number only (readers take them from the session).
        let mut ev = AuditEventRef::new(EventKind::CommandResult);
        ev.session_id = Some(&self.id);
        ev.command = Some(CommandRecordRef {
            seq,
            rows,
            error: error.as_deref(),
            duration_us: Some(elapsed.as_micros() as u64),
            masked: Some(&masked),
            ..CommandRecordRef::default()
        });
        self.gate.audit.append_deferred_ref(&ev);
    }

    pub fn close(&self, reason: &str) {
        let mut ev = self.event(EventKind::SessionEnd);
        ev.detail = Some(serde_json::json!({
            "reason": reason,
            "commands": self.statements.load(Ordering::Relaxed),
        }));
        if let Err(e) = self.gate.audit.append(&[ev]) {
            tracing::error!(session = %self.id, error = %e, "could not audit the session end");
        }
    }

    fn event_ref(&self, kind: EventKind) -> AuditEventRef<'_> {
        let mut ev = AuditEventRef::new(kind);
        ev.session_id = Some(&self.id);
        ev.identity = Some(&self.identity.name);
        ev.connection = Some(&self.connection.name);
        ev
    }

    fn event(&self, kind: EventKind) -> AuditEvent {
        let mut ev = AuditEvent::new(kind);
        ev.session_id = Some(self.id.clone());
        ev.identity = Some(self.identity.name.clone());
        ev.connection = Some(self.connection.name.clone());
        ev
    }
}

/// The longest statement text an audit event carries whole. A longer one is cut there and
/// marked with its length and SHA-256, so one oversized statement (a denied 60 MB literal) cannot
/// grow the trail by its size, and the digest still ties the event to what the client sent.
pub const AUDIT_MAX_STATEMENT_BYTES: usize = 64 * 1024;

/// The longest bound parameter an audit event carries whole (see
/// [`SessionGate::audit_param`]).
pub const AUDIT_MAX_PARAM_BYTES: usize = 1024;

/// A statement's text as the audit event carries it (see [`AUDIT_MAX_STATEMENT_BYTES`]).
pub fn audit_text(text: &str) -> std::borrow::Cow<'_, str> {
    audit_text_within(text, AUDIT_MAX_STATEMENT_BYTES)
}

/// [`audit_text`] with another limit (a repeated execution of a prepared statement records
/// 1 KiB: its whole text is in the session's first execution).
pub fn audit_text_within(text: &str, limit: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= limit {
        return std::borrow::Cow::Borrowed(text);
    }
    use sha2::Digest;
    let mut cut = limit;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let digest = hex_string(&sha2::Sha256::digest(text.as_bytes()));
    std::borrow::Cow::Owned(format!(
        "{}… [airlock: statement cut at {cut} of {} bytes; sha256 {digest}]",
        text.get(..cut).unwrap_or_default(),
        text.len()
    ))
}

/// Minute of the UTC day and ISO weekday, for rules with `hours`.
fn clock() -> (u16, u8) {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = secs / 86_400;
    // 1970-01-01 was a Thursday (ISO weekday 4).
    let weekday = ((days + 3) % 7 + 1) as u8;
    (((secs % 86_400) / 60) as u16, weekday)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_is_in_range() {
        let (m, d) = clock();
        assert!(m < 1440);
        assert!((1..=7).contains(&d));
    }

    #[test]
    fn oversized_statements_are_cut_in_the_audit_with_their_digest() {
        let short = "select 1";
        assert_eq!(audit_text(short), short);
        // A multi-byte character across the cut point: the cut moves back to a boundary.
        let long = format!(
            "{}é{}",
            "x".repeat(AUDIT_MAX_STATEMENT_BYTES - 1),
            "y".repeat(100)
        );
        let cut = audit_text(&long);
        assert!(cut.len() < AUDIT_MAX_STATEMENT_BYTES + 200, "{}", cut.len());
        assert!(cut.contains(&format!("of {} bytes; sha256 ", long.len())));
        assert!(cut.starts_with(&"x".repeat(AUDIT_MAX_STATEMENT_BYTES - 1)));
    }
}
