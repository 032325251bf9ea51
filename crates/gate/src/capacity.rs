//! How many sessions the gateway serves at once, and what it does at the limit.
//!
//! Each session holds about three file descriptors (client socket, upstream socket, recording
//! file). When the process runs out of descriptors, `accept` fails and new clients hang until
//! their own timeout, and recordings fail to open. So the binary derives a session capacity
//! from the open-file limit (after raising the soft limit to the hard one) and an optional
//! `[gateway] max_sessions`; adapters ask for a [`Permit`] for each accepted connection and
//! refuse the client at once, in its protocol, when none is left.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Descriptors each session may hold: client, upstream, recording.
pub const FDS_PER_SESSION: u64 = 3;

/// Descriptors kept for everything else: listeners, the audit log and its segments, the
/// index database, exporters, webhooks, the API's connections, TLS files.
pub const RESERVED_FDS: u64 = 128;

/// The session capacity an open-file limit allows.
pub fn sessions_for_fd_limit(fd_limit: u64) -> usize {
    usize::try_from(fd_limit.saturating_sub(RESERVED_FDS) / FDS_PER_SESSION)
        .unwrap_or(usize::MAX)
        .max(1)
}

/// Connections in progress or served, against the limit.
#[derive(Debug)]
pub struct Capacity {
    limit: AtomicUsize,
    active: AtomicUsize,
}

impl Default for Capacity {
    fn default() -> Self {
        Capacity {
            limit: AtomicUsize::new(usize::MAX),
            active: AtomicUsize::new(0),
        }
    }
}

impl Capacity {
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit.max(1), Ordering::Relaxed);
    }

    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// A permit for one more connection, or `None` at the limit. The permit gives its place
    /// back when dropped (the connection ended, however it ended).
    pub fn try_admit(self: &Arc<Self>) -> Option<Permit> {
        let limit = self.limit();
        let admitted = self
            .active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok();
        admitted.then(|| Permit {
            capacity: self.clone(),
        })
    }
}

/// One admitted connection (see [`Capacity::try_admit`]).
#[derive(Debug)]
pub struct Permit {
    capacity: Arc<Capacity>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.capacity.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Connections from one source address that may be in their handshake (connected, not yet
/// authenticated) at once. A handshake holds a place in the session capacity; without this
/// bound, anyone who can reach the listener could fill it with sockets that never send a byte
/// (each is closed after the 30 s startup timeout) and lock every client out.
pub const HANDSHAKES_PER_SOURCE: usize = 64;

/// Connections in their handshake: per source (an IPv4 address, an IPv6 /64, which one
/// holder can fill with addresses) and in total.
#[derive(Debug)]
pub struct Handshakes {
    by_source: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
    total: AtomicUsize,
    /// At most this many handshakes at once from all sources: a share of the session
    /// capacity, so that sockets from many addresses cannot hold every place either.
    total_limit: AtomicUsize,
}

impl Default for Handshakes {
    fn default() -> Self {
        Handshakes {
            by_source: Default::default(),
            total: AtomicUsize::new(0),
            total_limit: AtomicUsize::new(usize::MAX),
        }
    }
}

/// The key a source address is counted under: IPv6 addresses by their /64.
fn source_key(source: std::net::IpAddr) -> std::net::IpAddr {
    match source {
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            std::net::IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

impl Handshakes {
    /// Handshakes in progress at once, from all sources together, are limited to a quarter of
    /// `sessions` (at least [`HANDSHAKES_PER_SOURCE`]).
    pub fn set_capacity(&self, sessions: usize) {
        self.total_limit
            .store((sessions / 4).max(HANDSHAKES_PER_SOURCE), Ordering::Relaxed);
    }

    /// A place for one more handshake from `source`, or `None` when it has
    /// [`HANDSHAKES_PER_SOURCE`] in progress or all sources together have their share.
    pub fn begin(self: &Arc<Self>, source: std::net::IpAddr) -> Option<HandshakePermit> {
        let key = source_key(source);
        let mut map = self.by_source.lock().unwrap_or_else(|p| p.into_inner());
        if self.total.load(Ordering::Relaxed) >= self.total_limit.load(Ordering::Relaxed) {
            return None;
        }
        let n = map.entry(key).or_insert(0);
        if *n >= HANDSHAKES_PER_SOURCE {
            return None;
        }
        *n += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Some(HandshakePermit {
            handshakes: self.clone(),
            source: key,
        })
    }
}

/// One handshake in progress; dropped when the client has authenticated (or left).
#[derive(Debug)]
pub struct HandshakePermit {
    handshakes: Arc<Handshakes>,
    source: std::net::IpAddr,
}

impl Drop for HandshakePermit {
    fn drop(&mut self) {
        let mut map = self
            .handshakes
            .by_source
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.source);
            }
        }
        self.handshakes.total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What an accept loop does after `accept` failed (most often EMFILE: out of descriptors):
/// says so in the log at most once per 10 s per listener, and waits before trying again,
/// longer after each consecutive failure (50 ms doubling up to 1 s), instead of spinning.
/// `failures` counts consecutive failures; the loop resets it to 0 after a successful accept.
pub async fn after_accept_error(
    listener: &'static str,
    error: &std::io::Error,
    failures: &mut u32,
) {
    static LOG: crate::ratelog::RateLog =
        crate::ratelog::RateLog::new(std::time::Duration::from_secs(10));
    if let Some(held) = LOG.allow(listener) {
        tracing::warn!(listener, %error, held_back = held, "accepting a connection failed; backing off (at the open-file limit? see docs/operations.md)");
    }
    let ms = 50u64.saturating_mul(1u64 << (*failures).min(5)).min(1000);
    *failures = failures.saturating_add(1);
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_stop_at_the_limit_and_come_back_when_dropped() {
        let c = Arc::new(Capacity::default());
        c.set_limit(2);
        let a = c.try_admit();
        let b = c.try_admit();
        assert!(a.is_some() && b.is_some());
        assert!(c.try_admit().is_none());
        drop(a);
        assert_eq!(c.active(), 1);
        assert!(c.try_admit().is_some());
    }

    #[test]
    fn handshakes_are_limited_per_source() {
        let h = Arc::new(Handshakes::default());
        let a: std::net::IpAddr = [10, 0, 0, 1].into();
        let b: std::net::IpAddr = [10, 0, 0, 2].into();
        let held: Vec<_> = (0..HANDSHAKES_PER_SOURCE)
            .map(|_| h.begin(a).unwrap())
            .collect();
        assert!(h.begin(a).is_none());
        assert!(h.begin(b).is_some());
        drop(held);
        assert!(h.begin(a).is_some());
    }

    #[test]
    fn handshakes_from_many_sources_get_a_share_of_the_capacity() {
        let h = Arc::new(Handshakes::default());
        h.set_capacity(1000);
        let held: Vec<_> = (0..250u8)
            .map(|i| h.begin([10, 0, 1, i].into()).unwrap())
            .collect();
        assert!(h.begin([10, 0, 2, 1].into()).is_none());
        drop(held);
        // One IPv6 /64 is one source.
        let v6 = |last: u16| {
            std::net::IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, last))
        };
        let held: Vec<_> = (0..HANDSHAKES_PER_SOURCE as u16)
            .map(|i| h.begin(v6(i)).unwrap())
            .collect();
        assert!(h.begin(v6(9999)).is_none());
        drop(held);
    }

    #[test]
    fn the_fd_limit_gives_a_capacity() {
        assert_eq!(sessions_for_fd_limit(1024), (1024 - 128) / 3);
        assert_eq!(sessions_for_fd_limit(10), 1);
    }
}
