//! Opening the upstream connection with the credential airlock holds: TLS per `sslmode`,
//! then trust, cleartext, MD5 or SCRAM-SHA-256 authentication. The client never sees any of it.

use crate::codec::{
    self, put_message, put_startup, split_message, ErrorFields, Reader, SSL_REQUEST,
};
use airlock_transport::tls::{client_config, SslMode};
use airlock_transport::NetStream;
use bytes::{BufMut, BytesMut};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and as whom to connect.
pub struct UpstreamTarget<'a> {
    pub connection: &'a str,
    pub address: &'a str,
    pub database: &'a str,
    pub user: &'a str,
    pub password: Option<&'a str>,
    pub sslmode: SslMode,
    pub ca_file: Option<&'a Path>,
    /// Client parameters to pass through (application_name, client_encoding, ...).
    pub params: &'a [(String, String)],
}

/// An authenticated upstream connection.
pub struct Upstream {
    pub stream: NetStream,
    /// The upstream's BackendKeyData, for cancel requests.
    pub backend_pid: u32,
    pub backend_key: Vec<u8>,
    /// ParameterStatus and NoticeResponse messages (raw) to replay to the client, then ReadyForQuery.
    pub replay: BytesMut,
    pub tls: bool,
}

/// Why the upstream could not be reached; always rendered to the client as a FATAL error
/// that names the connection but never the credential.
///
/// The message names the connection, not the upstream's host and port (the client has no
/// business knowing where the database is). The gateway's log gets the same line, at most one
/// per connection every 10 s with a count of those held back.
pub fn upstream_error(connection: &str, what: impl std::fmt::Display) -> ErrorFields {
    static LOG: airlock_gate::ratelog::RateLog =
        airlock_gate::ratelog::RateLog::new(Duration::from_secs(10));
    if let Some(held_back) = LOG.allow(connection) {
        tracing::warn!(connection, error = %what, held_back, "could not open the upstream connection (one line per connection every {}s)", LOG.every().as_secs());
    }
    ErrorFields::fatal(
        "08001",
        format!("airlock could not open upstream connection `{connection}`: {what}"),
    )
}

pub async fn connect(t: &UpstreamTarget<'_>) -> Result<Upstream, ErrorFields> {
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(t.address))
        .await
        .map_err(|_| upstream_error(t.connection, "connect timed out"))?
        .map_err(|e| upstream_error(t.connection, format!("connect: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let mut stream = match t.sslmode {
        SslMode::Disable => NetStream::Plain(tcp),
        mode => negotiate_tls(tcp, t, mode).await?,
    };
    let tls = stream.is_tls();

    let mut out = BytesMut::new();
    let mut params: Vec<(&str, &str)> = vec![("user", t.user), ("database", t.database)];
    params.extend(t.params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    put_startup(&mut out, &params);
    write(&mut stream, &out, t).await?;

    let mut buf = BytesMut::with_capacity(4096);
    let mut replay = BytesMut::new();
    let mut scram: Option<ScramSha256> = None;
    let mut key: Option<(u32, Vec<u8>)> = None;
    loop {
        let msg = read_message(&mut stream, &mut buf, t).await?;
        match msg.tag {
            b'R' => {
                let mut r = Reader::new(&msg.body, "Authentication");
                let code = r.u32().map_err(|e| upstream_error(t.connection, e))?;
                let mut out = BytesMut::new();
                match code {
                    0 => continue,
                    3 => {
                        let pw = password(t)?;
                        put_message(&mut out, b'p', |o| codec::put_cstr(o, pw));
                    }
                    5 => {
                        let salt: [u8; 4] = r
                            .take(4)
                            .ok()
                            .and_then(|s| s.try_into().ok())
                            .ok_or_else(|| upstream_error(t.connection, "truncated MD5 salt"))?;
                        let hash = postgres_protocol::authentication::md5_hash(
                            t.user.as_bytes(),
                            password(t)?.as_bytes(),
                            salt,
                        );
                        put_message(&mut out, b'p', |o| codec::put_cstr(o, &hash));
                    }
                    10 => {
                        let mut offers_scram = false;
                        while let Ok(m) = r.cstr() {
                            if m.is_empty() {
                                break;
                            }
                            offers_scram |= m == "SCRAM-SHA-256";
                        }
                        if !offers_scram {
                            return Err(upstream_error(
                                t.connection,
                                "the server offers no SASL mechanism airlock supports (SCRAM-SHA-256)",
                            ));
                        }
                        let s = ScramSha256::new(
                            password(t)?.as_bytes(),
                            ChannelBinding::unsupported(),
                        );
                        put_message(&mut out, b'p', |o| {
                            codec::put_cstr(o, "SCRAM-SHA-256");
                            o.put_i32(s.message().len() as i32);
                            o.extend_from_slice(s.message());
                        });
                        scram = Some(s);
                    }
                    11 => {
                        let s = scram.as_mut().ok_or_else(|| {
                            upstream_error(t.connection, "SASL continue without SASL start")
                        })?;
                        s.update(r.rest())
                            .map_err(|e| upstream_error(t.connection, format!("SCRAM: {e}")))?;
                        put_message(&mut out, b'p', |o| o.extend_from_slice(s.message()));
                    }
                    12 => {
                        let s = scram.as_mut().ok_or_else(|| {
                            upstream_error(t.connection, "SASL final without SASL start")
                        })?;
                        s.finish(r.rest()).map_err(|e| {
                            upstream_error(t.connection, format!("SCRAM server proof: {e}"))
                        })?;
                        continue;
                    }
                    other => {
                        return Err(upstream_error(
                            t.connection,
                            format!("unsupported authentication method (code {other})"),
                        ))
                    }
                }
                write(&mut stream, &out, t).await?;
            }
            b'K' => {
                let mut r = Reader::new(&msg.body, "BackendKeyData");
                let pid = r.u32().map_err(|e| upstream_error(t.connection, e))?;
                key = Some((pid, r.rest().to_vec()));
            }
            b'S' | b'N' => {
                put_message(&mut replay, msg.tag, |o| o.extend_from_slice(&msg.body));
            }
            b'v' => {} // NegotiateProtocolVersion: the server ignores parameters it does not know.
            b'Z' => {
                let (backend_pid, backend_key) = key.unwrap_or_default();
                return Ok(Upstream {
                    stream,
                    backend_pid,
                    backend_key,
                    replay,
                    tls,
                });
            }
            b'E' => {
                let e = codec::decode_error(&msg.body);
                return Err(upstream_error(
                    t.connection,
                    format!("the server said: {} (SQLSTATE {})", e.message, e.code),
                ));
            }
            other => {
                return Err(upstream_error(
                    t.connection,
                    format!("unexpected message `{}` during startup", other as char),
                ))
            }
        }
    }
}

fn password<'a>(t: &UpstreamTarget<'a>) -> Result<&'a str, ErrorFields> {
    t.password.ok_or_else(|| {
        upstream_error(
            t.connection,
            "the server asks for a password but the connection has none configured (password_env / password_file)",
        )
    })
}

