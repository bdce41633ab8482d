//! TLS options every command that connects to a node shares (`--tls-ca` and friends), and
//! the TLS settings of this process's admin calls.

use anyhow::Context as _;
use std::path::PathBuf;
use troupe_protocol::tls::{ClientTls, Identity};

/// How to reach a node whose ports speak TLS (`[tls]` on the node).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct TlsArgs {
    /// The CA (PEM) the node's certificate must be signed by; connects over TLS.
    #[arg(long, env = "TROUPE_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// This client's certificate (PEM), for a node with `tls.require_client_cert`.
    #[arg(long, env = "TROUPE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "TROUPE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The name the node's certificate must carry (default: the host of --addr).
    #[arg(long, env = "TROUPE_TLS_SERVER_NAME")]
    pub tls_server_name: Option<String>,
}

impl TlsArgs {
    /// The client TLS configuration, or `None` without `--tls-ca` (plain TCP).
    pub fn client_tls(&self) -> anyhow::Result<Option<ClientTls>> {
        let Some(ca) = &self.tls_ca else {
            if self.tls_cert.is_some() {
                anyhow::bail!(
                    "--tls-cert needs --tls-ca (the CA the node's certificate is checked against)"
                );
            }
            return Ok(None);
        };
        let id = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(Identity {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        };
        let mut tls = ClientTls::new(ca, id.as_ref()).context("TLS")?;
        if let Some(name) = &self.tls_server_name {
            tls.server_name = Some(
                rustls::pki_types::ServerName::try_from(name.clone())
                    .with_context(|| format!("--tls-server-name {name:?}"))?,
            );
        }
        Ok(Some(tls))
    }
}

/// The TLS settings of this process's admin calls (set once by `troupe admin` or the console).
static ADMIN_TLS: std::sync::OnceLock<Option<ClientTls>> = std::sync::OnceLock::new();

/// Sets the TLS settings for this process's admin calls (the first call wins).
pub fn set_admin_tls(args: &TlsArgs) -> anyhow::Result<()> {
    let _ = ADMIN_TLS.set(args.client_tls()?);
    Ok(())
}

/// What admin calls connect with (`None`: plain TCP).
pub fn admin_tls() -> Option<&'static ClientTls> {
    ADMIN_TLS.get().and_then(Option::as_ref)
}
