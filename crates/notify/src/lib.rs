//! Outgoing webhook notifications: reviews created/approved/denied/expired and command denials.
//!
//! The data path calls [`Notifier::notify`], which only pushes onto a bounded in-memory queue and
//! returns; HTTP delivery, retries and backoff happen on background threads. Each webhook has its
//! own queue and its own delivery thread, so a hook that hangs until its timeout (or is down and
//! retrying) never delays delivery to the others. When a queue is full the oldest notification
//! is dropped and counted: notifications are best-effort, the audit log is the record.
//!
//! # Wire format
//!
//! `POST <url>` with `Content-Type: application/json` and these headers:
//!
//! | header | value |
//! |---|---|
//! | `X-Airlock-Event` | the event name, e.g. `review_created` |
//! | `X-Airlock-Delivery` | unique per notification, identical across retries (dedupe on it) |
//! | `X-Airlock-Timestamp` | Unix seconds when this attempt was sent |
//! | `X-Airlock-Attempt` | 1 for the first attempt, 2 for the first retry, … |
//! | `X-Airlock-Signature` | `sha256=<hex HMAC-SHA256(secret, raw body)>`, only when the hook has a secret |
//!
//! [`PayloadFormat::Json`] bodies are `{"event":…,"ts_us":…,"summary":…,"data":{…}}`.
//! [`PayloadFormat::Slack`] bodies are a Slack incoming-webhook message
//! (`{"text": summary, "blocks": [...]}`) with the event data as section fields.
//!
//! # Verifying a delivery (receiver side)
//!
//! 1. Read the raw request body bytes *before* parsing JSON (re-serialising changes the bytes).
//! 2. Compute `HMAC-SHA256(secret, body)`, hex-encode it (lowercase) and prefix `sha256=`.
//! 3. Compare with `X-Airlock-Signature` in constant time; reject on mismatch.
//! 4. Reject stale messages: `ts_us` (inside the signed JSON body) is when the event happened.
//!    The `X-Airlock-Timestamp` header is not covered by the signature and is informational.
//! 5. Ignore repeats of an `X-Airlock-Delivery` id already processed (retries reuse it).
//!
//! [`verify_signature`] implements steps 2–3 for Rust receivers. In a shell:
//! `printf '%s' "$BODY" | openssl dgst -sha256 -hmac "$SECRET"`.
//!
//! # Retries
//!
//! Connection errors, timeouts, `5xx` and `429` are retried with exponential backoff
//! (0.5 s, 1 s, 2 s, … capped at 60 s, 8 attempts in all by default; a `Retry-After` in seconds
//! is honoured up to the cap). Any other non-`2xx` status (including redirects, which are not
//! followed) is a permanent failure and is not retried.

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::collections::hash_map::RandomState;
use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The event names a webhook can subscribe to.
pub const EVENTS: &[&str] = &[
    "review_created",
    "review_approved",
    "review_denied",
    "review_expired",
    "command_denied",
];

/// Header carrying `sha256=<hex HMAC-SHA256(secret, body)>`.
pub const SIGNATURE_HEADER: &str = "X-Airlock-Signature";
pub const TIMESTAMP_HEADER: &str = "X-Airlock-Timestamp";
pub const EVENT_HEADER: &str = "X-Airlock-Event";
pub const DELIVERY_HEADER: &str = "X-Airlock-Delivery";
pub const ATTEMPT_HEADER: &str = "X-Airlock-Attempt";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NotifyError {
    #[error("webhook name must not be empty")]
    EmptyName,
    #[error("webhook {0:?} is defined more than once")]
    DuplicateName(String),
    #[error("webhook {hook:?}: invalid url: {reason}")]
    InvalidUrl { hook: String, reason: String },
    #[error("webhook {hook:?}: unknown event {event:?} (known: {known})", known = EVENTS.join(", "))]
    UnknownEvent { hook: String, event: String },
    #[error("webhook {hook:?}: secret is empty; omit it or set a value")]
    EmptySecret { hook: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadFormat {
    #[default]
    Json,
    Slack,
}

/// One outgoing webhook. `secret` is the resolved value (the config layer resolves
/// `secret_env` / `secret_file` references); it is never logged or printed by `Debug`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct WebhookConfig {
    pub name: String,
    pub url: String,
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub format: PayloadFormat,
    /// Event names to send; empty means all events.
    #[serde(default)]
    pub events: Vec<String>,
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("format", &self.format)
            .field("events", &self.events)
            .finish()
    }
}

