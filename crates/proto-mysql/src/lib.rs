//! The MySQL/MariaDB adapter: wire bytes in, commands to the gate, bytes out.
//!
//! Clients authenticate with their airlock token as the password (`mysql_clear_password` over
//! TLS or on loopback; clients that insist on `caching_sha2_password` are sent down its "full
//! authentication" path, where they send the password itself — over TLS only) and name the
//! connection as the database. The gateway then opens the upstream with the held credential
//! and relays the command phase (see [`relay`]). It never decides anything itself: every
//! statement goes to [`airlock_gate::SessionGate`].
#![forbid(unsafe_code)]

mod catalog_check;
pub mod codec;
pub mod handshake;
pub mod mask;
pub mod relay;
pub mod upstream;

use crate::codec::{
    err_payload, ok_payload, put_packet, split_packet, FrameError, Packet, CLIENT_SSL,
    GATEWAY_CAPABILITIES, SERVER_STATUS_AUTOCOMMIT,
};
use crate::handshake::{auth_switch, Greeting, Response, CACHING_SHA2, CLEAR, NATIVE};
use airlock_gate::{Gate, GateError, UpstreamSpec};
use airlock_transport::NetStream;
use bytes::BytesMut;
use rand::Rng;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn, Instrument};

pub const COM_QUIT: u8 = 0x01;
pub const COM_INIT_DB: u8 = 0x02;
pub const COM_QUERY: u8 = 0x03;
pub const COM_FIELD_LIST: u8 = 0x04;
pub const COM_STATISTICS: u8 = 0x09;
pub const COM_PROCESS_KILL: u8 = 0x0C;
pub const COM_PING: u8 = 0x0E;
pub const COM_CHANGE_USER: u8 = 0x11;
pub const COM_STMT_PREPARE: u8 = 0x16;
pub const COM_STMT_EXECUTE: u8 = 0x17;
pub const COM_STMT_SEND_LONG_DATA: u8 = 0x18;
pub const COM_STMT_CLOSE: u8 = 0x19;
pub const COM_STMT_RESET: u8 = 0x1A;
pub const COM_SET_OPTION: u8 = 0x1B;
pub const COM_STMT_FETCH: u8 = 0x1C;
pub const COM_RESET_CONNECTION: u8 = 0x1F;

/// How long a client may take to finish the handshake and authentication.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Handshake packets are small; a larger one is hostile.
const MAX_HANDSHAKE_PACKET: usize = 64 * 1024;
/// The version the gateway announces before it knows the upstream. A 5.7-style version keeps
/// drivers on syntax every MySQL and MariaDB server accepts.
pub const SERVER_VERSION: &str = "5.7.99-airlock";
/// Collation ids of character sets that can hide a `\` or quote byte inside a multi-byte
/// character (big5, sjis, gbk, cp932, gb18030): with them the server would lex a statement
/// differently from the classifier.
const UNSAFE_COLLATIONS: &[u8] = &[1, 84, 13, 88, 28, 87, 95, 96, 248, 249, 250];

pub struct MySqlListenerConfig {
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub allow_plaintext_tokens: bool,
    /// The largest packet a client may send (after joining 16 MiB frames), and the largest
    /// result packet a masked session buffers to mask.
    pub max_packet_bytes: usize,
    /// Sessions are recorded here (statements and masked results) when set.
    pub recordings: Option<airlock_record::Recordings>,
}

/// How long a connection's catalog (relations, views, ruled columns) is trusted before the next
/// masked session reads it again.
const CATALOG_TTL: Duration = Duration::from_secs(60);

/// Catalogs per connection and rule column set, read by masked sessions at open.
#[derive(Default)]
pub struct CatalogCache {
    map: Mutex<HashMap<String, (std::time::Instant, Arc<mask::Catalog>)>>,
}

impl CatalogCache {
    fn get(&self, key: &str) -> Option<Arc<mask::Catalog>> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key)
            .filter(|(at, _)| at.elapsed() < CATALOG_TTL)
            .map(|(_, c)| c.clone())
    }

    fn put(&self, key: String, c: Arc<mask::Catalog>) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 1024 {
            map.clear();
        }
        map.insert(key, (std::time::Instant::now(), c));
    }
}

/// The catalog masking needs, from the session's own upstream (idle, before relaying). A read
/// that fails leaves an empty catalog: every relation is then judged by name and no column
/// metadata is trusted (fail closed).
async fn load_catalog(
    up: &mut upstream::Upstream,
    m: &airlock_gate::masking::SessionMasking,
) -> Result<mask::Catalog, upstream::UpstreamError> {
    load_catalog_on(&mut up.stream, &mut up.leftover, m).await
}

