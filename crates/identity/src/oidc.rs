//! Human login with OpenID Connect: airlock is the relying party of the `[oidc]` provider.
//!
//! The CLI (`airlock login`) runs the browser part — the authorization-code flow with PKCE
//! and a loopback redirect, or the device flow — and hands the result to the gateway, which
//! alone holds the client secret. The gateway redeems the code (or polls the device code) at
//! the provider's token endpoint and verifies the ID token: algorithm on the asymmetric
//! allow-list, key by `kid` from the provider's JWKS (the federation cache: a new `kid`
//! refetches, so key rotation needs no restart), signature, `iss`, `aud` = client id (and
//! `azp` when there are several audiences), `exp`/`nbf`/`iat` and the `nonce` of this login.
//! Only then are the user name and groups read, and mapped by `group_map`.

use crate::federation::Jwks;
use airlock_config::{OidcConfig, FEDERATION_ALGORITHMS};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const DISCOVERY_MAX_AGE: Duration = Duration::from_secs(3600);
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_RESPONSE_BYTES: u64 = 1 << 20;
const MAX_ID_TOKEN_BYTES: usize = 16 * 1024;
/// Clock skew tolerated on the ID token's `exp`, `nbf` and `iat`.
const LEEWAY_SECS: u64 = 30;
/// Names and groups become PostgreSQL user names and rule inputs: bounded, no control
/// characters.
const MAX_NAME_CHARS: usize = 128;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OidcError {
    #[error("the identity provider cannot be used: {0}")]
    Provider(String),
    #[error("the identity provider refused: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused {
        error: String,
        description: Option<String>,
    },
    /// Device flow: the user has not finished yet.
    #[error("authorization_pending")]
    Pending,
    /// Device flow: poll less often.
    #[error("slow_down")]
    SlowDown,
    #[error("the ID token is not a JWT")]
    Malformed,
    #[error("the ID token's algorithm {0} is not allowed")]
    Algorithm(String),
    #[error("the ID token's signature is not valid")]
    BadSignature,
    #[error("the ID token expired")]
    Expired,
    #[error("the ID token is not valid yet")]
    NotYetValid,
    #[error("the ID token's audience is not {0}")]
    WrongAudience(String),
    #[error("the ID token's issuer is not {0}")]
    WrongIssuer(String),
    #[error("the ID token's nonce does not match this login")]
    Nonce,
    #[error("the ID token was rejected: {0}")]
    Invalid(String),
    #[error("no usable user name in the ID token: {0}")]
    NoUsername(String),
}

impl From<crate::FederationError> for OidcError {
    fn from(e: crate::FederationError) -> Self {
        match e {
            crate::FederationError::Jwks { message, .. } => {
                OidcError::Provider(format!("JWKS: {message}"))
            }
            other => OidcError::Invalid(other.to_string()),
        }
    }
}

/// What the provider's discovery document says (the parts airlock uses).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    #[serde(default)]
    pub device_authorization_endpoint: Option<String>,
    pub jwks_uri: String,
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
}

/// A verified login: who, with which groups (already mapped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcLogin {
    pub username: String,
    pub groups: Vec<String>,
    /// The ID token's `sub`, for the audit trail.
    pub subject: String,
    /// The groups as the provider named them.
    pub provider_groups: Vec<String>,
}

/// The provider's answer to a device authorization request, passed on to the CLI.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceStart {
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification_uri_complete: Option<String>,
    pub expires_in: u64,
    #[serde(default = "default_interval")]
    pub interval: u64,
}

fn default_interval() -> u64 {
    5
}

/// The `[oidc]` relying party: discovery and JWKS caches, the token endpoint calls and ID
/// token verification.
pub struct OidcClient {
    config: OidcConfig,
    algorithms: Vec<Algorithm>,
    discovery: Mutex<Option<(Discovery, Instant)>>,
    keys: Jwks,
}

