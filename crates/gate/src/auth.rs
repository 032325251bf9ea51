//! Token → identity for every kind of token, failed-authentication limits, administrative
//! roles, runtime token management, and the end of sessions whose credential ends.
//!
//! Kinds, tried in this order: the bootstrap admin token, tokens from the config
//! (`[[service_accounts]]`, `[[users]]`), runtime tokens (`alk_…`, [`airlock_identity::tokens`]),
//! federated workload JWTs (`[[trusted_issuers]]`, [`airlock_identity::federation`]).

use crate::{token_digest, Gate, GateError, SessionGate};
use airlock_core::{Identity, IdentityKind};
use airlock_identity::{IssuedToken, NewToken, TokenError, TokenRecord};
use airlock_store::{AuditEvent, EventKind};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Failed authentications allowed per source address per minute.
pub(crate) const FAILURES_PER_SOURCE: u32 = 10;
/// Failed authentications allowed per claimed identity per minute, from all sources together
/// (a distributed guess at one account's token).
pub(crate) const FAILURES_PER_IDENTITY: u32 = 20;

/// An authenticated identity and the credential it presented.
#[derive(Debug, Clone)]
pub struct Principal {
    pub identity: Identity,
    pub credential: Credential,
}

impl From<Identity> for Principal {
    /// An identity whose credential never ends on its own (tests, internal callers).
    fn from(identity: Identity) -> Principal {
        Principal {
            identity,
            credential: Credential {
                kind: CredentialKind::Internal,
                id: None,
                expires_us: None,
                connections: None,
                digest: None,
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    BootstrapAdmin,
    /// A token from the config file.
    Config,
    /// A runtime service-account token (`alk_…`).
    Runtime,
    /// A JWT from a `[[trusted_issuers]]` entry.
    Federated,
    Internal,
}

impl CredentialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::BootstrapAdmin => "bootstrap_admin",
            CredentialKind::Config => "config_token",
            CredentialKind::Runtime => "runtime_token",
            CredentialKind::Federated => "federated_jwt",
            CredentialKind::Internal => "internal",
        }
    }
}

/// What the presented token was; decides when a session built on it must end.
#[derive(Debug, Clone)]
pub struct Credential {
    pub kind: CredentialKind,
    /// The runtime token id, or the trusted issuer's name.
    pub id: Option<String>,
    /// When the token stops being valid (unix micros).
    pub expires_us: Option<i64>,
    /// When set, sessions may be opened only to these connections.
    pub connections: Option<Vec<String>>,
    /// A config token's digest, so a reload that removes the token ends its sessions.
    digest: Option<[u8; 32]>,
}

/// Administrative roles of the REST API and CLI, highest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Reviewer,
    Auditor,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Auditor => "auditor",
            Role::Reviewer => "reviewer",
            Role::User => "user",
        }
    }
}

/// Why a token-management call was refused.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unavailable(String),
}

impl From<TokenError> for AdminError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::NotFound(_) => AdminError::NotFound(e.to_string()),
            TokenError::Invalid(_) | TokenError::Revoked { .. } => {
                AdminError::Invalid(e.to_string())
            }
            other => AdminError::Unavailable(other.to_string()),
        }
    }
}

/// How a session ended because of its credential or grant: `reason` goes to the audit log,
/// `message` to the client.
#[derive(Debug, Clone)]
pub struct SessionEnd {
    pub reason: String,
    pub message: String,
}

impl Gate {
    /// Token → identity at a listener. `user` must name the identity the token belongs to, so a
    /// leaked token cannot be replayed under another name in logs.
    pub async fn authenticate(
        &self,
        user: &str,
        token: &str,
        peer: SocketAddr,
    ) -> Result<Principal, GateError> {
        self.check_limits(Some(user), peer)?;
        match self.resolve(token).await {
            Ok(p) if p.identity.name == user => Ok(p),
            Ok(p) => Err(self.failed(
                user,
                peer,
                &format!("the token belongs to `{}`, not `{user}`", p.identity.name),
            )),
            Err(reason) => Err(self.failed(user, peer, &reason)),
        }
    }