impl WebhookConfig {
    pub fn wants(&self, event: &str) -> bool {
        self.events.is_empty() || self.events.iter().any(|e| e == event)
    }

    pub fn validate(&self) -> Result<(), NotifyError> {
        if self.name.trim().is_empty() {
            return Err(NotifyError::EmptyName);
        }
        let invalid = |reason: String| NotifyError::InvalidUrl {
            hook: self.name.clone(),
            reason,
        };
        let uri: ureq::http::Uri = self.url.parse().map_err(|e| invalid(format!("{e}")))?;
        match uri.scheme_str() {
            Some("http") | Some("https") => {}
            _ => return Err(invalid("scheme must be http or https".into())),
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(invalid("missing host".into()));
        }
        if let Some(event) = self.events.iter().find(|e| !EVENTS.contains(&e.as_str())) {
            return Err(NotifyError::UnknownEvent {
                hook: self.name.clone(),
                event: event.clone(),
            });
        }
        if self.secret.as_deref() == Some("") {
            return Err(NotifyError::EmptySecret {
                hook: self.name.clone(),
            });
        }
        Ok(())
    }
}

/// Validates every hook and that names are unique (names identify hooks in logs and stats).
pub fn validate_hooks(hooks: &[WebhookConfig]) -> Result<(), NotifyError> {
    let mut seen = HashSet::new();
    for hook in hooks {
        hook.validate()?;
        if !seen.insert(hook.name.as_str()) {
            return Err(NotifyError::DuplicateName(hook.name.clone()));
        }
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// One of [`EVENTS`].
    pub event: String,
    /// When the event happened, microseconds since the Unix epoch.
    pub ts_us: i64,
    /// One human-readable line.
    pub summary: String,
    pub data: serde_json::Value,
}

impl Notification {
    /// A notification stamped with the current time.
    pub fn now(
        event: impl Into<String>,
        summary: impl Into<String>,
        data: serde_json::Value,
    ) -> Self {
        let ts_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Notification {
            event: event.into(),
            ts_us,
            summary: summary.into(),
            data,
        }
    }
}

/// Tuning knobs; [`Default`] is what production uses.
#[derive(Debug, Clone)]
pub struct NotifierOptions {
    /// Per-hook queue bound; when full the oldest queued notification is dropped.
    pub queue_capacity: usize,
    pub connect_timeout: Duration,
    /// Bound on one whole attempt (connect, send, response).
    pub total_timeout: Duration,
    /// Attempts in all, including the first.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for NotifierOptions {
    fn default() -> Self {
        NotifierOptions {
            queue_capacity: 10_000,
            connect_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(10),
            max_attempts: 8,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
        }
    }
}

/// Counters summed over all hooks. One notification sent to two hooks counts twice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct NotifierStats {
    /// Deliveries acknowledged with a 2xx.
    pub delivered: u64,
    /// Attempts that failed (connection error, timeout or non-2xx), retried or not.
    pub failed_attempts: u64,
    /// Deliveries given up: permanent failure, attempts exhausted, or cut off by shutdown.
    pub abandoned: u64,
    /// Notifications dropped because a queue was full or the notifier was shut down.
    pub dropped: u64,
    /// Queued or in flight right now.
    pub pending: u64,
}

/// Handle to the background delivery threads. Cheap to clone; all clones share the queues.
/// Dropping the last clone stops delivery without draining; call [`Notifier::shutdown`] first
/// to give pending deliveries a chance.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

impl fmt::Debug for Notifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notifier")
            .field("hooks", &self.inner.hooks.len())
            .field("stats", &self.stats())
            .finish()
    }
}

struct Inner {
    hooks: Vec<HookHandle>,
    counters: Arc<Counters>,
    capacity: usize,
    id_prefix: String,
    next_id: AtomicU64,
    shut: AtomicBool,
}

struct HookHandle {
    config: Arc<WebhookConfig>,
    queue: Arc<HookQueue>,
}

#[derive(Default)]
struct Counters {
    delivered: AtomicU64,
    failed_attempts: AtomicU64,
    abandoned: AtomicU64,
    dropped: AtomicU64,
}

struct Job {
    notification: Arc<Notification>,
    delivery_id: Arc<str>,
}

#[derive(Default)]
struct HookQueue {
    state: Mutex<QueueState>,
    changed: Condvar,
}

