//! One admission pipeline for every adapter: judge (classify, decide) → the adapter's own
//! guards → hold for review → the final decision. An adapter hands a command's text to
//! [`SessionGate::admit`] once and gets back a [`Judged`] that is either `Allow` (forward it,
//! after [`SessionGate::record`]) or `Deny` (answer with the adapter's native error): a review
//! the rules asked for has been waited for, and an approval has been spent, inside the gate.

use crate::{Judged, ReviewOutcome, SessionGate};
use airlock_core::review::Review;
use airlock_core::Action;

/// Statements above this size are classified with `block_in_place` (see [`heavy`]).
const HEAVY_JUDGE_BYTES: usize = 32 * 1024;

/// The gate's final word on one command.
#[derive(Debug, Clone)]
pub struct Admission {
    /// `decision.action` is `Allow` or `Deny`, never `Review`.
    pub judged: Judged,
    /// A review decided it (approved, denied, expired or still pending when the hold ended).
    pub reviewed: bool,
}

impl SessionGate {
    /// Judges `text`, applies the adapter's `guard` (protocol refusals on top of the rules: it
    /// may only [`Judged::force_deny`]), and holds a command a rule sends to review until a
    /// reviewer decides or the hold time ends. `before_hold` runs first when the command will
    /// be held (an adapter that pipelines forwards what came before it); `on_hold` tells the
    /// client it waits (a PostgreSQL notice; MySQL has none). The guard runs before the review,
    /// so a reviewer is never asked to approve what would be refused anyway.
    pub async fn admit<E>(
        &self,
        text: &str,
        guard: impl FnOnce(&mut Judged),
        before_hold: impl AsyncFnOnce() -> Result<(), E>,
        on_hold: impl AsyncFnOnce(&Review, u64),
    ) -> Result<Admission, E> {
        let mut judged = self.judge_guarded(text, guard);
        let reviewed = judged.decision.action == Action::Review;
        if reviewed {
            before_hold().await?;
            match self.hold_for_review(text, &judged, on_hold).await {
                ReviewOutcome::Run(review) => judged.approved_by(&review),
                ReviewOutcome::Refuse { message, .. } => judged.refused(&message),
            }
        }
        Ok(Admission { judged, reviewed })
    }

    /// [`admit`](Self::admit) where nothing can wait for a reviewer (a PostgreSQL startup
    /// packet): a command a rule sends to review is refused with `no_wait` as the reason.
    pub fn admit_now(&self, text: &str, guard: impl FnOnce(&mut Judged), no_wait: &str) -> Judged {
        let mut judged = self.judge_guarded(text, guard);
        if judged.decision.action == Action::Review {
            judged.refused(no_wait);
        }
        judged
    }

    fn judge_guarded(&self, text: &str, guard: impl FnOnce(&mut Judged)) -> Judged {
        let mut judged = if text.len() > HEAVY_JUDGE_BYTES {
            heavy(|| self.judge(text))
        } else {
            self.judge(text)
        };
        guard(&mut judged);
        judged
    }
}

/// Runs CPU-heavy work (classifying or masking something large) without holding up the other
/// sessions that share this runtime worker: on the multi-threaded runtime the worker's other
/// tasks move to another thread while it runs.
pub fn heavy<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}
