use super::super::testgen::{b, msg, ob};
use super::*;
use crate::mp::bounds::{bytes as sized, uint as id};
use crate::swim::PeerMsg;
use proptest::prelude::*;

/// The messages the hand codec writes: replica gets and puts and their answers.
fn hot() -> impl Strategy<Value = DataMsg> {
    prop_oneof![
        (id(), sized()).prop_map(|(id, key)| DataMsg::Req {
            id,
            req: DataReq::Get { key }
        }),
        (id(), b(), sized()).prop_map(|(id, key, object)| DataMsg::Req {
            id,
            req: DataReq::Put { key, object }
        }),
        (id(), proptest::option::of(sized())).prop_map(|(id, object)| DataMsg::Resp {
            id,
            resp: DataResp::Object { object }
        }),
        id().prop_map(|id| DataMsg::Resp {
            id,
            resp: DataResp::Stored
        }),
    ]
}

fn serde_bytes_of(batch: &[DataMsg]) -> Vec<u8> {
    rmp_serde::to_vec_named(&PeerMsg::Data(batch.to_vec())).unwrap()
}

proptest! {
    /// A batch of hot messages (up to 20: past the fixarray bound) is written by hand, byte
    /// for byte as serde writes it, and read back by hand.
    #[test]
    fn hot_batches_take_the_hand_codec_both_ways(
        batch in proptest::collection::vec(hot(), 0..20),
        prefix in ob(),
    ) {
        let prefix = prefix.unwrap_or_default();
        let mut out = prefix.clone();
        prop_assert!(encode_frame(&batch, &mut out));
        prop_assert_eq!(&out[..prefix.len()], &prefix[..]);
        let bytes = serde_bytes_of(&batch);
        prop_assert_eq!(&out[prefix.len()..], &bytes[..]);
        prop_assert_eq!(decode_frame(&bytes), Some(batch));
    }

    /// Any batch: the hand encoder writes serde's bytes or nothing, and the hand decoder
    /// reads serde's bytes as serde does or leaves them to it.
    #[test]
    fn any_batch_is_serdes_or_left_to_serde(
        batch in proptest::collection::vec(prop_oneof![hot(), msg()], 0..6),
    ) {
        let bytes = serde_bytes_of(&batch);
        let mut out = Vec::new();
        if encode_frame(&batch, &mut out) {
            prop_assert_eq!(&out, &bytes);
        } else {
            prop_assert!(out.is_empty());
        }
        if let Some(read) = decode_frame(&bytes) {
            prop_assert_eq!(read, batch);
        }
    }

    /// Spoiled frames (a byte changed, cut short or one more byte): whatever the hand
    /// decoder reads, serde reads the same.
    #[test]
    fn a_spoiled_frame_is_read_as_serde_reads_it_or_not_at_all(
        batch in proptest::collection::vec(hot(), 1..4),
        at in any::<usize>(),
        byte in any::<u8>(),
        how in 0u8..3,
    ) {
        let mut bytes = serde_bytes_of(&batch);
        let i = at % bytes.len();
        match how {
            0 => bytes[i] = byte,
            1 => bytes.truncate(i),
            _ => bytes.push(byte),
        }
        if let Some(read) = decode_frame(&bytes) {
            let by_serde = crate::codec::decode_one::<PeerMsg>(&bytes).ok();
            prop_assert_eq!(by_serde, Some(PeerMsg::Data(read)));
        }
    }

    #[test]
    fn any_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
        let _ = decode_frame(&bytes);
    }
}

#[test]
fn a_count_the_frame_cannot_hold_reserves_little() {
    let mut frame = vec![0x82, 0xa1, b'k', 0xa4, b'd', b'a', b't', b'a', 0xa1, b'm'];
    frame.extend([0xdd, 0xff, 0xff, 0xff, 0xff]);
    assert_eq!(decode_frame(&frame), None);
    // A 16 MiB frame claiming 2^32 - 1 messages.
    assert_eq!(capacity_for(u32::MAX as usize, 16 << 20), MAX_RESERVED);
    assert_eq!(capacity_for(1000, 27 * 10), 10);
    assert_eq!(capacity_for(3, 1 << 20), 3);
    // The smallest message is as small as the bound says.
    let stored = [DataMsg::Resp {
        id: 0,
        resp: DataResp::Stored,
    }];
    let (mut one, mut none) = (Vec::new(), Vec::new());
    assert!(encode_frame(&stored, &mut one) && encode_frame(&[], &mut none));
    assert_eq!(one.len() - none.len(), MIN_MSG_BYTES);
}

#[test]
fn other_frames_take_serde() {
    let swim = PeerMsg::Swim(crate::swim::SwimMsg::Nack(crate::swim::Nack {
        seq: 1,
        from: "n1".into(),
    }));
    assert_eq!(decode_frame(&swim.encode()), None);
    assert_eq!(PeerMsg::decode(&swim.encode()).unwrap(), swim);
    let keys = vec![DataMsg::Req {
        id: 1,
        req: DataReq::Keys {
            prefix: None,
            after: None,
            limit: 3,
            partitions: vec![1],
        },
    }];
    let mut out = vec![9];
    assert!(!encode_frame(&keys, &mut out));
    assert_eq!(out, [9]);
    let data = PeerMsg::Data(keys);
    assert_eq!(data.encode(), rmp_serde::to_vec_named(&data).unwrap());
    assert_eq!(PeerMsg::decode(&data.encode()).unwrap(), data);
}