#[derive(Default)]
struct QueueState {
    jobs: VecDeque<Job>,
    in_flight: bool,
    /// Set by shutdown/drop: drain until this instant, then give up.
    deadline: Option<Instant>,
    exited: bool,
}

impl HookQueue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // A panic elsewhere must not silence notifications; the state stays consistent
        // because every critical section is a few field updates.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn close(&self, deadline: Instant) {
        let mut state = self.lock();
        state.deadline = Some(state.deadline.map_or(deadline, |d| d.min(deadline)));
        drop(state);
        self.changed.notify_all();
    }
}

impl Notifier {
    /// Starts one delivery thread per hook with default options. Hooks should have passed
    /// [`validate_hooks`]; an invalid URL here only fails each delivery.
    pub fn start(hooks: Vec<WebhookConfig>) -> Notifier {
        Self::start_with(hooks, NotifierOptions::default())
    }

    pub fn start_with(hooks: Vec<WebhookConfig>, options: NotifierOptions) -> Notifier {
        let counters = Arc::new(Counters::default());
        let options = Arc::new(options);
        let mut handles = Vec::with_capacity(hooks.len());
        for config in hooks {
            let config = Arc::new(config);
            let queue = Arc::new(HookQueue::default());
            let worker = Worker {
                agent: build_agent(&options),
                config: Arc::clone(&config),
                queue: Arc::clone(&queue),
                counters: Arc::clone(&counters),
                options: Arc::clone(&options),
            };
            let spawned = std::thread::Builder::new()
                .name(format!("airlock-notify-{}", config.name))
                .spawn(move || worker.run());
            if let Err(e) = spawned {
                tracing::error!(hook = %config.name, error = %e, "cannot start webhook thread; its notifications will be dropped");
                queue.lock().exited = true;
            }
            handles.push(HookHandle { config, queue });
        }
        Notifier {
            inner: Arc::new(Inner {
                hooks: handles,
                counters,
                capacity: options.queue_capacity.max(1),
                id_prefix: delivery_id_prefix(),
                next_id: AtomicU64::new(0),
                shut: AtomicBool::new(false),
            }),
        }
    }

