//! What every adapter's connections are made of, whatever the protocol: one stream type for
//! plain TCP and TLS on either side (`stream`), the client-facing TLS setup and the upstream
//! `sslmode` (`tls`), the rule for when a token may travel in plaintext, and the [`Listener`]
//! trait every protocol adapter implements.
#![forbid(unsafe_code)]

pub mod listener;
pub mod stream;
pub mod tls;

pub use listener::Listener;
pub use stream::NetStream;

/// A token (the client's password) may travel unencrypted only from a loopback peer, unless the
/// operator allowed it (`[gateway] allow_plaintext_tokens`): anywhere else it would cross a
/// network in clear.
pub fn plaintext_token_allowed(peer: std::net::IpAddr, allow_plaintext_tokens: bool) -> bool {
    peer.is_loopback() || allow_plaintext_tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_tokens_only_from_loopback_unless_allowed() {
        assert!(plaintext_token_allowed("127.0.0.1".parse().unwrap(), false));
        assert!(plaintext_token_allowed("::1".parse().unwrap(), false));
        assert!(!plaintext_token_allowed("10.0.0.5".parse().unwrap(), false));
        assert!(plaintext_token_allowed("10.0.0.5".parse().unwrap(), true));
    }
}
