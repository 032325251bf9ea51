//! Owner-only files. The audit log, its index and the checkpoint side file hold statement
//! text, identities and peer addresses: nobody else on the machine needs to read them, so they
//! are created 0600, and a file an older version created with a looser mode is tightened when
//! it is opened.

use std::fs::{File, OpenOptions, Permissions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The mode of every file the store creates.
pub(crate) const FILE_MODE: u32 = 0o600;

/// `opts` with files created as [`FILE_MODE`].
pub(crate) fn private(opts: &mut OpenOptions) -> &mut OpenOptions {
    opts.mode(FILE_MODE)
}

/// Removes group and other permissions from an existing regular file (devices and pipes, such
/// as `/dev/full` in tests, are left alone). Failing to (a file owned by someone else) is
/// logged, not fatal: the file still works, the operator is told.
pub(crate) fn tighten(file: &File, path: &Path) {
    let Ok(meta) = file.metadata() else { return };
    let mode = meta.permissions().mode();
    if !meta.is_file() || mode & 0o077 == 0 {
        return;
    }
    match file.set_permissions(Permissions::from_mode(mode & !0o077)) {
        Ok(()) => {
            tracing::info!(path = %path.display(), old_mode = format!("{:o}", mode & 0o777), "made the file private (0600)")
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "the file is readable by other users and could not be made private; chmod 600 it")
        }
    }
}

/// [`tighten`] by path, when the file exists.
pub(crate) fn tighten_path(path: &Path) {
    if let Ok(f) = File::open(path) {
        tighten(&f, path);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use crate::{AuditEvent, AuditLog, AuditOptions, EventKind, Index};
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_log_and_the_index_are_created_private_and_old_ones_are_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("audit.log");
        let log = AuditLog::open(&log_path, AuditOptions::default()).unwrap();
        log.append(&[AuditEvent::new(EventKind::GatewayStart)])
            .unwrap();
        assert_eq!(mode(&log_path), 0o600);
        let db = dir.path().join("state.db");
        let index = Index::open(&db, &log_path).unwrap();
        index.catch_up().unwrap();
        assert_eq!(mode(&db), 0o600);
        let wal = dir.path().join("state.db-wal");
        if wal.exists() {
            assert_eq!(mode(&wal), 0o600);
        }
        drop(index);
        drop(log);

        // Files an older version created 0644 are made private when opened.
        for p in [&log_path, &db] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let _log = AuditLog::open(&log_path, AuditOptions::default()).unwrap();
        let _index = Index::open(&db, &log_path).unwrap();
        assert_eq!(mode(&log_path), 0o600);
        assert_eq!(mode(&db), 0o600);
    }
}
