//! What one gateway config builds: the apps ready to serve (routing, policy,
//! upstream clients, headers) and the IdP clients, swapped whole on reload.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use orchestrator_config::{AppGatewayConfig, ListenConfig, SigningKeyConfig};

use crate::GatewayError;
use crate::assertion::AssertionSigner;
use crate::bearer::BearerCheck;
use crate::cookies::CookieNames;
use crate::forward::Upstream;
use crate::headers::OwnedHeaders;
use crate::identity;
use crate::metrics::{AppMetrics, GatewayMetrics};
use crate::policy::Policy;
use crate::route::{NormalPath, Router};
use orchestrator_rp::{Idp, IdpSettings};

/// One protected app, ready to serve.
#[derive(Debug)]
pub(crate) struct App {
    /// Position in `appGateway.apps` (with the runtime's generation, a key).
    pub(crate) index: u32,
    pub(crate) name: Arc<str>,
    /// `pathPrefix`: the route traces name it by.
    pub(crate) route: Arc<str>,
    pub(crate) idp: String,
    pub(crate) public_paths: Vec<String>,
    /// `Upgrade` tokens tunnelled besides `websocket`, lower-cased.
    pub(crate) allow_upgrades: Vec<String>,
    pub(crate) policy: Policy,
    pub(crate) headers: Vec<(HeaderName, String)>,
    pub(crate) assertion_header: Option<HeaderName>,
    /// None: the ingress proxies this app and asks `authPath` (forward auth only).
    pub(crate) upstream: Option<Upstream>,
    /// `Authorization: Bearer` tokens admitted besides the session cookie.
    pub(crate) bearer: Option<BearerCheck>,
    pub(crate) metrics: AppMetrics,
}

/// Everything derived from one config; swapped whole on reload.
#[derive(Debug)]
pub(crate) struct Runtime {
    /// Unique per build: identities computed under another config are not reused.
    pub(crate) generation: u64,
    pub(crate) callback_path: String,
    pub(crate) logout_path: String,
    pub(crate) login_path: String,
    pub(crate) auth_path: String,
    pub(crate) backchannel_logout_path: String,
    /// The apps' host names (lower-case, `*` left out): where an absolute
    /// return URL may point.
    pub(crate) app_hosts: HashSet<String>,
    pub(crate) cookies: CookieNames,
    pub(crate) session_max_lifetime: Duration,
    pub(crate) pending_ttl: Duration,
    pub(crate) max_pending_per_client: u32,
    pub(crate) router: Router<App>,
    pub(crate) idps: HashMap<String, Arc<Idp>>,
    /// The IdPs whose session a gateway sign-out ends too (`logoutAtIdp`).
    pub(crate) logout_at_idp: HashSet<String>,
    pub(crate) signer: Option<AssertionSigner>,
    pub(crate) owned: OwnedHeaders,
    pub(crate) trusted: Vec<ipnet::IpNet>,
}

