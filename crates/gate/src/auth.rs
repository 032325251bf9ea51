//! Token → identity for every kind of token, failed-authentication limits, administrative
//! roles, runtime token management, and the end of sessions whose credential ends.
//!
//! Kinds, tried in this order: the bootstrap admin token, tokens from the config
//! (`[[service_accounts]]`, `[[users]]`), runtime tokens (`alk_…`, [`airlock_identity::tokens`]),
//! access tokens from `airlock login` (`alk_at_…`, [`airlock_identity::access`]), federated
//! workload JWTs (`[[trusted_issuers]]`, [`airlock_identity::federation`]).
//!
//! Also the gateway's side of `airlock login` / `airlock logout`: the OIDC code exchange and
//! device flow ([`airlock_identity::oidc`]), issuing and revoking access tokens.

use crate::{token_digest, Gate, GateError, SessionGate};
use airlock_config::Config;
use airlock_core::{Identity, IdentityKind};
use airlock_identity::{
    AccessClaims, AccessTokens, DeviceStart, IssuedToken, NewToken, OidcClient, OidcError,
    OidcLogin, TokenError, TokenRecord, ACCESS_TOKEN_PREFIX,
};
use airlock_store::{AuditEvent, EventKind};
use arc_swap::ArcSwapOption;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Failed authentications per source address per minute before further failures are limited
/// (delayed and answered "too many failed authentications"). A valid token is never limited.
pub(crate) const FAILURES_PER_SOURCE: u32 = 10;
/// Failed authentications per claimed identity per minute, from all sources together (a
/// distributed guess at one account's token), before further failures against it are limited.
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
    /// An access token airlock issued after an OIDC login (`alk_at_…`).
    Access,
    Internal,
}

impl CredentialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::BootstrapAdmin => "bootstrap_admin",
            CredentialKind::Config => "config_token",
            CredentialKind::Runtime => "runtime_token",
            CredentialKind::Federated => "federated_jwt",
            CredentialKind::Access => "oidc_access_token",
            CredentialKind::Internal => "internal",
        }
    }
}

/// What the presented token was; decides when a session built on it must end.
#[derive(Debug, Clone)]
pub struct Credential {
    pub kind: CredentialKind,
    /// The runtime token id, `issuer:sub` of a federated JWT, or an access token's `jti`.
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
    ///
    /// The presented token is always verified first: a valid one is admitted whatever others
    /// failed from the same address or against the same name (tokens are high-entropy, so
    /// guessing is not the threat a lockout would answer). Only failures are limited: past
    /// [`FAILURES_PER_SOURCE`] / [`FAILURES_PER_IDENTITY`] a minute they are answered after a
    /// short delay and say so, and they are audited in aggregate (see [`FailureBook`]).
    pub async fn authenticate(
        &self,
        user: &str,
        token: &str,
        peer: SocketAddr,
    ) -> Result<Principal, GateError> {
        let reason = match self.resolve(token).await {
            Ok(p) if p.identity.name == user => return Ok(p),
            Ok(p) => format!("the token belongs to `{}`, not `{user}`", p.identity.name),
            Err(reason) => reason,
        };
        let e = self.failed(Some(user), user, peer, &reason);
        self.auth_failures.tarpit(&e).await;
        Err(e)
    }

    /// Any token alone (the REST API's bearer authentication); limited like [`Gate::authenticate`].
    pub async fn authenticate_bearer(
        &self,
        token: &str,
        peer: SocketAddr,
    ) -> Result<Principal, GateError> {
        match self.resolve(token).await {
            Ok(p) => Ok(p),
            Err(reason) => {
                let e = self.failed(None, "<bearer>", peer, &reason);
                self.auth_failures.tarpit(&e).await;
                Err(e)
            }
        }
    }

    /// Refuses a login *before* it costs a call to the identity provider when the source is
    /// over its failure limit (OIDC code exchange and device flow: there is no credential to
    /// verify locally first). The refusal counts as a failure.
    fn check_limits(&self, label: &str, peer: SocketAddr) -> Result<(), GateError> {
        if self.auth_failures.source_over_limit(peer.ip()) {
            return Err(self.failed(
                None,
                label,
                peer,
                "rate limited before the identity provider call",
            ));
        }
        Ok(())
    }

