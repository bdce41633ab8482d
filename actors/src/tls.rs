//! The node's TLS state (`[tls]`): the server configurations of its client, admin and peer
//! ports and the client configuration its peer lanes connect with, swappable at run time.
//!
//! Invariants:
//! - Peers always authenticate both ways: the peer port requires a client certificate
//!   signed by `tls.ca`, and a lane verifies the peer's certificate against `tls.ca` and the
//!   host of the peer's address. The cluster-secret handshake still runs inside TLS.
//! - The client and admin ports require a client certificate only with
//!   `tls.require_client_cert`.
//! - [`NodeTls::reload`] (SIGHUP) rebuilds every configuration from the files and swaps them
//!   in only if all of them built: new handshakes use the new certificates, established
//!   connections keep the session they have, and a broken file leaves the old ones in force.
//! - Every handshake is bounded by `tls.handshake_timeout`, so a client that speaks plain
//!   TCP to a TLS port (or nothing at all) is closed instead of holding a socket.

use rustls::{ClientConfig, ServerConfig};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use troupe_protocol::tls::{
    client_config, server_config, server_name_of, Identity, TlsAcceptor, TlsConnector, TlsError,
};

/// A byte stream: plain TCP or TLS over TCP.
pub trait IoStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> IoStream for T {}

/// A connection's stream, whichever it is.
pub type BoxStream = Box<dyn IoStream>;
/// The read half of a [`BoxStream`] (or of a plain socket).
pub type BoxRead = Box<dyn AsyncRead + Unpin + Send + 'static>;
/// The write half of a [`BoxStream`] (or of a plain socket).
pub type BoxWrite = Box<dyn AsyncWrite + Unpin + Send + 'static>;

/// `[tls]`, resolved: TLS is on.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    pub require_client_cert: bool,
    pub handshake_timeout: Duration,
}

/// The configurations built from the files, swapped as one.
struct Configs {
    /// Client and admin ports.
    clients: TlsAcceptor,
    /// Peer port: peers must present a certificate from the CA.
    peers: TlsAcceptor,
    /// Peer lanes: verify the peer, present our certificate.
    lanes: TlsConnector,
}

/// The node's TLS state; shared by every listener and lane.
pub struct NodeTls {
    settings: TlsSettings,
    current: RwLock<Arc<Configs>>,
}

impl std::fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeTls")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Which port a handshake is for (for the messages).
#[derive(Debug, Clone, Copy)]
pub enum Port {
    Client,
    Admin,
    Peer,
}

impl NodeTls {
    /// Reads the certificates and key; fails if any file is missing or invalid.
    pub fn load(settings: TlsSettings) -> Result<Arc<NodeTls>, TlsError> {
        let configs = build(&settings)?;
        Ok(Arc::new(NodeTls {
            settings,
            current: RwLock::new(Arc::new(configs)),
        }))
    }

    /// Re-reads the files and swaps the new configurations in; on error the old ones stay.
    pub fn reload(&self) -> Result<(), TlsError> {
        let configs = build(&self.settings)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(configs);
        Ok(())
    }

    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }

    fn configs(&self) -> Arc<Configs> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The server side of a handshake on `port`, within `tls.handshake_timeout`.
    pub async fn accept(&self, tcp: TcpStream, port: Port) -> Result<BoxStream, String> {
        let configs = self.configs();
        let acceptor = match port {
            Port::Client | Port::Admin => &configs.clients,
            Port::Peer => &configs.peers,
        };
        match tokio::time::timeout(self.settings.handshake_timeout, acceptor.accept(tcp)).await {
            Ok(Ok(s)) => Ok(Box::new(s)),
            Ok(Err(e)) => Err(format!("TLS handshake failed: {e}")),
            Err(_) => Err(format!(
                "no TLS handshake within tls.handshake_timeout ({:?})",
                self.settings.handshake_timeout
            )),
        }
    }

    /// The client side of a handshake with the peer at `addr`, within the timeout.
    pub async fn connect_peer(&self, tcp: TcpStream, addr: &str) -> Result<BoxStream, String> {
        let name = server_name_of(addr).map_err(|e| e.to_string())?;
        let connector = self.configs().lanes.clone();
        match tokio::time::timeout(
            self.settings.handshake_timeout,
            connector.connect(name, tcp),
        )
        .await
        {
            Ok(Ok(s)) => Ok(Box::new(s)),
            Ok(Err(e)) => Err(format!("TLS handshake failed: {e}")),
            Err(_) => Err("TLS handshake timed out".to_string()),
        }
    }
}

fn build(s: &TlsSettings) -> Result<Configs, TlsError> {
    let id = Identity {
        cert: s.cert.clone(),
        key: s.key.clone(),
    };
    let clients: ServerConfig = server_config(&id, s.require_client_cert.then_some(&*s.ca))?;
    let peers: ServerConfig = server_config(&id, Some(&s.ca))?;
    let lanes: ClientConfig = client_config(&s.ca, Some(&id))?;
    Ok(Configs {
        clients: TlsAcceptor::from(Arc::new(clients)),
        peers: TlsAcceptor::from(Arc::new(peers)),
        lanes: TlsConnector::from(Arc::new(lanes)),
    })
}
