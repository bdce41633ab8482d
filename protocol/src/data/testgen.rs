//! Generators of data messages for property tests: every variant, optional fields absent,
//! nil and present.

use super::{DataMsg, DataReq, DataResp, KeyEntry};
use crate::crdt::TypedOp;
use crate::message::Quorum;
use proptest::prelude::*;
use serde_bytes::ByteBuf;

pub(crate) fn b() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..12)
}

pub(crate) fn ob() -> impl Strategy<Value = Option<Vec<u8>>> {
    proptest::option::of(b())
}

pub(crate) fn req() -> impl Strategy<Value = DataReq> {
    let quorum = prop_oneof![
        Just(None),
        Just(Some(Quorum::One)),
        Just(Some(Quorum::All)),
        (1u32..9).prop_map(|k| Some(Quorum::N(k))),
    ];
    let typed = prop_oneof![
        Just(None),
        any::<i64>().prop_map(|by| Some(TypedOp::Incr { by })),
        b().prop_map(|v| Some(TypedOp::SetAdd {
            members: vec![ByteBuf::from(v)]
        })),
    ];
    prop_oneof![
        b().prop_map(|key| DataReq::Get { key }),
        (b(), b()).prop_map(|(key, object)| DataReq::Put { key, object }),
        (b(), ob(), ob(), quorum, typed).prop_map(|(key, value, context, w, typed)| {
            DataReq::Coordinate {
                key,
                value,
                context,
                w,
                typed,
            }
        }),
        ("[a-z0-9]{0,6}", b(), b()).prop_map(|(primary, key, object)| DataReq::Hint {
            primary,
            key,
            object
        }),
        (
            ob(),
            ob(),
            any::<u32>(),
            proptest::collection::vec(any::<u32>(), 0..4)
        )
            .prop_map(|(prefix, after, limit, partitions)| DataReq::Keys {
                prefix,
                after,
                limit,
                partitions
            }),
    ]
}

pub(crate) fn resp() -> impl Strategy<Value = DataResp> {
    let values = proptest::option::of(proptest::collection::vec(b().prop_map(ByteBuf::from), 0..3));
    let entries = proptest::collection::vec(
        (b(), any::<bool>(), b()).prop_map(|(key, live, clock)| KeyEntry { key, live, clock }),
        0..3,
    );
    prop_oneof![
        ob().prop_map(|object| DataResp::Object { object }),
        Just(DataResp::Stored),
        (b(), values, ob()).prop_map(|(context, values, typed)| DataResp::Written {
            context,
            values,
            typed
        }),
        (entries, ob()).prop_map(|(entries, last)| DataResp::Keys { entries, last }),
        ("[a-z_]{0,8}", ".{0,8}").prop_map(|(code, msg)| DataResp::Failed { code, msg }),
    ]
}

pub(crate) fn msg() -> impl Strategy<Value = DataMsg> {
    prop_oneof![
        (any::<u64>(), req()).prop_map(|(id, req)| DataMsg::Req { id, req }),
        (any::<u64>(), resp()).prop_map(|(id, resp)| DataMsg::Resp { id, resp }),
    ]
}
