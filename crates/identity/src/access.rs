//! Access tokens airlock issues after an OIDC login: short-lived, signed by the gateway,
//! revocable.
//!
//! A token is `alk_at_` + a JWT signed with Ed25519 (`alg` EdDSA) by a key the gateway keeps
//! in `data_dir/access-token.key` (the 32-byte seed in hex, mode 0600, created on first
//! start). The claims carry the identity (`sub`), its groups, `iat`/`exp` and a random `jti`;
//! nothing else is needed to authenticate, so every listener accepts the token without a
//! lookup. The prefix lets secret scanners recognise a leaked one
//! (`alk_at_eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+`).
//!
//! Logout revokes by `jti`: `data_dir/access-tokens-revoked.json` (0600, rewritten atomically)
//! lists revoked ids until the token would have expired anyway, then forgets them.

use crate::tokens::open_private;
use ed25519_dalek::SigningKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What every airlock access token starts with.
pub const ACCESS_TOKEN_PREFIX: &str = "alk_at_";
/// The signing key in `data_dir`.
pub const ACCESS_KEY_FILE: &str = "access-token.key";
/// Revoked token ids in `data_dir`.
pub const REVOKED_FILE: &str = "access-tokens-revoked.json";
/// The `iss` and `aud` of every access token.
const ISSUER: &str = "airlock";
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// PKCS#8 v1 wrapping of an Ed25519 seed (RFC 8410), which is what `jsonwebtoken` signs with.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("not an airlock access token")]
    Malformed,
    #[error("the access token's signature is not valid")]
    BadSignature,
    #[error("the access token expired")]
    Expired,
    #[error("the access token {jti} was revoked (logout)")]
    Revoked { jti: String },
    #[error("the access token was rejected: {0}")]
    Invalid(String),
    #[error("{path}: {message}")]
    Store { path: PathBuf, message: String },
}

/// The claims of an airlock access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    /// The identity name.
    pub sub: String,
    pub groups: Vec<String>,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    /// The identity provider's `sub` for this person, for the audit trail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_sub: Option<String>,
}

impl AccessClaims {
    pub fn expires_us(&self) -> i64 {
        self.exp.saturating_mul(1_000_000)
    }
}

/// A freshly issued token and what it says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IssuedAccess {
    pub token: String,
    pub claims: AccessClaims,
}

/// One revoked token id, kept until the token would have expired.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevokedAccess {
    pub jti: String,
    pub sub: String,
    pub expires_us: i64,
    pub revoked_us: i64,
}

#[derive(Default, Serialize, Deserialize)]
struct RevokedFile {
    revoked: Vec<RevokedAccess>,
}

/// The gateway's access-token issuer and verifier.
pub struct AccessTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    kid: String,
    revoked_path: PathBuf,
    revoked: Mutex<HashMap<String, RevokedAccess>>,
}

