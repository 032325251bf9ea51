//! The gateway as a MySQL client: connect to the upstream and authenticate with the held
//! credential (`mysql_native_password`, `caching_sha2_password` fast and full path; the full
//! path and `mysql_clear_password` only over TLS, so the secret never crosses the network in
//! the clear).

use crate::codec::{
    decode_err, put_packet, split_packet, Packet, CLIENT_CONNECT_ATTRS, CLIENT_CONNECT_WITH_DB,
    CLIENT_PLUGIN_AUTH, CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA, CLIENT_PROTOCOL_41,
    CLIENT_SECURE_CONNECTION, CLIENT_SSL, GATEWAY_CAPABILITIES,
};
use crate::handshake::{scramble, Greeting, Response, CACHING_SHA2, CLEAR, NATIVE};
use airlock_gate::UpstreamSpec;
use airlock_transport::tls::{client_config, SslMode};
use airlock_transport::NetStream;
use bytes::BytesMut;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Packets during authentication are small; anything larger is not a MySQL server.
const MAX_AUTH_PACKET: usize = 1 << 20;

/// Why the upstream could not be opened; `auth` failures are the held credential's fault.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct UpstreamError {
    pub message: String,
    pub auth: bool,
}

fn fail(message: impl Into<String>) -> UpstreamError {
    UpstreamError {
        message: message.into(),
        auth: false,
    }
}

fn auth_fail(message: impl Into<String>) -> UpstreamError {
    UpstreamError {
        message: message.into(),
        auth: true,
    }
}

/// MySQL 5.7+ or MariaDB 10+ (which reports `5.5.5-10.x.y-MariaDB` for old clients' sake). The
/// lexer inlines `/*!NNNNN ...*/` below 50700 on the assumption that the server runs it; an older
/// server would skip it and read the statement differently, so such an upstream is refused.
pub(crate) fn supported_server(version: &str) -> bool {
    let version = version.strip_prefix("5.5.5-").unwrap_or(version);
    let mut parts = version.split(|c: char| !c.is_ascii_digit());
    let major = parts.next().and_then(|p| p.parse::<u32>().ok());
    let minor = parts.next().and_then(|p| p.parse::<u32>().ok());
    match (major, minor) {
        (Some(major), Some(minor)) => (major, minor) >= (5, 7),
        _ => false,
    }
}

/// An authenticated upstream connection, in the command phase.
pub struct Upstream {
    pub stream: NetStream,
    /// The server's id for this connection (what `KILL` on the upstream takes).
    pub thread_id: u32,
    pub version: String,
    pub capabilities: u32,
    pub tls: bool,
    /// Bytes read past the final OK (none in practice: the server waits for a command).
    pub leftover: BytesMut,
}

/// What the client negotiated with the gateway and wants passed on.
#[derive(Debug, Clone, Copy)]
pub struct ClientParams {
    pub capabilities: u32,
    pub charset: u8,
}

impl Default for ClientParams {
    fn default() -> Self {
        ClientParams {
            capabilities: GATEWAY_CAPABILITIES,
            charset: 45,
        }
    }
}

/// Errors name no host or port (the client's message names the connection); the gateway's
/// log gets the address and the error, at most one line per upstream every 10 s with a count
/// of those held back.
pub async fn connect(spec: &UpstreamSpec, client: ClientParams) -> Result<Upstream, UpstreamError> {
    static LOG: airlock_gate::ratelog::RateLog =
        airlock_gate::ratelog::RateLog::new(Duration::from_secs(10));
    let result = tokio::time::timeout(CONNECT_TIMEOUT, connect_inner(spec, client))
        .await
        .unwrap_or_else(|_| Err(fail("connecting timed out")));
    if let Err(e) = &result {
        if let Some(held_back) = LOG.allow(&spec.address) {
            tracing::warn!(address = %spec.address, error = %e, held_back, "could not open the upstream connection (one line per upstream every {}s)", LOG.every().as_secs());
        }
    }
    result
}

