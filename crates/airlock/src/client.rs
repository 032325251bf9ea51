//! Client side: `airlock exec CONN "SQL"` (one command, printed as a table, JSON or CSV) and
//! `airlock connect CONN` (a local port that speaks PostgreSQL and injects the token, so
//! `psql -h 127.0.0.1 -p P` needs none). Both reach the gateway's postgres listener as the
//! identity the token belongs to.

use anyhow::{anyhow, Context};
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Where the gateway is and who we are.
#[derive(clap::Args, Clone)]
pub struct ClientArgs {
    /// The gateway's postgres listener (default: [listeners] postgres of --config, else
    /// 127.0.0.1:15432).
    #[arg(long, env = "AIRLOCK_GATEWAY")]
    gateway: Option<String>,
    /// The identity the token belongs to (default: asked from the gateway API's whoami).
    #[arg(long, env = "AIRLOCK_IDENTITY")]
    identity: Option<String>,
    #[command(flatten)]
    api: crate::ApiArgs,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Csv,
}

struct Target {
    host: String,
    port: u16,
    identity: String,
    token: String,
}

impl ClientArgs {
    fn resolve(&self) -> anyhow::Result<Target> {
        let token = match &self.api.token {
            Some(t) => t.trim().to_owned(),
            None => crate::login::stored_token()?.ok_or_else(|| {
                anyhow!("no token: set AIRLOCK_TOKEN (or pass --token) to your airlock token")
            })?,
        };
        let gateway = match &self.gateway {
            Some(g) => g.clone(),
            None => listener_from_config(self.api.config.as_ref())?
                .unwrap_or_else(|| "127.0.0.1:15432".into()),
        };
        let (host, port) = gateway
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.trim_matches(['[', ']']).to_owned(), p.parse().ok()?)))
            .ok_or_else(|| anyhow!("--gateway must be HOST:PORT, not `{gateway}`"))?;
        let identity = match &self.identity {
            Some(i) => i.clone(),
            None => {
                let mut api = self.api.clone();
                api.token = Some(token.clone());
                let me = crate::reviews::Api::from(&api)?
                    .call("GET", "/api/v1/whoami", None)
                    .context("finding out whose token this is (or pass --identity)")?;
                me.get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| anyhow!("the gateway's whoami answer names no identity"))?
                    .to_owned()
            }
        };
        Ok(Target {
            host,
            port,
            identity,
            token,
        })
    }
}

fn listener_from_config(path: Option<&PathBuf>) -> anyhow::Result<Option<String>> {
    let Some(path) = path else { return Ok(None) };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let value: toml::Value =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    Ok(value
        .get("listeners")
        .and_then(|l| l.get("postgres"))
        .and_then(|v| v.as_str())
        .map(str::to_owned))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

// ---------------------------------------------------------------------------------------------
// exec

pub fn exec(
    connection: &str,
    sql: &str,
    format: Format,
    args: &ClientArgs,
) -> anyhow::Result<ExitCode> {
    let target = args.resolve()?;
    runtime()?.block_on(exec_async(connection, sql, format, &target))
}

async fn exec_async(
    connection: &str,
    sql: &str,
    format: Format,
    t: &Target,
) -> anyhow::Result<ExitCode> {
    use tokio_postgres::{AsyncMessage, SimpleQueryMessage};
    let mut config = tokio_postgres::Config::new();
    config
        .host(&t.host)
        .port(t.port)
        .user(&t.identity)
        .password(&t.token)
        .dbname(connection)
        .application_name("airlock exec")
        .connect_timeout(Duration::from_secs(10));
    let (client, mut conn) = config
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| anyhow!("{}", pg_error(&e)))?;
    // Notices carry review ids ("held for review r-…; waiting"): show them while we wait.
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notice(n))) => {
                    eprintln!("{}: {}", n.severity(), n.message());
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    eprintln!("error: {}", pg_error(&e));
                    break;
                }
                None => break,
            }
        }
    });
    let result = client.simple_query(sql).await;
    drop(client);
    let _ = driver.await;
    let messages = match result {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {}", pg_error(&e));
            return Ok(ExitCode::from(1));
        }
    };
    let mut sets: Vec<ResultSet> = Vec::new();
    let mut current: Option<ResultSet> = None;
    for m in messages {
        match m {
            SimpleQueryMessage::RowDescription(cols) => {
                current = Some(ResultSet {
                    columns: cols.iter().map(|c| c.name().to_owned()).collect(),
                    rows: Vec::new(),
                    tag: None,
                });
            }
            SimpleQueryMessage::Row(row) => {
                let set = current.get_or_insert_with(|| ResultSet {
                    columns: row.columns().iter().map(|c| c.name().to_owned()).collect(),
                    rows: Vec::new(),
                    tag: None,
                });
                set.rows.push(
                    (0..row.len())
                        .map(|i| row.get(i).map(str::to_owned))
                        .collect(),
                );
            }
            SimpleQueryMessage::CommandComplete(n) => {
                let mut set = current.take().unwrap_or_default();
                set.tag = Some(n);
                sets.push(set);
            }
            _ => {}
        }
    }
    let mut out = String::new();
    for (i, set) in sets.iter().enumerate() {
        match format {
            Format::Table => {
                if i > 0 {
                    out.push('\n');
                }
                out.push_str(&set.table());
            }
            Format::Json => {
                out.push_str(&set.json()?);
                out.push('\n');
            }
            Format::Csv => {
                if i > 0 {
                    out.push('\n');
                }
                out.push_str(&set.csv());
            }
        }
    }
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