    /// Any token alone (the REST API's bearer authentication).
    pub async fn authenticate_bearer(
        &self,
        token: &str,
        peer: SocketAddr,
    ) -> Result<Principal, GateError> {
        self.check_limits(None, peer)?;
        self.resolve(token)
            .await
            .map_err(|reason| self.failed("<bearer>", peer, &reason))
    }

    fn check_limits(&self, user: Option<&str>, peer: SocketAddr) -> Result<(), GateError> {
        if over_limit(&self.failures, &peer.ip(), FAILURES_PER_SOURCE) {
            self.audit_auth_failure(user.unwrap_or("<bearer>"), peer, "rate limited (source)");
            return Err(GateError::RateLimited {
                source_ip: peer.ip(),
                identity: None,
            });
        }
        if let Some(user) = user {
            if over_limit(
                &self.identity_failures,
                &user.to_owned(),
                FAILURES_PER_IDENTITY,
            ) {
                self.audit_auth_failure(user, peer, "rate limited (identity)");
                return Err(GateError::RateLimited {
                    source_ip: peer.ip(),
                    identity: Some(user.to_owned()),
                });
            }
        }
        Ok(())
    }

    fn failed(&self, user: &str, peer: SocketAddr, reason: &str) -> GateError {
        note_failure(&self.failures, peer.ip());
        if user != "<bearer>" {
            note_failure(&self.identity_failures, user.to_owned());
        }
        self.audit_auth_failure(user, peer, reason);
        GateError::BadCredentials {
            user: user.to_owned(),
        }
    }

    /// Which kind of token this is and whom it names; the error is the audited reason.
    async fn resolve(&self, token: &str) -> Result<Principal, String> {
        let digest = token_digest(token);
        if self.admin_digest.is_some_and(|d| d == digest) {
            return Ok(Principal {
                identity: Identity {
                    name: "admin".into(),
                    kind: IdentityKind::Human,
                    groups: vec!["admins".into()],
                    agent: false,
                },
                credential: credential(CredentialKind::BootstrapAdmin, None, None, None),
            });
        }
        let rt = self.runtime.load();
        if let Some(sa) = rt
            .tokens
            .get(&digest)
            .and_then(|&i| rt.config.service_accounts.get(i))
            .filter(|sa| sa.token.value.matches(token.as_bytes()))
        {
            let mut c = credential(CredentialKind::Config, None, None, sa.connections.clone());
            c.digest = Some(digest);
            return Ok(Principal {
                identity: sa.identity(),
                credential: c,
            });
        }
        if airlock_identity::tokens::looks_like_token(token) {
            let record = self
                .tokens
                .verify(token, AuditEvent::now_us())
                .map_err(|e| e.to_string())?;
            return Ok(self.runtime_principal(&record));
        }
        if token.split('.').count() == 3 {
            let federation = self.federation.load_full();
            if !federation.is_empty() {
                let f = federation
                    .verify(token, AuditEvent::now_us())
                    .await
                    .map_err(|e| format!("federated token: {e}"))?;
                let mut c = credential(
                    CredentialKind::Federated,
                    Some(f.issuer),
                    Some(f.expires_us),
                    f.connections,
                );
                if let Some(sub) = f.subject {
                    c.id = c.id.map(|issuer| format!("{issuer}:{sub}"));
                }
                return Ok(Principal {
                    identity: f.identity,
                    credential: c,
                });
            }
        }
        Err("invalid token".into())
    }

