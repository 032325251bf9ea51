//! The gate: the one path every protocol adapter takes.
//!
//! listener → [`Gate::authenticate`] (token → identity) → [`Gate::open_session`] (may this
//! identity use this connection?) → for each command [`SessionGate::judge`] (classify, decide) →
//! [`SessionGate::record`] (audit event appended *before* forwarding) → forward →
//! [`SessionGate::record_result`].
//!
//! Adapters turn bytes into commands and results back into bytes; they never decide. The gate
//! holds the configuration behind an [`ArcSwap`] so a reload takes effect for the next command of
//! every open session without dropping any.

use airlock_config::{Config, Connection};
use airlock_core::policy::{ConnectionRef, Decision, PolicySet, Request};
use airlock_core::{Action, Classification, ConnectionType, Identity};
use airlock_sql::PgClassifier;
use airlock_store::{AuditEvent, AuditLog, CommandRecord, EventKind};
use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod compile;
pub use compile::compile_policy;

/// Failed authentications allowed per source address per minute before it is refused outright.
const AUTH_FAILURES_PER_MINUTE: u32 = 10;

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("password authentication failed for user \"{user}\": the airlock token is not valid")]
    BadCredentials { user: String },
    #[error("too many failed authentications from {source_ip}; try again in a minute")]
    RateLimited { source_ip: IpAddr },
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
    #[error("the audit log cannot be written, so airlock refuses the command: {0}")]
    AuditUnavailable(String),
}

/// What a configuration compiles into: looked up on every command, swapped on reload.
pub struct Runtime {
    pub config: Arc<Config>,
    pub policy: PolicySet,
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
            config: Arc::new(config),
            tokens,
        }
    }
}

fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

pub struct Gate {
    runtime: ArcSwap<Runtime>,
    classifier: PgClassifier,
    audit: AuditLog,
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl Gate {
    pub fn new(config: Config, audit: AuditLog) -> Arc<Gate> {
        Arc::new(Gate {
            runtime: ArcSwap::from_pointee(Runtime::new(config)),
            classifier: PgClassifier::new(16 * 1024),
            audit,
            failures: Mutex::new(HashMap::new()),
        })
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
        self.runtime.store(Arc::new(Runtime::new(config)));
        if let Err(e) = self.audit.append(&[ev]) {
            tracing::error!(error = %e, "could not audit the configuration reload");
        }
    }

    /// Token → identity. `user` must name the service account the token belongs to, so a
    /// leaked token cannot be replayed under another account's name in logs.
    pub fn authenticate(
        &self,
        user: &str,
        token: &str,
        peer: SocketAddr,
    ) -> Result<Identity, GateError> {
        if self.rate_limited(peer.ip()) {
            self.audit_auth_failure(user, peer, "rate limited");
            return Err(GateError::RateLimited {
                source_ip: peer.ip(),
            });
        }
        let rt = self.runtime.load();
        let found = rt
            .tokens
            .get(&token_digest(token))
            .and_then(|&i| rt.config.service_accounts.get(i))
            .filter(|sa| sa.name == user && sa.token.value.matches(token.as_bytes()));
        match found {
            Some(sa) => Ok(sa.identity()),
            None => {
                self.note_failure(peer.ip());
                self.audit_auth_failure(user, peer, "invalid token");
                Err(GateError::BadCredentials {
                    user: user.to_owned(),
                })
            }
        }
    }

    fn rate_limited(&self, ip: IpAddr) -> bool {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&ip).is_some_and(|(since, n)| {
            since.elapsed() < Duration::from_secs(60) && *n >= AUTH_FAILURES_PER_MINUTE
        })
    }

    fn note_failure(&self, ip: IpAddr) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map.entry(ip).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= Duration::from_secs(60) {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
        if map.len() > 100_000 {
            map.retain(|_, (since, _)| since.elapsed() < Duration::from_secs(60));
        }
    }

    fn audit_auth_failure(&self, user: &str, peer: SocketAddr, reason: &str) {
        let mut ev = AuditEvent::new(EventKind::AuthFailure);
        ev.identity = Some(user.to_owned());
        ev.detail = Some(serde_json::json!({ "peer": peer.to_string(), "reason": reason }));
        if let Err(e) = self.audit.append(&[ev]) {
            tracing::error!(error = %e, "could not audit a failed authentication");
        }
    }