/// The server's message (SQLSTATE, text, hint) rather than tokio-postgres's "db error".
fn pg_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} ({}): {}", db.severity(), db.code().code(), db.message());
            if let Some(h) = db.hint() {
                s.push_str(&format!("\nhint: {h}"));
            }
            s
        }
        None => e.to_string(),
    }
}

#[derive(Default)]
struct ResultSet {
    columns: Vec<String>,
    rows: Vec<Vec<Option<String>>>,
    tag: Option<u64>,
}

impl ResultSet {
    /// psql's aligned format: header, rule, rows, `(N rows)`.
    fn table(&self) -> String {
        if self.columns.is_empty() {
            return format!("OK {}\n", self.tag.unwrap_or(0));
        }
        let cell = |v: &Option<String>| v.clone().unwrap_or_default();
        let mut widths: Vec<usize> = self.columns.iter().map(|c| c.chars().count()).collect();
        for row in &self.rows {
            for (w, v) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell(v).chars().count());
            }
        }
        let line = |vals: Vec<String>| {
            vals.iter()
                .zip(&widths)
                .map(|(v, w)| format!(" {v:<w$} "))
                .collect::<Vec<_>>()
                .join("|")
                .trim_end()
                .to_owned()
        };
        let mut out = line(self.columns.clone());
        out.push('\n');
        out.push_str(
            &widths
                .iter()
                .map(|w| "-".repeat(w + 2))
                .collect::<Vec<_>>()
                .join("+"),
        );
        out.push('\n');
        for row in &self.rows {
            out.push_str(&line(row.iter().map(cell).collect()));
            out.push('\n');
        }
        let n = self.rows.len();
        out.push_str(&format!("({n} row{})\n", if n == 1 { "" } else { "s" }));
        out
    }

    /// One JSON array of objects (column → text value or null) per result set.
    fn json(&self) -> anyhow::Result<String> {
        let rows: Vec<serde_json::Map<String, serde_json::Value>> = self
            .rows
            .iter()
            .map(|row| {
                self.columns
                    .iter()
                    .zip(row)
                    .map(|(c, v)| {
                        (
                            c.clone(),
                            v.clone()
                                .map(serde_json::Value::String)
                                .unwrap_or(serde_json::Value::Null),
                        )
                    })
                    .collect()
            })
            .collect();
        Ok(serde_json::to_string(&rows)?)
    }

    /// RFC 4180: a header line, fields quoted when they hold `,`, `"` or a line break; NULL
    /// is an empty field.
    fn csv(&self) -> String {
        let field = |s: &str| {
            if s.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.to_owned()
            }
        };
        let mut out = String::new();
        out.push_str(
            &self
                .columns
                .iter()
                .map(|c| field(c))
                .collect::<Vec<_>>()
                .join(","),
        );
        out.push_str("\r\n");
        for row in &self.rows {
            out.push_str(
                &row.iter()
                    .map(|v| field(v.as_deref().unwrap_or("")))
                    .collect::<Vec<_>>()
                    .join(","),
            );
            out.push_str("\r\n");
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// connect

const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;
const PROTOCOL_3: u32 = 196_608;
const MAX_STARTUP: usize = 64 * 1024;

pub fn connect(connection: &str, port: u16, args: &ClientArgs) -> anyhow::Result<ExitCode> {
    let target = args.resolve()?;
    runtime()?.block_on(async {
        // Loopback only: whoever reaches this port acts with the token.
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .with_context(|| format!("binding 127.0.0.1:{port}"))?;
        let local = listener.local_addr()?;
        println!(
            "airlock: `{connection}` as `{}` on 127.0.0.1:{} (gateway {}:{}); connect with:\n  psql \"host=127.0.0.1 port={} dbname={connection}\"\nCtrl-C to stop.",
            target.identity,
            local.port(),
            target.host,
            target.port,
            local.port()
        );
        let target = std::sync::Arc::new(target);
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                accepted = listener.accept() => {
                    let (client, peer) = accepted?;
                    let target = target.clone();
                    let connection = connection.to_owned();
                    tokio::spawn(async move {
                        if let Err(e) = proxy(client, &connection, &target).await {
                            eprintln!("airlock connect: {peer}: {e:#}");
                        }
                    });
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// One client: answer its startup locally, log in to the gateway with the token, then pass
/// bytes both ways untouched.
async fn proxy(mut client: TcpStream, connection: &str, t: &Target) -> anyhow::Result<()> {
    let params = loop {
        let len = client.read_u32().await? as usize;
        if !(8..=MAX_STARTUP).contains(&len) {
            return Err(anyhow!("bad startup packet length {len}"));
        }
        let mut body = vec![0u8; len - 4];
        client.read_exact(&mut body).await?;
        let code = body
            .get(..4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
            .unwrap_or(0);
        match code {
            // The hop to the client is loopback; encryption is the gateway hop's business.
            SSL_REQUEST | GSSENC_REQUEST => client.write_all(b"N").await?,
            CANCEL_REQUEST => {
                let mut up = TcpStream::connect((t.host.as_str(), t.port)).await?;
                up.write_u32(len as u32).await?;
                up.write_all(&body).await?;
                return Ok(());
            }
            PROTOCOL_3 => break parse_params(body.get(4..).unwrap_or_default()),
            other => return Err(anyhow!("unsupported startup code {other}")),
        }
    };
    let mut up = TcpStream::connect((t.host.as_str(), t.port))
        .await
        .with_context(|| format!("reaching the gateway at {}:{}", t.host, t.port))?;
    up.set_nodelay(true)?;
    client.set_nodelay(true)?;
    let mut startup = Vec::new();
    startup.extend_from_slice(&PROTOCOL_3.to_be_bytes());
    let mut put = |k: &str, v: &str| {
        startup.extend_from_slice(k.as_bytes());
        startup.push(0);
        startup.extend_from_slice(v.as_bytes());
        startup.push(0);
    };
    put("user", &t.identity);
    put("database", connection);
    for (k, v) in &params {
        if k != "user" && k != "database" {
            put(k, v);
        }
    }
    startup.push(0);
    up.write_u32(startup.len() as u32 + 4).await?;
    up.write_all(&startup).await?;
    // Until the gateway asks for the password, everything it says goes to the client.
    loop {
        let tag = up.read_u8().await?;
        let len = up.read_u32().await? as usize;
        if !(4..=MAX_STARTUP).contains(&len) {
            return Err(anyhow!("bad message length {len} from the gateway"));
        }
        let mut body = vec![0u8; len - 4];
        up.read_exact(&mut body).await?;
        if tag == b'R' && body.get(..4) == Some(&3u32.to_be_bytes()[..]) {
            let mut msg = vec![b'p'];
            msg.extend_from_slice(&((t.token.len() + 5) as u32).to_be_bytes());
            msg.extend_from_slice(t.token.as_bytes());
            msg.push(0);
            up.write_all(&msg).await?;
            break;
        }
        client.write_u8(tag).await?;
        client.write_u32(len as u32).await?;
        client.write_all(&body).await?;
        if tag == b'E' {
            return Ok(());
        }
    }
    tokio::io::copy_bidirectional(&mut client, &mut up).await?;
    Ok(())
}

fn parse_params(mut body: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let next = |b: &mut &[u8]| -> Option<String> {
        let end = b.iter().position(|&c| c == 0)?;
        let s = String::from_utf8_lossy(b.get(..end)?).into_owned();
        *b = b.get(end + 1..)?;
        Some(s)
    };
    while let Some(k) = next(&mut body) {
        if k.is_empty() {
            break;
        }
        let Some(v) = next(&mut body) else { break };
        out.push((k, v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> ResultSet {
        ResultSet {
            columns: vec!["id".into(), "note".into()],
            rows: vec![
                vec![Some("1".into()), Some("a, \"b\"".into())],
                vec![Some("22".into()), None],
            ],
            tag: Some(2),
        }
    }

    #[test]
    fn formats() {
        assert_eq!(
            set().table(),
            " id | note\n----+--------\n 1  | a, \"b\"\n 22 |\n(2 rows)\n"
        );
        assert_eq!(set().csv(), "id,note\r\n1,\"a, \"\"b\"\"\"\r\n22,\r\n");
        assert_eq!(
            set().json().unwrap(),
            r#"[{"id":"1","note":"a, \"b\""},{"id":"22","note":null}]"#
        );
    }

    #[test]
    fn startup_params() {
        assert_eq!(
            parse_params(b"user\0x\0application_name\0psql\0\0"),
            vec![
                ("user".to_string(), "x".to_string()),
                ("application_name".to_string(), "psql".to_string())
            ]
        );
    }
}
