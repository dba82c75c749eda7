//! The provider's endpoints, one module each. They share [`crate::state`]
//! and the helpers beside it (`sso`, `tokens`, `web`, `error`), never each
//! other, and never the router that calls them.

pub(crate) mod authorize;
pub(crate) mod discovery;
pub(crate) mod end_session;
pub(crate) mod introspect;
pub(crate) mod jwks;
pub(crate) mod login;
pub(crate) mod revoke;
pub(crate) mod token;
pub(crate) mod upstream;
pub(crate) mod userinfo;
