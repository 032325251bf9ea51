//! Workload federation against a real HTTP issuer (discovery + JWKS) that the test runs, with
//! JWTs signed by keys the test controls.

#[path = "support/jwks.rs"]
mod jwks;

use airlock_config::{ClaimMapping, TrustedIssuer};
use airlock_core::IdentityKind;
use airlock_identity::{Federation, FederationError};
use base64::Engine;
use jwks::{sign, Issuer};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

fn mapping(claims: &[(&str, &str)], identity: &str, groups: &[&str]) -> ClaimMapping {
    ClaimMapping {
        claims: claims
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        identity: identity.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        agent: false,
        connections: Some(vec!["pg-prod".into()]),
    }
}

fn federation(issuer: &Issuer) -> Federation {
    Federation::new(&[TrustedIssuer {
        name: "ci".into(),
        issuer: issuer.url.clone(),
        audiences: vec!["airlock".into()],
        jwks_url: None,
        algorithms: vec!["RS256".into(), "ES256".into()],
        leeway_secs: 30,
        mappings: vec![
            mapping(
                &[("repository", "acme/api"), ("ref", "refs/heads/main")],
                "ci-api-main",
                &["deployers"],
            ),
            mapping(&[("repository", "acme/*")], "ci-acme", &["ci"]),
        ],
        line: 1,
    }])
}

fn main_branch() -> serde_json::Value {
    json!({"repository": "acme/api", "ref": "refs/heads/main"})
}

fn now_us() -> i64 {
    airlock_identity::now_us()
}

