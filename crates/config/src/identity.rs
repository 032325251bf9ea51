//! Identity sources beyond config tokens: `[oidc]` (human login), `[[trusted_issuers]]`
//! (workload identity federation) and `[roles]` (who administers the gateway).

use crate::secret::SecretRef;
use std::collections::BTreeMap;

/// Everything identity-related in one field of [`crate::Config`], so the sections can grow
/// without touching every place a `Config` is built.
#[derive(Debug, Clone, Default)]
pub struct IdentityConfig {
    pub oidc: Option<OidcConfig>,
    pub trusted_issuers: Vec<TrustedIssuer>,
    pub roles: Roles,
}

/// `[oidc]`: the identity provider humans log in with (`airlock login`).
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// `https://…` (or `http://` on a loopback host, for tests).
    pub issuer: String,
    pub client_id: String,
    /// Absent for a public client (PKCE only).
    pub client_secret: Option<SecretRef>,
    pub scopes: Vec<String>,
    /// The ID-token claim that holds the user's groups.
    pub groups_claim: String,
    /// The claim that names the user (default `email`, then `sub`).
    pub username_claim: String,
    /// IdP group name → airlock group name; unmapped groups pass through unchanged.
    pub group_map: BTreeMap<String, String>,
    /// Lifetime of the access token airlock issues after a login.
    pub access_token_ttl_secs: u64,
    /// The web console's external base URL (its login redirect is `{console_url}/console/callback`,
    /// to be registered at the provider); `None`: `http://{api_listen}`.
    pub console_url: Option<String>,
    pub line: usize,
}

/// `[[trusted_issuers]]`: an external OIDC issuer whose JWTs airlock accepts as workload
/// identities (a CI system, a Kubernetes service-account issuer).
#[derive(Debug, Clone)]
pub struct TrustedIssuer {
    pub name: String,
    /// Must equal the token's `iss` claim.
    pub issuer: String,
    /// The token's `aud` must contain one of these.
    pub audiences: Vec<String>,
    /// Overrides JWKS discovery through `{issuer}/.well-known/openid-configuration`.
    pub jwks_url: Option<String>,
    /// Signature algorithms accepted (asymmetric only; default RS256 and ES256).
    pub algorithms: Vec<String>,
    /// Clock skew tolerated on `exp` / `nbf`.
    pub leeway_secs: u64,
    /// First match wins; a token no mapping matches is refused.
    pub mappings: Vec<ClaimMapping>,
    pub line: usize,
}

/// `[[trusted_issuers.mappings]]`: claim conditions → an airlock identity.
#[derive(Debug, Clone)]
pub struct ClaimMapping {
    /// Every claim must match; `*` in a value matches any run of characters.
    pub claims: BTreeMap<String, String>,
    pub identity: String,
    pub groups: Vec<String>,
    pub agent: bool,
    /// When set, the identity may use only these connections.
    pub connections: Option<Vec<String>>,
}

/// `[roles]`: which groups hold the administrative roles of the REST API and CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roles {
    /// Manage tokens and everything else.
    pub admins: Vec<String>,
    /// Read the audit trail and recordings.
    pub auditors: Vec<String>,
    /// Vote on reviews (each rule's `reviewers` still decides which reviews).
    pub reviewers: Vec<String>,
}

impl Default for Roles {
    fn default() -> Self {
        Roles {
            admins: vec!["admins".into()],
            auditors: vec!["auditors".into()],
            reviewers: Vec::new(),
        }
    }
}

/// The signature algorithms `[[trusted_issuers]]` may allow: asymmetric only, so a public
/// JWKS can never be used as an HMAC secret, and never `none`.
pub const FEDERATION_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];