impl AccessTokens {
    /// Loads (or creates) the signing key and the revocation list in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<AccessTokens, AccessError> {
        let key_path = data_dir.join(ACCESS_KEY_FILE);
        let seed = load_or_create_seed(&key_path)?;
        let signing = SigningKey::from_bytes(&seed);
        let public = signing.verifying_key().to_bytes();
        let mut pkcs8 = PKCS8_ED25519_PREFIX.to_vec();
        pkcs8.extend_from_slice(&seed);
        let kid = hex(Sha256::digest(public).get(..8).unwrap_or_default());
        let revoked_path = data_dir.join(REVOKED_FILE);
        let revoked = match std::fs::read(&revoked_path) {
            Ok(bytes) => {
                serde_json::from_slice::<RevokedFile>(&bytes)
                    .map_err(|e| AccessError::Store {
                        path: revoked_path.clone(),
                        message: e.to_string(),
                    })?
                    .revoked
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(AccessError::Store {
                    path: revoked_path,
                    message: e.to_string(),
                })
            }
        };
        Ok(AccessTokens {
            encoding: EncodingKey::from_ed_der(&pkcs8),
            decoding: DecodingKey::from_ed_der(&public),
            kid,
            revoked_path,
            revoked: Mutex::new(revoked.into_iter().map(|r| (r.jti.clone(), r)).collect()),
        })
    }

    /// Signs a new token for `sub` with `groups`, valid for `ttl_secs`.
    pub fn issue(
        &self,
        sub: &str,
        groups: &[String],
        idp_sub: Option<&str>,
        ttl_secs: u64,
        now_us: i64,
    ) -> Result<IssuedAccess, AccessError> {
        let now = now_us / 1_000_000;
        let claims = AccessClaims {
            iss: ISSUER.into(),
            aud: ISSUER.into(),
            sub: sub.to_owned(),
            groups: groups.to_vec(),
            iat: now,
            exp: now.saturating_add(i64::try_from(ttl_secs).unwrap_or(i64::MAX / 2)),
            jti: format!("at-{}", hex(&rand::random::<[u8; 12]>())),
            idp_sub: idp_sub.map(str::to_owned),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        let jwt = jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|e| AccessError::Invalid(format!("cannot sign: {e}")))?;
        Ok(IssuedAccess {
            token: format!("{ACCESS_TOKEN_PREFIX}{jwt}"),
            claims,
        })
    }

    /// The claims of a presented token: signature, issuer, audience, expiry and revocation
    /// are checked.
    pub fn verify(&self, token: &str, now_us: i64) -> Result<AccessClaims, AccessError> {
        let claims = self.verify_signature(token)?;
        if claims.expires_us() <= now_us {
            return Err(AccessError::Expired);
        }
        if self.is_revoked(&claims.jti) {
            return Err(AccessError::Revoked { jti: claims.jti });
        }
        Ok(claims)
    }

    /// The claims of a token this gateway signed, whether or not it is still valid.
    pub fn verify_signature(&self, token: &str) -> Result<AccessClaims, AccessError> {
        let jwt = token
            .strip_prefix(ACCESS_TOKEN_PREFIX)
            .filter(|t| t.len() <= MAX_TOKEN_BYTES)
            .ok_or(AccessError::Malformed)?;
        let header = jsonwebtoken::decode_header(jwt).map_err(|_| AccessError::Malformed)?;
        if header.alg != Algorithm::EdDSA {
            return Err(AccessError::Invalid(format!(
                "algorithm {:?} (airlock signs with EdDSA)",
                header.alg
            )));
        }
        let mut validation = Validation::new(Algorithm::EdDSA);
        // Expiry is checked by the caller, to the microsecond.
        validation.validate_exp = false;
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        jsonwebtoken::decode::<AccessClaims>(jwt, &self.decoding, &validation)
            .map(|d| d.claims)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                match e.kind() {
                    ErrorKind::InvalidSignature => AccessError::BadSignature,
                    other => AccessError::Invalid(format!("{other:?}")),
                }
            })
    }

    pub fn is_revoked(&self, jti: &str) -> bool {
        self.lock().contains_key(jti)
    }

    /// Revokes a token (idempotent); the list is saved before this returns.
    pub fn revoke(&self, claims: &AccessClaims, now_us: i64) -> Result<(), AccessError> {
        let mut revoked = self.lock();
        let mut next = revoked.clone();
        next.retain(|_, r| r.expires_us > now_us);
        next.entry(claims.jti.clone())
            .or_insert_with(|| RevokedAccess {
                jti: claims.jti.clone(),
                sub: claims.sub.clone(),
                expires_us: claims.expires_us(),
                revoked_us: now_us,
            });
        self.save(&next)?;
        *revoked = next;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, RevokedAccess>> {
        self.revoked.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn save(&self, revoked: &HashMap<String, RevokedAccess>) -> Result<(), AccessError> {
        let err = |e: std::io::Error| AccessError::Store {
            path: self.revoked_path.clone(),
            message: e.to_string(),
        };
        let mut list: Vec<RevokedAccess> = revoked.values().cloned().collect();
        list.sort_by_key(|r| r.revoked_us);
        let bytes = serde_json::to_vec_pretty(&RevokedFile { revoked: list })
            .map_err(|e| err(std::io::Error::other(e)))?;
        let tmp = self.revoked_path.with_extension("json.tmp");
        {
            let mut f = open_private(&tmp).map_err(err)?;
            f.write_all(&bytes).map_err(err)?;
            f.sync_all().map_err(err)?;
        }
        std::fs::rename(&tmp, &self.revoked_path).map_err(err)
    }
}

/// Reads the hex seed, or creates it (0600, never overwriting one another process wrote).
fn load_or_create_seed(path: &Path) -> Result<[u8; 32], AccessError> {
    let err = |message: String| AccessError::Store {
        path: path.to_owned(),
        message,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            return decode_hex32(text.trim()).ok_or_else(|| err("not 64 hex digits".into()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e.to_string())),
    }
    let seed: [u8; 32] = rand::random();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut f) => {
            f.write_all(hex(&seed).as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(|e| err(e.to_string()))?;
            Ok(seed)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
            decode_hex32(text.trim()).ok_or_else(|| err("not 64 hex digits".into()))
        }
        Err(e) => Err(err(e.to_string())),
    }
}

