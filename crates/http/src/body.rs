//! The body type of every response the orchestrator builds, and small builders.

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Full};

/// The HTTP body type of the whole workspace: the gateway's streamed upstream
/// bodies and every built page share it.
pub type BoxBody =
    http_body_util::combinators::BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// A body holding `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> BoxBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub fn empty() -> BoxBody {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}
