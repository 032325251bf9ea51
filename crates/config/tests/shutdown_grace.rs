//! `[gateway] shutdown_grace`: a duration, 10 s by default.
#![allow(clippy::unwrap_used, clippy::panic)]

use airlock_config::*;

#[test]
fn shutdown_grace_is_a_duration_with_a_default() {
    let env = StaticEnv::new();
    assert_eq!(
        load_str("", "t.toml", &env)
            .unwrap()
            .gateway
            .shutdown_grace_secs,
        10
    );
    assert_eq!(embedded_default().gateway.shutdown_grace_secs, 10);
    let c = load_str("[gateway]\nshutdown_grace = \"1m30s\"\n", "t.toml", &env).unwrap();
    assert_eq!(c.gateway.shutdown_grace_secs, 90);
    let Err(e) = load_str("[gateway]\nshutdown_grace = \"soon\"\n", "t.toml", &env) else {
        panic!("accepted a bad duration");
    };
    assert!(
        e.0.iter()
            .any(|d| d.line == 2 && d.message.contains("shutdown_grace")),
        "{:?}",
        e.0
    );
}
