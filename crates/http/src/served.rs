//! Who a request was served for, for the listener's access log and the
//! request's span: handed back beside the response by the gateway
//! (`Gateway::serve`; `Gateway::handle` puts it in the response's
//! extensions), put in the response's extensions by the provider when
//! traces are on. Never sent to the client.

use std::sync::Arc;

use opentelemetry::StringValue;

/// Who a request was served for, and by which route.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestIdentity {
    /// The app that matched, if any.
    pub app: Option<Arc<str>>,
    /// The session's `sub`, when the request was authenticated.
    pub user: Option<Arc<str>>,
    /// The route that served it (`http.route`, which names the request's
    /// span); only when traces are on.
    pub route: Option<StringValue>,
}
