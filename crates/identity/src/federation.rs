//! Workload identity federation: JWTs from trusted external issuers (a CI system's OIDC
//! tokens, a Kubernetes service-account issuer) are verified against the issuer's JWKS and
//! mapped to an airlock identity by claim rules. The workload holds no long-lived secret.
//!
//! Verification order: the header's `alg` must be on the issuer's allow-list (asymmetric
//! only; `none` and HMAC can never be configured), the unverified `iss` only selects which
//! issuer's keys to try, then the signature, `iss`, `aud`, `exp` and `nbf` are checked by
//! `jsonwebtoken`, and only then are the claims matched against the mappings.

use airlock_config::{ClaimMapping, TrustedIssuer};
use airlock_core::{Identity, IdentityKind};
use base64::Engine;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A cached JWKS is refetched after this long even when every `kid` is known.
const JWKS_MAX_AGE: Duration = Duration::from_secs(3600);
/// An unknown `kid` refetches at most this often, so junk tokens cannot make airlock hammer
/// the issuer.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(10);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_DOCUMENT_BYTES: u64 = 1 << 20;
/// Larger "tokens" are refused before any parsing.
const MAX_JWT_BYTES: usize = 16 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FederationError {
    #[error("not a JWT")]
    Malformed,
    #[error("no [[trusted_issuers]] entry for issuer `{0}`")]
    UnknownIssuer(String),
    #[error("algorithm {alg} is not allowed for issuer `{issuer}`")]
    AlgorithmNotAllowed { issuer: String, alg: String },
    #[error("issuer `{issuer}` has no key `{kid}` in its JWKS")]
    UnknownKey { issuer: String, kid: String },
    #[error("cannot fetch the JWKS of issuer `{issuer}`: {message}")]
    Jwks { issuer: String, message: String },
    #[error("the token's signature is not valid")]
    BadSignature,
    #[error("the token expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token's audience is not one of {0}")]
    WrongAudience(String),
    #[error("the token was rejected: {0}")]
    Invalid(String),
    #[error("no mapping of issuer `{0}` matches the token's claims")]
    NoMapping(String),
}

/// A verified workload token, mapped.
#[derive(Debug, Clone)]
pub struct FederatedIdentity {
    pub identity: Identity,
    pub issuer: String,
    /// The token's `exp` (unix micros): sessions end then.
    pub expires_us: i64,
    pub connections: Option<Vec<String>>,
    /// The token's `sub`, for the audit trail.
    pub subject: Option<String>,
}

struct Cached {
    set: JwkSet,
    fetched: Instant,
}

struct IssuerState {
    spec: TrustedIssuer,
    algorithms: Vec<Algorithm>,
    keys: Jwks,
}

/// One issuer's JWKS, fetched on demand and cached; shared by workload federation and the
/// `[oidc]` login (which verifies the provider's ID tokens the same way).
pub(crate) struct Jwks {
    /// For messages: the `[[trusted_issuers]]` name, or `oidc`.
    name: String,
    issuer: String,
    /// Overrides discovery.
    jwks_url: Option<String>,
    cache: Mutex<Option<Cached>>,
    /// One fetch at a time per issuer (concurrent logins wait for it instead of each
    /// fetching); holds when a fetch last failed to produce the wanted key.
    fetching: tokio::sync::Mutex<Option<Instant>>,
}

/// All `[[trusted_issuers]]` of a configuration with their JWKS caches.
pub struct Federation {
    issuers: Vec<IssuerState>,
}

