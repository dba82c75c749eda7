//! orchestrator-http: the rules both the App Gateway and the OpenID
//! Provider apply at the HTTP edge, written once so the two cannot disagree.
//!
//! It holds:
//! - the connection a request came on ([`ConnInfo`]);
//! - which host a request is for ([`authority`]);
//! - the body type every response is built with ([`body`]);
//! - who is a trusted proxy, and who the client is behind one ([`proxies`]);
//! - the request id ([`request_id`]), and who a request was served for
//!   ([`RequestIdentity`]);
//! - W3C trace context in and out ([`trace_context`]);
//! - the `Cookie` header rules ([`cookies`]): parsing as bytes (a non-ASCII
//!   cookie beside ours changes nothing), one cookie of a name or none
//!   (cookie tossing), and removing cookies from what an upstream sees;
//! - the upstream connections an HTTP/1.1 client connection keeps and drives
//!   in its own task ([`upstream_conn`]).
//!
//! It knows nothing of sessions, config or routing.

#![forbid(unsafe_code)]

pub use conn::ConnInfo;
pub use served::RequestIdentity;

pub mod authority;
pub mod body;
mod conn;
pub mod cookies;
pub mod proxies;
pub mod request_id;
mod served;
pub mod trace_context;
pub mod upstream_conn;
