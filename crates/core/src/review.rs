//! Just-in-time reviews: a pure state machine. The caller supplies the clock (microseconds
//! since the Unix epoch) and persists the result.
//!
//! ```text
//!            approve (enough approvals)            mark_executed (command reviews, once)
//! Pending ─────────────────────────────▶ Approved ──────────────▶ Executed
//!    │ deny (one denial is a veto)
//!    ├──────────────────────────────────▶ Denied
//!    │ expire_if_due (now >= expires_us; also checked by approve/deny)
//!    └──────────────────────────────────▶ Expired
//! ```
//!
//! Who may vote: a **human** identity in one of the review's reviewer groups, once per
//! review (an approval and a denial count as votes alike). The requester may not approve
//! their own request, but may deny it (a withdrawal only makes things stricter). Reviews are a
//! human decision, so agents, service accounts and workloads cannot vote even when placed in a
//! reviewer group. A review with no reviewer groups can only expire. Votes after the deadline
//! or after the review left `Pending` are refused. No answer before `expires_us` means deny
//! (`Expired`).

use crate::policy::Decision;
use crate::{Identity, IdentityKind};
use serde::{Deserialize, Serialize};
use std::fmt;
use thiserror::Error;

const MICROS_PER_SEC: i64 = 1_000_000;

/// What is being reviewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReviewKind {
    /// One held command: it runs once after approval.
    Command,
    /// A time-bound grant to a connection.
    Access,
}

impl ReviewKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewKind::Command => "command",
            ReviewKind::Access => "access",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReviewState {
    Pending,
    Approved,
    Denied,
    Expired,
    Executed,
}

impl ReviewState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewState::Pending => "pending",
            ReviewState::Approved => "approved",
            ReviewState::Denied => "denied",
            ReviewState::Expired => "expired",
            ReviewState::Executed => "executed",
        }
    }
}

impl fmt::Display for ReviewState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One reviewer's vote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    pub reviewer: String,
    pub at_us: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReviewError {
    #[error("review is {0}, no longer pending")]
    NotPending(ReviewState),
    #[error("review expired")]
    Expired,
    #[error("`{0}` is not in a reviewer group of this review")]
    NotReviewer(String),
    #[error("`{0}` is not a human; reviews are a human decision")]
    NotHuman(String),
    #[error("`{0}` cannot approve their own request")]
    SelfApproval(String),
    #[error("`{0}` has already voted on this review")]
    AlreadyVoted(String),
    #[error("review is {0}, not approved; the command may not run")]
    NotApproved(ReviewState),
    #[error("the approved command has already run")]
    AlreadyExecuted,
    #[error("access reviews grant a connection; they are not executed")]
    NotACommand,
}

/// A request for a human decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    pub id: String,
    pub kind: ReviewKind,
    /// Identity name of who asked.
    pub requester: String,
    pub connection: String,
    /// The held command text (command reviews).
    pub statement: Option<String>,
    /// The rule that asked for the review, if any.
    pub rule: Option<String>,
    /// Reviewer groups.
    pub reviewers: Vec<String>,
    pub min_approvals: u32,
    pub created_us: i64,
    pub expires_us: i64,
    pub approvals: Vec<Vote>,
    pub denials: Vec<Vote>,
    pub state: ReviewState,
    /// When the review left `Pending`.
    pub decided_us: Option<i64>,
    pub executed_us: Option<i64>,
    /// Access reviews: how long the grant lasts once approved.
    #[serde(default)]
    pub grant_secs: Option<u64>,
    /// Why the requester asked (access reviews), shown to reviewers.
    #[serde(default)]
    pub reason: Option<String>,
}

impl Review {
    /// A command review from a `review` decision; `default_timeout_secs` applies when the
    /// decision carries no timeout.
    pub fn command(
        id: impl Into<String>,
        requester: &str,
        connection: &str,
        statement: &str,
        decision: &Decision,
        now_us: i64,
        default_timeout_secs: u64,
    ) -> Self {
        let timeout = decision.timeout_secs.unwrap_or(default_timeout_secs);
        let mut review = Review::pending(
            id.into(),
            ReviewKind::Command,
            requester,
            connection,
            decision.reviewers.clone(),
            decision.min_approvals,
            now_us,
            timeout,
        );
        review.statement = Some(statement.to_string());
        review.rule = decision.rule.clone();
        review
    }