    /// May `identity` use `connection` over `protocol`? On success the session is open and its
    /// start is in the audit log.
    pub fn open_session(
        self: &Arc<Self>,
        identity: Identity,
        connection: &str,
        protocol: ConnectionType,
        peer: SocketAddr,
        tls: bool,
    ) -> Result<SessionGate, GateError> {
        let rt = self.runtime.load_full();
        let Some(conn) = rt.config.connection(connection) else {
            return Err(GateError::UnknownConnection {
                name: connection.to_owned(),
                known: rt
                    .config
                    .connections
                    .iter()
                    .filter(|c| c.allows(&identity))
                    .map(|c| c.name.clone())
                    .collect(),
            });
        };
        if conn.kind != protocol {
            return Err(GateError::WrongProtocol {
                connection: conn.name.clone(),
                actual: conn.kind.as_str(),
                expected: protocol.as_str(),
            });
        }
        let limited = rt
            .config
            .service_account(&identity.name)
            .is_some_and(|sa| !sa.limited_to(&conn.name));
        if limited || !conn.allows(&identity) {
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
        }));
        self.audit
            .append(&[ev])
            .map_err(|e| GateError::AuditUnavailable(e.to_string()))?;
        Ok(SessionGate {
            gate: self.clone(),
            upstream: UpstreamSpec::from_connection(conn),
            connection: conn.clone(),
            identity,
            id,
            next_seq: AtomicU64::new(1),
            statements: AtomicU64::new(0),
        })
    }

    /// Classification only (for `airlock policy test` and adapters that need it early).
    pub fn classify(&self, text: &str) -> Arc<Classification> {
        self.classifier.classify(text)
    }
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
    pub sslmode: String,
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for UpstreamSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamSpec")
            .field("address", &self.address)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("sslmode", &self.sslmode)
            .finish()
    }
}

impl UpstreamSpec {
    fn from_connection(c: &Connection) -> Self {
        UpstreamSpec {
            address: c.address.clone(),
            database: c.database.clone().unwrap_or_else(|| c.name.clone()),
            user: c.user.clone().unwrap_or_else(|| "postgres".into()),
            password: c.password.as_ref().map(|p| p.value.expose().to_owned()),
            sslmode: c.sslmode.as_str().to_owned(),
            ca_file: c.ca_file.clone(),
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

    pub fn next_seq(&self) -> u64 {
        self.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Classifies and decides; writes nothing.
    pub fn judge(&self, text: &str) -> Judged {
        let classification = self.gate.classifier.classify(text);
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
        let events: Vec<AuditEvent> = commands
            .iter()
            .map(|(seq, text, j)| self.command_event(*seq, text, j))
            .collect();
        self.statements
            .fetch_add(commands.len() as u64, Ordering::Relaxed);
        self.gate
            .audit
            .append(&events)
            .map(|_| ())
            .map_err(|e| GateError::AuditUnavailable(e.to_string()))
    }

    fn command_event(&self, seq: u64, text: &str, j: &Judged) -> AuditEvent {
        let c = &j.classification;
        let mut ev = self.event(EventKind::Command);
        ev.command = Some(CommandRecord {
            seq,
            text: Some(text.to_owned()),
            operation: Some(c.primary_operation().as_str().to_owned()),
            reads: c.reads().map(str::to_owned).collect(),
            writes: c.writes().map(str::to_owned).collect(),
            flags: c.flags().into_iter().map(str::to_owned).collect(),
            decision: Some(j.decision.action.as_str().to_owned()),
            rule: j.decision.rule.clone(),
            message: j.decision.message.clone(),
            ..CommandRecord::default()
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
        let mut ev = self.event(EventKind::CommandResult);
        ev.command = Some(CommandRecord {
            seq,
            rows,
            error,
            duration_us: Some(elapsed.as_micros() as u64),
            ..CommandRecord::default()
        });
        self.gate.audit.append_deferred(ev);
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

    fn event(&self, kind: EventKind) -> AuditEvent {
        let mut ev = AuditEvent::new(kind);
        ev.session_id = Some(self.id.clone());
        ev.identity = Some(self.identity.name.clone());
        ev.connection = Some(self.connection.name.clone());
        ev
    }
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
}
