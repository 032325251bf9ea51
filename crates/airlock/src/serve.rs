//! `airlock serve`: load the config, open the audit log, start the listeners, reload on change.

use airlock_config::Config;
use airlock_gate::Gate;
use airlock_proto_pg::PgListenerConfig;
use airlock_store::{AuditEvent, AuditLog, AuditOptions, EventKind};
use anyhow::{anyhow, Context};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tracing::{error, info, warn};

pub fn run(config_path: Option<PathBuf>, log_format: Option<String>) -> anyhow::Result<ExitCode> {
    let config = load(config_path.as_deref())?;
    let json = match log_format.as_deref() {
        Some("json") => true,
        Some("text") => false,
        Some(other) => return Err(anyhow!("--log-format must be text or json, not `{other}`")),
        None => config.gateway.log_format == airlock_config::LogFormat::Json,
    };
    init_tracing(json);
    if config.gateway.state_url.is_some() {
        return Err(anyhow!("[gateway] state_url (shared PostgreSQL state for several replicas) is not supported in this build yet; remove it to use the embedded state in data_dir"));
    }

    let data_dir = config.gateway.data_dir.clone();
    private_dir(&data_dir)?;
    // Every step that can fail comes before the bootstrap admin token is shown and before
    // `gateway_start` is written: a start that fails (a port in use, most often) leaves no
    // token nobody saw and no start/stop pair for a gateway that never served.
    let listeners = Listeners::bind(&config)?;
    let audit = AuditLog::open(
        &config.audit.path,
        AuditOptions {
            fsync: config.audit.fsync,
            segments: airlock_store::SegmentOptions {
                max_bytes: config.audit.segment_max_bytes,
                max_age: config.audit.segment_max_age_secs.map(Duration::from_secs),
                compress: config.audit.compress,
            },
        },
    )
    .with_context(|| format!("opening the audit log {}", config.audit.path.display()))?;
    if let Some(r) = audit.recovered() {
        warn!(truncated_to = r.truncated_to, dropped_bytes = r.dropped_bytes, "the audit log ended in a partial line (crash during a write); it was cut back to the last complete event");
    }
    let tls = airlock_transport::tls::server_config(
        config.tls.cert_file.as_deref(),
        config.tls.key_file.as_deref(),
        &data_dir,
    )
    .context("setting up the listener TLS certificate")?;
    // The gate reads the token's digest when it is built, so the token comes first.
    let new_token = airlock_gate::ensure_admin_token(&data_dir)
        .context("creating the bootstrap admin token")?;
    let (gate, indexer, trail) = match start_services(&config, &audit) {
        Ok(s) => s,
        Err(e) => {
            if new_token.is_some() {
                // Never shown: the next start creates (and shows) a new one.
                let _ = std::fs::remove_file(data_dir.join(airlock_gate::ADMIN_TOKEN_FILE));
            }
            return Err(e);
        }
    };
    // Files other parts created with their default mode (the admin token digest, the
    // self-signed certificate, ...) are made private too; data_dir itself already was.
    privatize_tree(&data_dir);
    if let Some(token) = new_token {
        // Shown once: only its digest is stored.
        println!("airlock: bootstrap admin token (shown once; identity `admin`, group `admins`): {token}");
    }
    let capacity = session_capacity(config.gateway.max_sessions);
    gate.set_capacity(capacity.sessions);
    info!(
        sessions = capacity.sessions,
        open_file_limit = capacity.fd_limit,
        raised_from = capacity.raised_from,
        "session capacity"
    );
    let mut start = AuditEvent::new(EventKind::GatewayStart);
    start.detail = Some(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "config": config.origin,
        "max_sessions": capacity.sessions,
        "open_file_limit": capacity.fd_limit,
    }));
    audit
        .append(&[start])
        .context("writing the first audit event")?;

    let protocols = Protocols {
        postgres: Arc::new(PgListenerConfig {
            tls: Some(tls.clone()),
            allow_plaintext_tokens: config.gateway.allow_plaintext_tokens,
            max_message_bytes: config.gateway.max_message_bytes,
            recordings: trail.recordings.clone(),
        }),
        mysql: Arc::new(airlock_proto_mysql::MySqlListenerConfig {
            tls: Some(tls),
            allow_plaintext_tokens: config.gateway.allow_plaintext_tokens,
            max_packet_bytes: config.gateway.max_message_bytes,
            recordings: trail.recordings.clone(),
        }),
    };
    let runtime = runtime_builder(config.audit.fsync)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(serve(config, config_path, gate, listeners, protocols));

    let mut stop = AuditEvent::new(EventKind::GatewayStop);
    stop.detail = Some(serde_json::json!({"reason": "shutdown"}));
    if let Err(e) = audit.append(&[stop]) {
        error!(error = %e, "could not audit the shutdown");
    }
    let _ = audit.flush();
    trail.shutdown();
    indexer.shutdown();
    result.map(|()| ExitCode::SUCCESS)
}