async fn read_packet(stream: &mut NetStream, buf: &mut BytesMut) -> Result<Packet, UpstreamError> {
    loop {
        match split_packet(buf, MAX_AUTH_PACKET, None) {
            Ok(Some(p)) => return Ok(p),
            Ok(None) => {}
            Err(e) => return Err(fail(format!("upstream protocol error: {e}"))),
        }
        let n = stream
            .read_buf(buf)
            .await
            .map_err(|e| fail(format!("reading from the upstream: {e}")))?;
        if n == 0 {
            return Err(fail(
                "the upstream closed the connection during authentication",
            ));
        }
    }
}

async fn send(stream: &mut NetStream, seq: &mut u8, payload: &[u8]) -> Result<(), UpstreamError> {
    let mut out = BytesMut::with_capacity(payload.len() + 4);
    put_packet(&mut out, seq, payload);
    stream
        .write_all(&out)
        .await
        .map_err(|e| fail(format!("writing to the upstream: {e}")))
}

async fn connect_inner(
    spec: &UpstreamSpec,
    client: ClientParams,
) -> Result<Upstream, UpstreamError> {
    let tcp = TcpStream::connect(&spec.address)
        .await
        .map_err(|e| fail(format!("connecting: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let mut stream = NetStream::Plain(tcp);
    let mut buf = BytesMut::with_capacity(4096);
    let greeting_packet = read_packet(&mut stream, &mut buf).await?;
    let greeting = Greeting::decode(&greeting_packet.payload)
        .map_err(|e| fail(format!("upstream greeting: {e}")))?;
    if !supported_server(&greeting.version) {
        return Err(fail(format!(
            "the upstream reports server version `{}`; airlock supports MySQL 5.7 or later and MariaDB 10.0 or later (the statement lexer relies on which versioned comments every supported server runs)",
            greeting.version
        )));
    }
    let server = greeting.capabilities;
    if server & CLIENT_PROTOCOL_41 == 0 || server & CLIENT_SECURE_CONNECTION == 0 {
        return Err(fail(
            "the upstream is too old (no protocol 4.1 authentication)",
        ));
    }
    let mut seq = greeting_packet.last_seq.wrapping_add(1);
    let mode = spec.sslmode;
    let mut caps = (client.capabilities & GATEWAY_CAPABILITIES & server)
        | CLIENT_PROTOCOL_41
        | CLIENT_SECURE_CONNECTION
        | (server
            & (CLIENT_PLUGIN_AUTH | CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA | CLIENT_CONNECT_ATTRS))
        | CLIENT_CONNECT_WITH_DB;
    let use_tls = match mode {
        SslMode::Disable => false,
        SslMode::Prefer => server & CLIENT_SSL != 0,
        _ => {
            if server & CLIENT_SSL == 0 {
                return Err(fail(format!(
                    "sslmode={} but the upstream does not offer TLS",
                    spec.sslmode.as_str()
                )));
            }
            true
        }
    };
    if use_tls {
        caps |= CLIENT_SSL;
        let req = Response {
            capabilities: caps,
            max_packet: 1 << 24,
            charset: client.charset,
            ssl_request: true,
            ..Response::default()
        };
        send(&mut stream, &mut seq, &req.encode()).await?;
        let config = client_config(mode, spec.ca_file.as_deref())
            .map_err(|e| fail(format!("upstream TLS: {e}")))?;
        let host = spec
            .address
            .rsplit_once(':')
            .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']'))
            .unwrap_or(&spec.address)
            .to_owned();
        let name = rustls::pki_types::ServerName::try_from(host)
            .map_err(|e| fail(format!("upstream TLS server name: {e}")))?;
        let NetStream::Plain(tcp) = stream else {
            return Err(fail("internal: unexpected stream state"));
        };
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| fail(format!("upstream TLS handshake: {e}")))?;
        stream = NetStream::ClientTls(Box::new(tls));
    }
    let password = spec.password.as_deref().unwrap_or("").as_bytes().to_vec();
    let plugin = match greeting.plugin.as_str() {
        p @ (NATIVE | CACHING_SHA2) => p.to_owned(),
        // Anything else: start with the native scramble; the server switches us if needed.
        _ => NATIVE.to_owned(),
    };
    let response = Response {
        capabilities: caps,
        max_packet: 1 << 24,
        charset: client.charset,
        user: spec.user.clone(),
        auth: scramble(&plugin, &password, &greeting.nonce).unwrap_or_default(),
        database: Some(spec.database.clone()),
        plugin: Some(plugin.clone()),
        ssl_request: false,
    };
    send(&mut stream, &mut seq, &response.encode()).await?;
    let mut current_plugin = plugin;
    let mut nonce = greeting.nonce.clone();
    loop {
        let p = read_packet(&mut stream, &mut buf).await?;
        seq = p.last_seq.wrapping_add(1);
        match p.payload.first() {
            Some(0x00) => break,
            Some(0xFF) => {
                let e = decode_err(&p.payload);
                return Err(auth_fail(format!(
                    "the upstream refused the held credential for user `{}`: {} ({})",
                    spec.user, e.message, e.code
                )));
            }
            Some(0xFE) => {
                // AuthSwitchRequest: plugin name, NUL, new nonce.
                let body = p.payload.get(1..).unwrap_or_default();
                let mut r = crate::codec::Reader::new(body, "auth switch");
                current_plugin = String::from_utf8_lossy(r.cstr()).into_owned();
                let data = r.rest();
                nonce = data.strip_suffix(&[0]).unwrap_or(data).to_vec();
                let reply = match current_plugin.as_str() {
                    CLEAR if stream.is_tls() => {
                        let mut v = password.clone();
                        v.push(0);
                        v
                    }
                    CLEAR => {
                        return Err(auth_fail(
                            "the upstream asks for the password in clear text (mysql_clear_password) over an unencrypted connection; airlock refuses: set sslmode=require on the connection",
                        ))
                    }
                    other => scramble(other, &password, &nonce).ok_or_else(|| {
                        auth_fail(format!(
                            "the upstream asks for authentication plugin `{other}`, which airlock does not support (use mysql_native_password or caching_sha2_password)"
                        ))
                    })?,
                };
                send(&mut stream, &mut seq, &reply).await?;
            }
            Some(0x01) if current_plugin == CACHING_SHA2 => match p.payload.get(1) {
                // Fast path: the server had our hash cached; an OK follows.
                Some(0x03) => {}
                // Full authentication: the password itself, which only TLS may carry.
                Some(0x04) if stream.is_tls() => {
                    let mut v = password.clone();
                    v.push(0);
                    send(&mut stream, &mut seq, &v).await?;
                }
                Some(0x04) => {
                    return Err(auth_fail(
                        "the upstream needs caching_sha2_password full authentication, which airlock performs only over TLS (RSA key exchange is not supported): set sslmode=require on the connection, or log in once over TLS so the server caches the hash",
                    ))
                }
                _ => return Err(fail("unexpected caching_sha2_password message from the upstream")),
            },
            _ => return Err(fail("unexpected packet from the upstream during authentication")),
        }
    }
    let _ = nonce;
    Ok(Upstream {
        tls: stream.is_tls(),
        stream,
        thread_id: greeting.connection_id,
        version: greeting.version,
        capabilities: caps,
        leftover: buf,
    })
}

