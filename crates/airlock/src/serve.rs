//! `airlock serve`: load the config, open the audit log, start the listeners, reload on change.

use airlock_config::{Config, SecretSource};
use airlock_gate::Gate;
use airlock_proto_pg::PgListenerConfig;
use airlock_store::{AuditEvent, AuditLog, AuditOptions, EventKind};
use anyhow::{anyhow, Context};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tracing::{error, info, warn};

/// The largest single protocol message a client may send (a 64 MiB query or COPY row is
/// already unusual; PostgreSQL's own limit is 1 GiB).
const MAX_MESSAGE_BYTES: usize = 64 << 20;

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
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating data_dir {}", data_dir.display()))?;
    let audit = AuditLog::open(
        &config.audit.path,
        AuditOptions {
            fsync: config.audit.fsync,
        },
    )
    .with_context(|| format!("opening the audit log {}", config.audit.path.display()))?;
    if let Some(r) = audit.recovered() {
        warn!(truncated_to = r.truncated_to, dropped_bytes = r.dropped_bytes, "the audit log ended in a partial line (crash during a write); it was cut back to the last complete event");
    }
    if let Some(token) =
        airlock_gate::ensure_admin_token(&data_dir).context("creating the bootstrap admin token")?
    {
        // Shown once: only its digest is stored.
        println!("airlock: bootstrap admin token (shown once; identity `admin`, group `admins`): {token}");
    }
    let indexer = airlock_store::spawn_indexer(
        &config.audit.path,
        &data_dir.join("state.db"),
        Duration::from_millis(500),
    )
    .context("starting the audit indexer")?;
    // Checkpoints, exporters, recordings (`trail.recordings` is for the protocol relays).
    let trail = crate::trail::start(&config, &audit)?;
    let mut start = AuditEvent::new(EventKind::GatewayStart);
    start.detail =
        Some(serde_json::json!({"version": env!("CARGO_PKG_VERSION"), "config": config.origin}));
    audit
        .append(&[start])
        .context("writing the first audit event")?;

    let runtime = runtime_builder(config.audit.fsync)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(serve(
        config,
        config_path,
        audit.clone(),
        trail.recordings.clone(),
    ));

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

/// The async runtime. With `[audit] fsync = false` the relays never block for long (an audit
/// append is one `write`), so one worker per two cores: fewer workers means fewer cross-thread
/// wake-ups and park/unpark cycles per statement, which dominate the proxy's CPU on small
/// machines (measured in docs/benchmarks.md). With `fsync = true` each append waits for a
/// group-committed fdatasync on its worker, so every core gets a worker and concurrent
/// sessions can share one sync. `TOKIO_WORKER_THREADS` overrides both.
fn runtime_builder(fsync: bool) -> tokio::runtime::Builder {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
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
    let filter = tracing_subscriber::EnvFilter::try_from_env("AIRLOCK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
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
    audit: AuditLog,
    recordings: Option<airlock_record::Recordings>,
) -> anyhow::Result<()> {
    let gate = Gate::new(config.clone(), audit).map_err(|e| anyhow!("loading reviews: {e}"))?;
    {
        // Reviews and access grants expire on time even when nobody is waiting on them.
        let gate = gate.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                every.tick().await;
                gate.tick();
            }
        });
    }
    let tls = airlock_proto_pg::tls::server_config(
        config.tls.cert_file.as_deref(),
        config.tls.key_file.as_deref(),
        &config.gateway.data_dir,
    )
    .context("setting up the listener TLS certificate")?;

    let mut banner = String::new();
    let api_listener = tokio::net::TcpListener::bind(config.gateway.api_listen)
        .await
        .with_context(|| {
            format!(
                "binding the API to {} (change [gateway] api_listen)",
                config.gateway.api_listen
            )
        })?;
    tokio::spawn({
        let gate = gate.clone();
        async move {
            if let Err(e) = airlock_api::serve(api_listener, gate).await {
                error!(error = %e, "the API server stopped");
            }
        }
    });
    banner.push_str(&format!(
        "airlock: REST API on http://{} (OpenAPI: /api/v1/openapi.json)\n",
        config.gateway.api_listen
    ));
    // MySQL/MariaDB: only when some connection is of type mysql (the listener has a default).
    if let Some(addr) = config.listeners.mysql.filter(|_| {
        config
            .connections
            .iter()
            .any(|c| c.kind == airlock_core::ConnectionType::Mysql)
    }) {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the mysql listener to {addr} (is another airlock running? change [listeners] mysql)"))?;
        let my = Arc::new(airlock_proto_mysql::MySqlListenerConfig {
            tls: Some(tls.clone()),
            allow_plaintext_tokens: config.gateway.allow_plaintext_tokens,
            max_packet_bytes: MAX_MESSAGE_BYTES,
            recordings: recordings.clone(),
        });
        tokio::spawn(airlock_proto_mysql::serve(listener, gate.clone(), my));
        banner.push_str(&format!(
            "airlock: mysql listener on {addr} (TLS available; token as password, connection as database)\n"
        ));
    }
    if let Some(addr) = config.listeners.postgres {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the postgres listener to {addr} (is another airlock running? change [listeners] postgres)"))?;
        let pg = Arc::new(PgListenerConfig {
            tls: Some(tls),
            allow_plaintext_tokens: config.gateway.allow_plaintext_tokens,
            max_message_bytes: MAX_MESSAGE_BYTES,
            recordings: recordings.clone(),
        });
        tokio::spawn(airlock_proto_pg::serve(listener, gate.clone(), pg));
        banner.push_str(&format!(
            "airlock: postgres listener on {addr} (TLS available, sslmode=require)\n"
        ));
        banner.push_str(&connect_hints(&config, addr));
    }
    for (proto, addr) in config.listeners.enabled() {
        if proto != "postgres" && proto != "mysql" {
            warn!(%addr, protocol = proto, "the {proto} listener is not available in this build; not started");
        }
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
    info!("shutting down");
    gate.shutdown();
    Ok(())
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

/// How to connect, for every (service account, postgres connection) pair the config allows.
fn connect_hints(config: &Config, addr: std::net::SocketAddr) -> String {
    let mut out = String::new();
    for conn in config
        .connections
        .iter()
        .filter(|c| c.kind == airlock_core::ConnectionType::Postgres)
    {
        for sa in &config.service_accounts {
            if !conn.allows(&sa.identity()) || !sa.limited_to(&conn.name) {
                continue;
            }
            let token = match &sa.token.source {
                SecretSource::Env(name) => format!("${name}"),
                SecretSource::File(path) => format!("$(cat {})", path.display()),
            };
            out.push_str(&format!(
                "  psql \"host={} port={} dbname={} user={} password={token}\"\n",
                addr.ip(),
                addr.port(),
                conn.name,
                sa.name
            ));
        }
    }
    if out.is_empty() {
        out.push_str("  (no [[connections]] of type postgres with a [[service_accounts]] allowed to use them; see examples/quickstart.toml)\n");
    }
    out
}
