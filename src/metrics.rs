//! A minimal Prometheus text endpoint (`GET /metrics`) on the metrics port.
//!
//! Each connection gets one response and is closed; a request is read up to 8 KiB within
//! 5 s, so a slow or hostile scraper costs one small task at most.

use std::fmt::Write as _;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use troupe_actors::memtable::wal::Health;
use troupe_actors::stats::Registry;

pub fn render(registry: &Registry, health: &Health, started: Instant) -> String {
    let mut out = String::new();
    let healthy = health.lock().unwrap_or_else(|p| p.into_inner()).is_none();
    let _ = writeln!(
        out,
        "# HELP troupe_up 1 when the node accepts writes, 0 when storage is poisoned."
    );
    let _ = writeln!(
        out,
        "# TYPE troupe_up gauge\ntroupe_up {}",
        u8::from(healthy)
    );
    let _ = writeln!(
        out,
        "# TYPE troupe_uptime_seconds gauge\ntroupe_uptime_seconds {}",
        started.elapsed().as_secs()
    );
    let actors = registry.snapshot();
    for (metric, kind, help) in [
        (
            "troupe_actor_messages_handled_total",
            "counter",
            "Messages an actor handled.",
        ),
        (
            "troupe_actor_errors_total",
            "counter",
            "Messages an actor answered with an error.",
        ),
        (
            "troupe_actor_mailbox",
            "gauge",
            "Messages sent to an actor and not yet handled.",
        ),
        (
            "troupe_actor_instances",
            "gauge",
            "Live actors of this kind.",
        ),
    ] {
        let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} {kind}");
        for a in &actors {
            let v = match metric {
                "troupe_actor_messages_handled_total" => a.handled,
                "troupe_actor_errors_total" => a.errors,
                "troupe_actor_mailbox" => a.mailbox,
                _ => a.instances,
            };
            let _ = writeln!(out, "{metric}{{actor=\"{}\"}} {v}", a.name);
        }
    }
    out
}

pub async fn serve(
    listener: TcpListener,
    registry: Registry,
    health: Health,
    started: Instant,
    shutdown: CancellationToken,
) {
    while let Some((stream, _)) = troupe_actors::net::accept(&listener, &shutdown, "metrics").await
    {
        let body = render(&registry, &health, started);
        actix::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), answer(stream, body)).await;
        });
    }
}

async fn answer(mut stream: TcpStream, body: String) -> std::io::Result<()> {
    let mut buf = vec![0u8; 8192];
    let mut n = 0;
    while n < buf.len() {
        let r = stream.read(&mut buf[n..]).await?;
        if r == 0 {
            break;
        }
        n += r;
        if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let head = String::from_utf8_lossy(&buf[..n]);
    let (status, body) = if head.starts_with("GET /metrics") || head.starts_with("GET / ") {
        ("200 OK", body)
    } else {
        ("404 Not Found", "try GET /metrics\n".to_string())
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(resp.as_bytes()).await?;
    stream.shutdown().await
}