impl OidcClient {
    pub fn new(config: &OidcConfig) -> OidcClient {
        OidcClient {
            algorithms: FEDERATION_ALGORITHMS
                .iter()
                .filter_map(|a| Algorithm::from_str(a).ok())
                .collect(),
            keys: Jwks::new("oidc", &config.issuer, None),
            discovery: Mutex::new(None),
            config: config.clone(),
        }
    }

    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    /// The discovery document, cached for an hour.
    pub async fn discovery(&self) -> Result<Discovery, OidcError> {
        {
            let cached = self.discovery.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((d, at)) = cached.as_ref() {
                if at.elapsed() < DISCOVERY_MAX_AGE {
                    return Ok(d.clone());
                }
            }
        }
        let issuer = self.config.issuer.clone();
        let d = blocking(move || fetch_discovery(&issuer)).await?;
        *self.discovery.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((d.clone(), Instant::now()));
        Ok(d)
    }

    /// The URL the user's browser opens for the authorization-code flow with PKCE (S256).
    pub async fn authorization_url(
        &self,
        redirect_uri: &str,
        state: &str,
        nonce: &str,
        code_challenge: &str,
    ) -> Result<String, OidcError> {
        let d = self.discovery().await?;
        let scope = self.config.scopes.join(" ");
        let query = form_encode(&[
            ("response_type", "code"),
            ("client_id", &self.config.client_id),
            ("redirect_uri", redirect_uri),
            ("scope", &scope),
            ("state", state),
            ("nonce", nonce),
            ("code_challenge", code_challenge),
            ("code_challenge_method", "S256"),
        ]);
        let sep = if d.authorization_endpoint.contains('?') {
            '&'
        } else {
            '?'
        };
        Ok(format!("{}{sep}{query}", d.authorization_endpoint))
    }

    /// Redeems an authorization code and verifies the ID token it brings.
    pub async fn exchange_code(
        &self,
        code: &str,
        code_verifier: &str,
        redirect_uri: &str,
        nonce: &str,
        now_us: i64,
    ) -> Result<OidcLogin, OidcError> {
        let d = self.discovery().await?;
        let form = vec![
            ("grant_type".to_owned(), "authorization_code".to_owned()),
            ("code".to_owned(), code.to_owned()),
            ("code_verifier".to_owned(), code_verifier.to_owned()),
            ("redirect_uri".to_owned(), redirect_uri.to_owned()),
        ];
        let body = self
            .token_request(&d, d.token_endpoint.clone(), form)
            .await?;
        let id_token = id_token_of(&body)?;
        self.verify_id_token(&id_token, Some(nonce), now_us).await
    }

    /// Starts the device flow at the provider.
    pub async fn start_device(&self) -> Result<DeviceStart, OidcError> {
        let d = self.discovery().await?;
        let endpoint = d.device_authorization_endpoint.clone().ok_or_else(|| {
            OidcError::Provider(
                "the provider announces no device_authorization_endpoint (no device flow)".into(),
            )
        })?;
        let form = vec![("scope".to_owned(), self.config.scopes.join(" "))];
        let body = self.token_request(&d, endpoint, form).await?;
        serde_json::from_value(body)
            .map_err(|e| OidcError::Provider(format!("device authorization answer: {e}")))
    }

    /// One poll of the token endpoint for a device code.
    pub async fn poll_device(
        &self,
        device_code: &str,
        now_us: i64,
    ) -> Result<OidcLogin, OidcError> {
        let d = self.discovery().await?;
        let form = vec![
            (
                "grant_type".to_owned(),
                "urn:ietf:params:oauth:grant-type:device_code".to_owned(),
            ),
            ("device_code".to_owned(), device_code.to_owned()),
        ];
        let body = match self.token_request(&d, d.token_endpoint.clone(), form).await {
            Err(OidcError::Refused { error, .. }) if error == "authorization_pending" => {
                return Err(OidcError::Pending)
            }
            Err(OidcError::Refused { error, .. }) if error == "slow_down" => {
                return Err(OidcError::SlowDown)
            }
            other => other?,
        };
        let id_token = id_token_of(&body)?;
        // A device authorization request carries no nonce, so there is none to compare.
        self.verify_id_token(&id_token, None, now_us).await
    }

