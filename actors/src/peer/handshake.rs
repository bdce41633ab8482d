//! Peer connection handshake and mutual authentication.
//!
//! Owns: the three-frame handshake on every peer connection and the blake3 proofs.
//! 1. connector -> acceptor: [`PeerHello`] `{version, from, lane, challenge: c1}`
//! 2. acceptor -> connector: [`PeerWelcome`] `{from, challenge: c2, proof: P_a}` where
//!    `P_a = keyed_hash(K, "acceptor" | c1 | c2 | acceptor id)`
//! 3. connector -> acceptor: [`PeerProof`] `{proof: P_c}` where
//!    `P_c = keyed_hash(K, "connector" | c2 | c1 | connector id)`
//!
//! `K = blake3::derive_key(AUTH_CONTEXT, cluster.secret)`. The secret never crosses the wire;
//! both challenges are fresh random bytes, so a recorded proof is useless later.
//!
//! Invariants: with a secret configured, a side accepts the other only after checking its
//! proof (constant-time comparison of blake3 hashes); a missing or wrong proof is refused,
//! logged, and the connection closed. Without a secret no proofs are sent, and a peer that
//! sends one is refused too (the operator configured the two nodes differently).

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::Framed;
use troupe_protocol::swim::{
    Lane, NodeId, PeerHello, PeerProof, PeerWelcome, PEER_PROTOCOL_VERSION,
};
use troupe_protocol::FrameCodec;

/// blake3 `derive_key` context for the peer authentication key.
pub const AUTH_CONTEXT: &str = "troupe 2026-11 peer authentication v1";

/// Longest a handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a handshake failed. Nothing was exchanged past the handshake in any case.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("peer {peer} refused: {reason}")]
    Refused { peer: String, reason: String },
    #[error("peer {peer} failed authentication: {reason}")]
    Unauthenticated { peer: String, reason: String },
    #[error("peer protocol error: {0}")]
    Protocol(String),
    #[error("handshake timed out")]
    Timeout,
    #[error("connection closed during handshake")]
    Closed,
}

/// The derived authentication key, or none when `cluster.secret` is empty.
#[derive(Clone)]
pub struct AuthKey(Option<[u8; 32]>);

impl std::fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "AuthKey(set)"
        } else {
            "AuthKey(none)"
        })
    }
}

impl AuthKey {
    pub fn from_secret(secret: &str) -> AuthKey {
        if secret.is_empty() {
            AuthKey(None)
        } else {
            AuthKey(Some(blake3::derive_key(AUTH_CONTEXT, secret.as_bytes())))
        }
    }

    fn proof(&self, role: &[u8], a: &[u8; 32], b: &[u8; 32], id: &NodeId) -> Option<Vec<u8>> {
        let key = self.0.as_ref()?;
        let mut msg = Vec::with_capacity(role.len() + 64 + id.0.len());
        msg.extend_from_slice(role);
        msg.extend_from_slice(a);
        msg.extend_from_slice(b);
        msg.extend_from_slice(id.0.as_bytes());
        Some(blake3::keyed_hash(key, &msg).as_bytes().to_vec())
    }

    /// Checks `got` against the expected proof; `Err` says why it is refused.
    fn verify(&self, expected: Option<Vec<u8>>, got: Option<&[u8]>) -> Result<(), String> {
        match (expected, got) {
            (None, None) => Ok(()),
            (None, Some(_)) => Err("it sent a proof but this node has no cluster.secret".into()),
            (Some(_), None) => Err("it sent no proof (is cluster.secret set there?)".into()),
            (Some(e), Some(g)) => {
                let ok = <[u8; 32]>::try_from(g)
                    .ok()
                    .and_then(|g| <[u8; 32]>::try_from(e.as_slice()).ok().map(|e| (e, g)))
                    .is_some_and(|(e, g)| blake3::Hash::from(e) == blake3::Hash::from(g));
                if ok {
                    Ok(())
                } else {
                    Err("wrong proof (different cluster.secret)".into())
                }
            }
        }
    }
}

fn challenge() -> [u8; 32] {
    rand::rng().random()
}

async fn next<S>(framed: &mut Framed<S, FrameCodec>) -> Result<bytes::BytesMut, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match framed.next().await {
        Some(Ok(b)) => Ok(b),
        Some(Err(e)) => Err(HandshakeError::Protocol(e.to_string())),
        None => Err(HandshakeError::Closed),
    }
}

async fn put<S>(framed: &mut Framed<S, FrameCodec>, body: Vec<u8>) -> Result<(), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    framed
        .send(Bytes::from(body))
        .await
        .map_err(|e| HandshakeError::Protocol(e.to_string()))
}