    fn runtime_principal(&self, record: &TokenRecord) -> Principal {
        let rt = self.runtime.load();
        // A config account's groups and agent flag win, so a config change applies to its
        // runtime tokens too.
        let identity = match rt.config.service_account(&record.account) {
            Some(sa) => sa.identity(),
            None => Identity {
                name: record.account.clone(),
                kind: IdentityKind::Service,
                groups: record.groups.clone(),
                agent: record.agent,
            },
        };
        Principal {
            identity,
            credential: credential(
                CredentialKind::Runtime,
                Some(record.id.clone()),
                record.expires_us,
                record.connections.clone(),
            ),
        }
    }

    /// Whether a credential accepted earlier is still good (revocation, config reload).
    pub fn credential_valid(&self, c: &Credential) -> bool {
        match c.kind {
            CredentialKind::Runtime => {
                c.id.as_deref()
                    .and_then(|id| self.tokens.get(id))
                    .is_some_and(|r| r.valid_at(AuditEvent::now_us()))
            }
            CredentialKind::Config => {
                let rt = self.runtime.load();
                c.digest.is_some_and(|d| rt.tokens.contains_key(&d))
            }
            CredentialKind::BootstrapAdmin
            | CredentialKind::Federated
            | CredentialKind::Internal => true,
        }
    }

    /// Wakes sessions so they re-check their credentials.
    pub(crate) fn credentials_changed(&self) {
        self.credentials.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The highest role the identity's groups give it. The bootstrap admin is in `admins`.
    pub fn role(&self, identity: &Identity) -> Role {
        let rt = self.runtime.load();
        let roles = &rt.config.identity.roles;
        let any = |groups: &[String]| groups.iter().any(|g| identity.in_group(g));
        if any(&roles.admins) {
            Role::Admin
        } else if any(&roles.auditors) {
            Role::Auditor
        } else if any(&roles.reviewers) {
            Role::Reviewer
        } else {
            Role::User
        }
    }

    fn require(&self, who: &Identity, role: Role, what: &str) -> Result<(), AdminError> {
        let have = self.role(who);
        if have >= role {
            Ok(())
        } else {
            Err(AdminError::Forbidden(format!(
                "{what} needs the {} role; `{}` has {} (roles come from [roles] groups)",
                role.as_str(),
                who.name,
                have.as_str()
            )))
        }
    }

    pub fn create_token(&self, by: &Identity, spec: NewToken) -> Result<IssuedToken, AdminError> {
        self.require(by, Role::Admin, "creating tokens")?;
        let rt = self.runtime.load();
        if let Some(limit) = &spec.connections {
            if let Some(unknown) = limit.iter().find(|c| rt.config.connection(c).is_none()) {
                return Err(AdminError::Invalid(format!(
                    "unknown connection `{unknown}` in the token's connection limit"
                )));
            }
        }
        let issued = self.tokens.create(&spec, AuditEvent::now_us())?;
        self.token_step("token_created", &issued.record, by);
        Ok(issued)
    }

    pub fn list_tokens(&self, by: &Identity) -> Result<Vec<TokenRecord>, AdminError> {
        self.require(by, Role::Auditor, "listing tokens")?;
        Ok(self.tokens.list())
    }

    pub fn revoke_token(&self, by: &Identity, id: &str) -> Result<TokenRecord, AdminError> {
        self.require(by, Role::Admin, "revoking tokens")?;
        let record = self.tokens.revoke(id, AuditEvent::now_us())?;
        self.token_step("token_revoked", &record, by);
        self.credentials_changed();
        Ok(record)
    }

    pub fn rotate_token(&self, by: &Identity, id: &str) -> Result<IssuedToken, AdminError> {
        self.require(by, Role::Admin, "rotating tokens")?;
        let issued = self.tokens.rotate(id, AuditEvent::now_us())?;
        self.token_step("token_rotated", &issued.record, by);
        self.credentials_changed();
        Ok(issued)
    }

    /// An `other` audit event with `detail.token_step`; the record never holds the secret.
    fn token_step(&self, step: &str, record: &TokenRecord, by: &Identity) {
        let mut ev = AuditEvent::new(EventKind::Other);
        ev.identity = Some(by.name.clone());
        ev.detail = Some(serde_json::json!({
            "token_step": step,
            "token": {
                "id": record.id,
                "account": record.account,
                "hint": record.hint,
                "expires_us": record.expires_us,
                "connections": record.connections,
                "rotated_from": record.rotated_from,
            },
        }));
        if let Err(e) = self.audit.append(&[ev]) {
            tracing::error!(error = %e, "could not audit a token change");
        }
    }
}

impl SessionGate {
    /// The credential the session was opened with.
    pub fn credential(&self) -> &Credential {
        &self.credential
    }