/// [`load_catalog`] on the relay's upstream between commands.
pub(crate) async fn load_catalog_on(
    stream: &mut airlock_transport::NetStream,
    buf: &mut bytes::BytesMut,
    m: &airlock_gate::masking::SessionMasking,
) -> Result<mask::Catalog, upstream::UpstreamError> {
    let tables = upstream::query_rows_on(stream, buf, mask::CATALOG_TABLES_SQL).await?;
    let columns = match mask::catalog_columns_sql(m) {
        Some(sql) => upstream::query_rows_on(stream, buf, &sql).await?,
        None => Vec::new(),
    };
    Ok(mask::Catalog::from_rows(&tables, &columns))
}

/// Maps the connection ids the gateway hands to clients to upstream threads, for `KILL`.
#[derive(Default)]
pub struct KillRegistry {
    next: AtomicU32,
    map: Mutex<HashMap<u32, KillTarget>>,
}

#[derive(Clone)]
pub struct KillTarget {
    pub identity: String,
    pub upstream: UpstreamSpec,
    pub thread_id: u32,
}

impl KillRegistry {
    fn allocate(&self) -> u32 {
        // Ids start at 1 and wrap past u32::MAX back to 1; 0 is never used.
        loop {
            let id = self.next.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
            if id != 0 && !self.lock().contains_key(&id) {
                return id;
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, KillTarget>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn register(&self, id: u32, target: KillTarget) {
        self.lock().insert(id, target);
    }

    pub fn remove(&self, id: u32) {
        self.lock().remove(&id);
    }

    /// The target of `KILL id` sent by `identity`: only that identity's own sessions are
    /// visible, so no one can kill (or probe) another identity's statements.
    pub fn get(&self, id: u32, identity: &str) -> Option<KillTarget> {
        self.lock()
            .get(&id)
            .filter(|t| t.identity == identity)
            .cloned()
    }
}

/// Serves the MySQL listener until the task is dropped.
/// The MySQL endpoint, as the binary runs it ([`airlock_transport::Listener`]).
pub struct MySqlListener {
    pub gate: Arc<Gate>,
    pub config: Arc<MySqlListenerConfig>,
}

impl airlock_transport::Listener for MySqlListener {
    fn protocol(&self) -> &'static str {
        "mysql"
    }

    fn banner(&self, addr: std::net::SocketAddr) -> String {
        format!("airlock: mysql listener on {addr} (TLS available; token as password, connection as database)\n")
    }

    fn serve(self: Box<Self>, socket: TcpListener) -> airlock_transport::listener::Serving {
        Box::pin(serve(socket, self.gate, self.config))
    }
}

pub async fn serve(listener: TcpListener, gate: Arc<Gate>, config: Arc<MySqlListenerConfig>) {
    let kills = Arc::new(KillRegistry::default());
    let catalogs = Arc::new(CatalogCache::default());
    let mut failures = 0u32;
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                airlock_gate::capacity::after_accept_error("mysql", &e, &mut failures).await;
                continue;
            }
        };
        failures = 0;
        let _ = tcp.set_nodelay(true);
        let gate = gate.clone();
        let config = config.clone();
        let kills = kills.clone();
        let catalogs = catalogs.clone();
        tokio::spawn(async move {
            // Held until the connection ends, whatever ends it.
            let Some(_permit) = gate.admit_connection() else {
                // What the server itself sends: ERR 1040 in place of the greeting.
                let message = format!(
                    "airlock: the gateway is serving its maximum of {} sessions; try again shortly",
                    gate.capacity().limit()
                );
                let _ = refuse(&mut NetStream::Plain(tcp), 0, 1040, "08004", &message).await;
                return;
            };
            let Some(handshaking) = gate.begin_handshake(peer.ip()) else {
                let message = "airlock: too many connections from this address are still in their handshake; try again shortly";
                let _ = refuse(&mut NetStream::Plain(tcp), 0, 1040, "08004", message).await;
                return;
            };
            if let Err(e) =
                handle_client(tcp, peer, gate, config, kills, catalogs, handshaking).await
            {
                debug!(%peer, error = %e, "mysql client ended with an error");
            }
        });
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("{0}")]
    Client(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Sends an ERR packet and ends the connection.
async fn refuse(
    stream: &mut NetStream,
    seq: u8,
    code: u16,
    sqlstate: &str,
    message: &str,
) -> SessionError {
    let mut out = BytesMut::new();
    let mut seq = seq;
    put_packet(&mut out, &mut seq, &err_payload(code, sqlstate, message));
    let _ = stream.write_all(&out).await;
    let _ = stream.flush().await;
    let _ = stream.shutdown().await;
    SessionError::Client(message.to_owned())
}

async fn read_handshake_packet(
    stream: &mut NetStream,
    buf: &mut BytesMut,
    seq: u8,
) -> Result<Packet, SessionError> {
    loop {
        match split_packet(buf, MAX_HANDSHAKE_PACKET, Some(seq)) {
            Ok(Some(p)) => return Ok(p),
            Ok(None) => {}
            Err(e) => {
                return Err(
                    refuse(stream, seq, 1043, "08S01", &format!("Bad handshake: {e}")).await,
                )
            }
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(SessionError::Client(
                "client closed the connection during the handshake".into(),
            ));
        }
    }
}

/// Reads exactly one packet (header, then its payload) without buffering anything after it.
async fn read_first_packet(stream: &mut NetStream, seq: u8) -> Result<Packet, SessionError> {
    let mut header = [0u8; 4];
    read_exact_or_closed(stream, &mut header).await?;
    let [l0, l1, l2, got_seq] = header;
    let len = usize::from(l0) | usize::from(l1) << 8 | usize::from(l2) << 16;
    if len > MAX_HANDSHAKE_PACKET || got_seq != seq {
        let why = if got_seq != seq {
            format!("packets out of order: expected sequence id {seq}, got {got_seq}")
        } else {
            format!("Bad handshake: a packet of {len} bytes exceeds the handshake limit of {MAX_HANDSHAKE_PACKET} bytes")
        };
        return Err(refuse(stream, seq, 1043, "08S01", &why).await);
    }
    let mut payload = vec![0u8; len];
    read_exact_or_closed(stream, &mut payload).await?;
    Ok(Packet {
        payload: BytesMut::from(payload.as_slice()),
        seq: got_seq,
        last_seq: got_seq,
    })
}

async fn read_exact_or_closed(stream: &mut NetStream, out: &mut [u8]) -> Result<(), SessionError> {
    match stream.read_exact(out).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(SessionError::Client(
            "client closed the connection during the handshake".into(),
        )),
        Err(e) => Err(e.into()),
    }
}

