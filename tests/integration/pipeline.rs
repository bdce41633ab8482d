//! A pipelined batch of mixed requests, written in one go so the node receives many frames
//! at once (and hands them on as batches): every request gets exactly one response, with
//! its id and the answer its op calls for, whatever the order the answers come back in.
//! And frames that arrive in pieces (split anywhere) are read whole.

use crate::harness::{rt, NodeProc};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use troupe_protocol::message::{encode_request, Request, Response};
use troupe_protocol::{Client, ErrorCode};

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

fn read_response(s: &mut TcpStream) -> Response {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).expect("a response frame");
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).expect("a response body");
    Response::decode(&body).expect("the node sends valid responses")
}

/// What a request of the batch must be answered with.
enum Want {
    Found(Vec<u8>),
    Ok,
    Err(ErrorCode),
}

#[test]
fn a_pipelined_batch_of_mixed_requests_gets_every_response_with_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&dir.path().join("d"), &[]);
    let rt = rt();
    let c = rt
        .block_on(Client::connect(node.client.as_str(), "setup"))
        .unwrap();
    for i in 0..50u32 {
        let (k, v) = (format!("pre-{i}"), format!("value-{i}"));
        rt.block_on(c.put(k.as_bytes(), v.as_bytes(), None))
            .unwrap();
    }

    let mut s = TcpStream::connect(&node.client).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut bytes = frame(&encode_request(
        0,
        &Request::Hello {
            version: 1,
            client: "pipeliner".into(),
            token: None,
        },
    ));
    let mut want = HashMap::new();
    want.insert(0u64, Want::Ok);
    // 600 requests (below the default 256 in flight per connection the reader waits for
    // slots, so batches form both from a full buffer and after a wait).
    for id in 1..=600u64 {
        let i = id % 50;
        let (req, w) = match id % 6 {
            0 => (
                Request::Get {
                    key: format!("pre-{i}").into_bytes(),
                    r: None,
                    after: None,
                },
                Want::Found(format!("value-{i}").into_bytes()),
            ),
            1 => (
                Request::Put {
                    key: format!("new-{id}").into_bytes(),
                    value: vec![id as u8; 100],
                    context: None,
                    w: None,
                },
                Want::Ok,
            ),
            2 => (Request::Ping, Want::Ok),
            3 => (
                Request::Incr {
                    key: format!("ctr-{i}").into_bytes(),
                    by: 1,
                    w: None,
                },
                Want::Ok,
            ),
            4 => (
                Request::Get {
                    key: b"never-written".to_vec(),
                    r: None,
                    after: None,
                },
                Want::Ok,
            ),
            _ => (
                // A quorum of 9 with N = 1: refused by the coordinator, per request.
                Request::Get {
                    key: b"k".to_vec(),
                    r: Some(troupe_protocol::Quorum::N(9)),
                    after: None,
                },
                Want::Err(ErrorCode::BadRequest),
            ),
        };
        bytes.extend(frame(&encode_request(id, &req)));
        want.insert(id, w);
    }
    // An undecodable frame in the middle of the stream is answered and skipped.
    bytes.extend(frame(&[0x81, 0xa2, b'i', b'd', 0xcd, 0x03, 0x20])); // {id: 800}, no op
    want.insert(800, Want::Err(ErrorCode::BadRequest));
    let writer = {
        let mut s = s.try_clone().unwrap();
        std::thread::spawn(move || s.write_all(&bytes).unwrap())
    };
    let total = want.len();
    for _ in 0..total {
        let r = read_response(&mut s);
        let w = want
            .remove(&r.id)
            .unwrap_or_else(|| panic!("response with id {} not asked for, or twice", r.id));
        match w {
            Want::Found(v) => {
                let ok = r.ok.unwrap_or_else(|| panic!("id {}: {:?}", r.id, r.err));
                let got: Vec<Vec<u8>> =
                    ok.values.unwrap().into_iter().map(|b| b.to_vec()).collect();
                assert_eq!(got, vec![v], "id {}", r.id);
            }
            Want::Ok => assert!(r.err.is_none(), "id {}: {:?}", r.id, r.err),
            Want::Err(code) => assert_eq!(r.err.map(|e| e.code), Some(code), "id {}", r.id),
        }
    }
    writer.join().unwrap();
    assert!(want.is_empty());
}

/// Writes `bytes` in pieces of the sizes in `cuts` (cycled), each its own send, with a
/// pause after each so the node likely reads it alone: frames split inside the length,
/// inside the body and across frames. (The pause synchronises nothing: whatever pieces
/// the node happens to read together, the answers must be the same.)
fn write_in_pieces(s: &mut TcpStream, bytes: &[u8], cuts: &[usize]) {
    s.set_nodelay(true).unwrap();
    let mut at = 0;
    for &cut in cuts.iter().cycle() {
        if at == bytes.len() {
            break;
        }
        let end = (at + cut).min(bytes.len());
        s.write_all(&bytes[at..end]).unwrap();
        std::thread::sleep(Duration::from_micros(300));
        at = end;
    }
}

#[test]
fn frames_that_arrive_in_pieces_are_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&dir.path().join("d"), &[]);
    let mut s = TcpStream::connect(&node.client).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let hello = Request::Hello {
        version: 1,
        client: "pieces".into(),
        token: None,
    };
    // Values from a few bytes to beyond the connection's 8 KiB read-ahead, so frames are
    // decoded both in place and by the reader of larger frames.
    let value = |i: u64| vec![i as u8; [3, 100, 5_000, 20_000][i as usize % 4]];
    let mut puts = frame(&encode_request(0, &hello));
    for id in 1..=24u64 {
        let put = Request::Put {
            key: format!("piece-{id}").into_bytes(),
            value: value(id),
            context: None,
            w: None,
        };
        puts.extend(frame(&encode_request(id, &put)));
    }
    write_in_pieces(&mut s, &puts, &[1, 2, 3, 4, 5, 7, 300, 9_000, 1]);
    let mut ids: Vec<u64> = (0..=24)
        .map(|_| read_response(&mut s))
        .map(|r| {
            assert!(r.err.is_none(), "id {}: {:?}", r.id, r.err);
            r.id
        })
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..=24).collect::<Vec<_>>());

    let mut gets = Vec::new();
    for id in 1..=24u64 {
        let get = Request::Get {
            key: format!("piece-{id}").into_bytes(),
            r: None,
            after: None,
        };
        gets.extend(frame(&encode_request(100 + id, &get)));
    }
    write_in_pieces(&mut s, &gets, &[4, 1, 13, 2, 40]);
    let mut ids = Vec::new();
    for _ in 1..=24 {
        let r = read_response(&mut s);
        let ok = r.ok.unwrap_or_else(|| panic!("id {}: {:?}", r.id, r.err));
        let got: Vec<Vec<u8>> = ok.values.unwrap().into_iter().map(|b| b.to_vec()).collect();
        assert_eq!(got, vec![value(r.id - 100)], "id {}", r.id);
        ids.push(r.id);
    }
    ids.sort_unstable();
    assert_eq!(ids, (101..=124).collect::<Vec<_>>());
}
