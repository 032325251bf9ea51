//! `[oidc]`, `[[trusted_issuers]]` (with `[[trusted_issuers.mappings]]`) and `[roles]`.

use super::{
    did_you_mean, entry_name, parse_duration, secret, sections, string_list, valid_name, Known,
    Report, Table,
};
use crate::env::EnvLookup;
use crate::identity::*;
use std::collections::HashMap;

const OIDC_KEYS: &[&str] = &[
    "issuer",
    "client_id",
    "client_secret_env",
    "client_secret_file",
    "scopes",
    "groups_claim",
    "username_claim",
    "group_map",
    "access_token_ttl",
    "console_url",
];
const ISSUER_KEYS: &[&str] = &[
    "name",
    "issuer",
    "audience",
    "jwks_url",
    "algorithms",
    "leeway",
    "mappings",
];
const MAPPING_KEYS: &[&str] = &["claims", "identity", "groups", "agent", "connections"];
const ROLE_KEYS: &[&str] = &["admins", "auditors", "reviewers"];
const DEFAULT_ACCESS_TOKEN_TTL_SECS: u64 = 8 * 3600;
const DEFAULT_LEEWAY_SECS: u64 = 30;

/// `https://`, or `http://` only to a loopback host: a JWKS fetched in clear text from
/// anywhere else would let the network choose which signatures airlock trusts.
pub(super) fn check_url(url: &str) -> Result<(), String> {
    if url.starts_with("https://") {
        return Ok(());
    }
    if let Some(rest) = url.strip_prefix("http://") {
        let host = rest.split(['/', '?']).next().unwrap_or("");
        let host = match host.rsplit_once(':') {
            Some((h, port)) if !port.contains(']') => h,
            _ => host,
        };
        if matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
            return Ok(());
        }
        return Err(format!(
            "\"{url}\" must use https:// (plain http:// is accepted only for loopback hosts)"
        ));
    }
    Err(format!("\"{url}\" must be an https:// URL"))
}

pub(super) fn oidc(
    r: &mut Report<'_>,
    t: &Table<'_, '_>,
    env: &dyn EnvLookup,
) -> Option<OidcConfig> {
    t.check_keys(r, OIDC_KEYS);
    let issuer = t.required_string(r, "issuer");
    if let Some(i) = &issuer {
        if let Err(e) = check_url(&i.value) {
            r.error(&i.span, format!("[oidc] issuer {e}"));
        }
    }
    let client_id = t.required_string(r, "client_id");
    let client_secret = secret(r, t, "client_secret", "[oidc]", env).unwrap_or(None);
    let mut scopes = t.plain_list(r, "scopes");
    if scopes.is_empty() {
        scopes = vec!["openid".into(), "email".into(), "profile".into()];
    } else if !scopes.iter().any(|s| s == "openid") {
        scopes.insert(0, "openid".into());
    }
    let groups_claim = t
        .string(r, "groups_claim")
        .map(|s| s.value)
        .unwrap_or_else(|| "groups".into());
    let username_claim = t
        .string(r, "username_claim")
        .map(|s| s.value)
        .unwrap_or_else(|| "email".into());
    let group_map = t.string_map(r, "group_map");
    let mut access_token_ttl_secs = DEFAULT_ACCESS_TOKEN_TTL_SECS;
    if let Some(ttl) = t.string(r, "access_token_ttl") {
        match parse_duration(&ttl.value) {
            Ok(secs) => access_token_ttl_secs = secs,
            Err(e) => r.error(&ttl.span, format!("[oidc] access_token_ttl: {e}")),
        }
    }
    let console_url = t
        .string(r, "console_url")
        .and_then(|u| match check_url(&u.value) {
            Ok(()) => Some(u.value.trim_end_matches('/').to_owned()),
            Err(e) => {
                r.error(&u.span, format!("[oidc] console_url {e}"));
                None
            }
        });
    Some(OidcConfig {
        issuer: issuer?.value.trim_end_matches('/').to_owned(),
        client_id: client_id?.value,
        client_secret,
        scopes,
        groups_claim,
        username_claim,
        group_map,
        access_token_ttl_secs,
        console_url,
        line: r.position(t.span.start).0,
    })
}

