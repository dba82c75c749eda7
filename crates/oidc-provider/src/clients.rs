//! Registered clients and client authentication (`client_secret_basic`,
//! `client_secret_post`, and `none` for public clients), secrets compared in
//! constant time.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, header};
use orchestrator_config::{GrantType, IntrospectionAllowed, OidcClientConfig, Secret};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::error::{OAuthError, ProviderError};
use crate::params::Params;

/// Scopes a client may ask for when its config lists none.
pub(crate) const STANDARD_SCOPES: &[&str] = &[
    "openid",
    "profile",
    "email",
    "groups",
    "phone",
    "address",
    "offline_access",
];

/// One registered client.
#[derive(Debug)]
pub(crate) struct Client {
    pub(crate) id: String,
    /// What the login page calls it (`clientName`, else the id).
    pub(crate) name: String,
    secret: Option<Secret>,
    pub(crate) redirect_uris: Vec<String>,
    pub(crate) post_logout_redirect_uris: Vec<String>,
    /// Back-Channel Logout 1.0: where logout tokens go.
    pub(crate) backchannel_logout_uri: Option<url::Url>,
    pub(crate) grant_types: Vec<GrantType>,
    pub(crate) allowed_scopes: Vec<String>,
    pub(crate) require_pkce: bool,
    /// Whose tokens it may introspect besides its own (RFC 7662 §2.1).
    introspection_allowed: IntrospectionAllowed,
}

impl Client {
    /// A client without a secret: it cannot keep one, so PKCE protects its codes.
    pub(crate) fn is_public(&self) -> bool {
        self.secret.is_none()
    }

    /// PKCE is required for public clients and, by default, for all.
    pub(crate) fn pkce_required(&self) -> bool {
        self.is_public() || self.require_pkce
    }

    /// True when this client may learn about tokens issued to `client_id` at
    /// the introspection endpoint: its own, or those it is a resource server for.
    pub(crate) fn may_introspect(&self, client_id: &str) -> bool {
        client_id == self.id || self.introspection_allowed.covers(client_id)
    }

    pub(crate) fn allows_grant(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }

    pub(crate) fn allows_scope(&self, scope: &str) -> bool {
        if self.allowed_scopes.is_empty() {
            STANDARD_SCOPES.contains(&scope)
        } else {
            self.allowed_scopes.iter().any(|s| s == scope)
        }
    }

    /// Exact string match, per RFC 9700 §4.1.3: no prefix, case or
    /// normalisation games.
    pub(crate) fn has_redirect_uri(&self, uri: &str) -> bool {
        self.redirect_uris.iter().any(|r| r == uri)
    }

    pub(crate) fn has_post_logout_redirect_uri(&self, uri: &str) -> bool {
        self.post_logout_redirect_uris.iter().any(|r| r == uri)
    }
}

/// All clients, by id.
#[derive(Debug)]
pub(crate) struct Clients {
    by_id: HashMap<String, Arc<Client>>,
}

/// How the client presented itself.
pub(crate) struct Presented {
    pub(crate) client_id: String,
    pub(crate) secret: Option<String>,
}

