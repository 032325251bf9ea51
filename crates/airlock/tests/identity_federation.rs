//! Workload identity federation end to end: a JWKS issuer run by the test, JWTs it signs used
//! as psql passwords through the real gateway; wrong audience, forged signature, a token for
//! another identity, and a token that expires mid-session.

mod support;

#[path = "../../identity/tests/support/jwks.rs"]
mod jwks;

use jwks::{sign, Issuer};
use serde_json::json;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

fn config(issuer: &Issuer) -> String {
    format!(
        r#"
[[trusted_issuers]]
name = "ci"
issuer = "{}"
audience = "airlock"

[[trusted_issuers.mappings]]
claims = {{ repository = "acme/api", ref = "refs/heads/main" }}
identity = "ci-api-main"
groups = ["ai-agents"]
"#,
        issuer.url
    )
}

fn main_branch() -> serde_json::Value {
    json!({"repository": "acme/api", "ref": "refs/heads/main"})
}

#[test]
fn federated_jwts_are_verified_mapped_and_refused_when_wrong() {
    let issuer = Issuer::start(&[("rsa_a", "a")]);
    let gw = Gateway::start(&config(&issuer));

    let jwt = sign(
        "rsa_a",
        Some("a"),
        &issuer.claims("airlock", 300, main_branch()),
    );
    let out = psql(
        &gw.conninfo("ci-api-main", &jwt, "pg-local"),
        "SELECT 'federated-' || 'ok';",
    );
    assert!(text(&out).contains("federated-ok"), "{}", text(&out));
    let audit = gw.audit_log();
    assert!(audit.contains("\"identity_kind\":\"workload\""));
    assert!(audit.contains("\"credential\":\"federated_jwt\""));
    assert!(
        audit.contains("ci:repo:acme/api:ref:refs/heads/main"),
        "the subject is audited"
    );

    let refused = |token: &str, user: &str, reason: &str| {
        let out = psql(
            &gw.conninfo(user, token, "pg-local"),
            "SELECT 'must-not-run';",
        );
        let t = text(&out);
        assert!(
            t.contains("password authentication failed") && !t.contains("must-not-run"),
            "{t}"
        );
        assert!(gw.audit_log().contains(reason), "audit lacks `{reason}`");
    };
    refused(
        &sign(
            "rsa_a",
            Some("a"),
            &issuer.claims("other-audience", 300, main_branch()),
        ),
        "ci-api-main",
        "audience is not one of airlock",
    );
    refused(
        &sign(
            "rsa_evil",
            Some("a"),
            &issuer.claims("airlock", 300, main_branch()),
        ),
        "ci-api-main",
        "signature is not valid",
    );
    refused(
        &sign(
            "rsa_a",
            Some("a"),
            &issuer.claims("airlock", -120, main_branch()),
        ),
        "ci-api-main",
        "the token expired",
    );
    refused(
        &sign(
            "rsa_a",
            Some("a"),
            &issuer.claims(
                "airlock",
                300,
                json!({"repository": "acme/api", "ref": "refs/heads/dev"}),
            ),
        ),
        "ci-api-main",
        "no mapping of issuer `ci`",
    );
    // A valid JWT presented under another identity's name.
    refused(&jwt, "agent", "belongs to `ci-api-main`, not `agent`");

    // Key rotation at the issuer: the new key is picked up without a restart.
    issuer.serve_keys(&[("rsa_b", "b")]);
    let rotated = sign(
        "rsa_b",
        Some("b"),
        &issuer.claims("airlock", 300, main_branch()),
    );
    let out = psql(
        &gw.conninfo("ci-api-main", &rotated, "pg-local"),
        "SELECT 'rotated-' || 'ok';",
    );
    assert!(text(&out).contains("rotated-ok"), "{}", text(&out));
}

#[test]
fn a_federated_session_ends_when_its_jwt_expires() {
    let issuer = Issuer::start(&[("ec_a", "ec")]);
    let gw = Gateway::start(&config(&issuer));
    // exp in 3 s; the issuer's 30 s leeway applies to accepting it, not to the session.
    let jwt = sign(
        "ec_a",
        Some("ec"),
        &issuer.claims("airlock", 3, main_branch()),
    );
    let started = Instant::now();
    let mut child = Command::new("psql")
        .arg(gw.conninfo("ci-api-main", &jwt, "pg-local"))
        .args([
            "-X",
            "-c",
            "SELECT 'started'",
            "-c",
            "SELECT pg_sleep(8)",
            "-c",
            "SELECT 'after'",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while child.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(12),
            "not disconnected"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "cut at exp, not after the query"
    );
    let out = exited_output(&mut child);
    assert!(out.contains("started"), "{out}");
    assert!(out.contains("the token of `ci-api-main` expired"), "{out}");
    assert!(!out.contains("after"), "{out}");
    assert!(gw.audit_log().contains("\"session_cut\":\"token expired\""));
}