/// Runs one statement on a fresh upstream connection (used for `KILL`, which must arrive on a
/// connection other than the busy one). Returns the server's answer: Ok(affected) or the error.
pub async fn run_once(
    spec: &UpstreamSpec,
    sql: &str,
) -> Result<Result<u64, crate::codec::ErrPacket>, UpstreamError> {
    let mut up = connect(spec, ClientParams::default()).await?;
    let mut seq = 0u8;
    let mut payload = Vec::with_capacity(sql.len() + 1);
    payload.push(crate::COM_QUERY);
    payload.extend_from_slice(sql.as_bytes());
    send(&mut up.stream, &mut seq, &payload).await?;
    let mut buf = up.leftover;
    let p = read_packet(&mut up.stream, &mut buf).await?;
    let out = match p.payload.first() {
        Some(0xFF) => Err(decode_err(&p.payload)),
        _ => Ok(crate::codec::decode_ok(&p.payload)
            .map(|(a, _)| a)
            .unwrap_or(0)),
    };
    let mut seq = 0u8;
    let _ = send(&mut up.stream, &mut seq, &[crate::COM_QUIT]).await;
    Ok(out)
}

/// Reads the upstream session's `sql_mode` and refuses a mode our lexer does not support:
/// airlock lexes statements with MySQL's default rules, which `ANSI_QUOTES`,
/// `NO_BACKSLASH_ESCAPES`, MariaDB's combination modes (`ORACLE`, `MSSQL`, ...) and flags it
/// does not know change or may change ([`airlock_sql::mysql::sql_mode_is_supported`]).
pub async fn check_sql_mode(up: &mut Upstream) -> Result<(), UpstreamError> {
    let (stream, buf) = (&mut up.stream, &mut up.leftover);
    check_sql_mode_on(stream, buf).await
}

