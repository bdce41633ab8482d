//! Admin commands served by the AntiEntropy actor: `repair [PARTITION]` (start a round
//! now; the answer is its report so far) and `repair status` (the running or last round).

use super::{err, ok};
use crate::antientropy::{RepairRefused, RepairStatus, StartRepair};
use actix::prelude::*;
use serde::Serialize;
use troupe_protocol::ErrorCode;

/// What the Admin actor holds of anti-entropy (recipients, never its concrete type).
#[derive(Clone)]
pub struct AntiEntropyHandles {
    pub start: Recipient<StartRepair>,
    pub status: Recipient<RepairStatus>,
}

#[derive(Serialize)]
struct NoRound {
    round: Option<u64>,
    running: bool,
}

pub(super) fn run(
    h: &AntiEntropyHandles,
    id: u64,
    args: &[String],
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<u8>>>> {
    let failed = move |e: MailboxError| err(id, ErrorCode::Internal, e.to_string());
    match args.first().map(String::as_str) {
        Some("status") => {
            let r = h.status.send(RepairStatus);
            Box::pin(async move {
                match r.await {
                    Ok(Some(report)) => ok(id, report),
                    Ok(None) => ok(
                        id,
                        NoRound {
                            round: None,
                            running: false,
                        },
                    ),
                    Err(e) => failed(e),
                }
            })
        }
        arg => {
            let partition = match arg.map(str::parse::<u32>) {
                None => None,
                Some(Ok(p)) => Some(p),
                Some(Err(_)) => {
                    let msg = format!(
                        "usage: repair [PARTITION|status]; {:?} is not a partition number",
                        args[0]
                    );
                    return Box::pin(async move { err(id, ErrorCode::BadRequest, msg) });
                }
            };
            let r = h.start.send(StartRepair { partition });
            Box::pin(async move {
                match r.await {
                    Ok(Ok(report)) => ok(id, report),
                    Ok(Err(why @ RepairRefused::NotReady { .. })) => {
                        err(id, ErrorCode::Unavailable, why.to_string())
                    }
                    Ok(Err(why)) => err(id, ErrorCode::BadRequest, why.to_string()),
                    Err(e) => failed(e),
                }
            })
        }
    }
}
