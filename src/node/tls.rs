//! `[tls]` at start-up and on SIGHUP: loads the node's certificates and reloads them when
//! the process gets SIGHUP (a renewed certificate without a restart).
//!
//! A reload that fails (a missing or broken file) is logged and leaves the certificates in
//! force unchanged; connections already established are never touched by a reload.

use crate::config::Config;
use anyhow::Context as _;
use std::sync::Arc;
use troupe_actors::tls::{NodeTls, TlsSettings};

/// The node's TLS state, or `None` when `tls.cert` is empty.
pub fn load(cfg: &Config) -> anyhow::Result<Option<Arc<NodeTls>>> {
    let t = &cfg.tls;
    if !t.enabled() {
        return Ok(None);
    }
    let settings = TlsSettings {
        cert: t.cert.clone(),
        key: t.key.clone(),
        ca: t.ca.clone(),
        require_client_cert: t.require_client_cert,
        handshake_timeout: crate::config::parse_duration(&t.handshake_timeout)?,
    };
    let tls = NodeTls::load(settings).context("tls: cannot load the certificates")?;
    log::info!(
        "TLS on the client, admin and peer ports (certificate {}, CA {}, client certificates {})",
        t.cert.display(),
        t.ca.display(),
        if t.require_client_cert {
            "required"
        } else {
            "not required"
        }
    );
    Ok(Some(tls))
}

/// Reloads the certificates on every SIGHUP, for the life of the process. Installed with TLS
/// off too: SIGHUP's default action would end the node (`systemctl reload` sends it).
pub fn reload_on_sighup(tls: Option<Arc<NodeTls>>) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).context("installing a SIGHUP handler")?;
    actix::spawn(async move {
        while hup.recv().await.is_some() {
            let Some(tls) = &tls else {
                log::info!("SIGHUP: nothing to reload (TLS is off)");
                continue;
            };
            match tls.reload() {
                Ok(()) => log::info!(
                    "SIGHUP: TLS certificates reloaded from {}; new connections use them",
                    tls.settings().cert.display()
                ),
                Err(e) => log::error!(
                    "SIGHUP: TLS certificates not reloaded, the old ones stay in force: {e}"
                ),
            }
        }
    });
    Ok(())
}