/// The native error for a gate refusal: (code, SQLSTATE).
/// The native error (code, SQLSTATE, message) for a gate refusal: every variant is mapped
/// here, so a new one fails to compile instead of reaching clients as an authentication error.
pub fn gate_error(e: &GateError) -> (u16, &'static str, String) {
    let (code, state) = match e {
        GateError::BadCredentials { .. } | GateError::RateLimited { .. } => (1045, "28000"),
        GateError::UnknownConnection { .. } => (1049, "42000"),
        GateError::NotAllowed { .. } | GateError::WrongProtocol { .. } => (1044, "42000"),
        // ER_NOT_SUPPORTED_YET: the connection's type has no classifier in this build.
        GateError::NoClassifier { .. } => (1235, "42000"),
        // ER_UNKNOWN_ERROR: the server side cannot serve the session; not the client's fault.
        GateError::AuditUnavailable(_) | GateError::MaskingUnavailable(_) => (1105, "HY000"),
    };
    let message = match e {
        // MySQL clients and drivers recognise the server's own wording.
        GateError::BadCredentials { user } => {
            format!("airlock: Access denied for user '{user}': the airlock token is not valid")
        }
        _ => format!("airlock: {e}"),
    };
    (code, state, message)
}

struct Authenticated {
    stream: NetStream,
    buf: BytesMut,
    response: Response,
    token: String,
    /// The sequence id of the gateway's next packet (the final OK).
    seq: u8,
}

