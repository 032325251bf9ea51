//! Classification of SQL commands with real parsers.
//!
//! PostgreSQL text is parsed by libpg_query (the PostgreSQL grammar itself, via the `pg_query`
//! crate) and turned into an [`airlock_core::Classification`]: per statement the operation,
//! relations read and written, functions called, whether UPDATE/DELETE are bounded by WHERE, and
//! the fail-closed flags `writes_data` / `dynamic_sql`. Text the grammar rejects is `unparsed`.
//!
//! Decisions worth knowing (details at the code that makes them):
//! - `writes_data` fails closed: any function not on [`functions::READ_ONLY_FUNCTIONS`], DO,
//!   CALL, EXECUTE, LOCK/VACUUM/ANALYZE/CLUSTER/REINDEX/REFRESH/COMMENT/SECURITY LABEL/ALTER
//!   SYSTEM/CHECKPOINT/LOAD, NOTIFY (other sessions act on it), `SET ROLE` / `SET SESSION
//!   AUTHORIZATION` / `RESET ROLE` / `RESET ALL`, `COPY ... FROM` and `COPY ... TO` a server file
//!   or program (only `COPY ... TO STDOUT` reads), and every statement type not known to be
//!   harmless. LISTEN/UNLISTEN, DISCARD, DEALLOCATE, FETCH/MOVE/CLOSE, SAVEPOINT/RELEASE and
//!   `SET CONSTRAINTS` are `other` and not writes.
//! - Plain `EXPLAIN <stmt>` does not run the statement: operation `select`, its targets are
//!   reported as reads, only its function calls can make it a write. Any `ANALYZE` option (even
//!   `ANALYZE off`) makes it the inner statement's classification.
//! - `PREPARE p AS <stmt>` is classified as `<stmt>` plus `dynamic_sql`; `EXECUTE p` is an
//!   `other` write with `dynamic_sql` (the text is not visible here).
//! - A SELECT with a data-modifying CTE takes that modification's operation; `SELECT ... INTO`
//!   is `create`. `has_where` is false if any UPDATE/DELETE in the statement lacks a WHERE;
//!   predicates are not evaluated (`WHERE true` counts); MERGE always has its ON condition.
//!
//! - Row locks (`SELECT ... FOR UPDATE/SHARE`, anywhere in the tree) and `LOCK` are operation
//!   `lock` and write; `PREPARE TRANSACTION` / `COMMIT PREPARED` / `ROLLBACK PREPARED` write.
//! - Code that runs without a visible call: casts to types that are not built-in and operators
//!   that are not built-in count as unknown function calls; a `SET search_path` that puts
//!   another schema before `pg_catalog` is dynamic SQL ([`functions`] explains the rules and
//!   their limits).
//! - Cost is bounded: text over [`MAX_CLASSIFIED_BYTES`] or [`MAX_CLASSIFIED_TOKENS`] and trees
//!   over a node budget are
//!   unparsed, and the tree is walked in place (`walk.rs`).
//!
//! What the classifier cannot see, by design: the bodies of functions, views, rules and
//! triggers that a statement reaches, column defaults, overloads of built-in names in other
//! schemas for argument types `pg_catalog` does not cover, and the support functions of
//! columns of user-defined types. A `SELECT` from a view whose definition calls a writing
//! function is classified by its text alone. docs/guardrails.md states what this means for
//! deployments (use a read-only upstream role).
//!
//! [`pg_leaves_read_only`] and [`search_path_trusts_builtins`] support the gateway's read-only
//! sessions and its check of the `search_path` a session starts with.
//!
//! Use [`PgClassifier`] on hot paths (it caches by literal-normalized text) and [`classify_pg`]
//! where a one-off classification is enough.

mod cache;
mod classify;
pub mod functions;
pub mod lineage;
pub mod mysql;
mod readonly;
pub mod session_settings;
mod walk;

pub use cache::PgClassifier;
pub use classify::{check_parse_bounds, classify_pg, MAX_CLASSIFIED_BYTES, MAX_CLASSIFIED_TOKENS};
pub use functions::search_path_trusts_builtins;
pub use readonly::pg_leaves_read_only;

/// The cursor names `text` declares with SQL `DECLARE name CURSOR …`. A SQL cursor is a
/// portal the extended protocol can `Execute` by name, so the gateway must not take such a name
/// for a portal it saw bound. `None`: the text does not parse (the caller fails closed).
pub fn pg_declared_cursors(text: &str) -> Option<Vec<String>> {
    let result = classify::parse(text).ok()?;
    Some(
        result
            .protobuf
            .stmts
            .iter()
            .filter_map(|raw| match raw.stmt.as_ref()?.node.as_ref()? {
                pg_query::NodeEnum::DeclareCursorStmt(d) => Some(d.portalname.clone()),
                _ => None,
            })
            .collect(),
    )
}
