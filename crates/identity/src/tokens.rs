//! Runtime service-account tokens: created, listed, rotated and revoked while the gateway runs.
//!
//! A token is `alk_` + 43 base62 characters (256 random bits). The prefix lets secret scanners
//! recognise a leaked one (`alk_[A-Za-z0-9]{43}`). The plaintext is returned once, by
//! [`TokenStore::create`] / [`TokenStore::rotate`]; the store keeps only its SHA-256, in
//! `data_dir/tokens.json` (mode 0600, rewritten atomically on every change).

use rand::distr::{Alphanumeric, SampleString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What every runtime token starts with.
pub const TOKEN_PREFIX: &str = "alk_";
const SECRET_CHARS: usize = 43;
/// The file in `data_dir`.
pub const TOKENS_FILE: &str = "tokens.json";

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token {0} not found")]
    NotFound(String),
    #[error("token {id} was revoked")]
    Revoked { id: String },
    #[error("token {id} expired")]
    Expired { id: String },
    #[error("not an airlock token")]
    Unknown,
    #[error("cannot save {path}: {source}")]
    Save {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {message}")]
    Load { path: PathBuf, message: String },
    #[error("invalid request: {0}")]
    Invalid(String),
}

/// One token as stored (never the secret itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Public handle used by `list`, `revoke`, `rotate` and in audit events.
    pub id: String,
    /// The identity the token authenticates as.
    pub account: String,
    /// Groups of an account that is not in the config (a config account's groups win).
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub agent: bool,
    /// SHA-256 of the token, hex.
    pub sha256: String,
    /// The first characters of the token, so a person can tell which one they hold.
    pub hint: String,
    /// When set, the token may open sessions only to these connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<Vec<String>>,
    pub created_us: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_us: Option<i64>,
    /// Set on the token a rotation created: the id of the token it replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_from: Option<String>,
    /// Set on a token that a rotation replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_us: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_us: Option<i64>,
}

impl TokenRecord {
    pub fn state(&self, now_us: i64) -> &'static str {
        if self.revoked_us.is_some() {
            "revoked"
        } else if self.expires_us.is_some_and(|e| e <= now_us) {
            "expired"
        } else {
            "active"
        }
    }

    /// Whether the token may still be used at `now_us`.
    pub fn valid_at(&self, now_us: i64) -> bool {
        self.state(now_us) == "active"
    }
}

/// What a new token should be.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NewToken {
    pub account: String,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub agent: bool,
    /// Lifetime in seconds; `None` = does not expire.
    #[serde(default)]
    pub ttl_secs: Option<u64>,
    #[serde(default)]
    pub connections: Option<Vec<String>>,
}

/// A freshly minted token: the only time the secret exists outside the client.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IssuedToken {
    pub token: String,
    pub record: TokenRecord,
}

#[derive(Default, Serialize, Deserialize)]
struct File {
    tokens: Vec<TokenRecord>,
}

struct State {
    tokens: Vec<TokenRecord>,
    by_digest: HashMap<[u8; 32], usize>,
}

impl State {
    fn new(tokens: Vec<TokenRecord>) -> State {
        let by_digest = tokens
            .iter()
            .enumerate()
            .filter_map(|(i, t)| decode_hex32(&t.sha256).map(|d| (d, i)))
            .collect();
        State { tokens, by_digest }
    }
}

pub struct TokenStore {
    path: PathBuf,
    state: Mutex<State>,
}