    /// Queues `n` for every hook that wants its event and returns at once. Never waits on the
    /// network; the only lock taken is held by delivery threads for a few instructions.
    pub fn notify(&self, n: Notification) {
        let inner = &*self.inner;
        let notification = Arc::new(n);
        let mut targets = inner
            .hooks
            .iter()
            .filter(|h| h.config.wants(&notification.event));
        let Some(first) = targets.next() else { return };
        if inner.shut.load(Ordering::Acquire) {
            let count = 1 + targets.count() as u64;
            inner.counters.dropped.fetch_add(count, Ordering::Relaxed);
            return;
        }
        let seq = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let delivery_id: Arc<str> = format!("{}-{seq:x}", inner.id_prefix).into();
        for hook in std::iter::once(first).chain(targets) {
            let mut state = hook.queue.lock();
            if state.exited || state.deadline.is_some() {
                inner.counters.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if state.jobs.len() >= inner.capacity {
                state.jobs.pop_front();
                inner.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
            state.jobs.push_back(Job {
                notification: Arc::clone(&notification),
                delivery_id: Arc::clone(&delivery_id),
            });
            drop(state);
            hook.queue.changed.notify_one();
        }
    }

    pub fn stats(&self) -> NotifierStats {
        let c = &self.inner.counters;
        let pending = self
            .inner
            .hooks
            .iter()
            .map(|h| {
                let state = h.queue.lock();
                state.jobs.len() as u64 + u64::from(state.in_flight)
            })
            .sum();
        NotifierStats {
            delivered: c.delivered.load(Ordering::Relaxed),
            failed_attempts: c.failed_attempts.load(Ordering::Relaxed),
            abandoned: c.abandoned.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            pending,
        }
    }

    /// Stops accepting notifications and waits up to `timeout` for queued deliveries
    /// (including their retries) to finish. Whatever is still pending at the deadline is
    /// abandoned, and a retry whose backoff would end after the deadline is not waited for.
    /// Returns `true` if every delivery pending at the call was delivered.
    pub fn shutdown(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let abandoned_before = self.inner.counters.abandoned.load(Ordering::Relaxed);
        self.inner.shut.store(true, Ordering::Release);
        for hook in &self.inner.hooks {
            hook.queue.close(deadline);
        }
        let mut drained = true;
        for hook in &self.inner.hooks {
            let mut state = hook.queue.lock();
            while !state.exited {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                state = hook
                    .queue
                    .changed
                    .wait_timeout(state, deadline - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            drained &= state.jobs.is_empty() && !state.in_flight;
        }
        drained && self.inner.counters.abandoned.load(Ordering::Relaxed) == abandoned_before
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let now = Instant::now();
        for hook in &self.hooks {
            hook.queue.close(now);
        }
    }
}

fn build_agent(options: &NotifierOptions) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(options.connect_timeout))
        .timeout_global(Some(options.total_timeout))
        .http_status_as_error(false)
        // A redirected POST may be replayed as a GET elsewhere; treat 3xx as a failure instead.
        .max_redirects(0)
        .user_agent(concat!("airlock-notify/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// Random per process so ids stay unique across restarts without a UUID dependency.
fn delivery_id_prefix() -> String {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}

struct Worker {
    agent: ureq::Agent,
    config: Arc<WebhookConfig>,
    queue: Arc<HookQueue>,
    counters: Arc<Counters>,
    options: Arc<NotifierOptions>,
}

enum Outcome {
    Delivered,
    Retry { after: Option<Duration> },
    Permanent,
}

impl Worker {
    fn run(self) {
        while let Some(job) = self.next_job() {
            self.deliver(&job);
            self.queue.lock().in_flight = false;
            self.queue.changed.notify_all();
        }
        self.queue.changed.notify_all();
    }

    /// Blocks until a job is queued; `None` once closed and drained (or past the deadline).
    fn next_job(&self) -> Option<Job> {
        let mut state = self.queue.lock();
        loop {
            if let Some(deadline) = state.deadline {
                if Instant::now() >= deadline {
                    let left = state.jobs.len() as u64;
                    state.jobs.clear();
                    self.counters.abandoned.fetch_add(left, Ordering::Relaxed);
                    state.exited = true;
                    return None;
                }
            }
            if let Some(job) = state.jobs.pop_front() {
                state.in_flight = true;
                return Some(job);
            }
            if state.deadline.is_some() {
                state.exited = true;
                return None;
            }
            state = self
                .queue
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn deliver(&self, job: &Job) {
        let n = &*job.notification;
        let body = match serde_json::to_vec(&payload(self.config.format, n)) {
            Ok(body) => body,
            Err(e) => {
                tracing::error!(hook = %self.config.name, event = %n.event, error = %e, "cannot serialise notification");
                self.counters.abandoned.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let signature = self
            .config
            .secret
            .as_deref()
            .map(|s| sign(s.as_bytes(), &body));
        let max_attempts = self.options.max_attempts.max(1);
        for attempt in 1..=max_attempts {
            match self.attempt(job, &body, signature.as_deref(), attempt) {
                Outcome::Delivered => {
                    self.counters.delivered.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Outcome::Permanent => break,
                Outcome::Retry { after } => {
                    if attempt == max_attempts {
                        break;
                    }
                    let wait = after
                        .unwrap_or_else(|| backoff(&self.options, attempt))
                        .min(self.options.max_backoff);
                    if !self.sleep(wait) {
                        break;
                    }
                }
            }
        }
        self.counters.abandoned.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(hook = %self.config.name, event = %n.event, delivery = %job.delivery_id, "webhook delivery abandoned");
    }

    fn attempt(&self, job: &Job, body: &[u8], signature: Option<&str>, attempt: u32) -> Outcome {
        let sent_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut request = self
            .agent
            .post(&self.config.url)
            .header("Content-Type", "application/json")
            .header(EVENT_HEADER, &job.notification.event)
            .header(DELIVERY_HEADER, &*job.delivery_id)
            .header(TIMESTAMP_HEADER, sent_at.to_string())
            .header(ATTEMPT_HEADER, attempt.to_string());
        if let Some(signature) = signature {
            request = request.header(SIGNATURE_HEADER, signature);
        }
        let outcome = match request.send(body) {
            Ok(mut response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                // Reading the (small) body lets the agent reuse the connection.
                let _ = response
                    .body_mut()
                    .with_config()
                    .limit(64 * 1024)
                    .read_to_vec();
                match status {
                    200..=299 => return Outcome::Delivered,
                    429 | 500..=599 => {
                        tracing::debug!(hook = %self.config.name, status, attempt, "webhook attempt failed; will retry");
                        Outcome::Retry { after: retry_after }
                    }
                    _ => {
                        tracing::warn!(hook = %self.config.name, status, "webhook rejected delivery; not retrying");
                        Outcome::Permanent
                    }
                }
            }
            Err(e) if is_permanent(&e) => {
                tracing::warn!(hook = %self.config.name, error = %e, "webhook request cannot be made; not retrying");
                Outcome::Permanent
            }
            Err(e) => {
                tracing::debug!(hook = %self.config.name, error = %e, attempt, "webhook attempt failed; will retry");
                Outcome::Retry { after: None }
            }
        };
        self.counters
            .failed_attempts
            .fetch_add(1, Ordering::Relaxed);
        outcome
    }

    /// Waits `wait` unless the shutdown deadline comes first; `false` means give up.
    fn sleep(&self, wait: Duration) -> bool {
        let due = Instant::now() + wait;
        let mut state = self.queue.lock();
        loop {
            let now = Instant::now();
            if let Some(deadline) = state.deadline {
                if deadline <= due {
                    return false;
                }
            }
            if now >= due {
                return true;
            }
            state = self
                .queue
                .changed
                .wait_timeout(state, due - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

fn is_permanent(e: &ureq::Error) -> bool {
    matches!(
        e,
        ureq::Error::BadUri(_) | ureq::Error::Http(_) | ureq::Error::InvalidProxyUrl
    )
}

/// Delay after failed attempt number `attempt` (1-based): initial, 2×, 4×, … capped.
fn backoff(options: &NotifierOptions, attempt: u32) -> Duration {
    let factor = 1u32
        .checked_shl(attempt.saturating_sub(1))
        .unwrap_or(u32::MAX);
    options
        .initial_backoff
        .saturating_mul(factor)
        .min(options.max_backoff)
}

/// `sha256=<lowercase hex HMAC-SHA256(secret, body)>`, the `X-Airlock-Signature` value.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    format!("sha256={}", hex::encode(hmac_sha256(secret, body)))
}

/// Receiver-side check of an `X-Airlock-Signature` header, in constant time.
pub fn verify_signature(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_sig) else {
        return false;
    };
    let mut mac = new_mac(secret);
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

type HmacSha256 = Hmac<Sha256>;

fn new_mac(secret: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; the fallible constructor is a trait generality.
    match HmacSha256::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => HmacSha256::new(&Default::default()),
    }
}

fn hmac_sha256(secret: &[u8], body: &[u8]) -> Vec<u8> {
    let mut mac = new_mac(secret);
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// The request body for `format`.
pub fn payload(format: PayloadFormat, n: &Notification) -> serde_json::Value {
    match format {
        PayloadFormat::Json => serde_json::json!({
            "event": n.event,
            "ts_us": n.ts_us,
            "summary": n.summary,
            "data": n.data,
        }),
        PayloadFormat::Slack => slack_payload(n),
    }
}

// Slack rejects messages beyond these: 10 fields per section, 2000 chars per field,
// 3000 per section text, 50 blocks per message.
const SLACK_FIELDS_PER_SECTION: usize = 10;
const SLACK_MAX_FIELDS: usize = 40;
const SLACK_FIELD_CHARS: usize = 1900;
const SLACK_TEXT_CHARS: usize = 2900;

fn slack_payload(n: &Notification) -> serde_json::Value {
    use serde_json::{json, Value};

    let mut fields: Vec<Value> = match &n.data {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| slack_field(k, v))
            .take(SLACK_MAX_FIELDS)
            .collect(),
        Value::Null => Vec::new(),
        other => vec![slack_field("data", other)],
    };
    let secs = n.ts_us.div_euclid(1_000_000);
    let mut blocks = vec![json!({
        "type": "section",
        "text": {"type": "mrkdwn", "text": truncate(&slack_escape(&n.summary), SLACK_TEXT_CHARS)},
    })];
    while !fields.is_empty() {
        let rest = fields.split_off(fields.len().min(SLACK_FIELDS_PER_SECTION));
        blocks.push(json!({"type": "section", "fields": fields}));
        fields = rest;
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{
            "type": "mrkdwn",
            "text": format!(
                "`{}` · <!date^{secs}^{{date_num}} {{time_secs}}|{secs}>",
                slack_escape(&n.event)
            ),
        }],
    }));
    json!({"text": n.summary, "blocks": blocks})
}

fn slack_field(key: &str, value: &serde_json::Value) -> serde_json::Value {
    let shown = match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let text = format!("*{}*\n{}", slack_escape(key), slack_escape(&shown));
    serde_json::json!({"type": "mrkdwn", "text": truncate(&text, SLACK_FIELD_CHARS)})
}

/// Slack treats `<…>` as links/mentions; user data must not be able to ping `@channel`.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn truncate(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", s.get(..cut).unwrap_or(s)),
        None => s.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn hook(url: &str) -> WebhookConfig {
        WebhookConfig {
            name: "ops".into(),
            url: url.into(),
            secret: None,
            format: PayloadFormat::Json,
            events: vec![],
        }
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let o = NotifierOptions::default();
        let got: Vec<u64> = (1..=10)
            .map(|a| backoff(&o, a).as_millis() as u64)
            .collect();
        assert_eq!(
            got,
            [500, 1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000]
        );
        assert_eq!(backoff(&o, 200), Duration::from_secs(60));
    }

    #[test]
    fn validation() {
        assert!(hook("https://hooks.example.com/x").validate().is_ok());
        assert!(hook("http://127.0.0.1:9/x").validate().is_ok());
        assert!(matches!(
            hook("ftp://example.com/").validate(),
            Err(NotifyError::InvalidUrl { .. })
        ));
        assert!(matches!(
            hook("not a url").validate(),
            Err(NotifyError::InvalidUrl { .. })
        ));
        let mut h = hook("https://example.com/");
        h.events = vec!["review_created".into(), "review_exploded".into()];
        assert_eq!(
            h.validate(),
            Err(NotifyError::UnknownEvent {
                hook: "ops".into(),
                event: "review_exploded".into()
            })
        );
        let mut h = hook("https://example.com/");
        h.secret = Some(String::new());
        assert!(matches!(h.validate(), Err(NotifyError::EmptySecret { .. })));
        let dup = [hook("https://a.example/"), hook("https://b.example/")];
        assert_eq!(
            validate_hooks(&dup),
            Err(NotifyError::DuplicateName("ops".into()))
        );
    }

    #[test]
    fn event_filter() {
        let mut h = hook("https://example.com/");
        assert!(h.wants("command_denied"));
        h.events = vec!["review_created".into()];
        assert!(h.wants("review_created"));
        assert!(!h.wants("command_denied"));
    }

    #[test]
    fn debug_redacts_secret() {
        let mut h = hook("https://example.com/");
        h.secret = Some("hunter2".into());
        let shown = format!("{h:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn signature_round_trip() {
        let sig = sign(b"k", b"body");
        assert!(verify_signature(b"k", b"body", &sig));
        assert!(!verify_signature(b"k", b"body!", &sig));
        assert!(!verify_signature(b"other", b"body", &sig));
        assert!(!verify_signature(b"k", b"body", "sha256=zz"));
        assert!(!verify_signature(
            b"k",
            b"body",
            sig.trim_start_matches("sha256=")
        ));
        // RFC 4231 test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn slack_escapes_and_limits() {
        let data: serde_json::Map<String, serde_json::Value> = (0..25)
            .map(|i| (format!("k{i:02}"), serde_json::json!(i)))
            .chain([("who".to_string(), serde_json::json!("<!channel> & co"))])
            .collect();
        let n = Notification {
            event: "command_denied".into(),
            ts_us: 1_700_000_000_123_456,
            summary: "x".repeat(5000),
            data: serde_json::Value::Object(data),
        };
        let p = payload(PayloadFormat::Slack, &n);
        let blocks = p["blocks"].as_array().unwrap();
        // summary + 3 field sections (10, 10, 6) + context
        assert_eq!(blocks.len(), 5);
        let fields: Vec<&serde_json::Value> = blocks[1..4]
            .iter()
            .flat_map(|b| b["fields"].as_array().unwrap())
            .collect();
        assert_eq!(fields.len(), 26);
        assert!(blocks[1..4]
            .iter()
            .all(|b| b["fields"].as_array().unwrap().len() <= 10));
        let who = fields
            .iter()
            .find(|f| f["text"].as_str().unwrap().starts_with("*who*"))
            .unwrap();
        assert_eq!(who["text"], "*who*\n&lt;!channel&gt; &amp; co");
        assert!(blocks[0]["text"]["text"].as_str().unwrap().chars().count() <= 3000);
        assert!(blocks[4]["elements"][0]["text"]
            .as_str()
            .unwrap()
            .contains("1700000000"));
    }
}
