//! `[audit] segment_max_bytes`, `segment_max_age`, `compress`, `retention`.
#![allow(clippy::unwrap_used, clippy::panic)]

use airlock_config::*;

fn errors(text: &str) -> Vec<(usize, String)> {
    match load_str(text, "t.toml", &StaticEnv::new()) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.0.iter().map(|d| (d.line, d.message.clone())).collect(),
    }
}

#[test]
fn defaults_rotate_at_256_mib_compress_and_keep_forever() {
    let env = StaticEnv::new();
    for audit in [
        load_str("", "t.toml", &env).unwrap().audit,
        embedded_default().audit,
    ] {
        assert_eq!(audit.segment_max_bytes, 256 << 20);
        assert_eq!(audit.segment_max_age_secs, None);
        assert!(audit.compress);
        assert_eq!(audit.retention_secs, None);
    }
}

#[test]
fn sizes_durations_and_forever() {
    let env = StaticEnv::new();
    let a = load_str(
        "[audit]\nsegment_max_bytes = \"64MiB\"\nsegment_max_age = \"1d\"\ncompress = false\nretention = \"400d\"\n",
        "t.toml",
        &env,
    )
    .unwrap()
    .audit;
    assert_eq!(a.segment_max_bytes, 64 << 20);
    assert_eq!(a.segment_max_age_secs, Some(86_400));
    assert!(!a.compress);
    assert_eq!(a.retention_secs, Some(400 * 86_400));
    let a = load_str(
        "[audit]\nsegment_max_bytes = 4096\nretention = \"forever\"\n",
        "t.toml",
        &env,
    )
    .unwrap()
    .audit;
    assert_eq!((a.segment_max_bytes, a.retention_secs), (4096, None));
    assert_eq!(
        load_str("[audit]\nsegment_max_bytes = 0\n", "t.toml", &env)
            .unwrap()
            .audit
            .segment_max_bytes,
        0,
        "0: no size limit"
    );
}

#[test]
fn bad_values_are_errors_on_their_line() {
    for (text, key) in [
        ("[audit]\nsegment_max_bytes = 10\n", "too small"),
        ("[audit]\nsegment_max_bytes = -1\n", "segment_max_bytes"),
        (
            "[audit]\nsegment_max_bytes = \"12 parsecs\"\n",
            "segment_max_bytes",
        ),
        ("[audit]\nsegment_max_age = \"daily\"\n", "segment_max_age"),
        ("[audit]\nretention = \"a while\"\n", "retention"),
        ("[audit]\ncompress = \"yes\"\n", "compress"),
    ] {
        let e = errors(text);
        assert!(
            e.iter().any(|(line, m)| *line == 2 && m.contains(key)),
            "{text}: {e:?}"
        );
    }
}