/// [`check_sql_mode`] on a relay's upstream stream and read buffer.
pub async fn check_sql_mode_on(
    stream: &mut NetStream,
    buf: &mut BytesMut,
) -> Result<(), UpstreamError> {
    let rows = query_rows_on(stream, buf, "SELECT @@SESSION.sql_mode")
        .await
        .map_err(|e| fail(format!("reading the upstream sql_mode: {e}")))?;
    let mode = match rows.first().and_then(|r| r.first()) {
        Some(Some(v)) => String::from_utf8_lossy(v).into_owned(),
        Some(None) => String::new(),
        None => return Err(fail("reading the upstream sql_mode: no row")),
    };
    if airlock_sql::mysql::sql_mode_is_supported(&mode) {
        return Ok(());
    }
    let bad = airlock_sql::mysql::unsupported_sql_modes(&mode).join(",");
    Err(fail(format!(
        "the session's sql_mode includes {bad}, which changes (or may change) how statements are lexed; airlock classifies with MySQL's default lexing and refuses such sessions (the server's or the user's default sql_mode must not include it, and it cannot be set through airlock)"
    )))
}

/// Puts the upstream session in read-only mode (`SET SESSION TRANSACTION READ ONLY`) and checks
/// that it took. Returns the variable that reports it (`tx_read_only` on MariaDB and MySQL 5.7,
/// `transaction_read_only` on MySQL 8), for later checks.
pub async fn set_read_only_on(
    stream: &mut NetStream,
    buf: &mut BytesMut,
) -> Result<&'static str, UpstreamError> {
    query_rows_on(stream, buf, "SET SESSION TRANSACTION READ ONLY")
        .await
        .map_err(|e| fail(format!("making the upstream session read-only: {e}")))?;
    for var in ["tx_read_only", "transaction_read_only"] {
        let sql = format!("SELECT @@SESSION.{var}");
        let Ok(rows) = query_rows_on(stream, buf, &sql).await else {
            continue;
        };
        return match rows.first().and_then(|r| r.first()) {
            Some(Some(v)) if is_on(v) => Ok(var),
            _ => Err(fail(format!(
                "the upstream session did not become read-only (@@{var} is not 1)"
            ))),
        };
    }
    Err(fail(
        "cannot read the upstream's transaction access mode (neither @@tx_read_only nor @@transaction_read_only)",
    ))
}

