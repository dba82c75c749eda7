//! What the listener knows about the connection a request came on.

use std::net::SocketAddr;

use crate::upstream_conn::ConnUpstreams;

/// The connection of a request: who is at the other end of the TCP socket
/// (the client, or the ingress in front of it), whether it speaks TLS to us,
/// and the upstream connections it keeps.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The TCP peer.
    pub peer: SocketAddr,
    /// The connection is TLS (terminated by this process).
    pub tls: bool,
    /// The upstream connections this client connection keeps and its task
    /// drives (HTTP/1.1 requests from the listener; `None` for HTTP/2
    /// streams, which are tasks of their own, and for callers without one):
    /// the gateway forwards over them, else through its pool.
    pub upstreams: Option<ConnUpstreams>,
}

impl ConnInfo {
    /// A plain-HTTP connection from `peer`.
    pub fn plain(peer: SocketAddr) -> Self {
        Self {
            peer,
            tls: false,
            upstreams: None,
        }
    }

    /// A TLS connection from `peer`.
    pub fn tls(peer: SocketAddr) -> Self {
        Self {
            peer,
            tls: true,
            upstreams: None,
        }
    }
}
