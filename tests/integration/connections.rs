//! Hostile connections: slowloris headers and bodies, idle keep-alives, a flood of
//! connections, connections beyond the cap. The server must close what it should and keep
//! answering new clients throughout.
//!
//! The waits here are generous upper bounds for "eventually" on a loaded machine, never
//! performance claims.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::Server;

/// Read until the server closes the connection (or `within` passes); returns what it sent
/// and whether it closed.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (String, bool) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&seen).into(), true),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&seen).into(), false),
        }
    }
}

async fn load(server: &Server) -> serde_json::Value {
    server
        .healthz()
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap()["load"]
        .clone()
}

#[tokio::test]
async fn slow_or_idle_headers_are_cut_off() {
    let server = Server::start_with(&["--header-timeout-ms", "500"]);
    // Half a request line, then nothing; a connection that never says a word; and a
    // keep-alive connection that idles after its first answer.
    let mut partial = TcpStream::connect(server.addr).await.unwrap();
    partial
        .write_all(b"POST /run HTTP/1.1\r\nHost: 127")
        .await
        .unwrap();
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();

    let started = Instant::now();
    for (name, stream) in [
        ("partial", &mut partial),
        ("silent", &mut silent),
        ("idle", &mut idle),
    ] {
        let (seen, closed) = read_until_closed(stream, Duration::from_secs(20)).await;
        assert!(
            closed,
            "{name} connection still open after 20 s; saw {seen:?}"
        );
        if name == "idle" {
            assert!(seen.starts_with("HTTP/1.1 200"), "{seen:?}");
        }
    }
    eprintln!(
        "three slow connections closed {:?} after start",
        started.elapsed()
    );
    server.assert_healthy().await;
}

#[tokio::test]
async fn a_stalled_body_gets_408_and_the_server_moves_on() {
    let server = Server::start_with(&["--body-timeout-ms", "500"]);
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(
            b"POST /run HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"code\": \"pri",
        )
        .await
        .unwrap();
    let (seen, closed) = read_until_closed(&mut stream, Duration::from_secs(20)).await;
    assert!(seen.starts_with("HTTP/1.1 408"), "{seen:?}");
    assert!(seen.contains(r#""type":"request_timeout""#), "{seen:?}");
    assert!(
        closed,
        "the connection should be closed after a body timeout"
    );

    // The same over /mcp: rmcp reads the body, the timeout still bounds it.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(
            b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
              Accept: application/json, text/event-stream\r\nContent-Length: 100\r\n\r\n{\"jsonrpc\"",
        )
        .await
        .unwrap();
    let (seen, _) = read_until_closed(&mut stream, Duration::from_secs(20)).await;
    let status: u16 = seen
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!((400..500).contains(&status), "{seen:?}");
    server.assert_healthy().await;
}

#[tokio::test]
async fn a_flood_of_idle_connections_does_not_lock_out_a_new_client() {
    let server = Server::start_with(&["--header-timeout-ms", "3000"]);
    let mut flood = Vec::new();
    for _ in 0..400 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\n")
            .await
            .unwrap();
        flood.push(stream);
    }
    // A new client is served while all of them hang on.
    let started = Instant::now();
    server.assert_healthy().await;
    eprintln!(
        "run answered in {:?} beside 400 idle connections",
        started.elapsed()
    );
    let during = load(&server).await;
    assert!(during["connections"].as_u64().unwrap() >= 400, "{during}");

    // The header timeout then closes all of them (the server's count drops back).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = load(&server).await;
        if now["connections"].as_u64().unwrap() <= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "flood connections not closed: {now}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(flood);
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_at_once() {
    let server = Server::start_with(&["--max-connections", "8", "--header-timeout-ms", "60000"]);
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(TcpStream::connect(server.addr).await.unwrap());
    }
    // Give the accept loop a moment to take all eight.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut refused = 0;
    for _ in 0..5 {
        let mut extra = TcpStream::connect(server.addr).await.unwrap();
        let _ = extra
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .await;
        let (seen, closed) = read_until_closed(&mut extra, Duration::from_secs(10)).await;
        if closed && seen.is_empty() {
            refused += 1;
        }
    }
    assert_eq!(
        refused, 5,
        "every connection beyond the cap is closed unanswered"
    );

    // Free the slots: the server answers again and counted the refusals.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(20);
    let load = loop {
        if let Ok(response) = server.client.get(server.url("/healthz")).send().await
            && let Ok(body) = response.json::<serde_json::Value>().await
        {
            break body["load"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "server did not recover after the cap"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(load["connections_refused"].as_u64().unwrap() >= 5, "{load}");
    server.assert_healthy().await;
}
