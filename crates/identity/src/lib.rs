//! Who is acting, beyond the tokens written in the config:
//!
//! - [`tokens`]: runtime service-account tokens (`alk_…`), stored only as SHA-256 hashes,
//!   with expiry, connection limits, rotation and revocation;
//! - [`federation`]: workload identity federation — JWTs from `[[trusted_issuers]]`, verified
//!   against the issuer's JWKS and mapped to identities by claim rules;
//! - [`oidc`]: human login — the `[oidc]` relying party (code + PKCE, device flow, ID token
//!   verification against the provider's JWKS, group mapping);
//! - [`access`]: the short-lived access tokens (`alk_at_…`, Ed25519-signed) airlock issues
//!   after a login, and their revocation (logout).
//!
//! The gate (`airlock-gate`) decides which of these a presented token is; this crate only
//! verifies and stores.

#![forbid(unsafe_code)]

pub mod access;
pub mod federation;
pub mod oidc;
pub mod tokens;

pub use access::{AccessClaims, AccessError, AccessTokens, IssuedAccess, ACCESS_TOKEN_PREFIX};
pub use federation::{FederatedIdentity, Federation, FederationError};
pub use oidc::{DeviceStart, OidcClient, OidcError, OidcLogin};
pub use tokens::{IssuedToken, NewToken, TokenError, TokenRecord, TokenStore, TOKEN_PREFIX};

/// Unix time in microseconds.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `30d`, `12h`, `90m`, `45s` or combinations like `1h30m` → seconds.
pub fn parse_ttl(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => {
                return Err(format!(
                    "`{text}`: unknown unit `{c}` (use s, m, h, d or w)"
                ))
            }
        };
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("`{text}`: a number must come before `{c}`"))?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("`{text}`: too large"))?;
        digits.clear();
    }
    if !digits.is_empty() || total == 0 {
        return Err(format!(
            "`{text}` is not a duration like 30d, 12h, 90m or 45s"
        ));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ttl() {
        assert_eq!(super::parse_ttl("30d"), Ok(30 * 86_400));
        assert_eq!(super::parse_ttl("1h30m"), Ok(5400));
        assert!(super::parse_ttl("10").is_err());
        assert!(super::parse_ttl("0s").is_err());
        assert!(super::parse_ttl("x").is_err());
    }
}