/// The classifier of each connection type this build serves: adding a protocol adds a line.
pub(crate) fn classifiers() -> airlock_gate::Classifiers {
    use airlock_core::ConnectionType;
    use std::sync::Arc;
    // Distinct normalized statements kept per dialect (shared by all sessions).
    const CACHED: usize = 16 * 1024;
    airlock_gate::Classifiers::new()
        .register(
            ConnectionType::Postgres,
            Arc::new(airlock_sql::PgClassifier::new(CACHED)),
        )
        .register(
            ConnectionType::Mysql,
            Arc::new(airlock_sql::mysql::MySqlClassifier::new(CACHED)),
        )
}

/// The gate, the audit indexer and the trail (checkpoints, exporters, recordings).
fn start_services(
    config: &Config,
    audit: &AuditLog,
) -> anyhow::Result<(Arc<Gate>, airlock_store::IndexerHandle, crate::trail::Trail)> {
    let gate = Gate::new(config.clone(), audit.clone(), classifiers())
        .map_err(|e| anyhow!("loading reviews: {e}"))?;
    let indexer = airlock_store::spawn_indexer(
        &config.audit.path,
        &config.gateway.data_dir.join("state.db"),
        Duration::from_millis(500),
    )
    .context("starting the audit indexer")?;
    // Checkpoints, exporters, recordings (`trail.recordings` is for the protocol relays).
    let trail = crate::trail::start(config, audit)?;
    Ok((gate, indexer, trail))
}

/// What each protocol listener is configured with.
struct Protocols {
    postgres: Arc<PgListenerConfig>,
    mysql: Arc<airlock_proto_mysql::MySqlListenerConfig>,
}

/// The listening sockets, bound before anything else starts (see [`run`]): the API and one per
/// enabled protocol this build serves ([`adapter`]).
struct Listeners {
    api: std::net::TcpListener,
    protocols: Vec<(&'static str, std::net::SocketAddr, std::net::TcpListener)>,
}

impl Listeners {
    fn bind(config: &Config) -> anyhow::Result<Listeners> {
        let bind = |addr: std::net::SocketAddr, what: String| {
            let l = std::net::TcpListener::bind(addr).context(what)?;
            // Handed to tokio, which needs non-blocking sockets.
            l.set_nonblocking(true)
                .with_context(|| format!("setting up the listener on {addr}"))?;
            anyhow::Ok(l)
        };
        let api_addr = config.gateway.api_listen;
        let api = bind(
            api_addr,
            format!("binding the API to {api_addr} (change [gateway] api_listen)"),
        )?;
        // MySQL/MariaDB: only when some connection is of type mysql (the listener has a default).
        let wants_mysql = config
            .connections
            .iter()
            .any(|c| c.kind() == airlock_core::ConnectionType::Mysql);
        let mut protocols = Vec::new();
        for (proto, addr) in config.listeners.enabled() {
            if !SERVED.contains(&proto) {
                warn!(%addr, protocol = proto, "the {proto} listener is not available in this build; not started");
                continue;
            }
            if proto == "mysql" && !wants_mysql {
                continue;
            }
            let socket = bind(addr, format!("binding the {proto} listener to {addr} (is another airlock running? change [listeners] {proto})"))?;
            protocols.push((proto, addr, socket));
        }
        Ok(Listeners { api, protocols })
    }
}

/// The `[listeners]` this build has an adapter for ([`adapter`]).
const SERVED: &[&str] = &["postgres", "mysql"];

/// The adapter serving `protocol`: adding a protocol adds an arm (and its classifier, above).
fn adapter(
    protocol: &str,
    gate: &Arc<Gate>,
    protocols: &Protocols,
) -> Option<Box<dyn airlock_transport::Listener>> {
    Some(match protocol {
        "postgres" => Box::new(airlock_proto_pg::PgListener {
            gate: gate.clone(),
            config: protocols.postgres.clone(),
        }),
        "mysql" => Box::new(airlock_proto_mysql::MySqlListener {
            gate: gate.clone(),
            config: protocols.mysql.clone(),
        }),
        _ => return None,
    })
}

/// Creates `dir` (and missing parents) owner-only (0700), or tightens an existing one: the
/// data directory holds the audit trail, recordings and token digests.
fn private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating data_dir {}", dir.display()))?;
    let mode = std::fs::metadata(dir)
        .with_context(|| format!("reading data_dir {}", dir.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        match std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o700)) {
            Ok(()) => {
                info!(data_dir = %dir.display(), old_mode = format!("{:o}", mode & 0o777), "made data_dir private (0700)")
            }
            Err(e) => {
                warn!(data_dir = %dir.display(), error = %e, "data_dir is open to other users and could not be made private; chmod 700 it")
            }
        }
    }
    Ok(())
}

