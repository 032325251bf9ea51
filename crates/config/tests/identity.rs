//! `[[trusted_issuers]]`, `[roles]` and `[oidc]`: what loads, and the errors with positions.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use airlock_config::*;

const BASE: &str = r#"
[[service_accounts]]
name = "agent"
token_env = "T"

[[connections]]
name = "pg-prod"
type = "postgres"
address = "127.0.0.1:5432"
"#;

fn env() -> StaticEnv {
    StaticEnv::new()
        .with_var("T", "agent-token-0123456789")
        .with_var("OIDC_SECRET", "s3cret")
}

fn load(extra: &str) -> Result<Config, Vec<(usize, String)>> {
    load_str(&format!("{BASE}{extra}"), "t.toml", &env())
        .map_err(|e| e.0.into_iter().map(|d| (d.line, d.message)).collect())
}

#[test]
fn a_full_identity_section_loads() {
    let c = load(
        r#"
[roles]
admins = ["platform"]
auditors = ["security"]

[oidc]
issuer = "https://idp.example.com/"
client_id = "airlock"
client_secret_env = "OIDC_SECRET"
groups_claim = "roles"
group_map = { "idp-dba" = "dba" }

[[trusted_issuers]]
name = "github"
issuer = "https://token.actions.githubusercontent.com"
audience = ["airlock", "airlock-staging"]
leeway = "10s"

[[trusted_issuers.mappings]]
claims = { repository = "acme/api", ref = "refs/heads/main" }
identity = "ci-api-main"
groups = ["deployers"]
connections = ["pg-prod"]

[[trusted_issuers.mappings]]
claims = { repository = "acme/*" }
identity = "ci-acme"
"#,
    )
    .unwrap();
    let id = &c.identity;
    assert_eq!(id.roles.admins, vec!["platform"]);
    assert_eq!(id.roles.auditors, vec!["security"]);
    let oidc = id.oidc.as_ref().unwrap();
    assert_eq!(oidc.issuer, "https://idp.example.com");
    assert_eq!(oidc.scopes, vec!["openid", "email", "profile"]);
    assert_eq!(oidc.group_map["idp-dba"], "dba");
    assert_eq!(
        oidc.client_secret.as_ref().unwrap().value.expose(),
        "s3cret"
    );
    let gh = &id.trusted_issuers[0];
    assert_eq!(gh.audiences, vec!["airlock", "airlock-staging"]);
    assert_eq!(gh.algorithms, vec!["RS256", "ES256"]);
    assert_eq!(gh.leeway_secs, 10);
    assert_eq!(gh.mappings.len(), 2);
    assert_eq!(
        gh.mappings[0].connections,
        Some(vec!["pg-prod".to_string()])
    );
    // Defaults without the sections.
    let plain = load("").unwrap();
    assert_eq!(plain.identity.roles.admins, vec!["admins"]);
    assert!(plain.identity.trusted_issuers.is_empty() && plain.identity.oidc.is_none());
}

#[test]
fn unsafe_issuers_are_errors_with_positions() {
    let errs = load(
        r#"
[[trusted_issuers]]
name = "ci"
issuer = "http://ci.example.com"
audience = "airlock"
algorithms = ["HS256", "none", "RS256"]

[[trusted_issuers.mappings]]
identity = "agent"

[[trusted_issuers.mappings]]
claims = { sub = "x" }
identity = "ok-name"
connections = ["pg-nope"]
"#,
    )
    .unwrap_err();
    let has = |line: usize, needle: &str| {
        assert!(
            errs.iter().any(|(l, m)| *l == line && m.contains(needle)),
            "no `{needle}` at line {line}: {errs:#?}"
        )
    };
    // Line numbers count BASE's 9 lines first.
    has(13, "must use https://");
    has(15, "algorithm \"HS256\" is not allowed");
    has(15, "algorithm \"none\" is not allowed");
    has(17, "has no `claims`");
    has(18, "already a service account");
    has(23, "unknown connection `pg-nope`");

    let errs = load("[[trusted_issuers]]\nname = \"x\"\nissuer = \"https://a\"\n").unwrap_err();
    assert!(errs.iter().any(|(_, m)| m.contains("missing `audience`")));
    assert!(errs
        .iter()
        .any(|(_, m)| m.contains("no [[trusted_issuers.mappings]]")));
    let errs = load("[oidc]\nclient_id = \"x\"\nissuer = \"ftp://x\"\n").unwrap_err();
    assert!(errs.iter().any(|(_, m)| m.contains("[oidc] issuer")));
    let errs = load("[roles]\nadmin = [\"x\"]\n").unwrap_err();
    assert!(errs
        .iter()
        .any(|(_, m)| m.contains("unknown key `admin` in [roles]")));
}
