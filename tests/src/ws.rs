//! A WebSocket client for tunnel tests: opens a socket with a browser's
//! cookies and tells when the gateway closes it.

use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

/// An open WebSocket.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `url` (`ws://…`) with the `Cookie` header `cookies` and checks
/// that one message comes back from the echo upstream.
pub async fn open_echo(url: &str, cookies: &str) -> Ws {
    let mut req = url.into_client_request().expect("a WebSocket URL");
    if !cookies.is_empty() {
        req.headers_mut()
            .insert("cookie", cookies.parse().expect("a Cookie header"));
    }
    let (mut ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("the WebSocket handshake");
    assert_eq!(resp.status(), 101);
    assert!(echoes(&mut ws, "hello").await, "the tunnel echoes");
    ws
}

/// Sends `text` and whether it comes back within 5 s.
pub async fn echoes(ws: &mut Ws, text: &str) -> bool {
    if ws.send(Message::text(text)).await.is_err() {
        return false;
    }
    matches!(
        tokio::time::timeout(Duration::from_secs(5), ws.next()).await,
        Ok(Some(Ok(m))) if m == Message::text(text)
    )
}

/// Whether the tunnel is closed within `limit`: the stream ends, fails or
/// gets a close frame.
pub async fn closed_within(ws: &mut Ws, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return false,
            Ok(None | Some(Err(_) | Ok(Message::Close(_)))) => return true,
            Ok(Some(Ok(_))) => {}
        }
    }
}