    /// POSTs a form to a provider endpoint with the client's authentication; an OAuth error
    /// answer becomes [`OidcError::Refused`].
    async fn token_request(
        &self,
        d: &Discovery,
        url: String,
        mut form: Vec<(String, String)>,
    ) -> Result<Value, OidcError> {
        let secret = self
            .config
            .client_secret
            .as_ref()
            .map(|s| s.value.expose().to_owned());
        let methods = d.token_endpoint_auth_methods_supported.clone();
        // client_secret_basic is the default of the spec; _post only when it is all the
        // provider supports.
        let post_only = methods.as_ref().is_some_and(|m| {
            !m.iter().any(|x| x == "client_secret_basic")
                && m.iter().any(|x| x == "client_secret_post")
        });
        let mut basic = None;
        match secret {
            Some(secret) if post_only => {
                form.push(("client_id".into(), self.config.client_id.clone()));
                form.push(("client_secret".into(), secret));
            }
            Some(secret) => {
                let pair = format!(
                    "{}:{}",
                    form_encode_component(&self.config.client_id),
                    form_encode_component(&secret)
                );
                basic = Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                ));
            }
            None => form.push(("client_id".into(), self.config.client_id.clone())),
        }
        blocking(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .timeout_global(Some(HTTP_TIMEOUT))
                .http_status_as_error(false)
                .max_redirects(0)
                .build()
                .into();
            let mut request = agent.post(&url).header("accept", "application/json");
            if let Some(b) = &basic {
                request = request.header("authorization", b.as_str());
            }
            let mut response = request
                .send_form(form.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .map_err(|e| OidcError::Provider(format!("{url}: {e}")))?;
            let status = response.status().as_u16();
            let body: Value = response
                .body_mut()
                .with_config()
                .limit(MAX_RESPONSE_BYTES)
                .read_json()
                .map_err(|e| OidcError::Provider(format!("{url}: HTTP {status}: {e}")))?;
            if let Some(error) = body.get("error").and_then(Value::as_str) {
                return Err(OidcError::Refused {
                    error: error.to_owned(),
                    description: body
                        .get("error_description")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                });
            }
            if !(200..300).contains(&status) {
                return Err(OidcError::Provider(format!("{url}: HTTP {status}")));
            }
            Ok(body)
        })
        .await
    }

    /// Verifies an ID token of this provider for this client and maps its claims.
    pub async fn verify_id_token(
        &self,
        token: &str,
        nonce: Option<&str>,
        now_us: i64,
    ) -> Result<OidcLogin, OidcError> {
        if token.len() > MAX_ID_TOKEN_BYTES {
            return Err(OidcError::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| OidcError::Malformed)?;
        if !self.algorithms.contains(&header.alg) {
            // HS256 with the client secret is allowed by OIDC, but airlock accepts only keys
            // the provider publishes.
            return Err(OidcError::Algorithm(format!("{:?}", header.alg)));
        }
        let jwk = self.keys.key(header.kid.as_deref(), header.alg).await?;
        let key = DecodingKey::from_jwk(&jwk)
            .map_err(|e| OidcError::Invalid(format!("unusable JWKS key: {e}")))?;
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_audience(&[self.config.client_id.as_str()]);
        validation.set_issuer(&[
            self.config.issuer.clone(),
            format!("{}/", self.config.issuer),
        ]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
            .map_err(|e| self.jwt_error(e))?
            .claims;
        let now = now_us / 1_000_000;
        let leeway = i64::try_from(LEEWAY_SECS).unwrap_or(30);
        match claims.get("iat").and_then(Value::as_i64) {
            Some(iat) if iat <= now + leeway => {}
            Some(_) => return Err(OidcError::NotYetValid),
            None => return Err(OidcError::Invalid("no iat".into())),
        }
        // Several audiences: the token must have been issued to us (OIDC Core 3.1.3.7).
        if matches!(claims.get("aud"), Some(Value::Array(a)) if a.len() > 1)
            && claims.get("azp").and_then(Value::as_str) != Some(self.config.client_id.as_str())
        {
            return Err(OidcError::WrongAudience(self.config.client_id.clone()));
        }
        if let Some(expected) = nonce {
            if claims.get("nonce").and_then(Value::as_str) != Some(expected) {
                return Err(OidcError::Nonce);
            }
        }
        self.map_claims(&claims)
    }

    fn jwt_error(&self, e: jsonwebtoken::errors::Error) -> OidcError {
        use jsonwebtoken::errors::ErrorKind;
        match e.kind() {
            ErrorKind::InvalidSignature => OidcError::BadSignature,
            ErrorKind::ExpiredSignature => OidcError::Expired,
            ErrorKind::ImmatureSignature => OidcError::NotYetValid,
            ErrorKind::InvalidAudience => OidcError::WrongAudience(self.config.client_id.clone()),
            ErrorKind::InvalidIssuer => OidcError::WrongIssuer(self.config.issuer.clone()),
            other => OidcError::Invalid(format!("{other:?}")),
        }
    }

    /// The user name (`username_claim`, else `sub`) and the groups (`groups_claim`, mapped by
    /// `group_map`; unmapped names pass through).
    pub fn map_claims(&self, claims: &Map<String, Value>) -> Result<OidcLogin, OidcError> {
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .ok_or_else(|| OidcError::NoUsername("no sub".into()))?
            .to_owned();
        let claim = self.config.username_claim.as_str();
        let username = match claims.get(claim).and_then(Value::as_str) {
            Some(name) => {
                // An address the provider has not verified must not name anyone.
                if claim == "email" && claims.get("email_verified") == Some(&Value::Bool(false)) {
                    return Err(OidcError::NoUsername(
                        "the provider says the email address is not verified".into(),
                    ));
                }
                name.to_owned()
            }
            None => subject.clone(),
        };
        if !valid_name(&username) {
            return Err(OidcError::NoUsername(format!(
                "`{}` is not usable as a user name (1–{MAX_NAME_CHARS} printable characters)",
                username.chars().take(MAX_NAME_CHARS).collect::<String>()
            )));
        }
        let provider_groups: Vec<String> = match claims.get(&self.config.groups_claim) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            Some(Value::String(one)) => vec![one.clone()],
            _ => Vec::new(),
        };
        let mut groups: Vec<String> = Vec::new();
        for g in provider_groups.iter().filter(|g| valid_name(g)) {
            let mapped = self.config.group_map.get(g).unwrap_or(g);
            if !groups.contains(mapped) {
                groups.push(mapped.clone());
            }
        }
        Ok(OidcLogin {
            username,
            groups,
            subject,
            provider_groups,
        })
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars().count() <= MAX_NAME_CHARS
        && !s.chars().any(|c| c.is_control() || c.is_whitespace())
}

fn id_token_of(body: &Value) -> Result<String, OidcError> {
    body.get("id_token")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| {
            OidcError::Provider("the token response has no id_token (is `openid` a scope?)".into())
        })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, OidcError> + Send + 'static,
) -> Result<T, OidcError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| OidcError::Provider(e.to_string()))?
}