/// Connector side. Returns the acceptor's node id.
pub async fn connect<S>(
    framed: &mut Framed<S, FrameCodec>,
    key: &AuthKey,
    me: &NodeId,
    lane: Lane,
) -> Result<NodeId, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let fut = async {
        let c1 = challenge();
        let hello = PeerHello {
            version: PEER_PROTOCOL_VERSION,
            from: me.clone(),
            lane,
            challenge: c1,
        };
        put(framed, hello.encode()).await?;
        let w = PeerWelcome::decode(&next(framed).await?)
            .map_err(|e| HandshakeError::Protocol(format!("bad welcome: {e}")))?;
        let peer = w.from.0.clone();
        if let Some(reason) = w.refused {
            return Err(HandshakeError::Refused { peer, reason });
        }
        let expected = key.proof(b"acceptor", &c1, &w.challenge, &w.from);
        key.verify(expected, w.proof.as_deref())
            .map_err(|reason| HandshakeError::Unauthenticated { peer, reason })?;
        let proof = PeerProof {
            proof: key.proof(b"connector", &w.challenge, &c1, me),
        };
        put(framed, proof.encode()).await?;
        Ok(w.from)
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, fut)
        .await
        .map_err(|_| HandshakeError::Timeout)?
}

/// Acceptor side. Returns the connector's node id and lane.
pub async fn accept<S>(
    framed: &mut Framed<S, FrameCodec>,
    key: &AuthKey,
    me: &NodeId,
) -> Result<(NodeId, Lane), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let fut = async {
        let hello = PeerHello::decode(&next(framed).await?)
            .map_err(|e| HandshakeError::Protocol(format!("bad hello: {e}")))?;
        let c2 = challenge();
        let mut welcome = PeerWelcome {
            from: me.clone(),
            challenge: c2,
            proof: key.proof(b"acceptor", &hello.challenge, &c2, me),
            refused: None,
        };
        if hello.version != PEER_PROTOCOL_VERSION {
            let reason = format!("peer protocol version {} not supported", hello.version);
            welcome.proof = None;
            welcome.refused = Some(reason.clone());
            let _ = put(framed, welcome.encode()).await;
            return Err(HandshakeError::Refused {
                peer: hello.from.0,
                reason,
            });
        }
        put(framed, welcome.encode()).await?;
        let proof = PeerProof::decode(&next(framed).await?)
            .map_err(|e| HandshakeError::Protocol(format!("bad proof: {e}")))?;
        let expected = key.proof(b"connector", &c2, &hello.challenge, &hello.from);
        key.verify(expected, proof.proof.as_deref())
            .map_err(|reason| HandshakeError::Unauthenticated {
                peer: hello.from.0.clone(),
                reason,
            })?;
        Ok((hello.from, hello.lane))
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, fut)
        .await
        .map_err(|_| HandshakeError::Timeout)?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs both sides over an in-memory pipe.
    async fn pair(
        a: &str,
        b: &str,
    ) -> (
        Result<NodeId, HandshakeError>,
        Result<(NodeId, Lane), HandshakeError>,
    ) {
        let (x, y) = tokio::io::duplex(4096);
        let mut fx = Framed::new(x, FrameCodec::new(1 << 20));
        let mut fy = Framed::new(y, FrameCodec::new(1 << 20));
        let (ka, kb) = (AuthKey::from_secret(a), AuthKey::from_secret(b));
        let (cid, sid): (NodeId, NodeId) = ("c".into(), "s".into());
        let c = connect(&mut fx, &ka, &cid, Lane::Control);
        let s = accept(&mut fy, &kb, &sid);
        tokio::join!(c, s)
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn same_secret_or_none_authenticates_both_ways() {
        rt().block_on(async {
            let (c, s) = pair("s3cret", "s3cret").await;
            assert_eq!(c.unwrap().0, "s");
            assert_eq!(s.unwrap(), ("c".into(), Lane::Control));
            let (c, s) = pair("", "").await;
            assert!(c.is_ok() && s.is_ok());
        });
    }

    #[test]
    fn missing_or_wrong_secret_is_refused() {
        rt().block_on(async {
            // acceptor has a secret, connector has none: neither accepts the other (the
            // connector sees a proof it cannot check and hangs up)
            let (c, s) = pair("", "s3cret").await;
            assert!(
                matches!(c, Err(HandshakeError::Unauthenticated { .. })),
                "{c:?}"
            );
            assert!(s.is_err(), "{s:?}");
            // connector has a secret, acceptor none: connector refuses the acceptor
            let (c, _) = pair("s3cret", "").await;
            assert!(
                matches!(c, Err(HandshakeError::Unauthenticated { .. })),
                "{c:?}"
            );
            // different secrets: the connector already rejects the acceptor's proof
            let (c, s) = pair("one", "two").await;
            assert!(
                matches!(c, Err(HandshakeError::Unauthenticated { .. })),
                "{c:?}"
            );
            assert!(s.is_err());
        });
    }

    #[test]
    fn the_secret_never_crosses_the_wire() {
        let key = AuthKey::from_secret("hunter2-hunter2");
        let p = key
            .proof(b"acceptor", &[1; 32], &[2; 32], &"n".into())
            .unwrap();
        assert!(!p.windows(7).any(|w| w == b"hunter2"));
        // and it depends on both challenges
        let q = key
            .proof(b"acceptor", &[1; 32], &[3; 32], &"n".into())
            .unwrap();
        assert_ne!(p, q);
    }
}
