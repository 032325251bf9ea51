//! Signed checkpoints of the audit chain.
//!
//! The hash chain alone proves that the log was not edited *unless whoever edited it also
//! recomputed every later hash*, and it cannot show that the newest events were cut off. A
//! checkpoint is an Ed25519 signature, with a key only the gateway holds, over
//! `(seq, hash)` of the event at the head of the log. Anyone with the public key can then
//! prove that the log still contains exactly that history up to `seq`.
//!
//! # Where checkpoints live
//!
//! - **Side file** `<log>.checkpoints` (JSON lines, appended, fsynced): what
//!   [`verify_with_checkpoints`] checks. Kept outside the log so that cutting the log's tail
//!   is visible (a checkpoint names a seq the log no longer has).
//! - **Chained event**: each checkpoint is also appended to the log as an `other` event with
//!   `detail.checkpoint`, so exporters ship the signatures off the machine with the events
//!   (an attacker who rewrites both local files still disagrees with the SIEM's copy).
//!
//! The log is fdatasynced before a checkpoint is written, so a power loss cannot leave a
//! checkpoint for events that are not on disk.
//!
//! Keys: `data_dir/audit.key` (the secret key, hex, created once with mode 0600) and
//! `data_dir/audit.pub` (the public key, hex). Keep a copy of `audit.pub` elsewhere and pass
//! it to `airlock audit verify --public-key`: someone who can replace both files in data_dir
//! could otherwise re-sign a rewritten log.

use crate::chain::{walk, Span};
use crate::{AuditEvent, AuditLog, EventKind, StoreError, VerifyReport};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const KEY_FILE: &str = "audit.key";
const PUB_FILE: &str = "audit.pub";
const DOMAIN: &[u8] = b"airlock audit checkpoint v1\n";

/// `<log>.checkpoints` next to the log.
pub fn checkpoints_path(log_path: &Path) -> PathBuf {
    let mut p = log_path.as_os_str().to_owned();
    p.push(".checkpoints");
    PathBuf::from(p)
}

fn message(seq: u64, hash: &str) -> Vec<u8> {
    let mut m = DOMAIN.to_vec();
    m.extend_from_slice(format!("{seq}\n{hash}").as_bytes());
    m
}

/// The gateway's checkpoint signing key.
pub struct CheckpointKey {
    signing: SigningKey,
}

impl std::fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointKey")
            .field("public", &self.public_hex())
            .finish_non_exhaustive()
    }
}

fn corrupt(path: &Path, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        path: path.to_path_buf(),
        offset: 0,
        reason: reason.into(),
    }
}

fn parse_key32(path: &Path, text: &str) -> Result<[u8; 32], StoreError> {
    let bytes = hex::decode(text.trim()).map_err(|e| corrupt(path, format!("not hex: {e}")))?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| corrupt(path, "expected 32 bytes of hex"))
}

impl CheckpointKey {
    /// Loads `dir/audit.key`, or creates it (0600) with a fresh random key and writes
    /// `dir/audit.pub`.
    pub fn load_or_create(dir: &Path) -> Result<CheckpointKey, StoreError> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let path = dir.join(KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                if let Ok(meta) = std::fs::metadata(&path) {
                    if meta.permissions().mode() & 0o077 != 0 {
                        tracing::warn!(path = %path.display(), "the audit signing key is readable by other users; chmod 600 it");
                    }
                }
                let key = CheckpointKey {
                    signing: SigningKey::from_bytes(&parse_key32(&path, &text)?),
                };
                let pub_path = dir.join(PUB_FILE);
                if !pub_path.exists() {
                    std::fs::write(&pub_path, format!("{}\n", key.public_hex()))
                        .map_err(|e| StoreError::io(&pub_path, e))?;
                }
                Ok(key)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut secret = [0u8; 32];
                rand::RngCore::fill_bytes(&mut rand::rng(), &mut secret);
                let key = CheckpointKey {
                    signing: SigningKey::from_bytes(&secret),
                };
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(|e| StoreError::io(&path, e))?;
                f.write_all(format!("{}\n", hex::encode(secret)).as_bytes())
                    .and_then(|()| f.sync_all())
                    .map_err(|e| StoreError::io(&path, e))?;
                let pub_path = dir.join(PUB_FILE);
                std::fs::write(&pub_path, format!("{}\n", key.public_hex()))
                    .map_err(|e| StoreError::io(&pub_path, e))?;
                Ok(key)
            }
            Err(e) => Err(StoreError::io(&path, e)),
        }
    }

    pub fn public_hex(&self) -> String {
        hex::encode(self.signing.verifying_key().as_bytes())
    }

    /// The public key to verify with: `dir/audit.pub`, else derived from `dir/audit.key`.
    pub fn load_public(dir: &Path) -> Result<Option<String>, StoreError> {
        let pub_path = dir.join(PUB_FILE);
        if let Ok(text) = std::fs::read_to_string(&pub_path) {
            return Ok(Some(hex::encode(parse_key32(&pub_path, &text)?)));
        }
        let path = dir.join(KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let key = SigningKey::from_bytes(&parse_key32(&path, &text)?);
                Ok(Some(hex::encode(key.verifying_key().as_bytes())))
            }
            Err(_) => Ok(None),
        }
    }

    /// Signs `(seq, hash)`.
    pub fn sign(&self, seq: u64, hash: &str, ts_us: i64) -> Checkpoint {
        let sig = self.signing.sign(&message(seq, hash));
        Checkpoint {
            seq,
            hash: hash.to_owned(),
            ts_us,
            key: self.public_hex(),
            sig: hex::encode(sig.to_bytes()),
        }
    }
}

