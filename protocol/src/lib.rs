//! The troupe wire protocol, for servers and client authors alike. No actix in here.
//!
//! Layout:
//! - [`codec`]: the 4-byte big-endian length-prefixed frame codec with a hard size limit.
//! - [`message`]: client requests (`hello`, `ping`, `get`, `put`, `delete`), replies and
//!   responses as MessagePack maps.
//! - [`admin`]: admin-port requests and replies (`status`, `actors`, ...).
//! - [`error`]: the stable error codes.
//! - [`object`]: the replicated object (a dotted version vector set of values and delete
//!   markers), the client's opaque causal context ([`object::VersionVector`]) and their
//!   versioned byte encodings. Pure: no I/O.
//! - [`crdt`]: conflict-free data types (counter, set, register) stored in objects.
//! - [`layout`]: the ring layout nodes agree on, as gossiped and stored.
//! - [`swim`]: peer-port types: the peer handshake and SWIM membership messages.
//! - [`client`]: an async pipelining client.
//! - [`tls`]: TLS configurations (rustls) for the node and its clients, from PEM files.
//!
//! `PROTOCOL.md` beside this crate is the specification a third-party client is written
//! from; its example frames are checked byte for byte by `tests/golden.rs`.

pub mod admin;
pub mod antientropy;
pub mod client;
pub mod codec;
pub mod crdt;
pub mod data;
pub mod error;
pub mod layout;
pub mod message;
mod mp;
pub mod object;
pub mod swim;
pub mod tls;
pub mod tomb;
pub mod transfer;

pub use client::{Client, ClientError, GetResult, PutResult};
pub use codec::{FrameCodec, FrameError, DEFAULT_MAX_FRAME_BYTES};
pub use error::{ErrorBody, ErrorCode};
pub use message::{
    decode_request, encode_request, Quorum, Reply, Request, Response, PROTOCOL_VERSION,
};
