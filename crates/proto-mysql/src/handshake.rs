//! Connection phase: the v10 greeting, the client's HandshakeResponse41, auth scrambles.

use crate::codec::{
    put_lenenc_bytes, FrameError, Reader, CLIENT_CONNECT_ATTRS, CLIENT_CONNECT_WITH_DB,
    CLIENT_PLUGIN_AUTH, CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA, CLIENT_PROTOCOL_41,
    CLIENT_SECURE_CONNECTION, CLIENT_SSL,
};
use bytes::{BufMut, BytesMut};
use sha1::Sha1;
use sha2::{Digest, Sha256};

pub const NATIVE: &str = "mysql_native_password";
pub const CACHING_SHA2: &str = "caching_sha2_password";
pub const CLEAR: &str = "mysql_clear_password";

/// The server's initial handshake packet (protocol version 10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    pub version: String,
    pub connection_id: u32,
    /// The 20-byte scramble (both parts joined, without the trailing NUL).
    pub nonce: Vec<u8>,
    pub capabilities: u32,
    pub charset: u8,
    pub status: u16,
    pub plugin: String,
}

impl Greeting {
    pub fn encode(&self) -> BytesMut {
        let mut p = BytesMut::with_capacity(128);
        p.put_u8(10);
        p.extend_from_slice(self.version.as_bytes());
        p.put_u8(0);
        p.put_u32_le(self.connection_id);
        let (part1, part2) = self.nonce.split_at(self.nonce.len().min(8));
        p.extend_from_slice(part1);
        p.put_u8(0);
        p.put_u16_le(self.capabilities as u16);
        p.put_u8(self.charset);
        p.put_u16_le(self.status);
        p.put_u16_le((self.capabilities >> 16) as u16);
        p.put_u8((self.nonce.len() + 1) as u8);
        p.put_bytes(0, 10);
        p.extend_from_slice(part2);
        p.put_u8(0);
        p.extend_from_slice(self.plugin.as_bytes());
        p.put_u8(0);
        p
    }

    pub fn decode(payload: &[u8]) -> Result<Greeting, FrameError> {
        let mut r = Reader::new(payload, "server greeting");
        let protocol = r.u8()?;
        if protocol == 0xFF {
            let e = crate::codec::decode_err(payload);
            return Err(crate::codec::malformed(
                "server greeting",
                format!(
                    "the server refused the connection: {} ({})",
                    e.message, e.code
                ),
            ));
        }
        if protocol != 10 {
            return Err(crate::codec::malformed(
                "server greeting",
                format!("protocol version {protocol}, expected 10"),
            ));
        }
        let version = String::from_utf8_lossy(r.cstr()).into_owned();
        let connection_id = r.u32()?;
        let mut nonce = r.bytes(8)?.to_vec();
        r.u8()?;
        let mut capabilities = u32::from(r.u16()?);
        let (mut charset, mut status, mut plugin) = (0, 0, String::new());
        if r.remaining() > 0 {
            charset = r.u8()?;
            status = r.u16()?;
            capabilities |= u32::from(r.u16()?) << 16;
            let auth_len = r.u8()?;
            r.bytes(10)?;
            if capabilities & CLIENT_SECURE_CONNECTION != 0 {
                let n = (usize::from(auth_len).saturating_sub(8)).max(13);
                let part2 = r.bytes(n.min(r.remaining()))?;
                nonce.extend_from_slice(part2.strip_suffix(&[0]).unwrap_or(part2));
            }
            if capabilities & CLIENT_PLUGIN_AUTH != 0 {
                plugin = String::from_utf8_lossy(r.cstr()).into_owned();
            }
        }
        Ok(Greeting {
            version,
            connection_id,
            nonce,
            capabilities,
            charset,
            status,
            plugin,
        })
    }
}

/// The client's HandshakeResponse41 (or, when only 32 bytes long with `CLIENT_SSL`, an
/// SSLRequest).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    pub capabilities: u32,
    pub max_packet: u32,
    pub charset: u8,
    pub user: String,
    pub auth: Vec<u8>,
    pub database: Option<String>,
    pub plugin: Option<String>,
    pub ssl_request: bool,
}

