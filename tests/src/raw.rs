//! Raw HTTP/1.1 over a `TcpStream`, for requests no well-behaved client
//! would send: unnormalised paths, conflicting framing, partial heads.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// What came back on the connection.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// Everything read, lossily decoded.
    pub text: String,
    /// Status of the first response, if one arrived.
    pub status: Option<u16>,
    /// True when the server closed the connection (EOF or reset) before `limit`.
    pub closed: bool,
    /// Time from connecting to EOF (or to giving up).
    pub elapsed: Duration,
}

impl RawResponse {
    /// Statuses of every response on the connection, in order.
    pub fn statuses(&self) -> Vec<u16> {
        self.text
            .split("\r\n")
            .filter_map(|l| l.strip_prefix("HTTP/1.1 "))
            .filter_map(|l| l.get(..3)?.parse().ok())
            .collect()
    }

    /// The first response's header `name` (case-insensitive), if any.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.text.split("\r\n\r\n").next()?;
        head.split("\r\n").skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

/// Writes `chunks` (pausing `gap` between them), then reads until the server
/// closes or `limit` passes.
pub async fn exchange_chunks(
    addr: SocketAddr,
    chunks: &[&[u8]],
    gap: Duration,
    limit: Duration,
) -> RawResponse {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let started = Instant::now();
    let _ = stream.set_nodelay(true);
    for (i, chunk) in chunks.iter().enumerate() {
        if i > 0 {
            // Pacing a slow client is the point here, not synchronisation.
            tokio::time::sleep(gap).await;
        }
        if stream.write_all(chunk).await.is_err() {
            break;
        }
    }
    let mut buf = Vec::new();
    let mut closed = false;
    let deadline = Instant::now() + limit;
    loop {
        let mut chunk = [0u8; 8192];
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|l| l.get(..3))
        .and_then(|s| s.parse().ok());
    RawResponse {
        text,
        status,
        closed,
        elapsed: started.elapsed(),
    }
}

/// Writes `request` in one go, then reads until close or `limit`.
pub async fn exchange(addr: SocketAddr, request: &[u8], limit: Duration) -> RawResponse {
    exchange_chunks(addr, &[request], Duration::ZERO, limit).await
}
