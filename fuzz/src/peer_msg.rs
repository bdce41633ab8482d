//! Target `peer_msg`: the peer port's decoders. A frame body goes to [`PeerMsg::decode`]
//! (SWIM messages, replication data batches, layout gossip) and to the three handshake
//! frames' decoders; what a node decodes further from a message is decoded too: the objects,
//! contexts, typed states and key clocks inside a data batch (`crate::object`), and a gossiped layout's table
//! ([`Layout::from_wire`], the receiver's validation). The same bytes wrapped as a layout
//! file (magic, format byte, body, blake3) go to [`Layout::decode_file`].
//!
//! Checked for any input: no panic; whatever decodes re-encodes to something that decodes
//! to the same value; a layout that validates survives its wire and file encodings.

use troupe_actors::ring::layout::{FILE_FORMAT, FILE_MAGIC};
use troupe_actors::ring::Layout;
use troupe_protocol::data::{DataMsg, DataReq, DataResp};
use troupe_protocol::layout::{LayoutMsg, WireLayout};
use troupe_protocol::swim::{PeerHello, PeerMsg, PeerProof, PeerWelcome, SwimMsg};

pub fn run(data: &[u8]) {
    if let Ok(m) = PeerMsg::decode(data) {
        assert_eq!(PeerMsg::decode(&m.encode()).as_ref().ok(), Some(&m));
        match &m {
            PeerMsg::Data(batch) => batch.iter().for_each(data_msg),
            PeerMsg::Layout(LayoutMsg::Full(w)) => layout(w),
            PeerMsg::Layout(_) => {}
            PeerMsg::Swim(s) => {
                let _ = s.kind();
            }
            // The round trip above is what these are checked for.
            PeerMsg::AntiEntropy(_) | PeerMsg::Tomb(_) | PeerMsg::Transfer(_) => {}
        }
    }
    if let Ok(m) = SwimMsg::decode(data) {
        assert_eq!(SwimMsg::decode(&m.encode()).as_ref().ok(), Some(&m));
    }
    if let Ok(m) = PeerHello::decode(data) {
        assert_eq!(PeerHello::decode(&m.encode()).as_ref().ok(), Some(&m));
    }
    if let Ok(m) = PeerWelcome::decode(data) {
        assert_eq!(PeerWelcome::decode(&m.encode()).as_ref().ok(), Some(&m));
    }
    if let Ok(m) = PeerProof::decode(data) {
        assert_eq!(PeerProof::decode(&m.encode()).as_ref().ok(), Some(&m));
    }
    if let Ok(l) = Layout::decode_file(&layout_file(data)) {
        check_layout(&l);
    }
}

/// `body` framed as a layout file with a valid checksum.
pub fn layout_file(body: &[u8]) -> Vec<u8> {
    let mut out = FILE_MAGIC.to_vec();
    out.push(FILE_FORMAT);
    out.extend_from_slice(body);
    let sum = blake3::hash(&out);
    out.extend_from_slice(sum.as_bytes());
    out
}

fn data_msg(m: &DataMsg) {
    match m {
        DataMsg::Req { req, .. } => match req {
            DataReq::Get { .. } => {}
            DataReq::Put { object, .. } => {
                crate::object::object(object);
            }
            DataReq::Coordinate { context, .. } => {
                if let Some(c) = context {
                    crate::object::context(c);
                }
            }
            DataReq::Keys { .. } => {}
            DataReq::Hint { object, .. } => {
                crate::object::object(object);
            }
        },
        DataMsg::Resp { resp, .. } => match resp {
            DataResp::Object {
                object: Some(object),
            } => {
                crate::object::object(object);
            }
            DataResp::Written { context, typed, .. } => {
                crate::object::context(context);
                if let Some(t) = typed {
                    crate::object::typed(t);
                }
            }
            DataResp::Keys { entries, .. } => {
                for e in entries {
                    crate::object::context(&e.clock);
                }
            }
            _ => {}
        },
    }
}

fn layout(w: &WireLayout) {
    if let Ok(l) = Layout::from_wire(w.clone()) {
        check_layout(&l);
    }
}

fn check_layout(l: &Layout) {
    assert_eq!(
        Layout::from_wire(l.to_wire()).as_ref(),
        Ok(l),
        "a layout does not survive its wire form"
    );
    let back = Layout::decode_file(&l.encode_file()).expect("a layout's own file decodes");
    assert_eq!(&back, l, "a layout does not survive its file form");
}