    /// Counts and audits a failed authentication; the error says whether the source or the
    /// claimed identity is now over its limit.
    /// `claimed`: the identity name the client gave (counted towards that name's limit);
    /// `shown`: what the audit event and the error name (`<bearer>`, `<oidc>` without a name).
    fn failed(
        &self,
        claimed: Option<&str>,
        shown: &str,
        peer: SocketAddr,
        reason: &str,
    ) -> GateError {
        let outcome = self.auth_failures.note(claimed, shown, peer, reason);
        if outcome.first {
            tracing::warn!(peer = %peer.ip(), identity = shown, reason, "authentication failed (more failures from this address within {}s are logged as one count)", AUDIT_WINDOW.as_secs());
        }
        self.append_auth_failures(&outcome.events);
        match outcome.limited {
            Some(Limited::Identity) => GateError::RateLimited {
                source_ip: peer.ip(),
                identity: Some(shown.to_owned()),
            },
            Some(Limited::Source) => GateError::RateLimited {
                source_ip: peer.ip(),
                identity: None,
            },
            None => GateError::BadCredentials {
                user: shown.to_owned(),
            },
        }
    }

    /// Writes the aggregate `auth_failure` events of windows that have ended (all of them with
    /// `all`, at shutdown). Called from [`Gate::tick`] about once a second.
    pub(crate) fn flush_auth_failures(&self, all: bool) {
        let events = self.auth_failures.flush(Instant::now(), all);
        self.append_auth_failures(&events);
    }

