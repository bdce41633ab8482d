//! Admin protocol messages, spoken on the admin port with the same framing as clients.
//!
//! A request is `{"id": uint, "op": str, "args": [str...]}` — one console command and its
//! arguments — and the response is `{"id": uint, "ok": <command-specific map>}` or
//! `{"id": uint, "err": {"code", "msg"}}`. Admin replies carry only strings, numbers, bools,
//! arrays and maps (no bin), so a console can print any reply as JSON without knowing it.

use crate::error::{ErrorBody, ErrorCode};
use serde::{Deserialize, Serialize};

/// One admin command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminRequest {
    pub id: u64,
    pub op: String,
    #[serde(default)]
    pub args: Vec<String>,
    /// The admin token, required when the node has `auth.admin_token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl AdminRequest {
    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec_named(self).expect("BUG: encoding into a Vec cannot fail")
    }

    pub fn decode(body: &[u8]) -> Result<AdminRequest, ErrorBody> {
        crate::codec::decode_one(body).map_err(|e| {
            ErrorBody::new(
                ErrorCode::BadRequest,
                format!("malformed admin request: {e}"),
            )
        })
    }
}

/// An admin response whose `ok` body is any serializable reply.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdminResponse<T> {
    pub id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub err: Option<ErrorBody>,
}

impl<T: Serialize> AdminResponse<T> {
    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec_named(self).expect("BUG: encoding into a Vec cannot fail")
    }
}

/// The addresses a node listens on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Addresses {
    pub client: String,
    pub peer: String,
    pub admin: String,
    pub metrics: String,
}

/// Reply to `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReply {
    pub node_id: String,
    pub version: String,
    pub uptime_secs: u64,
    pub addresses: Addresses,
    pub data_dir: String,
    pub durability: String,
    /// `"ok"`, or why the node refuses writes (for example a failed fsync).
    pub health: String,
    /// The log level now (`admin log-level` changes it at run time).
    #[serde(default)]
    pub log_level: String,
    pub connections: u64,
    /// `"ok"`, or why data is under-replicated (fewer ring members than `cluster.n`).
    #[serde(default)]
    pub replication: String,
    /// Background storage work (flush, compaction) that is failing and being retried, one
    /// line each with the last error; empty when all is well. The node still accepts
    /// writes (see `health`) unless the failure lasts until memory or L0 fills up.
    #[serde(default)]
    pub background: Vec<String>,
}

/// One actor (or one kind of actor, for per-connection actors) in `actors`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorStat {
    pub name: String,
    /// Live instances of this actor (connections have one each).
    pub instances: u64,
    /// Messages sent to it and not yet handled.
    pub mailbox: u64,
    pub handled: u64,
    pub errors: u64,
}

/// Reply to `actors`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorsReply {
    pub actors: Vec<ActorStat>,
}

/// One member in `members`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRow {
    pub id: String,
    pub client: String,
    pub peer: String,
    pub admin: String,
    /// `alive`, `suspect`, `dead` or `left`.
    pub status: String,
    pub incarnation: u64,
    /// Changes on every start of that node (its start time in ms since the Unix epoch).
    pub run_id: u64,
    /// Milliseconds since this node saw the member's status last change.
    pub last_change_ms_ago: u64,
    /// Milliseconds since this node last received any peer message from the member
    /// (`None`: never, or it is this node).
    #[serde(default)]
    pub last_heard_ms_ago: Option<u64>,
    /// True for the node that answered.
    pub this_node: bool,
}

/// Reply to `members`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembersReply {
    pub members: Vec<MemberRow>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_admin_frame_with_trailing_bytes_is_a_bad_request() {
        let req = AdminRequest {
            id: 3,
            op: "status".into(),
            args: vec![],
            token: None,
        };
        let mut body = req.encode();
        assert!(AdminRequest::decode(&body).is_ok());
        body.extend_from_slice(&[0x01, 0x02]);
        let err = AdminRequest::decode(&body).expect_err("trailing bytes must be refused");
        assert_eq!(err.code, ErrorCode::BadRequest);
    }
}
