//! The runtime token store on disk: hashed, prefixed, expiring, revocable, rotatable.

use airlock_identity::tokens::{looks_like_token, TOKENS_FILE};
use airlock_identity::{NewToken, TokenError, TokenStore};

fn spec(ttl: Option<u64>) -> NewToken {
    NewToken {
        account: "ci-deployer".into(),
        groups: vec!["deployers".into()],
        agent: true,
        ttl_secs: ttl,
        connections: Some(vec!["pg-prod".into()]),
    }
}

#[test]
fn tokens_are_prefixed_shown_once_and_stored_as_hashes_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = TokenStore::open(dir.path()).unwrap();
    let now = airlock_identity::now_us();
    let issued = store.create(&spec(Some(3600)), now).unwrap();
    assert!(issued.token.starts_with("alk_"));
    assert_eq!(issued.token.len(), 4 + 43);
    assert!(looks_like_token(&issued.token));
    assert_eq!(issued.record.expires_us, Some(now + 3600 * 1_000_000));

    let file = dir.path().join(TOKENS_FILE);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        !text.contains(&issued.token),
        "the secret must not be stored"
    );
    assert!(
        !text.contains(&issued.token[4..]),
        "not even without its prefix"
    );
    assert!(text.contains(&issued.record.sha256));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    // A restart finds it again.
    let reopened = TokenStore::open(dir.path()).unwrap();
    let r = reopened.verify(&issued.token, now + 1).unwrap();
    assert_eq!(r.account, "ci-deployer");
    assert_eq!(r.connections, Some(vec!["pg-prod".to_string()]));
    assert!(matches!(
        reopened.verify("alk_0000000000000000000000000000000000000000000", now),
        Err(TokenError::Unknown)
    ));
    assert!(matches!(
        reopened.verify("not-a-token", now),
        Err(TokenError::Unknown)
    ));
}

#[test]
fn expiry_revocation_and_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let store = TokenStore::open(dir.path()).unwrap();
    let now = airlock_identity::now_us();

    let short = store.create(&spec(Some(1)), now).unwrap();
    assert!(store.verify(&short.token, now).is_ok());
    assert!(matches!(
        store.verify(&short.token, now + 1_000_001),
        Err(TokenError::Expired { .. })
    ));

    let t = store.create(&spec(Some(86_400)), now).unwrap();
    let rotated = store.rotate(&t.record.id, now + 10).unwrap();
    assert_ne!(rotated.token, t.token);
    assert_eq!(
        rotated.record.rotated_from.as_deref(),
        Some(t.record.id.as_str())
    );
    assert_eq!(rotated.record.connections, t.record.connections);
    assert_eq!(
        rotated.record.expires_us,
        Some(now + 10 + 86_400 * 1_000_000)
    );
    assert!(matches!(
        store.verify(&t.token, now + 11),
        Err(TokenError::Revoked { .. })
    ));
    assert!(store.verify(&rotated.token, now + 11).is_ok());
    assert!(
        store.rotate(&t.record.id, now + 12).is_err(),
        "a revoked token cannot be rotated"
    );

    let revoked = store.revoke(&rotated.record.id, now + 20).unwrap();
    assert_eq!(revoked.revoked_us, Some(now + 20));
    assert!(matches!(
        TokenStore::open(dir.path())
            .unwrap()
            .verify(&rotated.token, now + 21),
        Err(TokenError::Revoked { .. })
    ));
    assert!(matches!(
        store.revoke("tok-nope", now),
        Err(TokenError::NotFound(_))
    ));
}

#[test]
fn bad_requests_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = TokenStore::open(dir.path()).unwrap();
    for bad in [
        NewToken {
            account: "has space".into(),
            ..spec(None)
        },
        NewToken {
            account: String::new(),
            ..spec(None)
        },
        NewToken {
            ttl_secs: Some(0),
            ..spec(None)
        },
        NewToken {
            connections: Some(vec![]),
            ..spec(None)
        },
    ] {
        assert!(matches!(store.create(&bad, 0), Err(TokenError::Invalid(_))));
    }
    assert!(store.list().is_empty());
}