impl Clients {
    pub(crate) fn new(cfg: &[OidcClientConfig]) -> Result<Self, ProviderError> {
        let mut by_id = HashMap::new();
        for (index, c) in cfg.iter().enumerate() {
            let err = |field: &'static str, reason: String| ProviderError::Client {
                index,
                field,
                reason,
            };
            if c.client_id.is_empty() {
                return Err(err("clientId", "must not be empty".into()));
            }
            for uri in c.redirect_uris.iter().chain(&c.post_logout_redirect_uris) {
                let parsed = url::Url::parse(uri).map_err(|e| {
                    err(
                        "redirectUris",
                        format!("{uri:?} is not an absolute URL: {e}"),
                    )
                })?;
                if parsed.fragment().is_some() {
                    return Err(err(
                        "redirectUris",
                        format!("{uri:?} must not have a fragment"),
                    ));
                }
            }
            let backchannel_logout_uri = c
                .backchannel_logout_uri
                .as_deref()
                .map(|uri| {
                    url::Url::parse(uri)
                        .ok()
                        .filter(|u| {
                            matches!(u.scheme(), "http" | "https") && u.fragment().is_none()
                        })
                        .ok_or_else(|| {
                            err(
                                "backchannelLogoutUri",
                                format!(
                                    "{uri:?} is not an absolute http(s) URL without a fragment"
                                ),
                            )
                        })
                })
                .transpose()?;
            let secret = c.client_secret.clone().filter(|s| !s.expose().is_empty());
            if secret.is_none() && c.grant_types.contains(&GrantType::ClientCredentials) {
                return Err(err(
                    "grantTypes",
                    "client_credentials needs a clientSecret".into(),
                ));
            }
            let client = Client {
                id: c.client_id.clone(),
                name: c
                    .client_name
                    .clone()
                    .filter(|n| !n.trim().is_empty())
                    .unwrap_or_else(|| c.client_id.clone()),
                secret,
                redirect_uris: c.redirect_uris.clone(),
                post_logout_redirect_uris: c.post_logout_redirect_uris.clone(),
                backchannel_logout_uri,
                grant_types: c.grant_types.clone(),
                allowed_scopes: c.allowed_scopes.clone(),
                require_pkce: c.require_pkce,
                introspection_allowed: c.introspection_allowed.clone(),
            };
            if by_id
                .insert(c.client_id.clone(), Arc::new(client))
                .is_some()
            {
                return Err(err(
                    "clientId",
                    format!("duplicate client {:?}", c.client_id),
                ));
            }
        }
        Ok(Self { by_id })
    }

    pub(crate) fn get(&self, id: &str) -> Option<Arc<Client>> {
        self.by_id.get(id).cloned()
    }

    /// The clients that take back-channel logout tokens.
    pub(crate) fn with_backchannel_logout(&self) -> impl Iterator<Item = &Arc<Client>> {
        self.by_id
            .values()
            .filter(|c| c.backchannel_logout_uri.is_some())
    }

    pub(crate) fn any_public(&self) -> bool {
        self.by_id.values().any(|c| c.is_public())
    }

    /// Authenticates the client of a token, introspection or revocation request.
    pub(crate) fn authenticate(
        &self,
        headers: &HeaderMap,
        params: &Params,
    ) -> Result<Arc<Client>, OAuthError> {
        let presented = presented(headers, params)?;
        let client = self
            .get(&presented.client_id)
            .ok_or_else(OAuthError::invalid_client)?;
        match (&client.secret, presented.secret) {
            (Some(expected), Some(given)) => {
                // Compare fixed-size digests so neither content nor length
                // of the secret leaks through timing.
                let expected = Sha256::digest(expected.expose().as_bytes());
                let given = Sha256::digest(given.as_bytes());
                if bool::from(expected.ct_eq(&given)) {
                    Ok(client)
                } else {
                    Err(OAuthError::invalid_client())
                }
            }
            // A public client authenticates with its id alone (auth method "none").
            (None, None) => Ok(client),
            _ => Err(OAuthError::invalid_client()),
        }
    }
}

/// Reads the client's credentials from `Authorization: Basic` or the body;
/// using both at once is refused (RFC 6749 §2.3).
fn presented(headers: &HeaderMap, params: &Params) -> Result<Presented, OAuthError> {
    let basic = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(value) => {
            let value = value.to_str().map_err(|_| OAuthError::invalid_client())?;
            let (scheme, rest) = value
                .split_once(' ')
                .ok_or_else(OAuthError::invalid_client)?;
            if !scheme.eq_ignore_ascii_case("basic") {
                return Err(OAuthError::invalid_client());
            }
            let decoded = STANDARD
                .decode(rest.trim())
                .map_err(|_| OAuthError::invalid_client())?;
            let decoded = String::from_utf8(decoded).map_err(|_| OAuthError::invalid_client())?;
            let (id, secret) = decoded
                .split_once(':')
                .ok_or_else(OAuthError::invalid_client)?;
            // RFC 6749 §2.3.1: both parts are form-urlencoded before Basic encoding.
            Some(Presented {
                client_id: form_decode(id)?,
                secret: Some(form_decode(secret)?),
            })
        }
    };
    match basic {
        Some(b) => {
            if params.has("client_secret") {
                return Err(OAuthError::invalid_request(
                    "more than one client authentication method",
                ));
            }
            if params.get("client_id").is_some_and(|id| id != b.client_id) {
                return Err(OAuthError::invalid_request(
                    "client_id does not match the credentials",
                ));
            }
            Ok(b)
        }
        None => {
            let client_id = params
                .get("client_id")
                .ok_or_else(OAuthError::invalid_client)?;
            Ok(Presented {
                client_id: client_id.to_owned(),
                secret: params.get("client_secret").map(str::to_owned),
            })
        }
    }
}

fn form_decode(s: &str) -> Result<String, OAuthError> {
    let replaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&replaced)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| OAuthError::invalid_client())
}
