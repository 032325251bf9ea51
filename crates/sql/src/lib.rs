//! Classification of SQL commands with real parsers.
//!
//! PostgreSQL text is parsed by libpg_query (the PostgreSQL grammar itself, via the `pg_query`
//! crate) and turned into an [`airlock_core::Classification`]: per statement the operation,
//! relations read and written, functions called, whether UPDATE/DELETE are bounded by WHERE, and
//! the fail-closed flags `writes_data` / `dynamic_sql`. Text the grammar rejects is `unparsed`.
//!
//! What the classifier cannot see, by design: the bodies of functions, views, rules and
//! triggers that a statement reaches, and user-defined operators and casts. A `SELECT` from a view
//! whose definition calls a writing function is classified by its text alone.
//!
//! Use [`PgClassifier`] on hot paths (it caches by literal-normalized text) and [`classify_pg`]
//! where a one-off classification is enough.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod cache;
mod classify;
pub mod functions;
mod walk;

pub use cache::PgClassifier;
pub use classify::classify_pg;