impl Federation {
    pub fn new(issuers: &[TrustedIssuer]) -> Federation {
        Federation {
            issuers: issuers
                .iter()
                .map(|spec| IssuerState {
                    algorithms: spec
                        .algorithms
                        .iter()
                        .filter_map(|a| Algorithm::from_str(a).ok())
                        .filter(|a| {
                            !matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
                        })
                        .collect(),
                    keys: Jwks::new(&spec.name, &spec.issuer, spec.jwks_url.clone()),
                    spec: spec.clone(),
                })
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.issuers.is_empty()
    }

    /// Verifies a JWT from one of the trusted issuers and maps it to an identity.
    pub async fn verify(
        &self,
        token: &str,
        now_us: i64,
    ) -> Result<FederatedIdentity, FederationError> {
        if token.len() > MAX_JWT_BYTES {
            return Err(FederationError::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| FederationError::Malformed)?;
        let iss = unverified_issuer(token).ok_or(FederationError::Malformed)?;
        let state = self
            .issuers
            .iter()
            .find(|s| s.spec.issuer == iss.trim_end_matches('/'))
            .ok_or_else(|| FederationError::UnknownIssuer(iss.clone()))?;
        if !state.algorithms.contains(&header.alg) {
            return Err(FederationError::AlgorithmNotAllowed {
                issuer: state.spec.name.clone(),
                alg: format!("{:?}", header.alg),
            });
        }
        let jwk = state.keys.key(header.kid.as_deref(), header.alg).await?;
        let key = DecodingKey::from_jwk(&jwk)
            .map_err(|e| FederationError::Invalid(format!("unusable JWKS key: {e}")))?;
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.leeway = state.spec.leeway_secs;
        validation.validate_nbf = true;
        validation.set_audience(&state.spec.audiences);
        // Accept the configured spelling with and without a trailing slash.
        validation.set_issuer(&[state.spec.issuer.clone(), format!("{}/", state.spec.issuer)]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
            .map_err(|e| map_jwt_error(e, &state.spec))?;
        let claims = data.claims;
        let exp = claims
            .get("exp")
            .and_then(Value::as_i64)
            .ok_or(FederationError::Invalid("no exp".into()))?;
        let mapping = state
            .spec
            .mappings
            .iter()
            .find(|m| mapping_matches(m, &claims))
            .ok_or_else(|| FederationError::NoMapping(state.spec.name.clone()))?;
        let _ = now_us;
        Ok(FederatedIdentity {
            identity: Identity {
                name: mapping.identity.clone(),
                kind: IdentityKind::Workload,
                groups: mapping.groups.clone(),
                agent: mapping.agent,
            },
            issuer: state.spec.name.clone(),
            expires_us: exp.saturating_mul(1_000_000),
            connections: mapping.connections.clone(),
            subject: claims.get("sub").and_then(Value::as_str).map(str::to_owned),
        })
    }
}

impl Jwks {
    pub(crate) fn new(name: &str, issuer: &str, jwks_url: Option<String>) -> Jwks {
        Jwks {
            name: name.to_owned(),
            issuer: issuer.to_owned(),
            jwks_url,
            cache: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(None),
        }
    }

    /// The key for `kid`: from the cache, or after one refetch when it is unknown or stale.
    pub(crate) async fn key(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Jwk, FederationError> {
        let fresh = {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            cache.as_ref().and_then(|c| {
                (c.fetched.elapsed() < JWKS_MAX_AGE)
                    .then(|| find(&c.set, kid, alg))
                    .flatten()
            })
        };
        if let Some(jwk) = fresh {
            return Ok(jwk);
        }
        {
            let mut last_miss = self.fetching.lock().await;
            // Another task may have refreshed while this one waited.
            let cached = {
                let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                cache.as_ref().and_then(|c| find(&c.set, kid, alg))
            };
            let stale = {
                let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                cache
                    .as_ref()
                    .is_none_or(|c| c.fetched.elapsed() >= JWKS_MAX_AGE)
            };
            let recently_missed = last_miss.is_some_and(|t| t.elapsed() < MIN_REFRESH_INTERVAL);
            match cached {
                Some(jwk) if !stale => return Ok(jwk),
                // After a fetch that failed or lacked the key, no other fetch for
                // MIN_REFRESH_INTERVAL: junk kids and a down issuer cost nothing.
                Some(jwk) if recently_missed => return Ok(jwk),
                None if recently_missed => {}
                cached => match self.fetch().await {
                    Ok(set) => {
                        if find(&set, kid, alg).is_none() {
                            *last_miss = Some(Instant::now());
                        }
                        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                        *cache = Some(Cached {
                            set,
                            fetched: Instant::now(),
                        });
                    }
                    Err(e) => {
                        *last_miss = Some(Instant::now());
                        // A stale cached key is better than none while the issuer is down.
                        return match cached {
                            Some(jwk) => {
                                tracing::warn!(error = %e, "JWKS refresh failed; using the cached key");
                                Ok(jwk)
                            }
                            None => Err(e),
                        };
                    }
                },
            }
        }
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .as_ref()
            .and_then(|c| find(&c.set, kid, alg))
            .ok_or_else(|| FederationError::UnknownKey {
                issuer: self.name.clone(),
                kid: kid.unwrap_or("<none>").to_owned(),
            })
    }

    async fn fetch(&self) -> Result<JwkSet, FederationError> {
        let issuer = self.issuer.clone();
        let jwks_url = self.jwks_url.clone();
        let name = self.name.clone();
        let err = move |message: String| FederationError::Jwks {
            issuer: name.clone(),
            message,
        };
        let err2 = err.clone();
        tokio::task::spawn_blocking(move || fetch_jwks(&issuer, jwks_url.as_deref()).map_err(err))
            .await
            .map_err(|e| err2(e.to_string()))?
    }
}

/// Discovery (`{issuer}/.well-known/openid-configuration` → `jwks_uri`) unless the URL is
/// configured, then the key set.
fn fetch_jwks(issuer: &str, jwks_url: Option<&str>) -> Result<JwkSet, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(FETCH_TIMEOUT))
        .build()
        .into();
    let get = |url: &str| -> Result<Value, String> {
        let mut response = agent.get(url).call().map_err(|e| format!("{url}: {e}"))?;
        response
            .body_mut()
            .with_config()
            .limit(MAX_DOCUMENT_BYTES)
            .read_json::<Value>()
            .map_err(|e| format!("{url}: {e}"))
    };
    let url = match jwks_url {
        Some(u) => u.to_owned(),
        None => {
            let discovery = get(&format!("{issuer}/.well-known/openid-configuration"))?;
            let announced = discovery
                .get("issuer")
                .and_then(Value::as_str)
                .unwrap_or("");
            if announced.trim_end_matches('/') != issuer {
                return Err(format!(
                    "the discovery document names issuer `{announced}`, not `{issuer}`"
                ));
            }
            let uri = discovery
                .get("jwks_uri")
                .and_then(Value::as_str)
                .ok_or("the discovery document has no jwks_uri")?;
            if !(uri.starts_with("https://")
                || (issuer.starts_with("http://") && uri.starts_with("http://")))
            {
                return Err(format!("jwks_uri `{uri}` is not https"));
            }
            uri.to_owned()
        }
    };
    let set = get(&url)?;
    // Keys of types this build cannot use are skipped, not fatal: issuers publish mixed sets.
    let keys = set
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("{url}: no `keys` array"))?
        .iter()
        .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
        .collect();
    Ok(JwkSet { keys })
}

/// The key for `kid`, or — for a token without `kid` — the only key that fits `alg`.
fn find(set: &JwkSet, kid: Option<&str>, alg: Algorithm) -> Option<Jwk> {
    let fits = |k: &Jwk| {
        k.common
            .key_algorithm
            .is_none_or(|ka| format!("{ka:?}") == format!("{alg:?}"))
            && k.is_supported()
    };
    match kid {
        Some(kid) => set.find(kid).filter(|k| fits(k)).cloned(),
        None => {
            let mut candidates = set
                .keys
                .iter()
                .filter(|k| fits(k) && DecodingKey::from_jwk(k).is_ok());
            let only = candidates.next()?;
            candidates.next().is_none().then(|| only.clone())
        }
    }
}

fn unverified_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: Map<String, Value> = serde_json::from_slice(&bytes).ok()?;
    claims.get("iss")?.as_str().map(str::to_owned)
}