    /// Appends failure events; an aggregate also gets its line in the gateway's log.
    fn append_auth_failures(&self, events: &[AuditEvent]) {
        if events.is_empty() {
            return;
        }
        for d in events.iter().filter_map(|ev| ev.detail.as_ref()) {
            if d.get("aggregated").is_some() {
                let field = |k: &str| d.get(k).cloned().unwrap_or_default();
                tracing::warn!(
                    peer = d.get("peer").and_then(|v| v.as_str()).unwrap_or_default(),
                    count = %field("count"),
                    identities = %field("identities"),
                    "more failed authentications from this address in its {}s window",
                    AUDIT_WINDOW.as_secs()
                );
            }
        }
        if let Err(e) = self.audit.append(events) {
            tracing::error!(error = %e, "could not audit a failed authentication");
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
        if token.starts_with(ACCESS_TOKEN_PREFIX) {
            if self.humans.oidc.load().is_none() {
                return Err("an OIDC access token, but this gateway has no [oidc] section".into());
            }
            let claims = self
                .humans
                .access
                .verify(token, AuditEvent::now_us())
                .map_err(|e| e.to_string())?;
            return Ok(access_principal(&claims));
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
            // Logout revoked it, or a reload removed [oidc] (expiry is a deadline of its own).
            CredentialKind::Access => {
                self.humans.oidc.load().is_some()
                    && c.id
                        .as_deref()
                        .is_some_and(|jti| !self.humans.access.is_revoked(jti))
            }
            CredentialKind::BootstrapAdmin
            | CredentialKind::Federated
            | CredentialKind::Internal => true,
        }
    }

    /// Ends every open session: each one's [`SessionGate::ended`] resolves (a `session_cut`
    /// event with reason `gateway shutting down`), and the adapters tell their clients in their
    /// protocol, stop the running statement and write `session_end`. New logins after this are
    /// still served by whatever listener is running; stop the listeners first.
    pub fn begin_shutdown(&self) {
        self.closing.send_replace(true);
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
        let mut closing = self.gate.closing.subscribe();
        loop {
            if *closing.borrow_and_update() {
                return self.cut(
                    "gateway shutting down",
                    "airlock: the gateway is shutting down; the session was closed. Reconnect to continue".into(),
                );
            }
            // Checked before every wait, the first included: a revocation that happened while
            // this session was between authentication and this subscription (mid-handshake)
            // sent its change before we listened, and must still cut it.
            changes.borrow_and_update();
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
                changed = closing.changed() => {
                    if changed.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
                changed = changes.changed() => {
                    if changed.is_err() {
                        // The gate is going away; the listener ends the session.
                        std::future::pending::<()>().await;
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

/// How long failures are counted towards the limits.
const LIMIT_WINDOW: Duration = Duration::from_secs(60);
/// Failures from one source are audited as one event per window: the first individually (with
/// its identity and reason), the rest as one `auth_failure` event with a `count` when the
/// window ends. The gateway's own log follows the same rhythm.
pub(crate) const AUDIT_WINDOW: Duration = Duration::from_secs(10);
/// A failure past a limit is answered after this delay (no CPU: a timer), which slows a
/// client guessing over one connection at a time.
const TARPIT: Duration = Duration::from_secs(1);
/// At most this many failures wait out [`TARPIT`] at once; beyond, they are answered at once,
/// so a flood cannot hold the gateway's file descriptors (which would shut out good clients).
const TARPIT_MAX: usize = 64;
/// Distinct identity names and reasons tallied per aggregate event; the rest are counted as
/// `other`. Names are cut to [`MAX_NAME`] characters (they are whatever the client sent).
const MAX_TALLY: usize = 16;
const MAX_NAME: usize = 64;
/// Sources and names tracked at once before finished entries are dropped early.
const MAX_TRACKED: usize = 100_000;

/// Failed authentications: the per-source and per-identity counts behind the limits, and the
/// aggregation of their audit events.
pub(crate) struct FailureBook {
    book: std::sync::Mutex<Book>,
    tarpitted: AtomicUsize,
}

#[derive(Default)]
struct Book {
    sources: HashMap<IpAddr, Source>,
    identities: HashMap<String, Count>,
}

/// Failures in the current limit window.
struct Count {
    since: Instant,
    n: u32,
}

impl Count {
    fn new(now: Instant) -> Count {
        Count { since: now, n: 0 }
    }

    fn bump(&mut self, now: Instant) -> u32 {
        if now.duration_since(self.since) >= LIMIT_WINDOW {
            *self = Count::new(now);
        }
        self.n = self.n.saturating_add(1);
        self.n
    }

    fn over(&self, now: Instant, limit: u32) -> bool {
        now.duration_since(self.since) < LIMIT_WINDOW && self.n >= limit
    }

    fn expired(&self, now: Instant) -> bool {
        now.duration_since(self.since) >= LIMIT_WINDOW
    }
}

struct Source {
    limit: Count,
    window: Option<Window>,
}

/// The failures of one source after the first of the current audit window.
struct Window {
    opened: Instant,
    opened_us: i64,
    last_us: i64,
    count: u64,
    identities: BTreeMap<String, u64>,
    other_identities: u64,
    reasons: BTreeMap<String, u64>,
    other_reasons: u64,
    /// Reasons already audited individually in this window (the first failure of each distinct
    /// reason is, up to `MAX_TALLY`: a new kind of attempt is worth its own event).
    individual: BTreeSet<String>,
}

impl Window {
    /// Whether a failure for `reason` is the first of its kind in this window (and so is
    /// audited on its own, not aggregated); remembers it.
    fn first_of_reason(&mut self, reason: &str) -> bool {
        let key = short(reason);
        if self.individual.len() >= MAX_TALLY || self.individual.contains(&key) {
            return false;
        }
        self.individual.insert(key);
        true
    }

    fn new(now: Instant, now_us: i64) -> Window {
        Window {
            opened: now,
            opened_us: now_us,
            last_us: now_us,
            count: 0,
            identities: BTreeMap::new(),
            other_identities: 0,
            reasons: BTreeMap::new(),
            other_reasons: 0,
            individual: BTreeSet::new(),
        }
    }

    fn add(&mut self, shown: &str, reason: &str, now_us: i64) {
        self.count += 1;
        self.last_us = now_us;
        tally(&mut self.identities, &mut self.other_identities, shown);
        tally(&mut self.reasons, &mut self.other_reasons, reason);
    }

    /// The aggregate event for the failures after the window's first; `None` when there were
    /// none.
    fn event(self, ip: IpAddr) -> Option<AuditEvent> {
        if self.count == 0 {
            return None;
        }
        let mut ev = AuditEvent::new(EventKind::AuthFailure);
        // One claimed name: the event is that identity's, like an individual failure.
        if self.identities.len() == 1 && self.other_identities == 0 {
            ev.identity = self.identities.keys().next().cloned();
        }
        ev.detail = Some(serde_json::json!({
            "peer": ip.to_string(),
            "reason": "repeated failures (aggregated)",
            "aggregated": true,
            "count": self.count,
            "window_start_us": self.opened_us,
            "window_end_us": self.last_us,
            "identities": self.identities,
            "identities_other": self.other_identities,
            "reasons": self.reasons,
            "reasons_other": self.other_reasons,
        }));
        Some(ev)
    }
}

fn tally(map: &mut BTreeMap<String, u64>, other: &mut u64, key: &str) {
    let key = short(key);
    if let Some(n) = map.get_mut(&key) {
        *n += 1;
    } else if map.len() < MAX_TALLY {
        map.insert(key, 1);
    } else {
        *other += 1;
    }
}

fn short(name: &str) -> String {
    name.chars().take(MAX_NAME).collect()
}

/// Which limit a failure went past.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limited {
    Source,
    Identity,
}

/// What noting one failure produced.
pub(crate) struct Noted {
    /// Events to append now: an ended window's aggregate the tick had not flushed yet, and
    /// this failure when it is the first of a new window.
    pub(crate) events: Vec<AuditEvent>,
    /// This failure opened a new window (it is audited and logged individually).
    pub(crate) first: bool,
    pub(crate) limited: Option<Limited>,
}

/// Holds a tarpit slot until dropped (also when the client goes away mid-delay).
struct TarpitSlot<'a>(&'a AtomicUsize);

impl Drop for TarpitSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, AtomicOrdering::Relaxed);
    }
}

impl FailureBook {
    pub(crate) fn new() -> FailureBook {
        FailureBook {
            book: std::sync::Mutex::new(Book::default()),
            tarpitted: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one failure from `peer` (against `claimed`, when the client named an identity).
    pub(crate) fn note(
        &self,
        claimed: Option<&str>,
        shown: &str,
        peer: SocketAddr,
        reason: &str,
    ) -> Noted {
        let now = Instant::now();
        let now_us = AuditEvent::now_us();
        let ip = peer.ip();
        let mut book = self.lock();
        if book.sources.len() >= MAX_TRACKED {
            book.sources
                .retain(|_, s| s.window.is_some() || !s.limit.expired(now));
        }
        if book.identities.len() >= MAX_TRACKED {
            book.identities.retain(|_, c| !c.expired(now));
        }
        let mut events = Vec::new();
        let source = book.sources.entry(ip).or_insert_with(|| Source {
            limit: Count::new(now),
            window: None,
        });
        let from_source = source.limit.bump(now);
        let first = match &mut source.window {
            Some(w) if now.duration_since(w.opened) < AUDIT_WINDOW => {
                if w.first_of_reason(reason) {
                    true
                } else {
                    w.add(shown, reason, now_us);
                    false
                }
            }
            open => {
                if let Some(ended) = open.take().and_then(|w| w.event(ip)) {
                    events.push(ended);
                }
                let mut w = Window::new(now, now_us);
                w.first_of_reason(reason);
                *open = Some(w);
                true
            }
        };
        let against_identity = claimed.map_or(0, |name| {
            book.identities
                .entry(short(name))
                .or_insert_with(|| Count::new(now))
                .bump(now)
        });
        drop(book);
        let limited = if from_source > FAILURES_PER_SOURCE {
            Some(Limited::Source)
        } else if against_identity > FAILURES_PER_IDENTITY {
            Some(Limited::Identity)
        } else {
            None
        };
        if first {
            let mut ev = AuditEvent::new(EventKind::AuthFailure);
            ev.ts_us = now_us;
            ev.identity = Some(shown.to_owned());
            let mut detail = serde_json::json!({
                "peer": peer.to_string(),
                "reason": reason,
                "count": 1,
            });
            if let (Some(l), Some(d)) = (limited, detail.as_object_mut()) {
                d.insert(
                    "limited".into(),
                    serde_json::Value::from(match l {
                        Limited::Source => "source",
                        Limited::Identity => "identity",
                    }),
                );
            }
            ev.detail = Some(detail);
            events.push(ev);
        }
        Noted {
            events,
            first,
            limited,
        }
    }

    /// Whether `ip` is past its failure limit (checked before calls that cost a round trip
    /// to someone else, where there is no credential to verify first).
    pub(crate) fn source_over_limit(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        self.lock()
            .sources
            .get(&ip)
            .is_some_and(|s| s.limit.over(now, FAILURES_PER_SOURCE))
    }

    /// The aggregate events of windows that ended (every open one with `all`), and forgets
    /// sources and names whose counts have expired.
    pub(crate) fn flush(&self, now: Instant, all: bool) -> Vec<AuditEvent> {
        let mut events = Vec::new();
        let mut book = self.lock();
        for (ip, source) in &mut book.sources {
            let ended = source
                .window
                .as_ref()
                .is_some_and(|w| all || now.duration_since(w.opened) >= AUDIT_WINDOW);
            if ended {
                if let Some(ev) = source.window.take().and_then(|w| w.event(*ip)) {
                    events.push(ev);
                }
            }
        }
        book.sources
            .retain(|_, s| s.window.is_some() || !s.limit.expired(now));
        book.identities.retain(|_, c| !c.expired(now));
        events
    }

    /// Delays the answer to a failure past a limit, within [`TARPIT_MAX`].
    pub(crate) async fn tarpit(&self, e: &GateError) {
        if !matches!(e, GateError::RateLimited { .. }) {
            return;
        }
        let slot = TarpitSlot(&self.tarpitted);
        if self.tarpitted.fetch_add(1, AtomicOrdering::Relaxed) < TARPIT_MAX {
            tokio::time::sleep(TARPIT).await;
        }
        drop(slot);
    }
}

fn access_principal(claims: &AccessClaims) -> Principal {
    Principal {
        // Groups are the provider's, mapped at login; they hold until the token ends.
        identity: Identity {
            name: claims.sub.clone(),
            kind: IdentityKind::Human,
            groups: claims.groups.clone(),
            agent: false,
        },
        credential: credential(
            CredentialKind::Access,
            Some(claims.jti.clone()),
            Some(claims.expires_us()),
            None,
        ),
    }
}

/// `[oidc]` logins and the access tokens they yield.
pub(crate) struct Humans {
    /// The signing key and revocation list in `data_dir` (present even without `[oidc]`, so
    /// a reload that adds it needs no restart).
    access: AccessTokens,
    /// The relying party; `None` without `[oidc]`. Rebuilt on reload.
    oidc: ArcSwapOption<OidcClient>,
}

impl Humans {
    pub(crate) fn open(config: &Config) -> Result<Humans, String> {
        let access = AccessTokens::open(&config.gateway.data_dir).map_err(|e| e.to_string())?;
        Ok(Humans {
            access,
            oidc: ArcSwapOption::from(
                config
                    .identity
                    .oidc
                    .as_ref()
                    .map(|o| Arc::new(OidcClient::new(o))),
            ),
        })
    }

    pub(crate) fn reload(&self, config: &Config) {
        self.oidc.store(
            config
                .identity
                .oidc
                .as_ref()
                .map(|o| Arc::new(OidcClient::new(o))),
        );
    }
}

/// Why a login or logout did not produce what was asked.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("this gateway has no [oidc] section: `airlock login` needs an identity provider")]
    NotConfigured,
    /// The request itself is wrong (not audited as a failed login).
    #[error("{0}")]
    Invalid(String),
    /// The login failed: audited, counted towards the source's failure limit.
    #[error("{0}")]
    Refused(String),
    /// Device flow: the user has not approved yet.
    #[error("authorization_pending")]
    Pending,
    /// Device flow: poll less often.
    #[error("slow_down")]
    SlowDown,
    /// The identity provider could not be reached or answered nonsense.
    #[error("{0}")]
    Provider(String),
    #[error(transparent)]
    RateLimited(GateError),
    #[error("{0}")]
    Unavailable(String),
}

/// A completed login: the access token (shown once) and whom it names.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoginOutcome {
    pub token: String,
    pub identity: Identity,
    pub jti: String,
    pub expires_us: i64,
}

/// What `logout` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LogoutOutcome {
    pub identity: String,
    pub jti: String,
    /// The token had already expired or been revoked.
    pub already: bool,
}

impl Gate {
    fn oidc(&self) -> Result<Arc<OidcClient>, LoginError> {
        self.humans
            .oidc
            .load_full()
            .ok_or(LoginError::NotConfigured)
    }