    /// Resolves when the session must end: its access grant or its token expired, or its token
    /// was revoked (or removed from the config). The adapter closes the session with
    /// `message`; the cut is already in the audit log.
    pub async fn ended(&self) -> SessionEnd {
        let mut changes = self.gate.credentials.subscribe();
        loop {
            let grant = self.grant_until_us;
            let token = self.credential.expires_us;
            let deadline = grant.into_iter().chain(token).min();
            let sleep = async {
                match deadline {
                    Some(until) => {
                        let left = u64::try_from(until - AuditEvent::now_us()).unwrap_or(0);
                        tokio::time::sleep(Duration::from_micros(left)).await
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = sleep => {
                    if token.is_some() && token == deadline {
                        return self.cut(
                            "token expired",
                            format!(
                                "airlock: the token of `{}` expired; the session was closed. Get a new token and reconnect",
                                self.identity.name
                            ),
                        );
                    }
                    return self.cut(
                        "access grant expired",
                        "airlock: the access grant for this connection expired; request access again with `airlock request-access`".into(),
                    );
                }
                changed = changes.changed() => {
                    if changed.is_err() {
                        // The gate is going away; the listener ends the session.
                        std::future::pending::<()>().await;
                    }
                    if !self.gate.credential_valid(&self.credential) {
                        let what = match &self.credential.id {
                            Some(id) => format!("token {id}"),
                            None => "token".into(),
                        };
                        return self.cut(
                            "token revoked",
                            format!(
                                "airlock: the {what} of `{}` was revoked; the session was closed",
                                self.identity.name
                            ),
                        );
                    }
                }
            }
        }
    }

    fn cut(&self, reason: &str, message: String) -> SessionEnd {
        let mut ev = self.event(EventKind::Other);
        ev.detail = Some(serde_json::json!({
            "session_cut": reason,
            "credential": self.credential.kind.as_str(),
            "credential_id": self.credential.id,
            "message": message,
        }));
        if let Err(e) = self.gate.audit.append(&[ev]) {
            tracing::error!(session = %self.id, error = %e, "could not audit a session cut");
        }
        tracing::info!(session = %self.id, reason, "session cut");
        SessionEnd {
            reason: reason.to_owned(),
            message,
        }
    }
}

fn credential(
    kind: CredentialKind,
    id: Option<String>,
    expires_us: Option<i64>,
    connections: Option<Vec<String>>,
) -> Credential {
    Credential {
        kind,
        id,
        expires_us,
        connections,
        digest: None,
    }
}

type Failures<K> = std::sync::Mutex<std::collections::HashMap<K, (Instant, u32)>>;

fn over_limit<K: std::hash::Hash + Eq>(map: &Failures<K>, key: &K, limit: u32) -> bool {
    let map = map.lock().unwrap_or_else(|p| p.into_inner());
    map.get(key)
        .is_some_and(|(since, n)| since.elapsed() < Duration::from_secs(60) && *n >= limit)
}

fn note_failure<K: std::hash::Hash + Eq>(map: &Failures<K>, key: K) {
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    let entry = map.entry(key).or_insert((Instant::now(), 0));
    if entry.0.elapsed() >= Duration::from_secs(60) {
        *entry = (Instant::now(), 0);
    }
    entry.1 += 1;
    if map.len() > 100_000 {
        map.retain(|_, (since, _)| since.elapsed() < Duration::from_secs(60));
    }
}
