//! Signed checkpoints: an edited, deleted, reordered or cut-off log is caught, including a
//! rewrite that recomputed every hash; and the index's search facets.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use airlock_store::*;
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

fn command(session: &str, seq: u64, op: &str, table: &str, decision: &str) -> AuditEvent {
    AuditEvent {
        session_id: Some(session.into()),
        identity: Some(
            if session == "s2" {
                "alice"
            } else {
                "claude-agent"
            }
            .into(),
        ),
        connection: Some("pg-prod".into()),
        command: Some(CommandRecord {
            seq,
            text: Some(format!("{op} … {table}")),
            operation: Some(op.into()),
            reads: vec![format!("public.{table}")],
            decision: Some(decision.into()),
            ..Default::default()
        }),
        ..AuditEvent::new(EventKind::Command)
    }
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    fs::write(path, text).unwrap();
}

/// A log of 20 commands with checkpoints after every 5 events (written synchronously by
/// shutting the checkpointer down after each burst).
fn checkpointed_log(dir: &Path) -> (std::path::PathBuf, String) {
    let log_path = dir.join("audit.log");
    let log = AuditLog::open(&log_path, AuditOptions::default()).unwrap();
    let key = CheckpointKey::load_or_create(dir).unwrap();
    let public = key.public_hex();
    for burst in 0..4u64 {
        let key = CheckpointKey::load_or_create(dir).unwrap();
        let cp = spawn_checkpointer(
            log.clone(),
            key,
            CheckpointOptions {
                every_events: 1_000_000,
                every: Duration::from_secs(3600),
            },
        )
        .unwrap();
        for i in 1..=5 {
            log.append(&[command("s1", burst * 5 + i, "select", "users", "allow")])
                .unwrap();
        }
        // Shutdown writes a final checkpoint of the head.
        cp.shutdown();
    }
    (log_path, public)
}

#[test]
fn key_is_created_once_with_private_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let a = CheckpointKey::load_or_create(dir.path()).unwrap();
    let b = CheckpointKey::load_or_create(dir.path()).unwrap();
    assert_eq!(a.public_hex(), b.public_hex());
    let mode = fs::metadata(dir.path().join("audit.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        CheckpointKey::load_public(dir.path()).unwrap().as_deref(),
        Some(a.public_hex().as_str())
    );
    let cp = a.sign(7, "ab", 0);
    assert!(cp.verify(Some(&a.public_hex())).is_ok());
    let mut forged = cp.clone();
    forged.seq = 8;
    assert!(forged.verify(Some(&a.public_hex())).is_err());
}

#[test]
fn an_intact_log_verifies_with_its_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let (log_path, public) = checkpointed_log(dir.path());
    let cps = lines(&checkpoints_path(&log_path));
    assert_eq!(cps.len(), 4);
    let r =
        verify_with_checkpoints(&log_path, &checkpoints_path(&log_path), Some(&public)).unwrap();
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(r.checkpoints_ok, 4);
    // 20 commands + 4 chained checkpoint events; the last chained one is after the last
    // checkpoint.
    assert_eq!(r.chain.events, 24);
    assert_eq!(r.uncovered, 1);
    // The checkpoints travel in the chain too (for exporters).
    let chained = lines(&log_path)
        .iter()
        .filter(|l| l.contains("\"checkpoint\""))
        .count();
    assert_eq!(chained, 4);
}

#[test]
fn an_edited_line_is_caught_even_when_every_hash_is_recomputed() {
    let dir = tempfile::tempdir().unwrap();
    let (log_path, public) = checkpointed_log(dir.path());
    let cps = checkpoints_path(&log_path);
    let original = lines(&log_path);

    // Plain edit: the chain breaks at that event.
    let mut edited = original.clone();
    edited[2] = edited[2].replace("allow", "deny!");
    write_lines(&log_path, &edited);
    let r = verify_with_checkpoints(&log_path, &cps, Some(&public)).unwrap();
    let (seq, why) = r.first_problem.unwrap();
    assert_eq!(seq, 3);
    assert!(why.contains("edited"), "{why}");

    // Rewrite: the attacker recomputes every hash after the edit, so the chain is valid...
    let rewritten = rechain(&edited);
    write_lines(&log_path, &rewritten);
    assert!(verify_log(&log_path).unwrap().is_ok());
    // ...but the signed checkpoints disagree from the first one after the edit.
    let r = verify_with_checkpoints(&log_path, &cps, Some(&public)).unwrap();
    let (seq, why) = r.first_problem.unwrap();
    assert_eq!(seq, 5, "first checkpoint covers seq 5");
    assert!(why.contains("rewritten"), "{why}");
}