    /// The provider URL the user's browser opens (code flow with PKCE S256). The redirect
    /// must be a loopback address: the code goes back to the machine the login started on.
    pub async fn oidc_authorization_url(
        &self,
        redirect_uri: &str,
        state: &str,
        nonce: &str,
        code_challenge: &str,
    ) -> Result<String, LoginError> {
        let oidc = self.oidc()?;
        self.check_redirect(redirect_uri)?;
        for (what, v) in [
            ("state", state),
            ("nonce", nonce),
            ("code_challenge", code_challenge),
        ] {
            if v.len() < 16 || v.len() > 256 {
                return Err(LoginError::Invalid(format!(
                    "{what} must be 16 to 256 characters"
                )));
            }
        }
        oidc.authorization_url(redirect_uri, state, nonce, code_challenge)
            .await
            .map_err(|e| LoginError::Provider(e.to_string()))
    }

    /// Redeems the code the browser brought back and issues an access token.
    pub async fn oidc_exchange(
        &self,
        code: &str,
        code_verifier: &str,
        redirect_uri: &str,
        nonce: &str,
        peer: SocketAddr,
    ) -> Result<LoginOutcome, LoginError> {
        let oidc = self.oidc()?;
        self.check_limits("<oidc>", peer)
            .map_err(LoginError::RateLimited)?;
        self.check_redirect(redirect_uri)?;
        if !(43..=128).contains(&code_verifier.len()) {
            return Err(LoginError::Invalid(
                "code_verifier must be 43 to 128 characters (RFC 7636)".into(),
            ));
        }
        let login = oidc
            .exchange_code(
                code,
                code_verifier,
                redirect_uri,
                nonce,
                AuditEvent::now_us(),
            )
            .await;
        self.finish_login(&oidc, login, "oidc_code_pkce", peer)
    }