/// Removes group and other permissions from everything under `dir` (files 0600 or tighter,
/// directories 0700), without following symlinks. What cannot be changed is logged.
fn privatize_tree(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            continue;
        }
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            if let Err(e) =
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o700))
            {
                warn!(path = %path.display(), error = %e, "could not make the file private; chmod go-rwx it");
            }
        }
        if meta.is_dir() {
            privatize_tree(&path);
        }
    }
}

/// The async runtime. With `[audit] fsync = false` the relays never block for long (an audit
/// append is one `write`), so one worker per two cores: fewer workers means fewer cross-thread
/// wake-ups and park/unpark cycles per statement, which dominate the proxy's CPU on small
/// machines (measured in docs/benchmarks.md). With `fsync = true` each append waits for a
/// group-committed fdatasync on its worker, so every core gets a worker and concurrent
/// sessions can share one sync. `TOKIO_WORKER_THREADS` overrides both.
/// The session capacity and the open-file limit it came from.
struct SessionCapacity {
    sessions: usize,
    fd_limit: u64,
    /// The soft limit before it was raised to the hard limit (`None`: not raised).
    raised_from: Option<u64>,
}

/// Raises the open-file soft limit to the hard limit (the common soft default of 1,024 holds
/// only ~300 sessions of three descriptors each) and derives the session capacity from it,
/// capped by `[gateway] max_sessions`.
fn session_capacity(configured: Option<usize>) -> SessionCapacity {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    let mut raised_from = None;
    if let (Some(soft), hard) = (limit.current, limit.maximum) {
        let target = hard.unwrap_or(1 << 20).min(1 << 20);
        if target > soft {
            let wanted = rustix::process::Rlimit {
                current: Some(target),
                maximum: limit.maximum,
            };
            match setrlimit(Resource::Nofile, wanted) {
                Ok(()) => {
                    raised_from = Some(soft);
                    limit = getrlimit(Resource::Nofile);
                }
                Err(e) => warn!(error = %e, soft, "could not raise the open-file limit"),
            }
        }
    }
    let fd_limit = limit.current.unwrap_or(1 << 20);
    let by_fds = airlock_gate::capacity::sessions_for_fd_limit(fd_limit);
    let sessions = match configured {
        Some(n) if n > by_fds => {
            warn!(max_sessions = n, open_file_limit = fd_limit, capacity = by_fds, "[gateway] max_sessions is more than the open-file limit allows; serving at most {by_fds} sessions (raise the limit, e.g. LimitNOFILE= in the systemd unit)");
            by_fds
        }
        Some(n) => n,
        None => by_fds,
    };
    SessionCapacity {
        sessions,
        fd_limit,
        raised_from,
    }
}

fn runtime_builder(fsync: bool) -> tokio::runtime::Builder {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    // Defence in depth: parsers of untrusted text are bounded (sql::check_parse_bounds), and a
    // larger stack than tokio's 2 MiB default keeps a bound that is slightly off from aborting
    // the whole process. Reserved address space; pages are committed only when used.
    builder.thread_stack_size(16 << 20);
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() && !fsync {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        builder.worker_threads((cores / 2).max(1));
    }
    builder
}

fn load(path: Option<&Path>) -> anyhow::Result<Config> {
    match path {
        Some(p) => airlock_config::load_file(p).map_err(|e| anyhow!("invalid configuration:\n{e}")),
        None => Ok(airlock_config::embedded_default()),
    }
}

