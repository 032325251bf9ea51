//! Just-in-time reviews: the book of open and decided reviews, access grants, and the waiting
//! sessions. The state machine itself is pure (`airlock_core::review`); this module keeps the
//! reviews, persists them (so pending reviews survive a restart and still expire on time),
//! wakes held sessions when a decision lands, and audits and announces every step.

use airlock_core::review::{Review, ReviewError, ReviewKind, ReviewState};
use airlock_core::Identity;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A time-bound grant of a connection, from an approved access review.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Grant {
    pub review_id: String,
    pub identity: String,
    pub connection: String,
    pub until_us: i64,
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Persisted {
    reviews: BTreeMap<String, Review>,
    grants: Vec<Grant>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReviewBookError {
    #[error("review `{0}` not found; list them with `airlock reviews list`")]
    NotFound(String),
    #[error("review `{id}`: {source}")]
    Transition { id: String, source: ReviewError },
    #[error("saving reviews to {path}: {source}")]
    Save {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub struct ReviewBook {
    path: PathBuf,
    state: Mutex<Persisted>,
    /// Bumped on every change; held sessions wait on it.
    version: tokio::sync::watch::Sender<u64>,
}

/// What happened to a review, for the audit trail and notifications.
#[derive(Debug, Clone)]
pub struct Step {
    pub event: &'static str,
    pub review: Review,
    pub actor: Option<String>,
}

impl ReviewBook {
    /// Loads `data_dir/reviews.json` if present. A damaged file is an error: silently dropping
    /// pending reviews would lose decisions.
    pub fn open(data_dir: &Path) -> Result<ReviewBook, String> {
        let path = data_dir.join("reviews.json");
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("{} is damaged: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Persisted::default(),
            Err(e) => return Err(format!("reading {}: {e}", path.display())),
        };
        Ok(ReviewBook {
            path,
            state: Mutex::new(state),
            version: tokio::sync::watch::Sender::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Persisted> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the whole book atomically (temp file + rename) and wakes waiters.
    fn save(&self, state: &Persisted) -> Result<(), ReviewBookError> {
        let tmp = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(state).unwrap_or_default();
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, &self.path))
            .map_err(|source| ReviewBookError::Save {
                path: self.path.clone(),
                source,
            })?;
        self.version.send_modify(|v| *v += 1);
        Ok(())
    }

    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.version.subscribe()
    }

    pub fn get(&self, id: &str) -> Option<Review> {
        self.lock().reviews.get(id).cloned()
    }

    pub fn list(&self, state: Option<ReviewState>) -> Vec<Review> {
        let mut out: Vec<Review> = self
            .lock()
            .reviews
            .values()
            .filter(|r| state.is_none_or(|s| r.state == s))
            .cloned()
            .collect();
        out.sort_by_key(|r| std::cmp::Reverse(r.created_us));
        out
    }

    pub fn insert(&self, review: Review) -> Result<(), ReviewBookError> {
        let mut st = self.lock();
        st.reviews.insert(review.id.clone(), review);
        self.save(&st)
    }

    /// An approved, not yet executed command review for exactly this statement, identity and
    /// connection; it is marked executed (so it runs exactly once) and returned.
    pub fn take_approved(
        &self,
        requester: &str,
        connection: &str,
        statement: &str,
        now_us: i64,
    ) -> Result<Option<Review>, ReviewBookError> {
        let mut st = self.lock();
        let found = st.reviews.values_mut().find(|r| {
            r.kind == ReviewKind::Command
                && r.state == ReviewState::Approved
                && r.requester == requester
                && r.connection == connection
                && r.statement.as_deref() == Some(statement)
        });
        let Some(review) = found else {
            return Ok(None);
        };
        review
            .mark_executed(now_us)
            .map_err(|source| ReviewBookError::Transition {
                id: review.id.clone(),
                source,
            })?;
        let review = review.clone();
        self.save(&st)?;
        Ok(Some(review))
    }

    /// The one-shot execution of an approved review a held session is about to run.
    pub fn mark_executed(&self, id: &str, now_us: i64) -> Result<Review, ReviewBookError> {
        self.transition(id, |r| r.mark_executed(now_us))
    }

    pub fn approve(
        &self,
        id: &str,
        who: &Identity,
        now_us: i64,
    ) -> Result<Review, ReviewBookError> {
        let review = self.transition(id, |r| r.approve(who, now_us))?;
        if review.kind == ReviewKind::Access && review.state == ReviewState::Approved {
            let secs = review.grant_secs.unwrap_or(3600);
            let mut st = self.lock();
            st.grants.push(Grant {
                review_id: review.id.clone(),
                identity: review.requester.clone(),
                connection: review.connection.clone(),
                until_us: now_us.saturating_add(
                    i64::try_from(secs)
                        .unwrap_or(i64::MAX)
                        .saturating_mul(1_000_000),
                ),
            });
            self.save(&st)?;
        }
        Ok(review)
    }

    pub fn deny(&self, id: &str, who: &Identity, now_us: i64) -> Result<Review, ReviewBookError> {
        self.transition(id, |r| r.deny(who, now_us))
    }

    fn transition(
        &self,
        id: &str,
        f: impl FnOnce(&mut Review) -> Result<(), ReviewError>,
    ) -> Result<Review, ReviewBookError> {
        let mut st = self.lock();
        let review = st
            .reviews
            .get_mut(id)
            .ok_or_else(|| ReviewBookError::NotFound(id.to_owned()))?;
        let result = f(review);
        let snapshot = review.clone();
        // A refused vote may still have changed the state (e.g. a late vote expires the review).
        self.save(&st)?;
        result.map_err(|source| ReviewBookError::Transition {
            id: id.to_owned(),
            source,
        })?;
        Ok(snapshot)
    }

    /// Expires every pending review whose deadline passed; returns them.
    pub fn expire_due(&self, now_us: i64) -> Vec<Review> {
        let mut st = self.lock();
        let expired: Vec<Review> = st
            .reviews
            .values_mut()
            .filter_map(|r| r.expire_if_due(now_us).then(|| r.clone()))
            .collect();
        let before = st.grants.len();
        st.grants.retain(|g| g.until_us > now_us);
        if !expired.is_empty() || st.grants.len() != before {
            if let Err(e) = self.save(&st) {
                tracing::error!(error = %e, "could not save expired reviews");
            }
        }
        expired
    }

    /// The latest-ending active grant of `connection` to `identity`.
    pub fn grant(&self, identity: &str, connection: &str, now_us: i64) -> Option<Grant> {
        self.lock()
            .grants
            .iter()
            .filter(|g| g.identity == identity && g.connection == connection && g.until_us > now_us)
            .max_by_key(|g| g.until_us)
            .cloned()
    }
}