impl Runtime {
    pub(crate) fn build(
        cfg: &AppGatewayConfig,
        listen: &ListenConfig,
        fallback_key: &SigningKeyConfig,
        metrics: &GatewayMetrics,
    ) -> Result<Self, GatewayError> {
        let mut idps = HashMap::new();
        for (i, idp) in cfg.identity_providers.iter().enumerate() {
            let key = format!("appGateway.identityProviders[{i}]");
            let settings = IdpSettings {
                name: &idp.name,
                issuer: &idp.issuer,
                client_id: &idp.client_id,
                client_secret: idp.client_secret.as_ref().map(|s| s.expose()),
                scopes: &idp.scopes,
                ca_file: idp.ca_file.as_deref(),
                key: &key,
            };
            idps.insert(idp.name.clone(), Arc::new(Idp::new(settings)?));
        }
        let mut routes = Vec::new();
        let mut owned_names: Vec<String> = Vec::new();
        for (i, app) in cfg.apps.iter().enumerate() {
            let key = |k: &str| format!("appGateway.apps[{i}].{k}");
            if !idps.contains_key(&app.identity_provider) {
                return Err(GatewayError::config(
                    key("identityProvider"),
                    "names no entry of appGateway.identityProviders",
                ));
            }
            let mut headers = Vec::new();
            for (name, claim) in &app.headers {
                let h = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    GatewayError::config(key("headers"), format!("{name:?} is not a header name"))
                })?;
                owned_names.push(name.clone());
                headers.push((h, claim.clone()));
            }
            let assertion_header = app
                .assertion_header
                .as_ref()
                .map(|name| {
                    owned_names.push(name.clone());
                    HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                        GatewayError::config(key("assertionHeader"), "not a header name")
                    })
                })
                .transpose()?;
            let trust_email = cfg
                .identity_providers
                .iter()
                .any(|p| p.name == app.identity_provider && p.trust_email);
            let prefix = NormalPath::parse(&app.path_prefix)
                .map_err(|_| GatewayError::config(key("pathPrefix"), "not a normalised path"))?;
            let built = App {
                index: u32::try_from(i).unwrap_or(u32::MAX),
                name: app.name.as_str().into(),
                route: app.path_prefix.as_str().into(),
                idp: app.identity_provider.clone(),
                public_paths: app.public_paths.clone(),
                allow_upgrades: app
                    .allow_upgrades
                    .iter()
                    .map(|t| t.to_ascii_lowercase())
                    .collect(),
                policy: Policy::new(&app.policy, trust_email),
                headers,
                assertion_header,
                upstream: app
                    .upstream
                    .as_deref()
                    .map(|u| {
                        Upstream::new(
                            u,
                            app,
                            i,
                            cfg.upstream_connect_timeout,
                            cfg.upstream_response_timeout,
                        )
                    })
                    .transpose()?,
                bearer: app
                    .bearer
                    .as_ref()
                    .map(|b| BearerCheck::new(b, &key("bearer")))
                    .transpose()?,
                metrics: AppMetrics::new(metrics, &app.name),
            };
            routes.push((
                app.host.clone(),
                prefix.as_str().to_owned(),
                Arc::new(built),
            ));
        }
        let wants_assertions = cfg.apps.iter().any(|a| a.assertion_header.is_some());
        let keys = if cfg.assertion_signing_keys.is_empty() && wants_assertions {
            // Config validation allows this only with the memory cache (one replica).
            tracing::warn!(
                "appGateway.assertionSigningKeys is empty: assertions are signed with a key generated \
                 at start and published at /.orchestrator/jwks; configure a key before running more \
                 than one replica"
            );
            std::slice::from_ref(fallback_key)
        } else {
            &cfg.assertion_signing_keys[..]
        };
        let signer = AssertionSigner::new(keys, cfg.assertion_ttl)?;
        Ok(Self {
            generation: identity::next_generation(),
            callback_path: cfg.callback_path.clone(),
            logout_path: cfg.logout_path.clone(),
            login_path: cfg.login_path.clone(),
            auth_path: cfg.auth_path.clone(),
            backchannel_logout_path: cfg.backchannel_logout_path.clone(),
            app_hosts: cfg
                .apps
                .iter()
                .filter(|a| a.host != "*")
                .map(|a| a.host.to_ascii_lowercase())
                .collect(),
            cookies: CookieNames::new(
                &cfg.session.cookie_name,
                cfg.session.cookie_domain.as_deref(),
            ),
            session_max_lifetime: cfg.session.max_lifetime,
            pending_ttl: cfg.pending_login_ttl,
            max_pending_per_client: cfg.max_pending_logins_per_client,
            router: Router::new(routes),
            idps,
            logout_at_idp: cfg
                .identity_providers
                .iter()
                .filter(|i| i.logout_at_idp)
                .map(|i| i.name.clone())
                .collect(),
            signer,
            owned: OwnedHeaders::new(owned_names.iter().map(String::as_str)),
            trusted: listen.trusted_proxies.clone(),
        })
    }
}