/// Recomputes seq/prev/hash of every line like the writer would.
fn rechain(lines: &[String]) -> Vec<String> {
    use sha2::{Digest, Sha256};
    let mut prev = GENESIS_PREV.to_string();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let start = l.find("\"event\":").unwrap() + 8;
        let event = &l[start..l.len() - 1];
        let seq = i as u64 + 1;
        let mut h = Sha256::new();
        h.update(format!("{seq}\n{prev}\n"));
        h.update(event.as_bytes());
        let digest: [u8; 32] = h.finalize().into();
        let hash = hex::encode(digest);
        out.push(format!(
            "{{\"seq\":{seq},\"prev\":\"{prev}\",\"hash\":\"{hash}\",\"event\":{event}}}"
        ));
        prev = hash;
    }
    out
}

#[test]
fn a_deleted_line_and_a_cut_tail_are_caught() {
    let dir = tempfile::tempdir().unwrap();
    let (log_path, public) = checkpointed_log(dir.path());
    let cps = checkpoints_path(&log_path);
    let original = lines(&log_path);

    let mut deleted = original.clone();
    deleted.remove(9);
    write_lines(&log_path, &deleted);
    let r = verify_with_checkpoints(&log_path, &cps, Some(&public)).unwrap();
    let (seq, why) = r.first_problem.unwrap();
    assert_eq!(seq, 10);
    assert!(why.contains("expected seq 10"), "{why}");

    // Deleted and re-chained: the checkpoints catch it.
    write_lines(&log_path, &rechain(&deleted));
    let r = verify_with_checkpoints(&log_path, &cps, Some(&public)).unwrap();
    assert!(r.first_problem.is_some());

    // The last 8 lines cut off: the chain alone cannot tell, the checkpoints can.
    write_lines(&log_path, &original[..original.len() - 8]);
    assert!(verify_log(&log_path).unwrap().is_ok());
    let r = verify_with_checkpoints(&log_path, &cps, Some(&public)).unwrap();
    let (seq, why) = r.first_problem.unwrap();
    assert_eq!(seq, original.len() as u64 - 7);
    assert!(why.contains("cut from the end"), "{why}");
}

#[test]
fn a_forged_or_foreign_checkpoint_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let (log_path, public) = checkpointed_log(dir.path());
    let cps = checkpoints_path(&log_path);
    let original = lines(&cps);
    let mut cp_lines = original.clone();
    // Re-signed with another key (an attacker who replaced audit.key).
    let other = tempfile::tempdir().unwrap();
    let attacker = CheckpointKey::load_or_create(other.path()).unwrap();
    let mut cp: Checkpoint = serde_json::from_str(&cp_lines[1]).unwrap();
    cp = attacker.sign(cp.seq, &cp.hash, cp.ts_us);
    cp_lines[1] = serde_json::to_string(&cp).unwrap();
    write_lines(&cps, &cp_lines);
    let r = verify_with_checkpoints(&log_path, &cps, Some(&public)).unwrap();
    let (_, why) = r.first_problem.unwrap();
    assert!(why.contains("trusted key"), "{why}");
    // A flipped signature byte.
    let mut cp: Checkpoint = serde_json::from_str(&original[2]).unwrap();
    let mut sig = hex::decode(&cp.sig).unwrap();
    sig[0] ^= 1;
    cp.sig = hex::encode(sig);
    let mut cp_lines = original.clone();
    cp_lines[2] = serde_json::to_string(&cp).unwrap();
    write_lines(&cps, &cp_lines);
    let r = verify_with_checkpoints(&log_path, &cps, Some(&public)).unwrap();
    let (seq, why) = r.first_problem.unwrap();
    assert_eq!(seq, cp.seq);
    assert!(why.contains("invalid signature"), "{why}");
    // Restored: clean again.
    write_lines(&cps, &original);
    assert!(verify_with_checkpoints(&log_path, &cps, Some(&public))
        .unwrap()
        .is_ok());
}