    /// Starts a device-flow login at the provider.
    pub async fn oidc_device_start(&self, peer: SocketAddr) -> Result<DeviceStart, LoginError> {
        let oidc = self.oidc()?;
        self.check_limits("<oidc>", peer)
            .map_err(LoginError::RateLimited)?;
        oidc.start_device().await.map_err(|e| match e {
            OidcError::Refused { .. } => LoginError::Refused(e.to_string()),
            other => LoginError::Provider(other.to_string()),
        })
    }

    /// One poll of a device-flow login: [`LoginError::Pending`] until the user approves.
    pub async fn oidc_device_poll(
        &self,
        device_code: &str,
        peer: SocketAddr,
    ) -> Result<LoginOutcome, LoginError> {
        let oidc = self.oidc()?;
        self.check_limits("<oidc>", peer)
            .map_err(LoginError::RateLimited)?;
        let login = oidc.poll_device(device_code, AuditEvent::now_us()).await;
        self.finish_login(&oidc, login, "oidc_device", peer)
    }

    fn finish_login(
        &self,
        oidc: &OidcClient,
        login: Result<OidcLogin, OidcError>,
        method: &str,
        peer: SocketAddr,
    ) -> Result<LoginOutcome, LoginError> {
        let login = match login {
            Ok(l) => l,
            Err(OidcError::Pending) => return Err(LoginError::Pending),
            Err(OidcError::SlowDown) => return Err(LoginError::SlowDown),
            Err(OidcError::Provider(m)) => {
                tracing::warn!(error = %m, "OIDC provider unavailable");
                return Err(LoginError::Provider(m));
            }
            Err(e) => {
                let reason = format!("OIDC login ({method}): {e}");
                self.failed(None, "<oidc>", peer, &reason);
                return Err(LoginError::Refused(reason));
            }
        };
        let ttl = oidc.config().access_token_ttl_secs;
        let issued = self
            .humans
            .access
            .issue(
                &login.username,
                &login.groups,
                Some(&login.subject),
                ttl,
                AuditEvent::now_us(),
            )
            .map_err(|e| LoginError::Unavailable(e.to_string()))?;
        let mut ev = AuditEvent::new(EventKind::Other);
        ev.identity = Some(login.username.clone());
        ev.detail = Some(serde_json::json!({
            "login_step": "login",
            "method": method,
            "peer": peer.to_string(),
            "credential": CredentialKind::Access.as_str(),
            "credential_id": issued.claims.jti,
            "expires_us": issued.claims.expires_us(),
            "groups": login.groups,
            "provider_groups": login.provider_groups,
            "provider_sub": login.subject,
        }));
        // The token is handed out only once the login is on record.
        self.audit.append(&[ev]).map_err(|e| {
            LoginError::Unavailable(format!("the audit log cannot be written: {e}"))
        })?;
        tracing::info!(identity = %login.username, method, "login");
        let principal = access_principal(&issued.claims);
        Ok(LoginOutcome {
            token: issued.token,
            identity: principal.identity,
            expires_us: issued.claims.expires_us(),
            jti: issued.claims.jti,
        })
    }