async fn handshake(
    tcp: TcpStream,
    peer: SocketAddr,
    config: &MySqlListenerConfig,
    connection_id: u32,
) -> Result<Authenticated, SessionError> {
    let mut stream = NetStream::Plain(tcp);
    let mut buf = BytesMut::with_capacity(1024);
    // Printable, NUL-free scramble bytes, as servers send.
    let nonce: Vec<u8> = {
        let mut rng = rand::rng();
        (0..20).map(|_| rng.random_range(33u8..127)).collect()
    };
    let plaintext_ok =
        airlock_transport::plaintext_token_allowed(peer.ip(), config.allow_plaintext_tokens);
    let mut caps = GATEWAY_CAPABILITIES;
    if config.tls.is_some() {
        caps |= CLIENT_SSL;
    }
    let greeting = Greeting {
        version: SERVER_VERSION.into(),
        connection_id,
        nonce: nonce.clone(),
        capabilities: caps,
        charset: 45,
        status: SERVER_STATUS_AUTOCOMMIT,
        // Ask for the token in clear text only where it may travel so; elsewhere the client
        // first answers with a scramble and is switched to clear text after TLS.
        plugin: if plaintext_ok { CLEAR } else { NATIVE }.into(),
    };
    let mut out = BytesMut::new();
    let mut seq = 0u8;
    put_packet(&mut out, &mut seq, &greeting.encode());
    stream.write_all(&out).await?;

    // The first answer is read exactly, never past its end: when it is an SSL request, the
    // client sends its TLS ClientHello right behind it without waiting for anything (pymysql does,
    // often in the same TCP segment), and those bytes belong to the TLS handshake.
    let mut p = read_first_packet(&mut stream, seq).await?;
    let mut response = match Response::decode(&p.payload) {
        Ok(r) => r,
        Err(e) => {
            return Err(refuse(
                &mut stream,
                p.last_seq.wrapping_add(1),
                1043,
                "08S01",
                &format!("Bad handshake: {e}"),
            )
            .await)
        }
    };
    if response.ssl_request {
        let Some(tls) = config.tls.clone() else {
            return Err(refuse(
                &mut stream,
                p.last_seq.wrapping_add(1),
                1043,
                "08S01",
                "Bad handshake: TLS was not offered",
            )
            .await);
        };
        if !buf.is_empty() {
            // Bytes sent before the TLS handshake would be trusted as if encrypted.
            return Err(refuse(
                &mut stream,
                p.last_seq.wrapping_add(1),
                1043,
                "08S01",
                "Bad handshake: unencrypted data after the SSL request",
            )
            .await);
        }
        let NetStream::Plain(tcp) = stream else {
            return Err(SessionError::Client(
                "internal: unexpected stream state".into(),
            ));
        };
        let tls = tokio_rustls::TlsAcceptor::from(tls).accept(tcp).await?;
        stream = NetStream::ServerTls(Box::new(tls));
        p = read_handshake_packet(&mut stream, &mut buf, p.last_seq.wrapping_add(1)).await?;
        response = match Response::decode(&p.payload) {
            Ok(r) if !r.ssl_request => r,
            Ok(_) => {
                return Err(refuse(
                    &mut stream,
                    p.last_seq.wrapping_add(1),
                    1043,
                    "08S01",
                    "Bad handshake: a second SSL request",
                )
                .await)
            }
            Err(e) => {
                return Err(refuse(
                    &mut stream,
                    p.last_seq.wrapping_add(1),
                    1043,
                    "08S01",
                    &format!("Bad handshake: {e}"),
                )
                .await)
            }
        };
    }
    let mut seq = p.last_seq.wrapping_add(1);
    if UNSAFE_COLLATIONS.contains(&response.charset) {
        return Err(refuse(&mut stream, seq, 1115, "42000", "airlock: this client character set (big5, sjis, gbk, cp932 or gb18030) can hide quotes and backslashes inside multi-byte characters, so statements could not be classified reliably; use utf8mb4").await);
    }
    if !stream.is_tls() && !plaintext_ok {
        return Err(refuse(&mut stream, seq, 1045, "28000", "airlock refuses tokens over unencrypted connections from non-loopback addresses: connect with TLS (--ssl / ssl-mode=REQUIRED), or set [gateway] allow_plaintext_tokens = true").await);
    }
    let plugin = response.plugin.clone().unwrap_or_default();
    let token_bytes = if plugin == CLEAR && greeting.plugin == CLEAR {
        response.auth.clone()
    } else if plugin == CACHING_SHA2 {
        // The client answered the greeting with another plugin than announced: switch it to
        // caching_sha2_password explicitly first (its scramble is of no use to us).
        if greeting.plugin != CACHING_SHA2 {
            let mut out = BytesMut::new();
            put_packet(&mut out, &mut seq, &auth_switch(CACHING_SHA2, &nonce));
            stream.write_all(&out).await?;
            let reply = read_handshake_packet(&mut stream, &mut buf, seq).await?;
            seq = reply.last_seq.wrapping_add(1);
        }
        // The "perform full authentication" answer: the client then sends its password as is
        // (it does so only over TLS; without TLS it asks for an RSA key, which we refuse).
        let mut out = BytesMut::new();
        put_packet(&mut out, &mut seq, &[0x01, 0x04]);
        stream.write_all(&out).await?;
        let reply = read_handshake_packet(&mut stream, &mut buf, seq).await?;
        seq = reply.last_seq.wrapping_add(1);
        if reply.payload.first() == Some(&0x02) && reply.payload.len() == 1 {
            return Err(refuse(&mut stream, seq, 1045, "28000", "airlock: caching_sha2_password without TLS needs an RSA key exchange, which airlock does not offer; connect with TLS (--ssl-mode=REQUIRED) or use mysql_clear_password (--enable-cleartext-plugin) on loopback").await);
        }
        reply.payload.to_vec()
    } else {
        let mut out = BytesMut::new();
        put_packet(&mut out, &mut seq, &auth_switch(CLEAR, &nonce));
        stream.write_all(&out).await?;
        let reply = read_handshake_packet(&mut stream, &mut buf, seq).await?;
        seq = reply.last_seq.wrapping_add(1);
        reply.payload.to_vec()
    };
    let token_bytes = token_bytes.strip_suffix(&[0]).unwrap_or(&token_bytes);
    let token = String::from_utf8_lossy(token_bytes).into_owned();
    Ok(Authenticated {
        stream,
        buf,
        response,
        token,
        seq,
    })
}