fn fetch_discovery(issuer: &str) -> Result<Discovery, OidcError> {
    let url = format!("{issuer}/.well-known/openid-configuration");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(HTTP_TIMEOUT))
        .build()
        .into();
    let d: Discovery = agent
        .get(&url)
        .call()
        .map_err(|e| OidcError::Provider(format!("{url}: {e}")))?
        .body_mut()
        .with_config()
        .limit(MAX_RESPONSE_BYTES)
        .read_json()
        .map_err(|e| OidcError::Provider(format!("{url}: {e}")))?;
    if d.issuer.trim_end_matches('/') != issuer {
        return Err(OidcError::Provider(format!(
            "the discovery document names issuer `{}`, not `{issuer}`",
            d.issuer
        )));
    }
    // The endpoints carry the code, the client secret and the keys: same scheme rule as the
    // issuer itself (https, or http on loopback for tests).
    let plain_ok = issuer.starts_with("http://");
    for (what, url) in [
        ("authorization_endpoint", Some(&d.authorization_endpoint)),
        ("token_endpoint", Some(&d.token_endpoint)),
        ("jwks_uri", Some(&d.jwks_uri)),
        (
            "device_authorization_endpoint",
            d.device_authorization_endpoint.as_ref(),
        ),
    ] {
        if let Some(u) = url {
            if !(u.starts_with("https://") || (plain_ok && u.starts_with("http://"))) {
                return Err(OidcError::Provider(format!("{what} `{u}` is not https")));
            }
        }
    }
    Ok(d)
}

