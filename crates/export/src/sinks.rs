//! Destinations. `send` returns `Ok` only once the destination has taken the whole batch:
//! that is the acknowledgement after which the exporter moves its position.

use crate::tail::LogRecord;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

pub(crate) trait Sink: Send {
    /// `payloads[i]` is the formatted `records[i]`.
    fn send(&mut self, records: &[LogRecord], payloads: &[String]) -> Result<(), String>;
}

/// JSON lines appended to a file, rotated by size: `path` → `path.1` → … → `path.<keep>`.
pub(crate) struct FileSink {
    pub path: PathBuf,
    pub max_bytes: u64,
    pub keep: usize,
    pub file: Option<(File, u64)>,
}

impl FileSink {
    fn rotate(&mut self) -> std::io::Result<()> {
        self.file = None;
        let name = |i: usize| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{i}"));
            PathBuf::from(p)
        };
        let _ = std::fs::remove_file(name(self.keep.max(1)));
        for i in (1..self.keep.max(1)).rev() {
            let from = name(i);
            if from.exists() {
                std::fs::rename(&from, name(i + 1))?;
            }
        }
        std::fs::rename(&self.path, name(1))
    }
}

impl Sink for FileSink {
    fn send(&mut self, _records: &[LogRecord], payloads: &[String]) -> Result<(), String> {
        let result = (|| -> std::io::Result<()> {
            let mut buf = Vec::with_capacity(payloads.iter().map(|p| p.len() + 1).sum());
            for p in payloads {
                buf.extend_from_slice(p.as_bytes());
                buf.push(b'\n');
            }
            if self.file.is_none() {
                let f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?;
                let len = f.metadata()?.len();
                self.file = Some((f, len));
            }
            let size = self.file.as_ref().map_or(0, |(_, s)| *s);
            if size > 0 && size + buf.len() as u64 > self.max_bytes {
                self.rotate()?;
                let f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?;
                self.file = Some((f, 0));
            }
            if let Some((f, size)) = self.file.as_mut() {
                f.write_all(&buf)?;
                // The position file is written after this returns: the lines must be durable
                // first, or a power loss could skip them.
                f.sync_data()?;
                *size += buf.len() as u64;
            }
            Ok(())
        })();
        result.map_err(|e| {
            self.file = None;
            format!("{}: {e}", self.path.display())
        })
    }
}

pub(crate) struct StdoutSink;

impl Sink for StdoutSink {
    fn send(&mut self, _records: &[LogRecord], payloads: &[String]) -> Result<(), String> {
        let mut out = std::io::stdout().lock();
        for p in payloads {
            writeln!(out, "{p}").map_err(|e| e.to_string())?;
        }
        out.flush().map_err(|e| e.to_string())
    }
}

/// RFC 5424 over UDP (one message per datagram) or TCP (RFC 6587 octet counting).
pub(crate) struct SyslogSink {
    pub address: String,
    pub tcp: bool,
    pub facility: u8,
    pub hostname: String,
    pub app: String,
    pub udp: Option<UdpSocket>,
    pub stream: Option<TcpStream>,
    pub timeout: Duration,
}

/// Largest UDP datagram we send; larger messages are cut (and say so) rather than fail.
const MAX_UDP: usize = 60_000;

impl SyslogSink {
    fn message(&self, r: &LogRecord, payload: &str) -> String {
        let ev = r.value.get("event");
        let kind = ev
            .and_then(|e| e.get("kind"))
            .and_then(serde_json::Value::as_str)
            .unwrap_or("event");
        let warn = kind == "auth_failure"
            || ev
                .and_then(|e| e.pointer("/command/decision"))
                .and_then(serde_json::Value::as_str)
                == Some("deny");
        // Severity: 4 warning for denials and failed logins, 5 notice otherwise.
        let pri = u32::from(self.facility) * 8 + if warn { 4 } else { 5 };
        let ts_us = ev
            .and_then(|e| e.get("ts_us"))
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(0);
        let session = ev
            .and_then(|e| e.get("session_id"))
            .and_then(serde_json::Value::as_str)
            .map(|s| format!(" session=\"{}\"", sd_escape(s)))
            .unwrap_or_default();
        format!(
            "<{pri}>1 {} {} {} {} {} [airlock@32473 seq=\"{}\" hash=\"{}\"{session}] {payload}",
            rfc3339(ts_us),
            self.hostname,
            self.app,
            std::process::id(),
            kind,
            r.seq,
            sd_escape(&r.hash),
        )
    }