    /// Revokes the presented access token (`airlock logout`); sessions opened with it end.
    /// Not limited before the check: a valid token always logs out (its signature check is
    /// cheap); failures count like any other.
    pub fn logout(&self, token: &str, peer: SocketAddr) -> Result<LogoutOutcome, LoginError> {
        if !token.starts_with(ACCESS_TOKEN_PREFIX) {
            return Err(LoginError::Invalid(
                "logout ends an `airlock login` access token (alk_at_…); revoke runtime tokens \
                 with `airlock tokens revoke`"
                    .into(),
            ));
        }
        let now = AuditEvent::now_us();
        let claims = self
            .humans
            .access
            .verify_signature(token)
            .map_err(|e| self.logout_failed(peer, &e.to_string()))?;
        if claims.expires_us() <= now || self.humans.access.is_revoked(&claims.jti) {
            return Ok(LogoutOutcome {
                identity: claims.sub,
                jti: claims.jti,
                already: true,
            });
        }
        self.humans
            .access
            .revoke(&claims, now)
            .map_err(|e| LoginError::Unavailable(e.to_string()))?;
        let mut ev = AuditEvent::new(EventKind::Other);
        ev.identity = Some(claims.sub.clone());
        ev.detail = Some(serde_json::json!({
            "login_step": "logout",
            "peer": peer.to_string(),
            "credential": CredentialKind::Access.as_str(),
            "credential_id": claims.jti,
        }));
        if let Err(e) = self.audit.append(&[ev]) {
            tracing::error!(error = %e, "could not audit a logout");
        }
        self.credentials_changed();
        Ok(LogoutOutcome {
            identity: claims.sub,
            jti: claims.jti,
            already: false,
        })
    }

    fn logout_failed(&self, peer: SocketAddr, reason: &str) -> LoginError {
        self.failed(None, "<logout>", peer, reason);
        LoginError::Refused("the access token is not valid".into())
    }
}

impl Gate {
    /// Where the provider sends the web console's logins back:
    /// `{[oidc] console_url or http://api_listen}/console/callback`.
    pub fn console_redirect_uri(&self) -> String {
        let config = self.runtime().config.clone();
        let base = config
            .identity
            .oidc
            .as_ref()
            .and_then(|o| o.console_url.clone())
            .unwrap_or_else(|| format!("http://{}", config.gateway.api_listen));
        format!("{base}/console/callback")
    }

    /// A login's code may go only to the machine the CLI login started on (a loopback
    /// listener) or to this gateway's own console.
    fn check_redirect(&self, redirect_uri: &str) -> Result<(), LoginError> {
        if airlock_identity::oidc::is_loopback_redirect(redirect_uri)
            || redirect_uri == self.console_redirect_uri()
        {
            Ok(())
        } else {
            Err(LoginError::Invalid(format!(
                "redirect_uri `{redirect_uri}` must be http://127.0.0.1:PORT/… (a loopback listener) or {}",
                self.console_redirect_uri()
            )))
        }
    }
}