async fn negotiate_tls(
    mut tcp: TcpStream,
    t: &UpstreamTarget<'_>,
    mode: SslMode,
) -> Result<NetStream, ErrorFields> {
    let mut req = BytesMut::new();
    req.put_u32(8);
    req.put_u32(SSL_REQUEST);
    tcp.write_all(&req)
        .await
        .map_err(|e| upstream_error(t.connection, e))?;
    let answer = tcp
        .read_u8()
        .await
        .map_err(|e| upstream_error(t.connection, e))?;
    match answer {
        b'S' => {
            let config =
                client_config(mode, t.ca_file).map_err(|e| upstream_error(t.connection, e))?;
            let host = t
                .address
                .rsplit_once(':')
                .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']'))
                .unwrap_or(t.address);
            let name = rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| {
                upstream_error(
                    t.connection,
                    format!("the upstream's host is not a valid TLS server name: {e}"),
                )
            })?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| upstream_error(t.connection, format!("TLS handshake: {e}")))?;
            Ok(NetStream::ClientTls(Box::new(tls)))
        }
        b'N' if mode == SslMode::Prefer => Ok(NetStream::Plain(tcp)),
        b'N' => Err(upstream_error(
            t.connection,
            "the server does not support TLS but sslmode requires it",
        )),
        _ => Err(upstream_error(
            t.connection,
            "unexpected answer to SSLRequest",
        )),
    }
}

async fn write(
    stream: &mut NetStream,
    bytes: &[u8],
    t: &UpstreamTarget<'_>,
) -> Result<(), ErrorFields> {
    stream
        .write_all(bytes)
        .await
        .map_err(|e| upstream_error(t.connection, e))
}

async fn read_message(
    stream: &mut NetStream,
    buf: &mut BytesMut,
    t: &UpstreamTarget<'_>,
) -> Result<codec::Message, ErrorFields> {
    loop {
        if let Some(m) = split_message(buf, 1 << 20).map_err(|e| upstream_error(t.connection, e))? {
            return Ok(m);
        }
        let n = tokio::time::timeout(CONNECT_TIMEOUT, stream.read_buf(buf))
            .await
            .map_err(|_| upstream_error(t.connection, "the server did not answer during startup"))?
            .map_err(|e| upstream_error(t.connection, e))?;
        if n == 0 {
            return Err(upstream_error(
                t.connection,
                "the server closed the connection during startup",
            ));
        }
    }
}

/// Sends a CancelRequest for the upstream backend over a fresh connection, as libpq does.
pub async fn send_cancel(address: &str, pid: u32, key: &[u8]) -> std::io::Result<()> {
    let mut tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let mut req = BytesMut::new();
    req.put_u32(12 + key.len() as u32);
    req.put_u32(codec::CANCEL_REQUEST);
    req.put_u32(pid);
    req.extend_from_slice(key);
    tcp.write_all(&req).await?;
    // The server closes the connection when it has processed the request.
    let mut sink = [0u8; 16];
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut sink)).await;
    Ok(())
}
