//! Reviews survive a gateway restart: the book is persisted in data_dir, pending reviews stay
//! pending after reopening and still expire on time; approvals are used exactly once.

use airlock_core::policy::Decision;
use airlock_core::review::{Review, ReviewState};
use airlock_core::{Action, Identity, IdentityKind};
use airlock_gate::reviews::ReviewBook;

fn decision() -> Decision {
    Decision {
        action: Action::Review,
        rule: Some("review-unbounded-writes".into()),
        message: None,
        reviewers: vec!["dba".into()],
        timeout_secs: Some(60),
        min_approvals: 1,
        matched: vec!["review-unbounded-writes".into()],
        fail_closed: false,
    }
}

fn human(name: &str) -> Identity {
    Identity {
        name: name.into(),
        kind: IdentityKind::Human,
        groups: vec!["dba".into()],
        agent: false,
    }
}

#[test]
fn pending_reviews_survive_a_restart_and_expire_on_time() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = 1_000_000_000_000i64;
    {
        let book = ReviewBook::open(dir.path()).unwrap();
        book.insert(Review::command(
            "r-1",
            "agent",
            "pg",
            "delete from t",
            &decision(),
            t0,
            600,
        ))
        .unwrap();
        book.insert(Review::command(
            "r-2",
            "agent",
            "pg",
            "update t set a = 1",
            &decision(),
            t0,
            600,
        ))
        .unwrap();
        book.approve("r-2", &human("alice"), t0 + 1).unwrap();
    }
    // "Restart": a new book over the same data dir.
    let book = ReviewBook::open(dir.path()).unwrap();
    assert_eq!(book.get("r-1").unwrap().state, ReviewState::Pending);
    assert_eq!(book.get("r-2").unwrap().state, ReviewState::Approved);
    assert!(book.expire_due(t0 + 59_000_000).is_empty());
    let expired = book.expire_due(t0 + 61_000_000);
    assert_eq!(expired.len(), 1);
    assert_eq!(book.get("r-1").unwrap().state, ReviewState::Expired);
    // The approval of r-2 runs its exact statement once, for the same identity and connection only.
    assert!(book
        .take_approved("agent", "pg", "update t set a = 2", t0 + 2)
        .unwrap()
        .is_none());
    assert!(book
        .take_approved("other", "pg", "update t set a = 1", t0 + 2)
        .unwrap()
        .is_none());
    assert!(book
        .take_approved("agent", "pg", "update t set a = 1", t0 + 2)
        .unwrap()
        .is_some());
    assert!(book
        .take_approved("agent", "pg", "update t set a = 1", t0 + 3)
        .unwrap()
        .is_none());
}

#[test]
fn a_damaged_book_is_an_error_not_an_empty_book() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("reviews.json"), b"{ not json").unwrap();
    let err = ReviewBook::open(dir.path()).err().unwrap();
    assert!(err.contains("damaged"), "{err}");
}
