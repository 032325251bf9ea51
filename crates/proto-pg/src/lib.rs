//! The PostgreSQL adapter: wire bytes in, commands to the gate, bytes out.
//!
//! It authenticates clients with their airlock token (sent as the password), opens the upstream
//! with the held credential, and relays the session (see [`relay`]). It never decides anything
//! itself: every statement goes to [`airlock_gate::SessionGate`].

pub mod catalog;
pub mod codec;
pub mod encoding;
pub mod mask;
pub mod relay;
mod startup;

pub mod upstream;

use crate::codec::{
    decode_startup, put_auth_request, put_backend_key, put_error, put_ready, split_message,
    split_startup, ErrorFields, Reader, StartupPacket,
};
use airlock_gate::{Gate, GateError};
use airlock_transport::NetStream;
use bytes::BytesMut;
use rand::Rng;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn, Instrument};

/// How long a client may take to finish startup and authentication.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

pub struct PgListenerConfig {
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub allow_plaintext_tokens: bool,
    pub max_message_bytes: usize,
    /// Session recordings (`None`: `[recording] enabled = false`).
    pub recordings: Option<airlock_record::Recordings>,
}

/// Maps the (pid, key) pairs the gateway hands to clients to the upstream backends.
#[derive(Default)]
pub struct CancelRegistry {
    map: Mutex<HashMap<(u32, u32), CancelTarget>>,
}

#[derive(Clone)]
struct CancelTarget {
    address: String,
    pid: u32,
    key: Vec<u8>,
}

impl CancelRegistry {
    fn register(&self, target: CancelTarget) -> (u32, u32) {
        let mut rng = rand::rng();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let ids = (rng.random::<u32>() & 0x7fff_ffff, rng.random::<u32>());
            if let std::collections::hash_map::Entry::Vacant(slot) = map.entry(ids) {
                slot.insert(target);
                return ids;
            }
        }
    }

    fn remove(&self, ids: (u32, u32)) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&ids);
    }

    fn get(&self, ids: (u32, u32)) -> Option<CancelTarget> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&ids)
            .cloned()
    }
}

/// Serves the PostgreSQL listener until the task is dropped.
/// The PostgreSQL endpoint, as the binary runs it ([`airlock_transport::Listener`]).
pub struct PgListener {
    pub gate: Arc<Gate>,
    pub config: Arc<PgListenerConfig>,
}

impl airlock_transport::Listener for PgListener {
    fn protocol(&self) -> &'static str {
        "postgres"
    }

    fn banner(&self, addr: std::net::SocketAddr) -> String {
        let mut out =
            format!("airlock: postgres listener on {addr} (TLS available, sslmode=require)\n");
        out.push_str(&connect_hints(&self.gate.runtime().config, addr));
        out
    }

    fn serve(self: Box<Self>, socket: TcpListener) -> airlock_transport::listener::Serving {
        Box::pin(serve(socket, self.gate, self.config))
    }
}