#[tokio::test(flavor = "multi_thread")]
async fn claim_rules_map_a_valid_token_to_an_identity() {
    let issuer = Issuer::start(&[("rsa_a", "a"), ("ec_a", "ec")]);
    let fed = federation(&issuer);
    let claims = issuer.claims("airlock", 300, main_branch());
    let f = fed
        .verify(&sign("rsa_a", Some("a"), &claims), now_us())
        .await
        .unwrap();
    assert_eq!(f.identity.name, "ci-api-main");
    assert_eq!(f.identity.groups, vec!["deployers".to_string()]);
    assert_eq!(f.identity.kind, IdentityKind::Workload);
    assert_eq!(f.connections, Some(vec!["pg-prod".to_string()]));
    assert_eq!(f.expires_us, claims["exp"].as_i64().unwrap() * 1_000_000);
    assert_eq!(
        f.subject.as_deref(),
        Some("repo:acme/api:ref:refs/heads/main")
    );

    // ES256 from the same issuer, and the second (wildcard) mapping.
    let other = issuer.claims(
        "airlock",
        300,
        json!({"repository": "acme/web", "ref": "refs/heads/x"}),
    );
    let f = fed
        .verify(&sign("ec_a", Some("ec"), &other), now_us())
        .await
        .unwrap();
    assert_eq!(f.identity.name, "ci-acme");

    // No mapping for another organisation's repository.
    let evil = issuer.claims(
        "airlock",
        300,
        json!({"repository": "evil/api", "ref": "refs/heads/main"}),
    );
    assert_eq!(
        fed.verify(&sign("rsa_a", Some("a"), &evil), now_us())
            .await
            .unwrap_err(),
        FederationError::NoMapping("ci".into())
    );
    // One JWKS fetch served all of them.
    assert_eq!(issuer.jwks_fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_audience_expired_and_forged_tokens_are_refused() {
    let issuer = Issuer::start(&[("rsa_a", "a")]);
    let fed = federation(&issuer);

    let wrong_aud = issuer.claims("someone-else", 300, main_branch());
    assert!(matches!(
        fed.verify(&sign("rsa_a", Some("a"), &wrong_aud), now_us())
            .await,
        Err(FederationError::WrongAudience(_))
    ));

    let expired = issuer.claims("airlock", -120, main_branch());
    assert_eq!(
        fed.verify(&sign("rsa_a", Some("a"), &expired), now_us())
            .await
            .unwrap_err(),
        FederationError::Expired
    );
    // Within the 30 s leeway: still accepted.
    let just = issuer.claims("airlock", -10, main_branch());
    assert!(fed
        .verify(&sign("rsa_a", Some("a"), &just), now_us())
        .await
        .is_ok());

    // Signed by a key the issuer never published, claiming the published key's id.
    let good = issuer.claims("airlock", 300, main_branch());
    assert_eq!(
        fed.verify(&sign("rsa_evil", Some("a"), &good), now_us())
            .await
            .unwrap_err(),
        FederationError::BadSignature
    );

    // A valid signature over claims that were edited afterwards.
    let token = sign("rsa_a", Some("a"), &good);
    let parts: Vec<&str> = token.split('.').collect();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut edited = good.clone();
    edited["repository"] = "acme/api".into();
    edited["sub"] = "someone-else".into();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(edited.to_string()),
        parts[2]
    );
    assert_eq!(
        fed.verify(&tampered, now_us()).await.unwrap_err(),
        FederationError::BadSignature
    );

    // Another issuer.
    let mut foreign = good.clone();
    foreign["iss"] = "https://elsewhere.example".into();
    assert!(matches!(
        fed.verify(&sign("rsa_a", Some("a"), &foreign), now_us())
            .await,
        Err(FederationError::UnknownIssuer(_))
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn none_and_hmac_algorithms_are_refused() {
    let issuer = Issuer::start(&[("rsa_a", "a")]);
    let fed = federation(&issuer);
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let claims = issuer.claims("airlock", 300, main_branch());

    let none = format!(
        "{}.{}.",
        b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(claims.to_string())
    );
    assert!(fed.verify(&none, now_us()).await.is_err());

    // The classic confusion: HS256 keyed with the issuer's public key material.
    let n = jwks::public_jwk("rsa_a", "a")["n"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("a".into());
    let hs = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(n.as_bytes()),
    )
    .unwrap();
    assert!(matches!(
        fed.verify(&hs, now_us()).await,
        Err(FederationError::AlgorithmNotAllowed { .. })
    ));
    // Refused before any key was fetched.
    assert_eq!(issuer.jwks_fetches.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_key_is_fetched_once_when_its_kid_first_appears() {
    let issuer = Issuer::start(&[("rsa_a", "a")]);
    let fed = federation(&issuer);
    let claims = issuer.claims("airlock", 300, main_branch());
    fed.verify(&sign("rsa_a", Some("a"), &claims), now_us())
        .await
        .unwrap();
    assert_eq!(issuer.jwks_fetches.load(Ordering::SeqCst), 1);

    // The issuer rotates to key b and drops a.
    issuer.serve_keys(&[("rsa_b", "b")]);
    let f = fed
        .verify(&sign("rsa_b", Some("b"), &claims), now_us())
        .await
        .unwrap();
    assert_eq!(f.identity.name, "ci-api-main");
    assert_eq!(issuer.jwks_fetches.load(Ordering::SeqCst), 2);
    fed.verify(&sign("rsa_b", Some("b"), &claims), now_us())
        .await
        .unwrap();
    assert_eq!(
        issuer.jwks_fetches.load(Ordering::SeqCst),
        2,
        "a known kid needs no fetch"
    );

    // Tokens under the dropped key no longer verify (one fetch to make sure).
    assert!(matches!(
        fed.verify(&sign("rsa_a", Some("a"), &claims), now_us())
            .await,
        Err(FederationError::UnknownKey { .. })
    ));
    assert_eq!(issuer.jwks_fetches.load(Ordering::SeqCst), 3);
    // After such a miss, a stream of unknown kids does not turn into a stream of fetches.
    for i in 0..5 {
        let kid = format!("junk-{i}");
        assert!(fed
            .verify(&sign("rsa_a", Some(&kid), &claims), now_us())
            .await
            .is_err());
    }
    assert_eq!(issuer.jwks_fetches.load(Ordering::SeqCst), 3);
    // The current key keeps working throughout.
    fed.verify(&sign("rsa_b", Some("b"), &claims), now_us())
        .await
        .unwrap();
}
