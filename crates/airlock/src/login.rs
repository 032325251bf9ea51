//! `airlock login` / `airlock logout`, and where a client keeps its token.
//!
//! OIDC login (authorization code + PKCE with a loopback redirect, and the device flow) is not
//! built yet: `[oidc]` is parsed and validated, but the gateway issues no access tokens. Until
//! it is, people and agents use service-account tokens (`airlock tokens create`) or federated
//! workload JWTs (`[[trusted_issuers]]`).

use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;

/// `$XDG_CONFIG_HOME/airlock/token`, else `~/.config/airlock/token`.
pub fn token_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("airlock").join("token"))
}

/// The token a future `airlock login` stored (mode 0600), if any.
pub fn stored_token() -> anyhow::Result<Option<String>> {
    let Some(path) = token_path() else {
        return Ok(None);
    };
    match std::fs::read_to_string(&path) {
        Ok(t) => Ok(Some(t.trim().to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

pub fn login(device: bool) -> anyhow::Result<ExitCode> {
    let flow = if device {
        "the device-authorization flow (--device)"
    } else {
        "the authorization-code flow with PKCE"
    };
    eprintln!(
        "error: `airlock login` ({flow}) is not available in this build: the [oidc] section is \
         validated, but the gateway does not run OIDC logins or issue access tokens yet.\n\
         Use a service-account token instead (an admin runs `airlock tokens create \
         --service-account NAME --ttl 30d`; you set AIRLOCK_TOKEN), or, for CI and workloads, \
         a federated JWT from an issuer in [[trusted_issuers]]."
    );
    Ok(ExitCode::from(2))
}

pub fn logout() -> anyhow::Result<ExitCode> {
    match token_path() {
        Some(path) if path.exists() => {
            std::fs::remove_file(&path)
                .with_context(|| format!("removing {}", path.display()))?;
            println!("removed the stored token {}", path.display());
        }
        _ => println!("no stored token (nothing to log out of: `airlock login` is not available in this build)"),
    }
    Ok(ExitCode::SUCCESS)
}