impl TokenStore {
    /// Opens (or starts) `data_dir/tokens.json`.
    pub fn open(data_dir: &Path) -> Result<TokenStore, TokenError> {
        let path = data_dir.join(TOKENS_FILE);
        let tokens = match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice::<File>(&bytes)
                    .map_err(|e| TokenError::Load {
                        path: path.clone(),
                        message: e.to_string(),
                    })?
                    .tokens
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(TokenError::Load {
                    path,
                    message: e.to_string(),
                })
            }
        };
        Ok(TokenStore {
            path,
            state: Mutex::new(State::new(tokens)),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn create(&self, spec: &NewToken, now_us: i64) -> Result<IssuedToken, TokenError> {
        validate(spec)?;
        let mut state = self.lock();
        let issued = mint(spec, now_us, None);
        let mut tokens = state.tokens.clone();
        tokens.push(issued.record.clone());
        self.save(&mut state, tokens)?;
        Ok(issued)
    }

    /// Replaces a token by a new one with the same account, groups, limits and lifetime; the
    /// old one is revoked at once.
    pub fn rotate(&self, id: &str, now_us: i64) -> Result<IssuedToken, TokenError> {
        let mut state = self.lock();
        let old = state
            .tokens
            .iter()
            .find(|t| t.id == id)
            .cloned()
            .ok_or_else(|| TokenError::NotFound(id.to_owned()))?;
        if old.revoked_us.is_some() {
            return Err(TokenError::Revoked { id: old.id });
        }
        let spec = NewToken {
            account: old.account.clone(),
            groups: old.groups.clone(),
            agent: old.agent,
            ttl_secs: old.expires_us.map(|e| {
                u64::try_from((e - old.created_us) / 1_000_000)
                    .unwrap_or(1)
                    .max(1)
            }),
            connections: old.connections.clone(),
        };
        let issued = mint(&spec, now_us, Some(old.id.clone()));
        let mut tokens = state.tokens.clone();
        for t in tokens.iter_mut().filter(|t| t.id == old.id) {
            t.rotated_us = Some(now_us);
            t.revoked_us = Some(now_us);
        }
        tokens.push(issued.record.clone());
        self.save(&mut state, tokens)?;
        Ok(issued)
    }

    pub fn revoke(&self, id: &str, now_us: i64) -> Result<TokenRecord, TokenError> {
        let mut state = self.lock();
        let mut tokens = state.tokens.clone();
        let t = tokens
            .iter_mut()
            .find(|t| t.id == id)
            .ok_or_else(|| TokenError::NotFound(id.to_owned()))?;
        if t.revoked_us.is_none() {
            t.revoked_us = Some(now_us);
        }
        let out = t.clone();
        self.save(&mut state, tokens)?;
        Ok(out)
    }

    pub fn list(&self) -> Vec<TokenRecord> {
        self.lock().tokens.clone()
    }

    pub fn get(&self, id: &str) -> Option<TokenRecord> {
        self.lock().tokens.iter().find(|t| t.id == id).cloned()
    }

    /// The record of a presented token, if it is one of ours and still valid.
    pub fn verify(&self, token: &str, now_us: i64) -> Result<TokenRecord, TokenError> {
        if !looks_like_token(token) {
            return Err(TokenError::Unknown);
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let state = self.lock();
        let record = state
            .by_digest
            .get(&digest)
            .and_then(|&i| state.tokens.get(i))
            .ok_or(TokenError::Unknown)?;
        if record.revoked_us.is_some() {
            return Err(TokenError::Revoked {
                id: record.id.clone(),
            });
        }
        if record.expires_us.is_some_and(|e| e <= now_us) {
            return Err(TokenError::Expired {
                id: record.id.clone(),
            });
        }
        Ok(record.clone())
    }

    /// Writes `tokens` to a temporary file, syncs, renames it over the store, then adopts it.
    fn save(&self, state: &mut State, tokens: Vec<TokenRecord>) -> Result<(), TokenError> {
        let err = |source| TokenError::Save {
            path: self.path.clone(),
            source,
        };
        let file = File { tokens };
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| err(std::io::Error::other(e)))?;
        let tmp = self.path.with_extension("json.tmp");
        {
            let mut f = open_private(&tmp).map_err(err)?;
            f.write_all(&bytes).map_err(err)?;
            f.sync_all().map_err(err)?;
        }
        std::fs::rename(&tmp, &self.path).map_err(err)?;
        *state = State::new(file.tokens);
        Ok(())
    }
}

/// Creates (truncating) a file readable by its owner only.
pub fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let f = options.open(path)?;
    #[cfg(unix)]
    {
        // `mode` applies only when the file is created; an older file keeps its bits otherwise.
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(f)
}

fn validate(spec: &NewToken) -> Result<(), TokenError> {
    let valid_name = |n: &str| {
        !n.is_empty()
            && n.len() <= 128
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    };
    if !valid_name(&spec.account) {
        return Err(TokenError::Invalid(format!(
            "account name `{}` may use only letters, digits, `_`, `.` and `-`",
            spec.account
        )));
    }
    if let Some(g) = spec.groups.iter().find(|g| !valid_name(g)) {
        return Err(TokenError::Invalid(format!("invalid group name `{g}`")));
    }
    if spec.ttl_secs == Some(0) {
        return Err(TokenError::Invalid("ttl must be longer than zero".into()));
    }
    if spec.ttl_secs.is_some_and(|t| t > 10 * 365 * 86_400) {
        return Err(TokenError::Invalid("ttl must be at most 10 years".into()));
    }
    if spec.connections.as_ref().is_some_and(|c| c.is_empty()) {
        return Err(TokenError::Invalid(
            "a connection limit needs at least one connection".into(),
        ));
    }
    Ok(())
}

fn mint(spec: &NewToken, now_us: i64, rotated_from: Option<String>) -> IssuedToken {
    let secret = Alphanumeric.sample_string(&mut rand::rng(), SECRET_CHARS);
    let token = format!("{TOKEN_PREFIX}{secret}");
    let sha256 = hex(&Sha256::digest(token.as_bytes()));
    let id = format!("tok-{}", &hex(&rand::random::<[u8; 5]>()));
    let hint = token
        .chars()
        .take(TOKEN_PREFIX.len() + 6)
        .collect::<String>()
        + "…";
    IssuedToken {
        record: TokenRecord {
            id,
            account: spec.account.clone(),
            groups: spec.groups.clone(),
            agent: spec.agent,
            sha256,
            hint,
            connections: spec.connections.clone(),
            created_us: now_us,
            expires_us: spec.ttl_secs.map(|t| {
                now_us.saturating_add(
                    i64::try_from(t)
                        .unwrap_or(i64::MAX / 2)
                        .saturating_mul(1_000_000),
                )
            }),
            rotated_from,
            rotated_us: None,
            revoked_us: None,
        },
        token,
    }
}

/// Whether `token` has the shape of a runtime token (cheap check before hashing).
pub fn looks_like_token(token: &str) -> bool {
    token
        .strip_prefix(TOKEN_PREFIX)
        .is_some_and(|s| s.len() == SECRET_CHARS && s.bytes().all(|b| b.is_ascii_alphanumeric()))
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
