//! The seam between the binary and a protocol adapter: the binary binds one socket per enabled
//! `[listeners]` entry and hands it to that protocol's [`Listener`]; it knows nothing else of
//! the protocol.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

/// What [`Listener::serve`] returns: the accept loop, run as its own task.
pub type Serving = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One protocol endpoint of the gateway (PostgreSQL, MySQL, and each adapter to come).
pub trait Listener: Send + 'static {
    /// Its `[listeners]` key: `postgres`, `mysql`, ...
    fn protocol(&self) -> &'static str;

    /// How a client connects to it, for the start banner (one or more lines).
    fn banner(&self, addr: SocketAddr) -> String;

    /// Accepts and serves sessions on `socket` until the task running it is stopped.
    fn serve(self: Box<Self>, socket: tokio::net::TcpListener) -> Serving;
}