/// One signed checkpoint: the event `seq` of the log has chain hash `hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: u64,
    pub hash: String,
    pub ts_us: i64,
    /// Public key (hex) that made `sig`.
    pub key: String,
    /// Ed25519 signature (hex) over `"airlock audit checkpoint v1\n<seq>\n<hash>"`.
    pub sig: String,
}

impl Checkpoint {
    /// Checks the signature against `public` (hex), or the key it names when none is pinned.
    pub fn verify(&self, public: Option<&str>) -> Result<(), String> {
        let key_hex = public.unwrap_or(&self.key);
        if public.is_some_and(|p| p != self.key) {
            return Err(format!(
                "signed by key {} but the trusted key is {key_hex}",
                self.key
            ));
        }
        let key_bytes: [u8; 32] = hex::decode(key_hex)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
            .ok_or("the public key is not 32 bytes of hex")?;
        let key = VerifyingKey::from_bytes(&key_bytes).map_err(|e| e.to_string())?;
        let sig_bytes: [u8; 64] = hex::decode(&self.sig)
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b.as_slice()).ok())
            .ok_or("the signature is not 64 bytes of hex")?;
        key.verify(
            &message(self.seq, &self.hash),
            &Signature::from_bytes(&sig_bytes),
        )
        .map_err(|_| "invalid signature".to_string())
    }
}

/// When to checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointOptions {
    /// After this many new events...
    pub every_events: u64,
    /// ...or this long after the last checkpoint, if anything was appended.
    pub every: Duration,
}

