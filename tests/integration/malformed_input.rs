//! Malformed input, each case on its own connection while a second connection keeps working.
//! Every case ends in an error response or a closed connection; the node never panics.

use crate::harness::{rt, NodeProc};
use serde::Serialize;
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

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Reads one response frame; `None` when the node closed the connection.
fn read_response(s: &mut TcpStream) -> Option<Response> {
    let mut len = [0u8; 4];
    if s.read_exact(&mut len).is_err() {
        return None;
    }
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).ok()?;
    Some(Response::decode(&body).expect("the node sends valid responses"))
}

fn assert_closed(s: &mut TcpStream) {
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("expected the node to close the connection, got {other:?}"),
    }
}

fn hello() -> Vec<u8> {
    frame(&encode_request(
        0,
        &Request::Hello {
            version: 1,
            client: "t".into(),
            token: None,
        },
    ))
}

fn expect_err(s: &mut TcpStream, id: u64, code: ErrorCode) -> String {
    let r = read_response(s).expect("an error response");
    assert_eq!(r.id, id);
    let e = r.err.unwrap_or_else(|| panic!("expected {code}, got ok"));
    assert_eq!(e.code, code, "{}", e.msg);
    e.msg
}

/// The connection is still usable: a ping after the bad frame is answered.
fn still_works(s: &mut TcpStream) {
    s.write_all(&frame(&encode_request(77, &Request::Ping)))
        .unwrap();
    let r = read_response(s).expect("ping answered");
    assert_eq!((r.id, r.err), (77, None));
}

#[test]
fn malformed_frames_are_answered_or_closed_and_never_disturb_others() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProc::start(&dir.path().join("d"), &[]);
    let rt = rt();
    let good = rt
        .block_on(Client::connect(node.client.as_str(), "good"))
        .unwrap();
    let mut round = 0u32;
    let mut check_good = |node: &mut NodeProc| {
        round += 1;
        let key = format!("k{round}");
        rt.block_on(async {
            good.put(key.as_bytes(), b"v", None).await.unwrap();
            assert_eq!(
                good.get(key.as_bytes()).await.unwrap().values,
                vec![b"v".to_vec()]
            );
        });
        let alive = node.child.as_mut().unwrap().try_wait().unwrap().is_none();
        assert!(alive, "node died; log:\n{}", node.log_text());
    };

    // Garbage bytes: "GET " read as a length is far above the limit.
    let mut s = connect(&node.client);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    expect_err(&mut s, 0, ErrorCode::TooLarge);
    assert_closed(&mut s);
    check_good(&mut node);

    // An oversized length header, refused before any body arrives.
    let mut s = connect(&node.client);
    s.write_all(&hello()).unwrap();
    assert!(read_response(&mut s).unwrap().err.is_none());
    s.write_all(&[0x7f, 0xff, 0xff, 0xff]).unwrap();
    let msg = expect_err(&mut s, 0, ErrorCode::TooLarge);
    assert!(msg.contains("exceeds the maximum"), "{msg}");
    assert_closed(&mut s);
    check_good(&mut node);

    // A truncated frame, then close.
    let mut s = connect(&node.client);
    s.write_all(&[0, 0, 0, 100, 0x81, 0xa2]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert_closed(&mut s);
    check_good(&mut node);

    // A body that is not a map (an array), then bytes that are not MessagePack at all.
    let mut s = connect(&node.client);
    s.write_all(&hello()).unwrap();
    read_response(&mut s).unwrap();
    s.write_all(&frame(&rmp_serde::to_vec(&(1u64, "get", "k")).unwrap()))
        .unwrap();
    let msg = expect_err(&mut s, 0, ErrorCode::BadRequest);
    assert!(msg.contains("map"), "{msg}");
    s.write_all(&frame(&[0xc1, 0xc1, 0xc1])).unwrap();
    expect_err(&mut s, 0, ErrorCode::BadRequest);
    still_works(&mut s);
    check_good(&mut node);

    // A frame with bytes after its one value: refused with its id, connection kept.
    let mut body = troupe_protocol::encode_request(6, &troupe_protocol::Request::Ping);
    body.extend_from_slice(&[0xc0, 0xc0]);
    s.write_all(&frame(&body)).unwrap();
    let msg = expect_err(&mut s, 6, ErrorCode::BadRequest);
    assert!(msg.contains("exactly one value"), "{msg}");
    still_works(&mut s);

    // An unknown op keeps its id.
    #[derive(Serialize)]
    struct Op {
        id: u64,
        op: &'static str,
    }
    s.write_all(&frame(
        &rmp_serde::to_vec_named(&Op {
            id: 5,
            op: "explode",
        })
        .unwrap(),
    ))
    .unwrap();
    let msg = expect_err(&mut s, 5, ErrorCode::BadRequest);
    assert!(msg.contains("explode"), "{msg}");
    still_works(&mut s);

    // Wrong field types: key as an integer, r as a bool.
    #[derive(Serialize)]
    struct BadKey {
        id: u64,
        op: &'static str,
        key: i64,
    }
    s.write_all(&frame(
        &rmp_serde::to_vec_named(&BadKey {
            id: 6,
            op: "get",
            key: -3,
        })
        .unwrap(),
    ))
    .unwrap();
    expect_err(&mut s, 6, ErrorCode::BadRequest);
    #[derive(Serialize)]
    struct BadR {
        id: u64,
        op: &'static str,
        key: &'static str,
        r: bool,
    }
    s.write_all(&frame(
        &rmp_serde::to_vec_named(&BadR {
            id: 7,
            op: "get",
            key: "k",
            r: true,
        })
        .unwrap(),
    ))
    .unwrap();
    expect_err(&mut s, 7, ErrorCode::BadRequest);
    // A missing field is named.
    s.write_all(&frame(
        &rmp_serde::to_vec_named(&Op { id: 8, op: "put" }).unwrap(),
    ))
    .unwrap();
    let msg = expect_err(&mut s, 8, ErrorCode::BadRequest);
    assert!(msg.contains("key"), "{msg}");
    still_works(&mut s);
    check_good(&mut node);

    // Requests before hello are refused, then hello opens the session.
    let mut s = connect(&node.client);
    s.write_all(&frame(&encode_request(3, &Request::Ping)))
        .unwrap();
    let msg = expect_err(&mut s, 3, ErrorCode::BadRequest);
    assert!(msg.contains("hello"), "{msg}");
    s.write_all(&frame(&encode_request(
        4,
        &Request::Hello {
            version: 99,
            client: "t".into(),
            token: None,
        },
    )))
    .unwrap();
    expect_err(&mut s, 4, ErrorCode::BadRequest);
    s.write_all(&hello()).unwrap();
    read_response(&mut s).unwrap();
    still_works(&mut s);
    check_good(&mut node);

    let (code, out, _) = node.cli(&["admin", "status", "--json"]);
    assert_eq!(code, 0);
    assert!(out.contains("\"health\": \"ok\""), "{out}");
    assert!(!node.log_text().contains("panicked"), "{}", node.log_text());
}
