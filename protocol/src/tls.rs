//! TLS configuration shared by the node and its clients (rustls, ring provider): reading
//! PEM files and building the client and server configurations.
//!
//! Invariants: every configuration is built with the ring provider explicitly (never a
//! process-wide default, which would panic if two providers were linked), with rustls' safe
//! defaults (TLS 1.2 and 1.3). A server that verifies clients verifies them against `ca`
//! only; a client verifies the server against `ca` only (no system roots: a troupe cluster
//! has its own CA).

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no {what} in PEM form")]
    Empty { path: PathBuf, what: &'static str },
    #[error("{path}: {source}")]
    Invalid {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The certificates (a chain, leaf first) in a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            path: path.to_path_buf(),
            what: "certificate",
        });
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })?
        .ok_or_else(|| TlsError::Empty {
            path: path.to_path_buf(),
            what: "private key",
        })
}

/// The CA certificates in a PEM file, as trust roots.
pub fn load_roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in load_certs(path)? {
        roots.add(c).map_err(|source| TlsError::Invalid {
            path: path.to_path_buf(),
            source,
        })?;
    }
    Ok(Arc::new(roots))
}

/// A certificate chain and its key, for a server or a client that authenticates.
pub struct Identity {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A server configuration presenting `id`; with `clients_ca`, every client must present a
/// certificate signed by that CA (mutual TLS).
pub fn server_config(id: &Identity, clients_ca: Option<&Path>) -> Result<ServerConfig, TlsError> {
    let certs = load_certs(&id.cert)?;
    let key = load_key(&id.key)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match clients_ca {
        Some(ca) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(load_roots(ca)?, provider())
                .build()
                .map_err(|e| TlsError::Config(format!("client verifier: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    builder
        .with_single_cert(certs, key)
        .map_err(|source| TlsError::Invalid {
            path: id.cert.clone(),
            source,
        })
}

/// A client configuration trusting the CA in `ca`, presenting `id` when given (mutual TLS).
pub fn client_config(ca: &Path, id: Option<&Identity>) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(load_roots(ca)?);
    match id {
        Some(id) => builder
            .with_client_auth_cert(load_certs(&id.cert)?, load_key(&id.key)?)
            .map_err(|source| TlsError::Invalid {
                path: id.cert.clone(),
                source,
            }),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// The name a server's certificate must carry when reached at `addr` (`host:port`, `[v6]:port`
/// or a bare host): an IP address or a DNS name.
pub fn server_name_of(addr: &str) -> Result<ServerName<'static>, TlsError> {
    let host = match addr.rsplit_once(':') {
        // A bare IPv6 address has several colons and no brackets.
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) && !h.is_empty() => h,
        _ => addr,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string())
        .map_err(|e| TlsError::Config(format!("{host:?} is not a server name: {e}")))
}

/// What a client needs to reach a node over TLS: the configuration, and the name the
/// node's certificate must carry (`None`: the address's host, see [`server_name_of`]).
#[derive(Clone)]
pub struct ClientTls {
    pub config: Arc<ClientConfig>,
    pub server_name: Option<ServerName<'static>>,
}

impl ClientTls {
    /// Trusting `ca`, presenting `id` when given.
    pub fn new(ca: &Path, id: Option<&Identity>) -> Result<ClientTls, TlsError> {
        Ok(ClientTls {
            config: Arc::new(client_config(ca, id)?),
            server_name: None,
        })
    }

    /// The name to verify when connecting to `addr`.
    pub fn name_for(&self, addr: &str) -> Result<ServerName<'static>, TlsError> {
        match &self.server_name {
            Some(n) => Ok(n.clone()),
            None => server_name_of(addr),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_come_from_the_host_of_an_address() {
        let name = |a: &str| server_name_of(a).map(|n| n.to_str().into_owned());
        assert_eq!(name("127.0.0.1:7000").unwrap(), "127.0.0.1");
        assert_eq!(name("node-2.example:7000").unwrap(), "node-2.example");
        assert_eq!(name("[::1]:7000").unwrap(), "::1");
        assert_eq!(name("localhost").unwrap(), "localhost");
        assert!(name("bad host:1").is_err());
    }
}