fn init_tracing(json: bool) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("AIRLOCK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only for a terminal: in a log file or the journal they are noise.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn serve(
    config: Config,
    config_path: Option<PathBuf>,
    gate: Arc<Gate>,
    listeners: Listeners,
    protocols: Protocols,
) -> anyhow::Result<()> {
    // Tasks holding the gate that shutdown stops before it waits for the sessions.
    let mut tasks = Vec::new();
    {
        // Reviews and access grants expire on time even when nobody is waiting on them.
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                every.tick().await;
                gate.tick();
            }
        }));
    }

    let mut banner = String::new();
    let api_listener =
        tokio::net::TcpListener::from_std(listeners.api).context("registering the API listener")?;
    tasks.push(tokio::spawn({
        let gate = gate.clone();
        async move {
            if let Err(e) = airlock_api::serve(api_listener, gate).await {
                error!(error = %e, "the API server stopped");
            }
        }
    }));
    banner.push_str(&format!(
        "airlock: REST API on http://{} (OpenAPI: /api/v1/openapi.json)\n",
        config.gateway.api_listen
    ));
    for (proto, addr, socket) in listeners.protocols {
        let Some(listener) = adapter(proto, &gate, &protocols) else {
            continue;
        };
        let socket = tokio::net::TcpListener::from_std(socket)
            .with_context(|| format!("registering the {proto} listener"))?;
        banner.push_str(&listener.banner(addr));
        tasks.push(tokio::spawn(listener.serve(socket)));
    }
    banner.push_str(&format!(
        "airlock: audit log {}; sessions: airlock sessions list --data-dir {}\n",
        config.audit.path.display(),
        config.gateway.data_dir.display()
    ));
    print!("{banner}");
    info!(config = %config.origin, "airlock is serving");

    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut poll = tokio::time::interval(Duration::from_secs(2));
    let mut seen = config_path.as_deref().and_then(mtime);
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = hup.recv() => reload(&gate, config_path.as_deref()),
            _ = poll.tick() => {
                let now = config_path.as_deref().and_then(mtime);
                if now != seen {
                    seen = now;
                    reload(&gate, config_path.as_deref());
                }
            }
        }
    }
    shut_down(
        gate,
        tasks,
        Duration::from_secs(config.gateway.shutdown_grace_secs),
    )
    .await;
    Ok(())
}

/// Stops accepting (listeners and the API closed), ends every session — clients are told in
/// their protocol, running statements stopped, outcomes and `session_end` written by the
/// adapters — and waits for them up to `grace`.
async fn shut_down(gate: Arc<Gate>, tasks: Vec<tokio::task::JoinHandle<()>>, grace: Duration) {
    for t in &tasks {
        t.abort();
    }
    for t in tasks {
        let _ = t.await;
    }
    gate.begin_shutdown();
    // What still holds the gate besides this function: sessions, clients in their handshake,
    // API requests in flight.
    let others = || Arc::strong_count(&gate).saturating_sub(1);
    let open = others();
    info!(
        sessions = open,
        grace_secs = grace.as_secs(),
        "shutting down: no new connections; ending open sessions"
    );
    let deadline = tokio::time::Instant::now() + grace;
    while others() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    match others() {
        0 if open > 0 => {
            // Cancel requests the sessions sent on their way out run as their own tasks.
            tokio::time::sleep(Duration::from_millis(250)).await;
            info!(sessions = open, "every session ended");
        }
        0 => {}
        left => warn!(
            left,
            grace_secs = grace.as_secs(),
            "shutdown grace period over; exiting with connections still open"
        ),
    }
    gate.shutdown();
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

fn reload(gate: &Gate, path: Option<&Path>) {
    let Some(path) = path else {
        info!("no config file to reload (embedded defaults)");
        return;
    };
    match airlock_config::load_file(path) {
        Ok(config) => {
            let old = gate.runtime();
            if old.config.listeners != config.listeners {
                warn!("listener addresses changed; they take effect after a restart");
            }
            gate.reload(config);
            info!(config = %path.display(), "configuration reloaded; open sessions keep running under the new rules");
        }
        Err(e) => {
            error!(config = %path.display(), errors = %e, "configuration reload rejected; keeping the previous configuration")
        }
    }
}