/// A `psql` line per service account and PostgreSQL connection it may use.
fn connect_hints(config: &airlock_config::Config, addr: std::net::SocketAddr) -> String {
    let mut out = String::new();
    for conn in config
        .connections
        .iter()
        .filter(|c| c.kind() == airlock_core::ConnectionType::Postgres)
    {
        for sa in &config.service_accounts {
            if !conn.allows(&sa.identity()) || !sa.limited_to(&conn.name) {
                continue;
            }
            let token = match &sa.token.source {
                airlock_config::SecretSource::Env(name) => format!("${name}"),
                airlock_config::SecretSource::File(path) => format!("$(cat {})", path.display()),
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

/// What the sessions of one listener share: cancel keys and masking's catalog snapshots.
#[derive(Default)]
struct Registries {
    cancels: CancelRegistry,
    snapshots: catalog::SnapshotCache,
}

pub async fn serve(listener: TcpListener, gate: Arc<Gate>, config: Arc<PgListenerConfig>) {
    let cancels = Arc::new(Registries::default());
    let mut failures = 0u32;
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                airlock_gate::capacity::after_accept_error("postgres", &e, &mut failures).await;
                continue;
            }
        };
        failures = 0;
        let _ = tcp.set_nodelay(true);
        let gate = gate.clone();
        let config = config.clone();
        let cancels = cancels.clone();
        tokio::spawn(async move {
            // Held until the connection ends, whatever ends it.
            let Some(_permit) = gate.admit_connection() else {
                let message = format!(
                    "airlock: the gateway is serving its maximum of {} sessions; try again shortly",
                    gate.capacity().limit()
                );
                refuse_over_capacity(tcp, message, &config).await;
                return;
            };
            let Some(handshake) = gate.begin_handshake(peer.ip()) else {
                let message = "airlock: too many connections from this address are still in their handshake; try again shortly".to_owned();
                refuse_over_capacity(tcp, message, &config).await;
                return;
            };
            if let Err(e) = handle_client(tcp, peer, gate, config, cancels, handshake).await {
                debug!(%peer, error = %e, "postgres client ended with an error");
            }
        });
    }
}

/// A client over the session capacity: answered at once with PostgreSQL's own "too many
/// connections" error (after its startup packet, where libpq expects an answer), instead of
/// hanging until its timeout.
async fn refuse_over_capacity(tcp: TcpStream, message: String, config: &PgListenerConfig) {
    let mut buf = BytesMut::with_capacity(512);
    let refusal = ErrorFields::fatal("53300", message)
    .with_hint("an operator can raise [gateway] max_sessions or the open-file limit (see docs/operations.md)");
    if let Ok(Ok((mut stream, _))) = tokio::time::timeout(
        Duration::from_secs(5),
        negotiate(NetStream::Plain(tcp), &mut buf, config),
    )
    .await
    {
        let _ = send_fatal(&mut stream, &refusal).await;
    }
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("{0}")]
    Client(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

async fn send_fatal(stream: &mut NetStream, f: &ErrorFields) -> SessionError {
    let mut out = BytesMut::new();
    put_error(&mut out, f);
    let _ = stream.write_all(&out).await;
    let _ = stream.flush().await;
    let _ = stream.shutdown().await;
    SessionError::Client(f.message.clone())
}

async fn read_startup(
    stream: &mut NetStream,
    buf: &mut BytesMut,
) -> Result<StartupPacket, SessionError> {
    loop {
        match split_startup(buf) {
            Ok(Some(body)) => {
                return decode_startup(&body).map_err(|e| SessionError::Client(e.to_string()));
            }
            Ok(None) => {}
            Err(e) => {
                return Err(send_fatal(stream, &ErrorFields::fatal("08P01", e.to_string())).await)
            }
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(SessionError::Client(
                "client closed the connection during startup".into(),
            ));
        }
    }
}

async fn handle_client(
    tcp: TcpStream,
    peer: SocketAddr,
    gate: Arc<Gate>,
    config: Arc<PgListenerConfig>,
    cancels: Arc<Registries>,
    handshake: airlock_gate::capacity::HandshakePermit,
) -> Result<(), SessionError> {
    let mut buf = BytesMut::with_capacity(1024);
    let (mut stream, startup) = tokio::time::timeout(
        STARTUP_TIMEOUT,
        negotiate(NetStream::Plain(tcp), &mut buf, &config),
    )
    .await
    .map_err(|_| SessionError::Client("startup timed out".into()))??;

    let params = match startup {
        StartupPacket::Cancel { pid, key } => {
            handle_cancel(&cancels.cancels, pid, &key).await;
            // Over TLS (libpq 17 encrypts cancel requests) the client expects a clean
            // close_notify, as PostgreSQL sends; dropping the socket reads as "unexpected eof".
            let _ = stream.shutdown().await;
            return Ok(());
        }
        StartupPacket::Startup { params } => params,
        StartupPacket::Unsupported { code } => {
            return Err(send_fatal(
                &mut stream,
                &ErrorFields::fatal(
                    "0A000",
                    format!(
                        "unsupported frontend protocol {}.{}: airlock speaks 3.0",
                        code >> 16,
                        code & 0xffff
                    ),
                ),
            )
            .await)
        }
        StartupPacket::Ssl | StartupPacket::GssEnc => unreachable_plain()?,
    };

    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let user = get("user").unwrap_or_default();
    let database = get("database").unwrap_or_else(|| user.clone());
    if get("replication").is_some_and(|v| v != "false" && v != "0" && v != "off") {
        return Err(send_fatal(
            &mut stream,
            &ErrorFields::fatal(
                "0A000",
                "replication connections are not supported through airlock",
            ),
        )
        .await);
    }
    if !stream.is_tls()
        && !airlock_transport::plaintext_token_allowed(peer.ip(), config.allow_plaintext_tokens)
    {
        return Err(send_fatal(
            &mut stream,
            &ErrorFields::fatal(
                "28000",
                "airlock refuses tokens over unencrypted connections from non-loopback addresses",
            )
            .with_hint(
                "connect with sslmode=require, or set [gateway] allow_plaintext_tokens = true",
            ),
        )
        .await);
    }

    // The token travels as the password.
    let mut out = BytesMut::new();
    put_auth_request(&mut out, 3, &[]);
    stream.write_all(&out).await?;
    let token = tokio::time::timeout(STARTUP_TIMEOUT, read_password(&mut stream, &mut buf))
        .await
        .map_err(|_| SessionError::Client("authentication timed out".into()))??;

    let identity = match gate.authenticate(&user, &token, peer).await {
        Ok(identity) => identity,
        Err(e) => return Err(send_fatal(&mut stream, &gate_error(&e)).await),
    };
    drop(handshake);
    let session = match gate.open_session(
        identity,
        &database,
        airlock_core::ConnectionType::Postgres,
        peer,
        stream.is_tls(),
    ) {
        Ok(s) => Arc::new(s),
        Err(e) => return Err(send_fatal(&mut stream, &gate_error(&e)).await),
    };
    let span = tracing::info_span!("pg_session", session = %session.id(), identity = %session.identity().name, connection = %session.connection_name());
    run_session(stream, buf, session, params, config, cancels)
        .instrument(span)
        .await
}

async fn negotiate(
    mut stream: NetStream,
    buf: &mut BytesMut,
    config: &PgListenerConfig,
) -> Result<(NetStream, StartupPacket), SessionError> {
    loop {
        match read_startup(&mut stream, buf).await? {
            StartupPacket::Ssl => match &config.tls {
                Some(tls) if !stream.is_tls() => {
                    // Bytes sent before the handshake would be trusted as if encrypted
                    // (CVE-2021-23214): refuse them.
                    if !buf.is_empty() {
                        return Err(send_fatal(
                            &mut stream,
                            &ErrorFields::fatal("08P01", "unencrypted data after SSLRequest"),
                        )
                        .await);
                    }
                    stream.write_all(b"S").await?;
                    stream = upgrade(stream, tls.clone()).await?;
                }
                _ => stream.write_all(b"N").await?,
            },
            StartupPacket::GssEnc => stream.write_all(b"N").await?,
            other => return Ok((stream, other)),
        }
    }
}

fn unreachable_plain<T>() -> Result<T, SessionError> {
    Err(SessionError::Client(
        "internal: unexpected stream state".into(),
    ))
}

async fn upgrade(
    stream: NetStream,
    tls: Arc<rustls::ServerConfig>,
) -> Result<NetStream, SessionError> {
    match stream {
        NetStream::Plain(tcp) => {
            let tls = tokio_rustls::TlsAcceptor::from(tls).accept(tcp).await?;
            Ok(NetStream::ServerTls(Box::new(tls)))
        }
        other => Ok(other),
    }
}

async fn read_password(stream: &mut NetStream, buf: &mut BytesMut) -> Result<String, SessionError> {
    loop {
        match split_message(buf, 16 * 1024) {
            Ok(Some(m)) if m.tag == b'p' => {
                let token = Reader::new(&m.body, "PasswordMessage")
                    .cstr()
                    .map_err(|e| SessionError::Client(e.to_string()))?;
                return Ok(token.to_owned());
            }
            Ok(Some(m)) => {
                return Err(send_fatal(
                    stream,
                    &ErrorFields::fatal(
                        "08P01",
                        format!("expected a password message, got `{}`", m.tag as char),
                    ),
                )
                .await)
            }
            Ok(None) => {}
            Err(e) => {
                return Err(send_fatal(stream, &ErrorFields::fatal("08P01", e.to_string())).await)
            }
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(SessionError::Client(
                "client closed the connection during authentication".into(),
            ));
        }
    }
}

/// The native error for a gate refusal.
pub fn gate_error(e: &GateError) -> ErrorFields {
    let code = match e {
        GateError::BadCredentials { .. } | GateError::RateLimited { .. } => "28P01",
        GateError::UnknownConnection { .. } => "3D000",
        GateError::NotAllowed { .. } | GateError::WrongProtocol { .. } => "42501",
        // feature_not_supported: the connection's type has no classifier in this build.
        GateError::NoClassifier { .. } => "0A000",
        GateError::AuditUnavailable(_) => "58030",
        GateError::MaskingUnavailable(_) => "58000",
    };
    let message = match e {
        // libpq and drivers recognise PostgreSQL's own wording.
        GateError::BadCredentials { user } => {
            format!("password authentication failed for user \"{user}\": the airlock token is not valid")
        }
        _ => e.to_string(),
    };
    ErrorFields::fatal(code, message)
}

async fn run_session(
    mut client: NetStream,
    leftover: BytesMut,
    session: Arc<airlock_gate::SessionGate>,
    params: Vec<(String, String)>,
    config: Arc<PgListenerConfig>,
    registries: Arc<Registries>,
) -> Result<(), SessionError> {
    let cancels = &registries.cancels;
    let spec = session.upstream().clone();
    let startup::StartupParams {
        mut passed,
        settings,
    } = match startup::sort_params(params) {
        Ok(p) => p,
        Err(why) => {
            let f = ErrorFields::fatal("0A000", format!("airlock: {why}"));
            session.close(&f.message);
            return Err(send_fatal(&mut client, &f).await);
        }
    };
    if let Some(f) = startup::refuse_startup_params(&passed)
        .or_else(|| startup::refuse_startup_params(&settings))
    {
        session.close(&f.message);
        return Err(send_fatal(&mut client, &f).await);
    }
    // Settings from `options` and other parameters: judged and recorded like `SET`s.
    let setting_seqs = if settings.is_empty() {
        Vec::new()
    } else {
        match startup::judge_settings(&session, &settings) {
            Ok(seqs) => seqs,
            Err(f) => {
                session.close(&f.message);
                return Err(send_fatal(&mut client, &f).await);
            }
        }
    };
    passed.extend(settings);
    if spec.read_only {
        // Defence in depth: the identity's rules deny every write here, so the database is
        // told too. A startup parameter is also what `RESET` returns to.
        passed.push(("default_transaction_read_only".into(), "on".into()));
    }
    let target = upstream::UpstreamTarget {
        connection: session.connection_name(),
        address: &spec.address,
        database: &spec.database,
        user: &spec.user,
        password: spec.password.as_deref(),
        sslmode: spec.sslmode,
        ca_file: spec.ca_file.as_deref(),
        params: &passed,
    };
    let connected = upstream::connect(&target).await;
    for seq in &setting_seqs {
        let error = connected.as_ref().err().map(|f| f.code.to_owned());
        session.record_result(*seq, None, error, Duration::ZERO);
    }
    let mut up = match connected {
        Ok(up) => up,
        Err(f) => {
            session.close(&f.message);
            return Err(send_fatal(&mut client, &f).await);
        }
    };
    let encoding = match upstream_settings(&up.replay, spec.read_only) {
        Ok(e) => Arc::new(encoding::SharedEncoding::new(e)),
        Err(f) => {
            session.close(&f.message);
            return Err(send_fatal(&mut client, &f).await);
        }
    };
    // The classifier and lineage take unqualified function and operator names for the built-in
    // ones: a session whose defaults search a user schema first is refused.
    match catalog::first_schema(&mut up.stream).await {
        Ok(first) if first == "pg_catalog" => {}
        found => {
            let why = match found {
                Ok(first) => format!("the upstream session's search_path (a database or role default) searches schema `{first}` before pg_catalog, so a function there could shadow a built-in airlock takes for what it is"),
                Err(e) => format!("reading the upstream session's search_path failed: {e}"),
            };
            let f = ErrorFields::fatal("42501", format!("airlock: {why}; the session is refused"))
                .with_hint("reset it upstream (ALTER DATABASE … RESET search_path, ALTER ROLE … RESET search_path) or list pg_catalog first");
            session.close(&f.message);
            return Err(send_fatal(&mut client, &f).await);
        }
    }
    // Column lineage follows views through their definitions, read from this upstream.
    let mut views = None;
    if session.masking().is_some_and(|m| m.has_column_rules()) {
        views = registries.snapshots.get(session.connection_name());
    }
    if views.is_none() && session.masking().is_some_and(|m| m.has_column_rules()) {
        // Concurrent DDL (a view dropped while pg_get_viewdef reads it) fails the read: retry.
        let mut fetched = catalog::fetch_views(&mut up.stream).await;
        for _ in 0..2 {
            if fetched.is_ok() {
                break;
            }
            fetched = catalog::fetch_views(&mut up.stream).await;
        }
        match fetched {
            Ok(fresh) => {
                let fresh = Arc::new(fresh);
                registries
                    .snapshots
                    .put(session.connection_name(), fresh.clone());
                views = Some(fresh);
            }
            Err(e) => {
                let f = ErrorFields::fatal(
                    "58000",
                    format!("airlock: masking applies to this session and needs the view definitions of `{}`, but reading them failed: {e}", session.connection_name()),
                );
                session.close(&f.message);
                return Err(send_fatal(&mut client, &f).await);
            }
        }
    }
    let (up_pid, up_key) = (up.backend_pid, up.backend_key.clone());
    let ids = cancels.register(CancelTarget {
        address: spec.address.clone(),
        pid: up.backend_pid,
        key: up.backend_key.clone(),
    });

    let mut out = BytesMut::new();
    put_auth_request(&mut out, 0, &[]);
    out.extend_from_slice(&up.replay);
    put_backend_key(&mut out, ids.0, ids.1);
    put_ready(&mut out, b'I');
    client.write_all(&out).await?;
    info!(upstream_tls = up.tls, "session open");

    let (client_r, client_w) = tokio::io::split(client);
    let (up_r, up_w) = tokio::io::split(up.stream);
    let client_w: relay::ClientWriter = Arc::new(tokio::sync::Mutex::new(client_w));
    let queue = Arc::new(Mutex::new(std::collections::VecDeque::new()));
    // Bytes the client sent right after its password (pipelined queries) must not be lost.
    let client_r = Prefixed::new(leftover, client_r);

    let limits = || relay::Limits {
        max_message_bytes: config.max_message_bytes,
    };
    let recorder = config.recordings.as_ref().map(|r| {
        Arc::new(r.start_session(airlock_record::SessionMeta {
            session_id: session.id().to_owned(),
            identity: Some(session.identity().name.clone()),
            connection: Some(session.connection_name().to_owned()),
            protocol: Some("postgres".into()),
            peer: None,
        }))
    });
    // Syncs the upstream has answered: the client side waits on it before trusting a name
    // an earlier batch (re)defined (see relay::Settled).
    let syncs = Arc::new(tokio::sync::watch::Sender::new(0u64));
    let c2u = relay::client_to_upstream(
        client_r,
        up_w,
        client_w.clone(),
        session.clone(),
        queue.clone(),
        limits(),
        relay::Shared {
            recorder: recorder.clone(),
            encoding: encoding.clone(),
            syncs: syncs.clone(),
            views: views.clone(),
        },
    );
    let u2c = relay::upstream_to_client(
        up_r,
        client_w.clone(),
        session.clone(),
        queue.clone(),
        limits(),
        relay::Shared {
            recorder: recorder.clone(),
            encoding,
            syncs,
            views,
        },
    );
    let (outcome, upstream_may_run) = tokio::select! {
        // An access grant or token that ends, or a token revoked, ends the session.
        end = session.ended() => {
            relay::fatal(&client_w, &ErrorFields::fatal("57P01", end.message)).await;
            // A statement still running upstream must not outlive the session (a revoked
            // token, an ended grant, a shutdown): cancel it, as the MySQL adapter KILLs.
            if let Err(e) = upstream::send_cancel(&spec.address, up_pid, &up_key).await {
                warn!(error = %e, "could not cancel the upstream statement of a cut session");
            }
            (Some(end.reason), false)
        }
        r = c2u => (r.err().map(|e| format!("client side: {e}")), true),
        r = u2c => match r {
            Ok(()) => (Some("the upstream closed the connection".to_string()), false),
            Err(e) => (Some(format!("upstream side: {e}")), true),
        },
    };
    cancels.remove(ids);
    let mut w = client_w.lock().await;
    let _ = w.shutdown().await;
    drop(w);
    let reason = outcome.unwrap_or_else(|| "client disconnected".into());
    if relay::abandon_outstanding(&queue, &session, &reason) && upstream_may_run {
        // The client left (or its side failed) while a statement ran: it must not keep
        // running upstream. A cut session was cancelled above.
        if let Err(e) = upstream::send_cancel(&spec.address, up_pid, &up_key).await {
            warn!(error = %e, "could not cancel the statement a departed client left running");
        }
    }
    if let Some(r) = &recorder {
        r.end(&reason);
    }
    info!(%reason, "session closed");
    session.close(&reason);
    Ok(())
}

/// The session's settings as the upstream reported them at startup: its client encoding must
/// be one the gateway reads as the server does (a role or database default could set another),
/// and a read-only session must be read-only (servers that report it: PostgreSQL 14 and later).
fn upstream_settings(
    replay: &[u8],
    read_only: bool,
) -> Result<encoding::ClientEncoding, ErrorFields> {
    let mut buf = BytesMut::from(replay);
    let mut enc = encoding::ClientEncoding::Utf8;
    while let Ok(Some(msg)) = split_message(&mut buf, usize::MAX) {
        if msg.tag != b'S' {
            continue;
        }
        let mut r = Reader::new(&msg.body, "ParameterStatus");
        let (Ok(name), Ok(value)) = (r.cstr(), r.cstr()) else {
            continue;
        };
        if name.eq_ignore_ascii_case("client_encoding") {
            enc = encoding::ClientEncoding::parse(value).map_err(|e| {
                ErrorFields::fatal(
                    "22023",
                    format!("airlock: the upstream session's {e} (a role or database default?)"),
                )
            })?;
        }
        if name.eq_ignore_ascii_case("standard_conforming_strings")
            && !value.eq_ignore_ascii_case("on")
        {
            return Err(ErrorFields::fatal(
                "22023",
                "airlock: the upstream session has standard_conforming_strings off (a role or database default?); airlock parses SQL as the server does only with it on",
            ));
        }
        if read_only
            && name.eq_ignore_ascii_case("default_transaction_read_only")
            && !value.eq_ignore_ascii_case("on")
        {
            return Err(ErrorFields::fatal(
                "58000",
                "airlock: this session must be read-only but the upstream did not accept default_transaction_read_only = on",
            ));
        }
    }
    Ok(enc)
}

async fn handle_cancel(cancels: &CancelRegistry, pid: u32, key: &[u8]) {
    let Ok(key) = <[u8; 4]>::try_from(key) else {
        return;
    };
    match cancels.get((pid, u32::from_be_bytes(key))) {
        Some(t) => {
            if let Err(e) = upstream::send_cancel(&t.address, t.pid, &t.key).await {
                warn!(error = %e, "forwarding a cancel request failed");
            } else {
                info!(upstream_pid = t.pid, "cancel request forwarded");
            }
        }
        // As PostgreSQL does: no answer either way, so keys cannot be probed.
        None => debug!("cancel request for an unknown session"),
    }
}

/// A reader that first yields bytes already buffered during startup.
pub struct Prefixed<R> {
    prefix: BytesMut,
    inner: R,
}

impl<R> Prefixed<R> {
    pub fn new(prefix: BytesMut, inner: R) -> Self {
        Prefixed { prefix, inner }
    }
}

impl<R: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Prefixed<R> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix.split_to(n));
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

/// Where the listener's self-signed certificate lives, for `airlock serve` to print.
pub fn default_cert_path(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("tls").join("gateway-cert.pem")
}