    fn connect_tcp(&mut self) -> std::io::Result<&mut TcpStream> {
        if self.stream.is_none() {
            let addr = self
                .address
                .to_socket_addrs()?
                .next()
                .ok_or_else(|| std::io::Error::other("address resolves to nothing"))?;
            let s = TcpStream::connect_timeout(&addr, self.timeout)?;
            s.set_write_timeout(Some(self.timeout))?;
            s.set_nodelay(true)?;
            self.stream = Some(s);
        }
        self.stream
            .as_mut()
            .ok_or_else(|| std::io::Error::other("not connected"))
    }
}

impl Sink for SyslogSink {
    fn send(&mut self, records: &[LogRecord], payloads: &[String]) -> Result<(), String> {
        let messages: Vec<String> = records
            .iter()
            .zip(payloads)
            .map(|(r, p)| self.message(r, p))
            .collect();
        if self.tcp {
            let result = (|| -> std::io::Result<()> {
                let mut buf = Vec::new();
                for m in &messages {
                    buf.extend_from_slice(format!("{} ", m.len()).as_bytes());
                    buf.extend_from_slice(m.as_bytes());
                }
                let stream = self.connect_tcp()?;
                stream.write_all(&buf)?;
                stream.flush()?;
                // Syslog has no acknowledgements. A receiver that went away has usually
                // closed the connection by now: a write into it still succeeds once, so look
                // for the close before calling the batch delivered (it is then sent again).
                stream.set_nonblocking(true)?;
                let mut probe = [0u8; 1];
                let peer_closed = match stream.peek(&mut probe) {
                    Ok(0) => true,
                    Ok(_) => false,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
                    Err(_) => true,
                };
                stream.set_nonblocking(false)?;
                if peer_closed {
                    return Err(std::io::Error::other("the receiver closed the connection"));
                }
                Ok(())
            })();
            result.map_err(|e| {
                self.stream = None;
                format!("syslog tcp {}: {e}", self.address)
            })
        } else {
            let result = (|| -> std::io::Result<()> {
                if self.udp.is_none() {
                    let addr = self
                        .address
                        .to_socket_addrs()?
                        .next()
                        .ok_or_else(|| std::io::Error::other("address resolves to nothing"))?;
                    let bind = if addr.is_ipv4() {
                        "0.0.0.0:0"
                    } else {
                        "[::]:0"
                    };
                    let s = UdpSocket::bind(bind)?;
                    s.connect(addr)?;
                    self.udp = Some(s);
                }
                let Some(sock) = self.udp.as_ref() else {
                    return Err(std::io::Error::other("no socket"));
                };
                for m in &messages {
                    let bytes = m.as_bytes();
                    let bytes = bytes.get(..MAX_UDP).unwrap_or(bytes);
                    sock.send(bytes)?;
                }
                Ok(())
            })();
            result.map_err(|e| {
                self.udp = None;
                format!("syslog udp {}: {e}", self.address)
            })
        }
    }
}

/// HTTP(S) POST of a batch as JSON lines.
pub(crate) struct WebhookSink {
    pub url: String,
    pub agent: ureq::Agent,
}

impl Sink for WebhookSink {
    fn send(&mut self, records: &[LogRecord], payloads: &[String]) -> Result<(), String> {
        let mut body = String::with_capacity(payloads.iter().map(|p| p.len() + 1).sum());
        for p in payloads {
            body.push_str(p);
            body.push('\n');
        }
        let first = records.first().map_or(0, |r| r.seq);
        let last = records.last().map_or(0, |r| r.seq);
        let response = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/x-ndjson")
            .header("X-Airlock-First-Seq", first.to_string())
            .header("X-Airlock-Last-Seq", last.to_string())
            .send(body.as_bytes())
            .map_err(|e| format!("POST {}: {e}", self.url))?;
        let status = response.status().as_u16();
        // Drain the body so the connection can be reused.
        let mut sink = Vec::new();
        let _ = response
            .into_body()
            .into_reader()
            .take(64 * 1024)
            .read_to_end(&mut sink);
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(format!("POST {}: HTTP {status}", self.url))
        }
    }
}

/// RFC 5424 SD-PARAM value escaping.
fn sd_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `2026-11-24T00:31:02.123456Z`.
pub(crate) fn rfc3339(ts_us: i64) -> String {
    let secs = ts_us.div_euclid(1_000_000);
    let micros = ts_us.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty() && s.is_ascii() && !s.contains(' '))
        .unwrap_or_else(|| "-".into())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_and_escaping() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339(1_795_478_400_000_001),
            "2026-11-24T00:00:00.000001Z"
        );
        assert_eq!(sd_escape("a\"b]c\\"), "a\\\"b\\]c\\\\");
    }
}