async fn handle_client(
    tcp: TcpStream,
    peer: SocketAddr,
    gate: Arc<Gate>,
    config: Arc<MySqlListenerConfig>,
    kills: Arc<KillRegistry>,
    catalogs: Arc<CatalogCache>,
    handshaking: airlock_gate::capacity::HandshakePermit,
) -> Result<(), SessionError> {
    let connection_id = kills.allocate();
    let auth = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        handshake(tcp, peer, &config, connection_id),
    )
    .await
    .map_err(|_| SessionError::Client("handshake timed out".into()))??;
    let Authenticated {
        mut stream,
        buf,
        response,
        token,
        seq,
    } = auth;
    let identity = match gate.authenticate(&response.user, &token, peer).await {
        Ok(i) => i,
        Err(e) => {
            let (code, state, message) = gate_error(&e);
            return Err(refuse(&mut stream, seq, code, state, &message).await);
        }
    };
    drop(handshaking);
    let Some(database) = response.database.clone() else {
        return Err(refuse(&mut stream, seq, 1046, "3D000", "airlock: name the connection as the database (mysql -D <connection>, or the database in the URL)").await);
    };
    let session = match gate.open_session(
        identity,
        &database,
        airlock_core::ConnectionType::Mysql,
        peer,
        stream.is_tls(),
    ) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            let (code, state, message) = gate_error(&e);
            return Err(refuse(&mut stream, seq, code, state, &message).await);
        }
    };
    let span = tracing::info_span!("mysql_session", session = %session.id(), identity = %session.identity().name, connection = %session.connection_name(), id = connection_id);
    async move {
        let params = upstream::ClientParams {
            capabilities: response.capabilities,
            charset: response.charset,
        };
        let mut up = match upstream::connect(session.upstream(), params).await {
            Ok(u) => u,
            Err(e) => {
                let (code, state) = if e.auth { (1045, "28000") } else { (2013, "08S01") };
                let msg = format!("airlock: cannot open connection `{}`: {e}", session.connection_name());
                session.close(&msg);
                return Err(refuse(&mut stream, seq, code, state, &msg).await);
            }
        };
        if let Err(e) = upstream::check_sql_mode(&mut up).await {
            let msg = format!("airlock: {e}");
            session.close(&msg);
            return Err(refuse(&mut stream, seq, 1105, "HY000", &msg).await);
        }
        // Defence in depth: a session whose rules allow no writes runs in the database's
        // read-only mode, so a write the classifier missed still fails there. Fail closed.
        let read_only_var = if session.upstream().read_only {
            match upstream::set_read_only(&mut up).await {
                Ok(var) => Some(var),
                Err(e) => {
                    let msg = format!("airlock: {e}");
                    session.close(&msg);
                    return Err(refuse(&mut stream, seq, 1105, "HY000", &msg).await);
                }
            }
        } else {
            None
        };
        kills.register(
            connection_id,
            KillTarget {
                identity: session.identity().name.clone(),
                upstream: session.upstream().clone(),
                thread_id: up.thread_id,
            },
        );
        let mask_state = match session.masking() {
            Some(m) if m.has_column_rules() => {
                let mut rule_columns: Vec<String> = m
                    .rules
                    .iter()
                    .map(|r| r.column_part().unwrap_or("*").to_lowercase())
                    .collect();
                rule_columns.sort();
                rule_columns.dedup();
                let key = format!("{}\n{}", session.connection_name(), rule_columns.join(","));
                let catalog = match catalogs.get(&key) {
                    Some(c) => c,
                    None => {
                        let c = match load_catalog(&mut up, m).await {
                            Ok(c) => c,
                            Err(e) => {
                                warn!(error = %e, "reading the upstream catalog for masking failed; relations are judged by name only");
                                mask::Catalog::default()
                            }
                        };
                        let c = Arc::new(c);
                        catalogs.put(key, c.clone());
                        c
                    }
                };
                Some(relay::MaskState::new(m.clone(), catalog))
            }
            Some(m) => Some(relay::MaskState::new(
                m.clone(),
                Arc::new(mask::Catalog::default()),
            )),
            None => None,
        };
        let mut out = BytesMut::new();
        let mut seq = seq;
        put_packet(&mut out, &mut seq, &ok_payload(0, 0, SERVER_STATUS_AUTOCOMMIT, 0));
        stream.write_all(&out).await?;
        info!(upstream_tls = up.tls, upstream_thread = up.thread_id, upstream_version = %up.version, masked = mask_state.is_some(), "session open");
        let recorder = config.recordings.as_ref().map(|r| {
            Arc::new(r.start_session(airlock_record::SessionMeta {
                session_id: session.id().to_owned(),
                identity: Some(session.identity().name.clone()),
                connection: Some(session.connection_name().to_owned()),
                protocol: Some("mysql".into()),
                peer: Some(peer.to_string()),
            }))
        });
        let mut relay = relay::Relay::new(
            stream,
            buf,
            up,
            session.clone(),
            kills.clone(),
            config.max_packet_bytes,
        );
        if let Some(m) = mask_state {
            relay = relay.with_masking(m);
        }
        if let Some(var) = read_only_var {
            relay = relay.with_read_only(var);
        }
        if let (Some(rec), Some(r)) = (&recorder, &config.recordings) {
            relay = relay.with_recorder(rec.clone(), r.config().max_rows);
        }
        let reason = relay.run().await;
        kills.remove(connection_id);
        if let Some(r) = &recorder {
            r.end(&reason);
        }
        info!(%reason, "session closed");
        session.close(&reason);
        Ok(())
    }
    .instrument(span)
    .await
}

