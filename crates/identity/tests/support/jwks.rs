//! A tiny OpenID issuer for tests: serves a discovery document and a JWKS that the test can
//! swap (key rotation), counts fetches, and signs JWTs with the fixture keys.
// Test code: clippy.toml exempts only #[test] fns and cfg(test) code, not helpers like these.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![allow(dead_code)]

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../identity/tests/fixtures");

pub struct Issuer {
    pub url: String,
    keys: Arc<Mutex<Vec<(String, String)>>>,
    pub jwks_fetches: Arc<AtomicUsize>,
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/{name}")).expect("fixture")
}

/// The public JWK of fixture key `name` (`rsa_a`, `rsa_b`, `rsa_evil`, `ec_a`) with `kid`.
pub fn public_jwk(name: &str, kid: &str) -> serde_json::Value {
    let all: serde_json::Value = serde_json::from_str(&fixture("public_jwks.json")).unwrap();
    let mut jwk = all[name].clone();
    jwk["kid"] = kid.into();
    jwk
}

impl Issuer {
    /// Serves `keys` (fixture name, kid) on a free loopback port.
    pub fn start(keys: &[(&str, &str)]) -> Issuer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let keys = Arc::new(Mutex::new(
            keys.iter()
                .map(|(n, k)| (n.to_string(), k.to_string()))
                .collect::<Vec<_>>(),
        ));
        let jwks_fetches = Arc::new(AtomicUsize::new(0));
        let (served, fetches, base) = (keys.clone(), jwks_fetches.clone(), url.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                let _ = reader.read_line(&mut request);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                }
                let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
                let (status, body) = match path.as_str() {
                    "/.well-known/openid-configuration" => (
                        "200 OK",
                        serde_json::json!({"issuer": base, "jwks_uri": format!("{base}/jwks")})
                            .to_string(),
                    ),
                    "/jwks" => {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        let keys: Vec<serde_json::Value> = served
                            .lock()
                            .unwrap()
                            .iter()
                            .map(|(n, k)| public_jwk(n, k))
                            .collect();
                        ("200 OK", serde_json::json!({ "keys": keys }).to_string())
                    }
                    _ => ("404 Not Found", "{}".to_string()),
                };
                let mut s = stream;
                let _ = write!(
                    s,
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Issuer {
            url,
            keys,
            jwks_fetches,
        }
    }

    /// Replaces the served key set (rotation).
    pub fn serve_keys(&self, keys: &[(&str, &str)]) {
        *self.keys.lock().unwrap() = keys
            .iter()
            .map(|(n, k)| (n.to_string(), k.to_string()))
            .collect();
    }

    /// Standard claims for this issuer, expiring in `exp_in` seconds (negative: in the past).
    pub fn claims(&self, aud: &str, exp_in: i64, extra: serde_json::Value) -> serde_json::Value {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let mut c = serde_json::json!({
            "iss": self.url,
            "aud": aud,
            "sub": "repo:acme/api:ref:refs/heads/main",
            "iat": now - 5,
            "exp": now + exp_in,
        });
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    }
}

/// Signs `claims` with fixture key `name` (RS256 for `rsa_*`, ES256 for `ec_*`) under `kid`.
pub fn sign(name: &str, kid: Option<&str>, claims: &serde_json::Value) -> String {
    let pem = fixture(&format!("{name}.pem"));
    let (alg, key) = if name.starts_with("ec") {
        (
            Algorithm::ES256,
            EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
        )
    } else {
        (
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
        )
    };
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}
