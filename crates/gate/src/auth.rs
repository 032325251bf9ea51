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
use std::net::SocketAddr;
use std::sync::Arc;
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
        self.check_limits(None, peer)
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
        self.check_limits(None, peer)
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
        self.check_limits(None, peer)
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
                note_failure(&self.failures, peer.ip());
                self.audit_auth_failure("<oidc>", peer, &reason);
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
    pub fn logout(&self, token: &str, peer: SocketAddr) -> Result<LogoutOutcome, LoginError> {
        self.check_limits(None, peer)
            .map_err(LoginError::RateLimited)?;
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
        note_failure(&self.failures, peer.ip());
        self.audit_auth_failure("<logout>", peer, reason);
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