impl Response {
    pub fn decode(payload: &[u8]) -> Result<Response, FrameError> {
        let mut r = Reader::new(payload, "handshake response");
        let capabilities = r.u32()?;
        if capabilities & CLIENT_PROTOCOL_41 == 0 {
            return Err(crate::codec::malformed(
                "handshake response",
                "the client does not speak protocol 4.1 (too old)",
            ));
        }
        let max_packet = r.u32()?;
        let charset = r.u8()?;
        r.bytes(23)?;
        let mut out = Response {
            capabilities,
            max_packet,
            charset,
            ..Response::default()
        };
        if r.remaining() == 0 {
            out.ssl_request = capabilities & CLIENT_SSL != 0;
            if !out.ssl_request {
                return Err(crate::codec::malformed("handshake response", "truncated"));
            }
            return Ok(out);
        }
        out.user = String::from_utf8_lossy(r.cstr()).into_owned();
        out.auth = if capabilities & CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
            r.lenenc_bytes()?.unwrap_or_default().to_vec()
        } else if capabilities & CLIENT_SECURE_CONNECTION != 0 {
            let n = usize::from(r.u8()?);
            r.bytes(n)?.to_vec()
        } else {
            r.cstr().to_vec()
        };
        if capabilities & CLIENT_CONNECT_WITH_DB != 0 && r.remaining() > 0 {
            let db = String::from_utf8_lossy(r.cstr()).into_owned();
            out.database = (!db.is_empty()).then_some(db);
        }
        if capabilities & CLIENT_PLUGIN_AUTH != 0 && r.remaining() > 0 {
            out.plugin = Some(String::from_utf8_lossy(r.cstr()).into_owned());
        }
        // Connection attributes are not passed upstream: nothing to read further.
        Ok(out)
    }

    /// Encodes a response for the upstream (the gateway acting as a client).
    pub fn encode(&self) -> BytesMut {
        let mut p = BytesMut::with_capacity(96 + self.auth.len());
        p.put_u32_le(self.capabilities);
        p.put_u32_le(self.max_packet);
        p.put_u8(self.charset);
        p.put_bytes(0, 23);
        if self.ssl_request {
            return p;
        }
        p.extend_from_slice(self.user.as_bytes());
        p.put_u8(0);
        if self.capabilities & CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
            put_lenenc_bytes(&mut p, &self.auth);
        } else {
            p.put_u8(self.auth.len() as u8);
            p.extend_from_slice(&self.auth);
        }
        if self.capabilities & CLIENT_CONNECT_WITH_DB != 0 {
            p.extend_from_slice(self.database.as_deref().unwrap_or("").as_bytes());
            p.put_u8(0);
        }
        if self.capabilities & CLIENT_PLUGIN_AUTH != 0 {
            p.extend_from_slice(self.plugin.as_deref().unwrap_or("").as_bytes());
            p.put_u8(0);
        }
        if self.capabilities & CLIENT_CONNECT_ATTRS != 0 {
            let mut attrs = BytesMut::new();
            put_lenenc_bytes(&mut attrs, b"program_name");
            put_lenenc_bytes(&mut attrs, b"airlock");
            put_lenenc_bytes(&mut p, &attrs);
        }
        p
    }
}

/// An AuthSwitchRequest payload.
pub fn auth_switch(plugin: &str, data: &[u8]) -> BytesMut {
    let mut p = BytesMut::with_capacity(2 + plugin.len() + data.len() + 1);
    p.put_u8(0xFE);
    p.extend_from_slice(plugin.as_bytes());
    p.put_u8(0);
    p.extend_from_slice(data);
    p.put_u8(0);
    p
}

/// `mysql_native_password`: SHA1(pw) XOR SHA1(nonce + SHA1(SHA1(pw))). Empty for no password.
pub fn native_password(password: &[u8], nonce: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let h1 = Sha1::digest(password);
    let h2 = Sha1::digest(h1);
    let mut h = Sha1::new();
    h.update(nonce.get(..20).unwrap_or(nonce));
    h.update(h2);
    let h3 = h.finalize();
    h1.iter().zip(h3.iter()).map(|(a, b)| a ^ b).collect()
}

/// `caching_sha2_password` fast path: SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) + nonce).
pub fn caching_sha2(password: &[u8], nonce: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let h1 = Sha256::digest(password);
    let h2 = Sha256::digest(h1);
    let mut h = Sha256::new();
    h.update(h2);
    h.update(nonce.get(..20).unwrap_or(nonce));
    let h3 = h.finalize();
    h1.iter().zip(h3.iter()).map(|(a, b)| a ^ b).collect()
}

/// The scramble for `plugin`, or `None` when the gateway does not speak it upstream.
pub fn scramble(plugin: &str, password: &[u8], nonce: &[u8]) -> Option<Vec<u8>> {
    match plugin {
        NATIVE => Some(native_password(password, nonce)),
        CACHING_SHA2 => Some(caching_sha2(password, nonce)),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    // Vectors computed independently (Python hashlib) for password "secret" and nonce
    // bytes 1..=20.
    const NONCE: [u8; 20] = [
        1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20,
    ];

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn native_vector() {
        assert_eq!(hex(&native_password(b"secret", &NONCE)), NATIVE_SECRET_HEX);
        assert!(native_password(b"", &NONCE).is_empty());
    }

    #[test]
    fn caching_sha2_vector() {
        assert_eq!(hex(&caching_sha2(b"secret", &NONCE)), SHA2_SECRET_HEX);
    }

    const NATIVE_SECRET_HEX: &str = "b32bb3a583e1340c0a1108d58b1be49781ad8c2f";
    const SHA2_SECRET_HEX: &str =
        "746ebe205d56a0707acb3e796e834e0dd7b1d61743b26bd5202c7a623230c7c9";

    #[test]
    fn greeting_round_trip() {
        let g = Greeting {
            version: "5.7.99-airlock".into(),
            connection_id: 42,
            nonce: NONCE.to_vec(),
            capabilities: crate::codec::GATEWAY_CAPABILITIES,
            charset: 45,
            status: 2,
            plugin: CLEAR.into(),
        };
        assert_eq!(Greeting::decode(&g.encode()).unwrap(), g);
    }

    #[test]
    fn response_round_trip() {
        let r = Response {
            capabilities: crate::codec::GATEWAY_CAPABILITIES,
            max_packet: 1 << 24,
            charset: 45,
            user: "agent".into(),
            auth: b"token".to_vec(),
            database: Some("my-local".into()),
            plugin: Some(CLEAR.into()),
            ssl_request: false,
        };
        assert_eq!(Response::decode(&r.encode()).unwrap(), r);
    }
}
