use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A complete line of the log that cannot be understood; the log was edited or damaged
    /// by something other than a crash (a crash only ever leaves a partial *last* line).
    #[error("audit log {path} is corrupt at byte {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    /// The hash chain does not continue where expected.
    #[error("audit chain broken at seq {seq}: {reason}")]
    Chain { seq: u64, reason: String },
    /// An earlier write or fsync failed in a way that could not be rolled back, so appending
    /// more events could break the chain or claim durability that does not exist. Reopening
    /// the log recovers (a partial last line is truncated on open).
    #[error("audit log is poisoned after an earlier failure ({0}); reopen it")]
    Poisoned(String),
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

impl StoreError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }
}
