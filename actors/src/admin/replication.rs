//! Admin commands served by the replication coordinator: `ring`, `preflist KEY` and
//! `object KEY` (this replica's copy of a key).

use super::{err, ok};
use crate::coordinator::describe::{DescribeObject, DescribePreflist, DescribeRing};
use actix::prelude::*;
use std::sync::{Arc, Mutex};
use troupe_protocol::ErrorCode;

/// What the Admin actor holds of the coordinator (recipients, never its concrete type).
#[derive(Clone)]
pub struct CoordinatorHandles {
    pub ring: Recipient<DescribeRing>,
    pub preflist: Recipient<DescribePreflist>,
    pub object: Recipient<DescribeObject>,
    /// "ok" or why the data is under-replicated.
    pub note: Arc<Mutex<String>>,
}

/// Runs one replication command; the reply is the encoded admin response.
pub fn run(
    h: &CoordinatorHandles,
    id: u64,
    op: &str,
    args: &[String],
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<u8>>>> {
    let failed = move |e: MailboxError| err(id, ErrorCode::Internal, e.to_string());
    let key = args.first().map(|k| k.as_bytes().to_vec());
    match (op, key) {
        ("ring", _) => {
            let r = h.ring.send(DescribeRing);
            Box::pin(async move { r.await.map_or_else(failed, |v| ok(id, v)) })
        }
        ("preflist", Some(key)) => {
            let r = h.preflist.send(DescribePreflist { key });
            Box::pin(async move { r.await.map_or_else(failed, |v| ok(id, v)) })
        }
        ("object", Some(key)) => {
            let r = h.object.send(DescribeObject { key });
            Box::pin(async move {
                match r.await {
                    Ok(Ok(v)) => ok(id, v),
                    Ok(Err(e)) => err(id, e.code, e.msg),
                    Err(e) => failed(e),
                }
            })
        }
        (op, _) => {
            let msg = format!("usage: {op} KEY");
            Box::pin(async move { err(id, ErrorCode::BadRequest, msg) })
        }
    }
}