/// Frames are checked before anything else; exposed for the fuzz target.
pub fn decode_client_packets(bytes: &[u8], max: usize) -> Result<Vec<Packet>, FrameError> {
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    let mut seq = 0u8;
    while let Some(p) = split_packet(&mut buf, max, Some(seq))? {
        seq = 0;
        let _ = Response::decode(&p.payload);
        let _ = Greeting::decode(&p.payload);
        let _ = relay::describe_command(&p.payload);
        out.push(p);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A session the gateway cannot mask is the server's failure, not a bad password: before,
    /// it reached MySQL clients as 1045 "Access denied".
    #[test]
    fn gate_errors_map_to_their_own_mysql_codes() {
        let (code, state, message) =
            gate_error(&GateError::MaskingUnavailable("no detector".into()));
        assert_eq!((code, state), (1105, "HY000"));
        assert!(message.contains("cannot mask data"), "{message}");
        let (code, _, message) = gate_error(&GateError::BadCredentials {
            user: "agent".into(),
        });
        assert_eq!(code, 1045);
        assert!(
            message.contains("Access denied for user 'agent'"),
            "{message}"
        );
        assert!(
            !message.contains("password authentication failed"),
            "{message}"
        );
    }

    #[test]
    fn only_servers_that_run_the_lexers_versioned_comments_are_served() {
        for ok in [
            "8.0.36",
            "5.7.44-log",
            "5.5.5-10.11.19-MariaDB-0+deb12u1",
            "11.4.2-MariaDB",
            "9.1.0",
        ] {
            assert!(upstream::supported_server(ok), "{ok}");
        }
        for old in ["5.6.51", "5.5.68-MariaDB", "5.1.73", "", "x.y"] {
            assert!(!upstream::supported_server(old), "{old}");
        }
    }
}
