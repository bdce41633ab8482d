//! The accept loop every listener of a node shares (client, admin, peer, metrics).
//!
//! Invariant: an accept error (EMFILE and friends) backs off 100 ms instead of spinning, and
//! cancellation of `shutdown` ends the loop at once.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// The next accepted socket, or `None` once `shutdown` is cancelled.
pub async fn accept(
    listener: &TcpListener,
    shutdown: &CancellationToken,
    what: &str,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            r = listener.accept() => match r {
                Ok(s) => return Some(s),
                Err(e) => {
                    log::warn!("{what} accept failed: {e}; retrying in 100 ms");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}
