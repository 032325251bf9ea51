//! `airlock login` / `airlock logout`, and where a client keeps its token.
//!
//! The gateway is the OIDC client (it holds the client secret); this side runs the parts that
//! need the user's machine:
//!
//! - code flow: a loopback listener on `127.0.0.1:<random>`, a PKCE verifier, `state` and
//!   `nonce` made here; the gateway builds the provider URL, the browser brings the code back
//!   to the listener, and the gateway redeems it with the verifier;
//! - device flow (`--device`): the gateway starts it at the provider; this side shows the code
//!   and polls the gateway until the user approved somewhere else.
//!
//! Either way the gateway answers with its own access token, stored in the user's config dir
//! with mode 0600. `airlock logout` revokes it at the gateway, then deletes the file.

use anyhow::{anyhow, bail, Context};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// How long the browser part of a code-flow login may take.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(300);

/// `$XDG_CONFIG_HOME/airlock/token`, else `~/.config/airlock/token`.
pub fn token_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("airlock").join("token"))
}

/// The token `airlock login` stored (mode 0600), if any.
pub fn stored_token() -> anyhow::Result<Option<String>> {
    let Some(path) = token_path() else {
        return Ok(None);
    };
    match std::fs::read_to_string(&path) {
        Ok(t) => Ok(Some(t.trim().to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The gateway API, without a token (login is how one gets a token).
fn api_base(args: &crate::ApiArgs) -> anyhow::Result<String> {
    let mut args = args.clone();
    args.token = Some(String::new());
    Ok(crate::reviews::Api::from(&args)?.base)
}

/// POSTs JSON (and a bearer token if given); returns the status and the JSON answer.
fn post(
    base: &str,
    path: &str,
    body: Option<Value>,
    bearer: Option<&str>,
) -> anyhow::Result<(u16, Value)> {
    let url = format!("{base}{path}");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let mut request = agent.post(&url);
    if let Some(t) = bearer {
        request = request.header("authorization", &format!("Bearer {t}"));
    }
    let response = match body {
        Some(b) => request.send_json(b),
        None => request.send_empty(),
    }
    .map_err(|e| {
        anyhow!("cannot reach the airlock API at {base}: {e} (is `airlock serve` running? set --api or AIRLOCK_API)")
    })?;
    let status = response.status().as_u16();
    let value: Value = response
        .into_body()
        .read_json()
        .unwrap_or_else(|_| serde_json::json!({"message": "(no JSON body)"}));
    Ok((status, value))
}

fn failure(status: u16, v: &Value) -> anyhow::Error {
    anyhow!(
        "{} (HTTP {status})",
        v.get("message")
            .and_then(Value::as_str)
            .unwrap_or("request failed")
    )
}

pub fn login(args: &crate::ApiArgs, device: bool, no_browser: bool) -> anyhow::Result<ExitCode> {
    let base = api_base(args)?;
    let outcome = if device {
        device_login(&base)?
    } else {
        code_login(&base, no_browser)?
    };
    let token = outcome
        .get("token")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("the gateway's answer holds no token"))?;
    let path = token_path().ok_or_else(|| {
        anyhow!("no config dir to store the token in: set XDG_CONFIG_HOME or HOME")
    })?;
    store_token(&path, token)?;
    let name = outcome
        .pointer("/identity/name")
        .and_then(Value::as_str)
        .unwrap_or("?");
    let groups: Vec<&str> = outcome
        .pointer("/identity/groups")
        .and_then(Value::as_array)
        .map(|g| g.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let until = outcome
        .get("expires_us")
        .and_then(Value::as_i64)
        .map(crate::commands::fmt_time)
        .unwrap_or_default();
    eprintln!(
        "logged in as {name} (groups: {}); the token is valid until {until} and stored in {}",
        if groups.is_empty() {
            "none".to_owned()
        } else {
            groups.join(", ")
        },
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn code_login(base: &str, no_browser: bool) -> anyhow::Result<Value> {
    use airlock_identity::oidc;
    let listener =
        TcpListener::bind("127.0.0.1:0").context("opening a loopback port for the redirect")?;
    let port = listener.local_addr()?.port();
    let redirect_uri = format!("http://127.0.0.1:{port}/callback");
    let (verifier, challenge) = oidc::pkce_pair();
    let state = oidc::random_string(32);
    let nonce = oidc::random_string(32);
    let (status, v) = post(
        base,
        "/api/v1/auth/oidc/authorize",
        Some(serde_json::json!({
            "redirect_uri": redirect_uri,
            "state": state,
            "nonce": nonce,
            "code_challenge": challenge,
        })),
        None,
    )?;
    if status != 200 {
        return Err(failure(status, &v));
    }
    let url = v
        .get("authorization_url")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("the gateway's answer holds no authorization_url"))?;
    eprintln!(
        "Open this URL in a browser to log in (waiting for it on {redirect_uri}):\n\n  {url}\n"
    );
    if !no_browser {
        open_browser(url);
    }
    let code = wait_for_code(&listener, &state)?;
    let (status, v) = post(
        base,
        "/api/v1/auth/oidc/exchange",
        Some(serde_json::json!({
            "code": code,
            "code_verifier": verifier,
            "redirect_uri": redirect_uri,
            "nonce": nonce,
        })),
        None,
    )?;
    if status != 200 {
        return Err(failure(status, &v).context("the gateway refused the login"));
    }
    Ok(v)
}

/// `$BROWSER` (`%s` stands for the URL, else it is appended), else the desktop's opener when
/// there is a display. Failing to open is fine: the URL is printed.
fn open_browser(url: &str) {
    let command = match std::env::var("BROWSER") {
        Ok(b) if !b.trim().is_empty() => {
            let first = b.split(':').next().unwrap_or(&b).to_owned();
            if first.contains("%s") {
                first.replace("%s", "\"$1\"")
            } else {
                format!("{first} \"$1\"")
            }
        }
        _ if cfg!(target_os = "macos") => "open \"$1\"".to_owned(),
        _ if std::env::var_os("DISPLAY").is_some()
            || std::env::var_os("WAYLAND_DISPLAY").is_some() =>
        {
            "xdg-open \"$1\"".to_owned()
        }
        _ => return,
    };
    // The URL goes in as "$1", never spliced into the shell text.
    let spawned = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .arg("sh")
        .arg(url)
        .stdin(std::process::Stdio::null())
        .spawn();
    if let Err(e) = spawned {
        eprintln!("(could not start a browser: {e})");
    }
}

/// Serves the loopback redirect until the provider sends the code (with our `state`) or an
/// error; other requests (a favicon, a stray visit) get a 404.
fn wait_for_code(listener: &TcpListener, state: &str) -> anyhow::Result<String> {
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + LOGIN_TIMEOUT;
    loop {
        let (stream, _) = match listener.accept() {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    bail!(
                        "no answer from the browser within {} minutes",
                        LOGIN_TIMEOUT.as_secs() / 60
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            Err(e) => return Err(e).context("waiting for the browser"),
        };
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        match handle_redirect(stream, state) {
            Ok(Some(code)) => return Ok(code),
            Ok(None) => continue,
            Err(e) => return Err(e),
        }
    }
}

fn handle_redirect(mut stream: TcpStream, state: &str) -> anyhow::Result<Option<String>> {
    let mut line = String::new();
    let mut reader = BufReader::new(stream.try_clone()?);
    if reader.read_line(&mut line).is_err() {
        return Ok(None);
    }
    // Drain the headers so the browser sees a clean response.
    let mut header = String::new();
    while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
        header.clear();
    }
    let target = line.split_whitespace().nth(1).unwrap_or("");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path != "/callback" {
        respond(&mut stream, 404, "not found");
        return Ok(None);
    }
    let params = airlock_identity::oidc::form_decode(query);
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if get("state") != Some(state) {
        // Not our login (or a forged redirect): never send its code to the gateway.
        respond(
            &mut stream,
            400,
            "airlock: this answer does not belong to the login in progress.",
        );
        return Ok(None);
    }
    if let Some(error) = get("error") {
        let description = get("error_description").unwrap_or("");
        respond(
            &mut stream,
            400,
            &format!("airlock: login failed: {error} {description}"),
        );
        bail!("the identity provider refused the login: {error} {description}");
    }
    match get("code") {
        Some(code) if !code.is_empty() => {
            respond(
                &mut stream,
                200,
                "airlock: login received. You can close this tab and return to the terminal.",
            );
            Ok(Some(code.to_owned()))
        }
        _ => {
            respond(&mut stream, 400, "airlock: the answer holds no code.");
            bail!("the identity provider's redirect holds no code")
        }
    }
}

fn respond(stream: &mut TcpStream, status: u16, text: &str) {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        _ => "Bad Request",
    };
    let body = format!(
        "<!doctype html><meta charset=utf-8><title>airlock login</title><p>{}</p>\n",
        text.replace('&', "&amp;").replace('<', "&lt;")
    );
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.flush();
}

fn device_login(base: &str) -> anyhow::Result<Value> {
    let (status, start) = post(base, "/api/v1/auth/oidc/device", None, None)?;
    if status != 200 {
        return Err(failure(status, &start));
    }
    let device_code = start
        .get("device_code")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("the gateway's answer holds no device_code"))?
        .to_owned();
    let user_code = start
        .get("user_code")
        .and_then(Value::as_str)
        .unwrap_or("?");
    let uri = start
        .get("verification_uri")
        .and_then(Value::as_str)
        .unwrap_or("?");
    eprintln!("To log in, open {uri} on any device and enter the code {user_code}");
    if let Some(complete) = start
        .get("verification_uri_complete")
        .and_then(Value::as_str)
    {
        eprintln!("or open this URL, which carries the code:\n\n  {complete}\n");
    }
    eprintln!("Waiting for the approval…");
    let mut interval = start
        .get("interval")
        .and_then(Value::as_u64)
        .unwrap_or(5)
        .max(1);
    let deadline = Instant::now()
        + Duration::from_secs(
            start
                .get("expires_in")
                .and_then(Value::as_u64)
                .unwrap_or(600),
        );
    loop {
        std::thread::sleep(Duration::from_secs(interval));
        let (status, v) = post(
            base,
            "/api/v1/auth/oidc/device/token",
            Some(serde_json::json!({ "device_code": device_code })),
            None,
        )?;
        match (status, v.get("error").and_then(Value::as_str)) {
            (200, _) => return Ok(v),
            (_, Some("authorization_pending")) => {}
            (_, Some("slow_down")) => interval += 5,
            _ => return Err(failure(status, &v).context("the gateway refused the login")),
        }
        if Instant::now() > deadline {
            bail!("the device code expired before the login was approved; run `airlock login --device` again");
        }
    }
}

/// Writes the token to `path` with mode 0600 (the directory 0700), replacing any older one.
fn store_token(path: &Path, token: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = airlock_identity::tokens::open_private(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(token.as_bytes())
        .and_then(|()| f.write_all(b"\n"))
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Revokes the stored access token at the gateway, then deletes the file. With `forget`, only
/// deletes it (the token stays valid until it expires).
pub fn logout(args: &crate::ApiArgs, forget: bool) -> anyhow::Result<ExitCode> {
    let Some(path) = token_path() else {
        bail!("no config dir: set XDG_CONFIG_HOME or HOME");
    };
    let token = match stored_token()? {
        Some(t) if !t.is_empty() => t,
        _ => {
            eprintln!("not logged in (no token in {})", path.display());
            return Ok(ExitCode::SUCCESS);
        }
    };
    if !forget {
        let base = api_base(args)?;
        let (status, v) = post(&base, "/api/v1/auth/logout", None, Some(&token))
            .context("the token was not revoked and is still stored; retry, or use --forget")?;
        if status != 200 {
            return Err(failure(status, &v).context(
                "the gateway did not revoke the token; it is still stored (retry, or use --forget to only delete it)",
            ));
        }
        if v.get("already").and_then(Value::as_bool) == Some(true) {
            eprintln!("the token had already expired or been revoked");
        } else {
            eprintln!(
                "revoked the access token {} of {}; sessions opened with it are closed",
                v.get("jti").and_then(Value::as_str).unwrap_or("?"),
                v.get("identity").and_then(Value::as_str).unwrap_or("?")
            );
        }
    }
    std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    eprintln!("removed {}", path.display());
    if forget {
        eprintln!("(not revoked: the token stays valid until it expires)");
    }
    Ok(ExitCode::SUCCESS)
}