#[test]
fn the_checkpointer_signs_by_count_and_time_without_blocking_appends() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("audit.log");
    let log = AuditLog::open(&log_path, AuditOptions::default()).unwrap();
    let key = CheckpointKey::load_or_create(dir.path()).unwrap();
    let public = key.public_hex();
    let cp = spawn_checkpointer(
        log.clone(),
        key,
        CheckpointOptions {
            every_events: 50,
            every: Duration::from_millis(300),
        },
    )
    .unwrap();
    for i in 1..=120 {
        log.append(&[command("s1", i, "select", "users", "allow")])
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(500));
    let first = lines(&checkpoints_path(&log_path)).len();
    assert!(first >= 1, "by count");
    // Three more events: fewer than every_events, so this one comes by time.
    for i in 121..=123 {
        log.append(&[command("s1", i, "select", "users", "allow")])
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(800));
    let n = lines(&checkpoints_path(&log_path)).len();
    assert_eq!(n, first + 1, "by time");
    // Idle: no new checkpoints for its own events.
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(lines(&checkpoints_path(&log_path)).len(), n);
    drop(cp);
    drop(log);
    let r =
        verify_with_checkpoints(&log_path, &checkpoints_path(&log_path), Some(&public)).unwrap();
    assert!(r.is_ok(), "{r:?}");
    assert!(r.checkpoints_ok >= 2);
}

#[test]
fn search_filters_by_operation_object_decision_masked_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("audit.log");
    let log = AuditLog::open(&log_path, AuditOptions::default()).unwrap();
    let mut start = AuditEvent::new(EventKind::SessionStart);
    start.session_id = Some("s1".into());
    start.identity = Some("claude-agent".into());
    start.connection = Some("pg-prod".into());
    log.append(&[start]).unwrap();
    log.append(&[command("s1", 1, "select", "users", "allow")])
        .unwrap();
    log.append(&[command("s1", 2, "drop", "orders", "deny")])
        .unwrap();
    let mut res = AuditEvent::new(EventKind::CommandResult);
    res.session_id = Some("s1".into());
    res.command = Some(CommandRecord {
        seq: 1,
        rows: Some(3),
        masked: MaskedCounts {
            entities: BTreeMap::from([("email".to_string(), 3)]),
            columns: BTreeMap::new(),
        },
        ..Default::default()
    });
    log.append(&[res]).unwrap();
    let before_s2 = AuditEvent::now_us();
    std::thread::sleep(Duration::from_millis(5));
    log.append(&[command("s2", 1, "select", "payments", "allow")])
        .unwrap();
    drop(log);
    let index = Index::open(&dir.path().join("state.db"), &log_path).unwrap();
    index.catch_up().unwrap();

    let find = |f: CommandFilter| -> Vec<(String, u64)> {
        index
            .search(&f)
            .unwrap()
            .into_iter()
            .map(|h| (h.session_id, h.seq))
            .collect()
    };
    assert_eq!(find(CommandFilter::default()).len(), 3);
    assert_eq!(
        find(CommandFilter {
            operation: Some("drop".into()),
            ..Default::default()
        }),
        [("s1".to_string(), 2)]
    );
    assert_eq!(
        find(CommandFilter {
            object: Some("users".into()),
            ..Default::default()
        }),
        [("s1".to_string(), 1)]
    );
    assert_eq!(
        find(CommandFilter {
            object: Some("public.payments".into()),
            ..Default::default()
        }),
        [("s2".to_string(), 1)]
    );
    assert_eq!(
        find(CommandFilter {
            decision: Some("deny".into()),
            identity: Some("claude-agent".into()),
            ..Default::default()
        }),
        [("s1".to_string(), 2)]
    );
    assert_eq!(
        find(CommandFilter {
            masked: Some("email".into()),
            ..Default::default()
        }),
        [("s1".to_string(), 1)]
    );
    assert_eq!(
        find(CommandFilter {
            since_us: Some(before_s2),
            ..Default::default()
        }),
        [("s2".to_string(), 1)]
    );
    assert!(find(CommandFilter {
        masked: Some("credit_card".into()),
        ..Default::default()
    })
    .is_empty());
    let hit = &index
        .search(&CommandFilter {
            operation: Some("drop".into()),
            ..Default::default()
        })
        .unwrap()[0];
    assert_eq!(hit.text.as_deref(), Some("drop … orders"));
    assert_eq!(hit.connection.as_deref(), Some("pg-prod"));

    // Sessions by facet.
    let ids = |f: SessionFilter| -> Vec<String> {
        index
            .sessions(f)
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect()
    };
    assert_eq!(
        ids(SessionFilter {
            decision: Some("deny".into()),
            ..Default::default()
        }),
        ["s1"]
    );
    assert_eq!(
        ids(SessionFilter {
            object: Some("payments".into()),
            ..Default::default()
        }),
        ["s2"]
    );
    assert_eq!(ids(SessionFilter::default()).len(), 2);
}