impl Default for CheckpointOptions {
    fn default() -> Self {
        CheckpointOptions {
            every_events: 10_000,
            every: Duration::from_secs(60),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Writes a checkpoint of the log's current head (side file, then chained event) unless
/// nothing was appended since `after_seq`. Returns the checkpoint and the seq of its chained
/// event.
fn checkpoint_now(
    log: &AuditLog,
    key: &CheckpointKey,
    after_seq: u64,
) -> Result<Option<(Checkpoint, u64)>, StoreError> {
    log.flush()?;
    let (seq, hash) = log.head();
    if seq == 0 || seq <= after_seq {
        return Ok(None);
    }
    // Never sign what a power loss could still take away: the active segment, then any
    // segment closed since (in that order: a rotation after the head was read leaves the head
    // in a file that is either the one opened here or in the closed list).
    std::fs::File::open(log.path())
        .and_then(|f| f.sync_data())
        .map_err(|e| StoreError::io(log.path(), e))?;
    log.sync_closed()?;
    let cp = key.sign(seq, &hash, AuditEvent::now_us());
    let path = checkpoints_path(log.path());
    let mut line = serde_json::to_vec(&cp)?;
    line.push(b'\n');
    let mut f = crate::private::private(OpenOptions::new().create(true).append(true))
        .open(&path)
        .map_err(|e| StoreError::io(&path, e))?;
    f.write_all(&line)
        .and_then(|()| f.sync_data())
        .map_err(|e| StoreError::io(&path, e))?;
    let mut ev = AuditEvent::new(EventKind::Other);
    ev.detail = Some(serde_json::json!({ "checkpoint": cp }));
    let own = log.append(&[ev])?;
    Ok(Some((cp, own)))
}

/// Runs checkpoints on a background thread; a last one is written on shutdown.
pub struct CheckpointerHandle {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl CheckpointerHandle {
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        *lock(&self.stop.0) = true;
        self.stop.1.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for CheckpointerHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Starts the checkpointer for `log`. It never blocks appenders beyond one ordinary append
/// (its chained event) per checkpoint.
pub fn spawn_checkpointer(
    log: AuditLog,
    key: CheckpointKey,
    opts: CheckpointOptions,
) -> Result<CheckpointerHandle, StoreError> {
    let stop = Arc::new((Mutex::new(false), Condvar::new()));
    let thread_stop = Arc::clone(&stop);
    // Resume after the last checkpoint on disk, so a restart does not sign the same head.
    let mut covered = last_checkpoint(&checkpoints_path(log.path()))
        .map(|cp| cp.seq)
        .unwrap_or(0);
    let path = log.path().to_path_buf();
    let thread = std::thread::Builder::new()
        .name("audit-checkpoint".into())
        .spawn(move || {
            let mut last_at = Instant::now();
            let tick = opts.every.min(Duration::from_millis(200));
            loop {
                let stopped = {
                    let guard = lock(&thread_stop.0);
                    let (guard, _) = thread_stop
                        .1
                        .wait_timeout_while(guard, tick, |s| !*s)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    *guard
                };
                let head = log.last_seq();
                let due = head > covered
                    && (head - covered >= opts.every_events
                        || last_at.elapsed() >= opts.every
                        || stopped);
                if due {
                    match checkpoint_now(&log, &key, covered) {
                        // Its own chained event does not call for another checkpoint.
                        Ok(Some((_, own))) => covered = own,
                        Ok(None) => {}
                        Err(e) => {
                            tracing::error!(log = %log.path().display(), error = %e, "cannot write an audit checkpoint; will retry");
                        }
                    }
                    last_at = Instant::now();
                }
                if stopped {
                    return;
                }
            }
        })
        .map_err(|e| StoreError::io(&path, e))?;
    Ok(CheckpointerHandle {
        stop,
        thread: Some(thread),
    })
}

fn last_checkpoint(path: &Path) -> Option<Checkpoint> {
    let file = std::fs::File::open(path).ok()?;
    BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str::<Checkpoint>(&l).ok())
        .last()
}

/// The chain walk plus every signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointReport {
    pub chain: VerifyReport,
    /// Checkpoints whose signature and hash matched.
    pub checkpoints_ok: u64,
    pub last_checkpoint: Option<Checkpoint>,
    /// Events after the last good checkpoint (not yet covered by a signature).
    pub uncovered: u64,
    /// The public key checked against (pinned or from data_dir); `None`: no key found, each
    /// checkpoint was checked against the key it names.
    pub key: Option<String>,
    /// The earliest seq where something is wrong (a broken link, an event that differs from a
    /// signed checkpoint, a bad signature, a log shorter than a checkpoint), and why.
    pub first_problem: Option<(u64, String)>,
}

impl CheckpointReport {
    pub fn is_ok(&self) -> bool {
        self.first_problem.is_none()
    }
}

/// Walks the log's chain and checks every checkpoint in `checkpoints` (a missing file is no
/// checkpoints) against it, with the public key `public` (hex).
pub fn verify_with_checkpoints(
    log_path: &Path,
    checkpoints: &Path,
    public: Option<&str>,
) -> Result<CheckpointReport, StoreError> {
    verify_span(log_path, checkpoints, public, Span::default())
}

/// Verifies the events `from..=to` (`to`: `None` for the head) without reading the trail
/// before them: the walk starts at `from` (in a compressed segment, at the frame holding it)
/// taking that event's `prev` on trust, and goes on past `to` up to the first signed
/// checkpoint at or after `to`, if there is one. A checkpoint's hash commits to every event
/// before it, `from`'s `prev` included, so a match proves the range is exactly what was
/// signed; `last_checkpoint` is then that checkpoint and `uncovered` 0. Without one (events
/// newer than the last checkpoint), the range is only shown to chain.
pub fn verify_range(
    log_path: &Path,
    checkpoints: &Path,
    public: Option<&str>,
    from: u64,
    to: Option<u64>,
) -> Result<CheckpointReport, StoreError> {
    let stop = match to {
        Some(to) => {
            let cps = read_checkpoints(checkpoints, public)?.1;
            Some(cps.range(to..).next().map_or(to, |(s, _)| *s))
        }
        None => None,
    };
    let mut report = verify_span(
        log_path,
        checkpoints,
        public,
        Span {
            from: Some(from.max(1)),
            to: stop,
        },
    )?;
    if let (Some(to), Some(cp)) = (to, &report.last_checkpoint) {
        if cp.seq >= to {
            report.uncovered = 0;
        }
    }
    Ok(report)
}

type Checkpoints = (Vec<(u64, String)>, BTreeMap<u64, Checkpoint>);

/// The checkpoints of the side file whose signature checks, and the problems found in it.
fn read_checkpoints(checkpoints: &Path, public: Option<&str>) -> Result<Checkpoints, StoreError> {
    let mut problems: Vec<(u64, String)> = Vec::new();
    let mut by_seq: BTreeMap<u64, Checkpoint> = BTreeMap::new();
    match std::fs::File::open(checkpoints) {
        Ok(f) => {
            let mut last_seq = 0;
            for (i, line) in BufReader::new(f).lines().enumerate() {
                let line = line.map_err(|e| StoreError::io(checkpoints, e))?;
                match serde_json::from_str::<Checkpoint>(&line) {
                    Ok(cp) => {
                        if let Err(why) = cp.verify(public) {
                            problems.push((cp.seq, format!("checkpoint at seq {}: {why}", cp.seq)));
                            continue;
                        }
                        if cp.seq <= last_seq {
                            problems.push((cp.seq, format!("checkpoint at seq {} after one at seq {last_seq}: checkpoint file reordered", cp.seq)));
                        }
                        last_seq = cp.seq;
                        by_seq.insert(cp.seq, cp);
                    }
                    Err(e) => problems.push((
                        last_seq + 1,
                        format!(
                            "{} line {} is not a checkpoint: {e}",
                            checkpoints.display(),
                            i + 1
                        ),
                    )),
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(StoreError::io(checkpoints, e)),
    }
    Ok((problems, by_seq))
}

fn verify_span(
    log_path: &Path,
    checkpoints: &Path,
    public: Option<&str>,
    span: Span,
) -> Result<CheckpointReport, StoreError> {
    let (mut problems, by_seq) = read_checkpoints(checkpoints, public)?;
    let mut matched: Vec<u64> = Vec::new();
    let chain = walk(log_path, span, &mut |seq, hash| {
        if let Some(cp) = by_seq.get(&seq) {
            if cp.hash == hash {
                matched.push(seq);
            } else {
                problems.push((
                    seq,
                    format!(
                        "event {seq} has hash {hash} but the signed checkpoint says {}: the log was rewritten",
                        cp.hash
                    ),
                ));
            }
        }
    })?;
    // Only what was walked can be judged: checkpoints of events removed by retention, or
    // outside a range, are neither matched nor problems.
    let walked_from = chain.first_seq;
    let walked_to = match &chain.first_broken {
        Some((seq, _)) => seq.saturating_sub(1),
        None => walked_from.saturating_add(chain.events).saturating_sub(1),
    };
    problems.retain(|(seq, _)| *seq >= walked_from && (span.to.is_none() || *seq <= walked_to));
    if let Some((seq, why)) = &chain.first_broken {
        problems.push((*seq, why.clone()));
    }
    let log_end = walked_to;
    if chain.first_broken.is_none() && span.to.is_none() {
        if let Some((&seq, _)) = by_seq.iter().next_back().filter(|(s, _)| **s > log_end) {
            problems.push((
                log_end + 1,
                format!("the log ends at seq {log_end} but a signed checkpoint covers seq {seq}: events were cut from the end"),
            ));
        }
    }
    let last_ok = matched.last().copied();
    problems.sort_by_key(|(seq, _)| *seq);
    Ok(CheckpointReport {
        checkpoints_ok: matched.len() as u64,
        last_checkpoint: last_ok.and_then(|s| by_seq.get(&s).cloned()),
        uncovered: log_end.saturating_sub(last_ok.unwrap_or(walked_from.saturating_sub(1))),
        key: public.map(str::to_owned),
        first_problem: problems.into_iter().next(),
        chain,
    })
}
