//! What the listener knows about the connection a request came on.

use std::net::SocketAddr;

/// The connection of a request: who is at the other end of the TCP socket
/// (the client, or the ingress in front of it) and whether it speaks TLS to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnInfo {
    /// The TCP peer.
    pub peer: SocketAddr,
    /// The connection is TLS (terminated by this process).
    pub tls: bool,
}

impl ConnInfo {
    /// A plain-HTTP connection from `peer`.
    pub fn plain(peer: SocketAddr) -> Self {
        Self { peer, tls: false }
    }

    /// A TLS connection from `peer`.
    pub fn tls(peer: SocketAddr) -> Self {
        Self { peer, tls: true }
    }
}