fn hex(bytes: &[u8]) -> String {
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use base64::Engine;

    const NOW: i64 = 1_800_000_000_000_000;

    #[test]
    fn issue_verify_expire_revoke_and_forge() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = AccessTokens::open(dir.path()).unwrap();
        let issued = tokens
            .issue(
                "alice@example.test",
                &["dba".into()],
                Some("alice"),
                60,
                NOW,
            )
            .unwrap();
        assert!(issued.token.starts_with("alk_at_eyJ"));
        let claims = tokens.verify(&issued.token, NOW).unwrap();
        assert_eq!(claims.sub, "alice@example.test");
        assert_eq!(claims.groups, vec!["dba".to_owned()]);
        assert!(matches!(
            tokens.verify(&issued.token, NOW + 60_000_000),
            Err(AccessError::Expired)
        ));

        // A payload edited to add a group no longer matches the signature.
        let jwt = issued.token.strip_prefix(ACCESS_TOKEN_PREFIX).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut payload: serde_json::Value =
            serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
        payload["groups"] = serde_json::json!(["dba", "admins"]);
        let forged = format!(
            "{ACCESS_TOKEN_PREFIX}{}.{}.{}",
            parts[0],
            b64.encode(serde_json::to_vec(&payload).unwrap()),
            parts[2]
        );
        assert!(matches!(
            tokens.verify(&forged, NOW),
            Err(AccessError::BadSignature)
        ));

        // The key survives a restart; a revocation does too.
        tokens.revoke(&claims, NOW).unwrap();
        let reopened = AccessTokens::open(dir.path()).unwrap();
        assert!(matches!(
            reopened.verify(&issued.token, NOW),
            Err(AccessError::Revoked { .. })
        ));
        let other = reopened.issue("bob", &[], None, 60, NOW).unwrap();
        assert!(reopened.verify(&other.token, NOW).is_ok());
        // Expired revocations are pruned at the next write.
        reopened.revoke(&other.claims, NOW + 120_000_000).unwrap();
        let text = std::fs::read_to_string(dir.path().join(REVOKED_FILE)).unwrap();
        assert!(!text.contains(&claims.jti) && text.contains(&other.claims.jti));

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for f in [ACCESS_KEY_FILE, REVOKED_FILE] {
                let mode = std::fs::metadata(dir.path().join(f))
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o600, "{f}");
            }
        }
    }

    #[test]
    fn another_gateways_token_is_refused() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let issued = AccessTokens::open(a.path())
            .unwrap()
            .issue("alice", &[], None, 60, NOW)
            .unwrap();
        assert!(matches!(
            AccessTokens::open(b.path())
                .unwrap()
                .verify(&issued.token, NOW),
            Err(AccessError::BadSignature)
        ));
    }
}