    /// An access review: a time-bound grant to `connection`.
    pub fn access(
        id: impl Into<String>,
        requester: &str,
        connection: &str,
        reviewers: Vec<String>,
        min_approvals: u32,
        now_us: i64,
        timeout_secs: u64,
    ) -> Self {
        Review::pending(
            id.into(),
            ReviewKind::Access,
            requester,
            connection,
            reviewers,
            min_approvals,
            now_us,
            timeout_secs,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn pending(
        id: String,
        kind: ReviewKind,
        requester: &str,
        connection: &str,
        reviewers: Vec<String>,
        min_approvals: u32,
        now_us: i64,
        timeout_secs: u64,
    ) -> Self {
        let timeout_us = i64::try_from(timeout_secs)
            .unwrap_or(i64::MAX)
            .saturating_mul(MICROS_PER_SEC);
        Review {
            id,
            kind,
            requester: requester.to_string(),
            connection: connection.to_string(),
            statement: None,
            rule: None,
            reviewers,
            min_approvals,
            created_us: now_us,
            expires_us: now_us.saturating_add(timeout_us),
            approvals: Vec::new(),
            denials: Vec::new(),
            state: ReviewState::Pending,
            decided_us: None,
            executed_us: None,
            grant_secs: None,
            reason: None,
        }
    }

    /// Approvals needed to approve: at least one, whatever was stored.
    pub fn approvals_needed(&self) -> usize {
        usize::try_from(self.min_approvals.max(1)).unwrap_or(usize::MAX)
    }

    /// Whether `who` belongs to a reviewer group and is a human. Says nothing about
    /// self-approval or earlier votes.
    pub fn is_eligible_reviewer(&self, who: &Identity) -> bool {
        who.kind == IdentityKind::Human && self.reviewers.iter().any(|g| who.in_group(g))
    }

    pub fn has_voted(&self, name: &str) -> bool {
        self.approvals
            .iter()
            .chain(&self.denials)
            .any(|v| v.reviewer == name)
    }

    /// Moves a pending review past its deadline to `Expired`. Returns whether it did.
    pub fn expire_if_due(&mut self, now_us: i64) -> bool {
        if self.state == ReviewState::Pending && now_us >= self.expires_us {
            self.state = ReviewState::Expired;
            self.decided_us = Some(now_us);
            return true;
        }
        false
    }

    /// Checks common to both votes. A vote that arrives after the deadline expires the review
    /// (so the refusal and the stored state agree).
    fn check_vote(&mut self, who: &Identity, now_us: i64) -> Result<(), ReviewError> {
        if self.state != ReviewState::Pending {
            return Err(ReviewError::NotPending(self.state));
        }
        if self.expire_if_due(now_us) {
            return Err(ReviewError::Expired);
        }
        if who.kind != IdentityKind::Human {
            return Err(ReviewError::NotHuman(who.name.clone()));
        }
        if !self.is_eligible_reviewer(who) {
            return Err(ReviewError::NotReviewer(who.name.clone()));
        }
        if self.has_voted(&who.name) {
            return Err(ReviewError::AlreadyVoted(who.name.clone()));
        }
        Ok(())
    }

    pub fn approve(&mut self, reviewer: &Identity, now_us: i64) -> Result<(), ReviewError> {
        self.check_vote(reviewer, now_us)?;
        if reviewer.name == self.requester {
            return Err(ReviewError::SelfApproval(reviewer.name.clone()));
        }
        self.approvals.push(Vote {
            reviewer: reviewer.name.clone(),
            at_us: now_us,
        });
        if self.approvals.len() >= self.approvals_needed() {
            self.state = ReviewState::Approved;
            self.decided_us = Some(now_us);
        }
        Ok(())
    }

    /// One eligible denial decides: the review is `Denied`.
    pub fn deny(&mut self, reviewer: &Identity, now_us: i64) -> Result<(), ReviewError> {
        self.check_vote(reviewer, now_us)?;
        self.denials.push(Vote {
            reviewer: reviewer.name.clone(),
            at_us: now_us,
        });
        self.state = ReviewState::Denied;
        self.decided_us = Some(now_us);
        Ok(())
    }

    /// Records that the approved command ran. Exactly once: the held command must not be
    /// replayed on the strength of one approval.
    pub fn mark_executed(&mut self, now_us: i64) -> Result<(), ReviewError> {
        if self.kind != ReviewKind::Command {
            return Err(ReviewError::NotACommand);
        }
        match self.state {
            ReviewState::Approved => {
                self.state = ReviewState::Executed;
                self.executed_us = Some(now_us);
                Ok(())
            }
            ReviewState::Executed => Err(ReviewError::AlreadyExecuted),
            other => Err(ReviewError::NotApproved(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Action;

    const T0: i64 = 1_700_000_000_000_000;
    const SEC: i64 = 1_000_000;

    fn person(name: &str, groups: &[&str]) -> Identity {
        Identity {
            name: name.to_string(),
            kind: IdentityKind::Human,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            agent: false,
        }
    }

    fn review(min_approvals: u32) -> Review {
        let decision = Decision {
            action: Action::Review,
            rule: Some("review-unbounded-writes".into()),
            message: None,
            reviewers: vec!["dba".into(), "leads".into()],
            timeout_secs: Some(600),
            min_approvals,
            matched: vec!["review-unbounded-writes".into()],
            fail_closed: false,
        };
        Review::command(
            "r-1",
            "alice",
            "pg-prod",
            "delete from users",
            &decision,
            T0,
            3600,
        )
    }

    #[test]
    fn command_review_takes_its_terms_from_the_decision() {
        let r = review(2);
        assert_eq!(r.kind, ReviewKind::Command);
        assert_eq!(r.state, ReviewState::Pending);
        assert_eq!(r.expires_us, T0 + 600 * SEC);
        assert_eq!(r.rule.as_deref(), Some("review-unbounded-writes"));
        assert_eq!(r.statement.as_deref(), Some("delete from users"));
        assert_eq!(r.approvals_needed(), 2);

        let mut d = Decision::allow();
        d.timeout_secs = None;
        let r = Review::command("r-2", "a", "c", "x", &d, T0, 30);
        assert_eq!(r.expires_us, T0 + 30 * SEC, "default timeout");
        assert_eq!(r.approvals_needed(), 1, "never zero");
        let r = Review::access("r-3", "a", "c", vec![], 1, i64::MAX - 5, u64::MAX);
        assert_eq!(r.expires_us, i64::MAX, "saturates");
    }

    #[test]
    fn one_approval_approves_by_default() {
        let mut r = review(1);
        r.approve(&person("bob", &["dba"]), T0 + SEC).unwrap();
        assert_eq!(r.state, ReviewState::Approved);
        assert_eq!(r.decided_us, Some(T0 + SEC));
        assert_eq!(
            r.approvals,
            vec![Vote {
                reviewer: "bob".into(),
                at_us: T0 + SEC
            }]
        );
    }

    #[test]
    fn min_approvals_needs_distinct_reviewers() {
        let mut r = review(2);
        let bob = person("bob", &["dba"]);
        r.approve(&bob, T0 + SEC).unwrap();
        assert_eq!(r.state, ReviewState::Pending);
        assert_eq!(
            r.approve(&bob, T0 + 2 * SEC),
            Err(ReviewError::AlreadyVoted("bob".into()))
        );
        assert_eq!(r.approvals.len(), 1);
        r.approve(&person("carol", &["leads"]), T0 + 3 * SEC)
            .unwrap();
        assert_eq!(r.state, ReviewState::Approved);
    }

    #[test]
    fn reviewer_must_be_in_a_reviewer_group() {
        let mut r = review(1);
        assert_eq!(
            r.approve(&person("mallory", &["engineers"]), T0),
            Err(ReviewError::NotReviewer("mallory".into()))
        );
        assert_eq!(
            r.deny(&person("mallory", &["engineers"]), T0),
            Err(ReviewError::NotReviewer("mallory".into()))
        );
        assert_eq!(r.state, ReviewState::Pending);
        assert!(r.approvals.is_empty() && r.denials.is_empty());

        let mut nobody = Review::access("r", "alice", "pg", vec![], 1, T0, 60);
        assert!(nobody.approve(&person("bob", &["dba"]), T0).is_err());
    }

    #[test]
    fn agents_cannot_vote_even_in_a_reviewer_group() {
        let mut r = review(1);
        let mut agent = person("claude-agent", &["dba"]);
        agent.kind = IdentityKind::Service;
        agent.agent = true;
        assert_eq!(
            r.approve(&agent, T0),
            Err(ReviewError::NotHuman("claude-agent".into()))
        );
        agent.kind = IdentityKind::Workload;
        assert!(r.deny(&agent, T0).is_err());
        assert_eq!(r.state, ReviewState::Pending);
    }

    #[test]
    fn no_self_approval_but_self_denial_withdraws() {
        let mut r = review(1);
        let alice = person("alice", &["dba"]);
        assert_eq!(
            r.approve(&alice, T0),
            Err(ReviewError::SelfApproval("alice".into()))
        );
        assert!(r.approvals.is_empty());
        r.deny(&alice, T0).unwrap();
        assert_eq!(r.state, ReviewState::Denied);
    }

    #[test]
    fn one_denial_decides_and_closes_voting() {
        let mut r = review(2);
        r.approve(&person("bob", &["dba"]), T0).unwrap();
        r.deny(&person("carol", &["leads"]), T0 + SEC).unwrap();
        assert_eq!(r.state, ReviewState::Denied);
        assert_eq!(r.decided_us, Some(T0 + SEC));
        assert_eq!(
            r.approve(&person("dave", &["dba"]), T0 + 2 * SEC),
            Err(ReviewError::NotPending(ReviewState::Denied))
        );
        assert_eq!(
            r.mark_executed(T0 + 3 * SEC),
            Err(ReviewError::NotApproved(ReviewState::Denied))
        );
    }

    #[test]
    fn double_vote_across_approve_and_deny() {
        let mut r = review(2);
        let bob = person("bob", &["dba"]);
        r.approve(&bob, T0).unwrap();
        assert_eq!(
            r.deny(&bob, T0 + 1),
            Err(ReviewError::AlreadyVoted("bob".into()))
        );
        assert_eq!(r.state, ReviewState::Pending);
    }

    #[test]
    fn no_votes_after_a_decision() {
        let mut r = review(1);
        r.approve(&person("bob", &["dba"]), T0).unwrap();
        assert_eq!(
            r.deny(&person("carol", &["dba"]), T0 + 1),
            Err(ReviewError::NotPending(ReviewState::Approved))
        );
        assert_eq!(r.state, ReviewState::Approved);
    }

    #[test]
    fn expiry() {
        let mut r = review(1);
        assert!(!r.expire_if_due(r.expires_us - 1));
        assert_eq!(r.state, ReviewState::Pending);
        assert!(r.expire_if_due(r.expires_us));
        assert_eq!(r.state, ReviewState::Expired);
        assert!(!r.expire_if_due(r.expires_us + 1), "only once");

        // A vote at the deadline is refused and the review is expired, not left pending.
        let mut r = review(1);
        let at = r.expires_us;
        assert_eq!(
            r.approve(&person("bob", &["dba"]), at),
            Err(ReviewError::Expired)
        );
        assert_eq!(r.state, ReviewState::Expired);
        assert!(r.approvals.is_empty());
        assert_eq!(
            r.approve(&person("bob", &["dba"]), at + 1),
            Err(ReviewError::NotPending(ReviewState::Expired))
        );
        assert_eq!(
            r.mark_executed(at + 2),
            Err(ReviewError::NotApproved(ReviewState::Expired))
        );

        // A decided review does not expire.
        let mut r = review(1);
        r.approve(&person("bob", &["dba"]), T0).unwrap();
        assert!(!r.expire_if_due(r.expires_us + SEC));
        assert_eq!(r.state, ReviewState::Approved);
    }

    #[test]
    fn executes_exactly_once_and_only_when_approved() {
        let mut r = review(1);
        assert_eq!(
            r.mark_executed(T0),
            Err(ReviewError::NotApproved(ReviewState::Pending))
        );
        r.approve(&person("bob", &["dba"]), T0).unwrap();
        r.mark_executed(T0 + SEC).unwrap();
        assert_eq!(r.state, ReviewState::Executed);
        assert_eq!(r.executed_us, Some(T0 + SEC));
        assert_eq!(
            r.mark_executed(T0 + 2 * SEC),
            Err(ReviewError::AlreadyExecuted)
        );
        assert_eq!(r.executed_us, Some(T0 + SEC));
    }

    #[test]
    fn access_reviews_are_not_executed() {
        let mut r = Review::access("a-1", "alice", "pg-prod", vec!["dba".into()], 1, T0, 60);
        assert_eq!(r.kind, ReviewKind::Access);
        assert_eq!(r.statement, None);
        r.approve(&person("bob", &["dba"]), T0).unwrap();
        assert_eq!(r.state, ReviewState::Approved);
        assert_eq!(r.mark_executed(T0), Err(ReviewError::NotACommand));
        assert_eq!(r.state, ReviewState::Approved);
    }

    #[test]
    fn state_and_kind_names() {
        assert_eq!(ReviewState::Executed.to_string(), "executed");
        assert_eq!(ReviewKind::Access.as_str(), "access");
    }
}
