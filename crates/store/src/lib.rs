//! airlock's durable state: the append-only, hash-chained audit log and its SQLite index.
//!
//! The log file is the source of truth ("No execution without a record", SPEC.md): the gateway
//! appends a command's event with [`AuditLog::append`] and forwards the command only after it
//! returned `Ok`. The SQLite [`Index`] is derived from the log, may lag behind it, and can be
//! rebuilt from it at any time. The log is a sequence of segments ([`segments`]): the active
//! file and closed, optionally compressed ones; every reader goes through
//! [`segments::Reader`].

mod chain;
mod checkpoint;
mod error;
mod event;
mod index;
mod log;
mod private;
pub mod segments;

pub use chain::{verify_log, VerifyReport, GENESIS_PREV};
pub use checkpoint::{
    checkpoints_path, spawn_checkpointer, verify_range, verify_with_checkpoints, Checkpoint,
    CheckpointKey, CheckpointOptions, CheckpointReport, CheckpointerHandle,
};
pub use error::StoreError;
pub use event::{
    AuditEvent, AuditEventRef, CommandRecord, CommandRecordRef, EventKind, MaskedCounts,
};
pub use index::{
    spawn_indexer, CommandFilter, CommandHit, CommandRow, Index, IndexerHandle, SessionDetail,
    SessionFilter, SessionRow,
};
pub use log::{AuditLog, AuditOptions, AuditStats, Recovery, RetentionReport, SegmentOptions};
