//! Upstream connections kept by one client connection and driven by that
//! connection's own task (HTTP/1.1 client connections only).
//!
//! A pooled client runs every upstream connection as a task of its own, so
//! each request and each response crosses from one task to another. A client
//! connection over HTTP/1.1 sends one request at a time, so it can keep the
//! upstream connections of its own requests (a few, one per upstream) and
//! poll them from the task that serves it: the listener wraps the server
//! connection's future in [`ConnUpstreams::drive`] and hands a clone of the
//! [`ConnUpstreams`] with each request ([`crate::ConnInfo::upstreams`]; not
//! in its extensions, which would cost a map per request); the gateway takes an idle
//! connection from it, or opens one into it, or falls back to its pool.
//! When the client connection ends, its upstream connections close with it.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::client::conn::http1::SendRequest;

use crate::body::BoxBody;

/// How many upstream connections one client connection keeps at most (one
/// per upstream); requests to further upstreams go through the pool. An
/// ingress multiplexes many apps over each of its connections.
pub const MAX_HELD: usize = 4;

type Driver = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The upstream connections of one client connection. Cloning is one `Arc`.
#[derive(Clone, Default)]
pub struct ConnUpstreams(Arc<Mutex<Held>>);

impl std::fmt::Debug for ConnUpstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = self.lock();
        f.debug_struct("ConnUpstreams")
            .field("connections", &held.drivers.len())
            .field("idle", &held.idle.len())
            .finish()
    }
}

#[derive(Default)]
struct Held {
    /// Senders of connections no request is using now.
    idle: Vec<Idle>,
    /// One future per open connection: it reads and writes the socket.
    drivers: Vec<Driver>,
}

struct Idle {
    upstream: u64,
    sender: SendRequest<BoxBody>,
    since: Instant,
}

impl ConnUpstreams {
    /// None yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Held> {
        // Nothing panics while holding it; a poisoned lock still holds valid state.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An idle connection to `upstream` (an id the caller gives each
    /// upstream), taken out until [`give_back`](Self::give_back). Idle ones
    /// of any upstream that were idle for longer than `max_idle`, or closed
    /// by the upstream, are dropped first (which closes them), so those of
    /// upstreams a reload replaced do not stay beyond `max_idle` either.
    pub fn take(&self, upstream: u64, max_idle: Duration) -> Option<SendRequest<BoxBody>> {
        let mut held = self.lock();
        let now = Instant::now();
        held.idle
            .retain(|i| !i.sender.is_closed() && now.duration_since(i.since) <= max_idle);
        let at = held.idle.iter().position(|i| i.upstream == upstream)?;
        Some(held.idle.swap_remove(at).sender)
    }

    /// Whether a new connection may be opened into this set.
    pub fn has_room(&self) -> bool {
        self.lock().drivers.len() < MAX_HELD
    }

    /// Adds a new connection's driver (hyper's `Connection` future); it is
    /// polled from now on by [`drive`](Self::drive), and ends when the
    /// connection does.
    pub fn open(&self, driver: impl Future<Output = ()> + Send + 'static) {
        self.lock().drivers.push(Box::pin(driver));
    }

    /// Puts back the sender of a connection to `upstream` once its request
    /// is sent; the next request of this client connection may take it.
    pub fn give_back(&self, upstream: u64, sender: SendRequest<BoxBody>) {
        self.lock().idle.push(Idle {
            upstream,
            sender,
            since: Instant::now(),
        });
    }

    /// The client connection's future `server`, polled together with these
    /// upstream connections, in the same task.
    pub fn drive<F: Future>(&self, server: F) -> Drive<F> {
        Drive {
            server,
            held: self.clone(),
        }
    }

    fn poll_drivers(&self, cx: &mut Context<'_>) {
        let mut held = self.lock();
        if !held.drivers.is_empty() {
            held.drivers
                .retain_mut(|d| d.as_mut().poll(cx).is_pending());
        }
    }
}

pin_project_lite::pin_project! {
    /// A client connection's future with its upstream connections: see
    /// [`ConnUpstreams::drive`]. Resolves when the client connection does;
    /// the upstream connections still open then are closed.
    pub struct Drive<F> {
        #[pin]
        server: F,
        held: ConnUpstreams,
    }
}

impl<F: Future> Future for Drive<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        // Upstream sockets first: a response that arrived is then ready for
        // the server side in this same poll.
        this.held.poll_drivers(cx);
        let out = this.server.poll(cx);
        if out.is_pending() {
            // Requests the server side just sent (or connections it opened)
            // are written now, not at the next wake-up.
            this.held.poll_drivers(cx);
        }
        out
    }
}