/// A PKCE pair (RFC 7636, S256): a 64-character random verifier from the unreserved set and
/// `BASE64URL(SHA-256(verifier))`.
pub fn pkce_pair() -> (String, String) {
    let verifier = random_string(64);
    let challenge = pkce_challenge(&verifier);
    (verifier, challenge)
}

pub fn pkce_challenge(verifier: &str) -> String {
    use sha2::{Digest, Sha256};
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Random letters and digits, for `state` and `nonce`.
pub fn random_string(chars: usize) -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric.sample_string(&mut rand::rng(), chars)
}

/// `application/x-www-form-urlencoded` (also right for a query string).
pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", form_encode_component(k), form_encode_component(v)))
        .collect::<Vec<_>>()
        .join("&")
}

pub fn form_encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(b))
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Splits a query string (`a=1&b=x%20y`) into decoded pairs; `+` is a space.
pub fn form_decode(query: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            match b {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = bytes
                        .get(i + 1..i + 3)
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u8::from_str_radix(h, 16).ok());
                    match hex {
                        Some(v) => {
                            out.push(v);
                            i += 2;
                        }
                        None => out.push(b'%'),
                    }
                }
                other => out.push(other),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// Whether `uri` is a loopback redirect a native client may use (RFC 8252 §7.3): `http`,
/// host `127.0.0.1`, `[::1]` or `localhost`, any port. The code goes to the machine the
/// login started on, nowhere else.
pub fn is_loopback_redirect(uri: &str) -> bool {
    let Some(rest) = uri.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return false;
    }
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    };
    matches!(host, "127.0.0.1" | "[::1]" | "localhost")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_redirects_only() {
        assert!(is_loopback_redirect("http://127.0.0.1:51234/callback"));
        assert!(is_loopback_redirect("http://[::1]:9/cb"));
        assert!(is_loopback_redirect("http://localhost/cb"));
        assert!(!is_loopback_redirect("https://127.0.0.1/cb"));
        assert!(!is_loopback_redirect("http://127.0.0.1.evil.test/cb"));
        assert!(!is_loopback_redirect("http://evil.test@127.0.0.1/cb"));
        assert!(!is_loopback_redirect("http://127.0.0.1:80@evil.test/cb"));
        assert!(!is_loopback_redirect("http://evil.test/cb"));
    }

    #[test]
    fn pkce_s256() {
        // RFC 7636 appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let (v, c) = pkce_pair();
        assert_eq!(v.len(), 64);
        assert_eq!(c, pkce_challenge(&v));
    }

    #[test]
    fn form_encoding() {
        assert_eq!(
            form_encode(&[("scope", "openid email"), ("r", "http://a/b?c=d&e")]),
            "scope=openid%20email&r=http%3A%2F%2Fa%2Fb%3Fc%3Dd%26e"
        );
        assert_eq!(
            form_decode("code=a%2Fb+c&state=s&x&bad=%zz"),
            vec![
                ("code".into(), "a/b c".into()),
                ("state".into(), "s".into()),
                ("x".into(), String::new()),
                ("bad".into(), "%zz".into()),
            ]
        );
    }
}