fn map_jwt_error(e: jsonwebtoken::errors::Error, spec: &TrustedIssuer) -> FederationError {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::InvalidSignature => FederationError::BadSignature,
        ErrorKind::ExpiredSignature => FederationError::Expired,
        ErrorKind::ImmatureSignature => FederationError::NotYetValid,
        ErrorKind::InvalidAudience => FederationError::WrongAudience(spec.audiences.join(", ")),
        other => FederationError::Invalid(format!("{other:?}")),
    }
}

/// Every condition of the mapping holds. Claims that are lists (e.g. `groups`) match when
/// any element does; numbers and booleans compare by their JSON text.
pub fn mapping_matches(mapping: &ClaimMapping, claims: &Map<String, Value>) -> bool {
    mapping
        .claims
        .iter()
        .all(|(name, pattern)| match claims.get(name) {
            Some(Value::Array(items)) => items.iter().any(|v| value_matches(v, pattern)),
            Some(v) => value_matches(v, pattern),
            None => false,
        })
}

fn value_matches(v: &Value, pattern: &str) -> bool {
    match v {
        Value::String(s) => glob(pattern, s),
        Value::Number(n) => glob(pattern, &n.to_string()),
        Value::Bool(b) => glob(pattern, if *b { "true" } else { "false" }),
        _ => false,
    }
}

/// `*` matches any run of characters (including `/`); everything else is literal.
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, rest) = match parts.split_first() {
        Some(x) => x,
        None => return false,
    };
    let Some(mut remaining) = text.strip_prefix(first) else {
        return false;
    };
    let (last, middle) = match rest.split_last() {
        Some(x) => x,
        None => return false,
    };
    for part in middle {
        match remaining.find(part) {
            Some(i) => match remaining.get(i + part.len()..) {
                Some(rest) => remaining = rest,
                None => return false,
            },
            None => return false,
        }
    }
    remaining.len() >= last.len() && remaining.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn glob_matches_literally_except_star() {
        assert!(glob("refs/heads/main", "refs/heads/main"));
        assert!(!glob("refs/heads/main", "refs/heads/main2"));
        assert!(glob("refs/heads/*", "refs/heads/feature/x"));
        assert!(glob(
            "repo:acme/*:ref:refs/heads/main",
            "repo:acme/api:ref:refs/heads/main"
        ));
        assert!(!glob(
            "repo:acme/*:ref:refs/heads/main",
            "repo:evil/api:ref:refs/heads/main"
        ));
        assert!(glob("a*b*c", "abc"));
        assert!(!glob("a*a", "a"));
        assert!(glob("*", ""));
    }
}
