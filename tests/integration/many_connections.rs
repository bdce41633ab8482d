//! Hundreds of concurrent connections, each pipelining, are all served, and the connection
//! limit answers `overloaded` without disturbing the connections already open.

use crate::harness::NodeProc;
use std::time::Duration;
use troupe_protocol::{Client, ClientError, ErrorCode};

#[test]
fn four_hundred_pipelining_connections_are_all_served() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&dir.path().join("d"), &[]);
    let rt = crate::harness::rt_mt();
    rt.block_on(async {
        let mut clients = Vec::new();
        for i in 0..400 {
            let c = Client::connect_with(
                node.client.as_str(),
                &format!("c{i}"),
                None,
                Some(Duration::from_secs(60)),
            )
            .await
            .unwrap();
            clients.push(c);
        }
        let mut tasks = Vec::new();
        for (i, c) in clients.iter().enumerate() {
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                // 10 puts in flight at once on this connection, then 10 gets.
                let puts: Vec<_> = (0..10)
                    .map(|j| {
                        let c = c.clone();
                        async move {
                            c.put(
                                format!("c{i}-k{j}").as_bytes(),
                                format!("v{j}").as_bytes(),
                                None,
                            )
                            .await
                        }
                    })
                    .collect();
                for r in futures_util::future::join_all(puts).await {
                    r.unwrap();
                }
                let gets: Vec<_> = (0..10)
                    .map(|j| {
                        let c = c.clone();
                        async move { c.get(format!("c{i}-k{j}").as_bytes()).await }
                    })
                    .collect();
                for (j, r) in futures_util::future::join_all(gets)
                    .await
                    .into_iter()
                    .enumerate()
                {
                    assert_eq!(r.unwrap().values, vec![format!("v{j}").into_bytes()]);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[test]
fn connections_over_the_limit_get_overloaded_and_others_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(
        &dir.path().join("d"),
        &[("TROUPE__NET__MAX_CONNECTIONS", "3")],
    );
    let rt = crate::harness::rt();
    rt.block_on(async {
        let mut open = Vec::new();
        for i in 0..3 {
            open.push(
                Client::connect(node.client.as_str(), &format!("c{i}"))
                    .await
                    .unwrap(),
            );
        }
        match Client::connect_with(
            node.client.as_str(),
            "extra",
            None,
            Some(Duration::from_secs(10)),
        )
        .await
        {
            Err(ClientError::Server(e)) => assert_eq!(e.code, ErrorCode::Overloaded, "{}", e.msg),
            Err(ClientError::Closed) => {} // the refusal frame raced the close
            Ok(_) => panic!("a fourth connection was accepted over a limit of 3"),
            Err(e) => panic!("unexpected error: {e}"),
        }
        for c in &open {
            c.ping().await.unwrap();
        }
        // Closing one frees a slot.
        drop(open.pop());
        tokio::time::sleep(Duration::from_millis(300)).await;
        Client::connect(node.client.as_str(), "later")
            .await
            .unwrap()
            .ping()
            .await
            .unwrap();
    });
}