/// [`set_read_only_on`] on a fresh upstream.
pub async fn set_read_only(up: &mut Upstream) -> Result<&'static str, UpstreamError> {
    let (stream, buf) = (&mut up.stream, &mut up.leftover);
    set_read_only_on(stream, buf).await
}

/// Whether the session is still read-only (`var` from [`set_read_only_on`]).
pub async fn is_read_only_on(
    stream: &mut NetStream,
    buf: &mut BytesMut,
    var: &str,
) -> Result<bool, UpstreamError> {
    let rows = query_rows_on(stream, buf, &format!("SELECT @@SESSION.{var}")).await?;
    Ok(matches!(rows.first().and_then(|r| r.first()), Some(Some(v)) if is_on(v)))
}

fn is_on(v: &[u8]) -> bool {
    v == b"1" || v.eq_ignore_ascii_case(b"on")
}

/// Rows of a text-protocol query can be larger than authentication packets (view definitions).
const MAX_QUERY_PACKET: usize = 16 << 20;

/// Runs `sql` on an idle upstream and returns its rows (text protocol, `None` for NULL). Leaves
/// the upstream idle again. Used at session start (catalog reads for masking).
pub async fn query_rows(
    up: &mut Upstream,
    sql: &str,
) -> Result<Vec<Vec<Option<Vec<u8>>>>, UpstreamError> {
    let (stream, buf) = (&mut up.stream, &mut up.leftover);
    query_rows_on(stream, buf, sql).await
}

/// [`query_rows`] on a stream and its read buffer (the relay's upstream between commands; the
/// client never sees these statements or their answers). An OK answer is no rows.
pub async fn query_rows_on(
    stream: &mut NetStream,
    leftover: &mut BytesMut,
    sql: &str,
) -> Result<Vec<Vec<Option<Vec<u8>>>>, UpstreamError> {
    let mut seq = 0u8;
    let mut payload = Vec::with_capacity(sql.len() + 1);
    payload.push(crate::COM_QUERY);
    payload.extend_from_slice(sql.as_bytes());
    send(stream, &mut seq, &payload).await?;
    let mut buf = std::mem::take(leftover);
    let result = async {
        let read = async |buf: &mut BytesMut, stream: &mut NetStream| loop {
            match split_packet(buf, MAX_QUERY_PACKET, None) {
                Ok(Some(p)) => return Ok(p),
                Ok(None) => {}
                Err(e) => return Err(fail(format!("upstream protocol error: {e}"))),
            }
            let n = stream
                .read_buf(buf)
                .await
                .map_err(|e| fail(format!("reading from the upstream: {e}")))?;
            if n == 0 {
                return Err(fail("the upstream closed the connection"));
            }
        };
        let first = read(&mut buf, stream).await?;
        let columns = match first.payload.first() {
            Some(0xFF) => return Err(fail(decode_err(&first.payload).message)),
            Some(0x00) => return Ok(Vec::new()),
            _ => crate::codec::Reader::new(&first.payload, "column count")
                .lenenc()
                .ok()
                .flatten()
                .unwrap_or(0),
        };
        for _ in 0..=columns {
            // Definitions, then their EOF.
            read(&mut buf, stream).await?;
        }
        let mut rows = Vec::new();
        loop {
            let p = read(&mut buf, stream).await?;
            if crate::codec::is_eof(&p.payload) {
                return Ok(rows);
            }
            if p.payload.first() == Some(&0xFF) {
                return Err(fail(decode_err(&p.payload).message));
            }
            let mut r = crate::codec::Reader::new(&p.payload, "row");
            let mut row = Vec::with_capacity(usize::try_from(columns).unwrap_or(0));
            for _ in 0..columns {
                row.push(
                    r.lenenc_bytes()
                        .map_err(|e| fail(e.to_string()))?
                        .map(<[u8]>::to_vec),
                );
            }
            rows.push(row);
        }
    }
    .await;
    *leftover = buf;
    result
}