pub(super) fn trusted_issuers(
    r: &mut Report<'_>,
    tables: &[Table<'_, '_>],
    known: &Known<'_>,
) -> Vec<TrustedIssuer> {
    let mut seen = HashMap::new();
    let mut out = Vec::new();
    for t in tables {
        t.check_keys(r, ISSUER_KEYS);
        let name = entry_name(r, t, "trusted issuer", &mut seen);
        let owner = format!(
            "trusted issuer `{}`",
            name.clone().unwrap_or_else(|| t.display_name())
        );
        let issuer = t.required_string(r, "issuer");
        if let Some(i) = &issuer {
            if let Err(e) = check_url(&i.value) {
                r.error(&i.span, format!("{owner} issuer {e}"));
            }
        }
        let audiences = match t.get("audience") {
            None => {
                r.error(
                    &t.span,
                    format!("{owner} is missing `audience`: the value its tokens must carry in `aud` (e.g. \"airlock\")"),
                );
                Vec::new()
            }
            Some(v) => match v.get_ref() {
                toml::de::DeValue::String(s) => vec![s.to_string()],
                _ => string_list(r, v, "audience", &t.what)
                    .into_iter()
                    .map(|s| s.value)
                    .collect(),
            },
        };
        let jwks_url = t
            .string(r, "jwks_url")
            .and_then(|u| match check_url(&u.value) {
                Ok(()) => Some(u.value),
                Err(e) => {
                    r.error(&u.span, format!("{owner} jwks_url {e}"));
                    None
                }
            });
        let mut algorithms = Vec::new();
        for a in t.string_list(r, "algorithms") {
            if FEDERATION_ALGORITHMS.contains(&a.value.as_str()) {
                algorithms.push(a.value);
            } else {
                r.error(
                    &a.span,
                    format!(
                        "{owner}: algorithm \"{}\" is not allowed; use asymmetric ones: {}{}",
                        a.value,
                        FEDERATION_ALGORITHMS.join(", "),
                        did_you_mean(&a.value, FEDERATION_ALGORITHMS)
                    ),
                );
            }
        }
        if algorithms.is_empty() {
            algorithms = vec!["RS256".into(), "ES256".into()];
        }
        let mut leeway_secs = DEFAULT_LEEWAY_SECS;
        if let Some(l) = t.string(r, "leeway") {
            match parse_duration(&l.value) {
                Ok(secs) if secs <= 300 => leeway_secs = secs,
                Ok(_) => r.error(&l.span, format!("{owner} leeway must be at most 5m")),
                Err(e) => r.error(&l.span, format!("{owner} leeway: {e}")),
            }
        }
        let mapping_tables = sections(r, t, "mappings");
        if mapping_tables.is_empty() {
            r.error(
                &t.span,
                format!("{owner} has no [[trusted_issuers.mappings]]: without one no token can be mapped to an identity"),
            );
        }
        let mappings = mapping_tables
            .iter()
            .filter_map(|m| mapping(r, m, &owner, known))
            .collect();
        if let (Some(name), Some(issuer)) = (name, issuer) {
            out.push(TrustedIssuer {
                name,
                issuer: issuer.value.trim_end_matches('/').to_owned(),
                audiences,
                jwks_url,
                algorithms,
                leeway_secs,
                mappings,
                line: r.position(t.span.start).0,
            });
        }
    }
    out
}

fn mapping(
    r: &mut Report<'_>,
    t: &Table<'_, '_>,
    owner: &str,
    known: &Known<'_>,
) -> Option<ClaimMapping> {
    t.check_keys(r, MAPPING_KEYS);
    let claims = t.string_map(r, "claims");
    if claims.is_empty() {
        // A mapping without conditions would admit every token the issuer signs, for any
        // repository or namespace: almost never what was meant.
        r.error(
            &t.span,
            format!("a mapping of {owner} has no `claims`; add at least one condition like {{ repository = \"acme/api\" }}"),
        );
    }
    let identity = t.required_string(r, "identity")?;
    if !valid_name(&identity.value) {
        r.error(
            &identity.span,
            format!(
                "identity name \"{}\" may use only letters, digits, `_`, `.` and `-`",
                identity.value
            ),
        );
        return None;
    }
    if known
        .service_accounts
        .iter()
        .any(|sa| sa.name == identity.value)
    {
        r.error(
            &identity.span,
            format!(
                "{owner} maps to `{}`, which is already a service account or user; give workloads their own names",
                identity.value
            ),
        );
        return None;
    }
    let connections = t.get("connections").map(|_| {
        let names = t.string_list(r, "connections");
        for n in &names {
            if !known.declared_connections.contains(&n.value.as_str()) {
                r.error(
                    &n.span,
                    format!(
                        "{owner} maps to an identity limited to unknown connection `{}`{}",
                        n.value,
                        did_you_mean(&n.value, known.declared_connections)
                    ),
                );
            }
        }
        names.into_iter().map(|n| n.value).collect()
    });
    Some(ClaimMapping {
        claims,
        identity: identity.value,
        groups: t.plain_list(r, "groups"),
        agent: t.bool(r, "agent").unwrap_or(false),
        connections,
    })
}

pub(super) fn roles(r: &mut Report<'_>, t: &Table<'_, '_>) -> Roles {
    t.check_keys(r, ROLE_KEYS);
    let mut roles = Roles::default();
    if t.get("admins").is_some() {
        roles.admins = t.plain_list(r, "admins");
    }
    if t.get("auditors").is_some() {
        roles.auditors = t.plain_list(r, "auditors");
    }
    roles.reviewers = t.plain_list(r, "reviewers");
    roles
}

#[cfg(test)]
mod tests {
    use super::check_url;

    #[test]
    fn only_https_or_loopback_http() {
        assert!(check_url("https://token.actions.githubusercontent.com").is_ok());
        assert!(check_url("http://127.0.0.1:8080").is_ok());
        assert!(check_url("http://localhost/x").is_ok());
        assert!(check_url("http://[::1]:9/").is_ok());
        assert!(check_url("http://example.com").is_err());
        assert!(check_url("http://127.0.0.1.evil.com/").is_err());
        assert!(check_url("ftp://x").is_err());
    }
}
