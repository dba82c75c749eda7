//! Upstream identity providers (`oidcProvider.upstreams`): the provider in
//! front of the IdPs an enterprise already has. Each upstream is a careful
//! relying party ([`orchestrator_rp::Idp`]: code + PKCE S256 + state +
//! nonce, ID token verified against its JWKS, userinfo merged); this module
//! holds which upstream a login goes to (the only one, home-realm discovery
//! by email domain, `idp=`), how its claims become ours (`claims`, group
//! transforms, `email_verified` only when vouched for), and the `sub` we
//! derive from its identity.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use orchestrator_config::{GroupTransforms, UpstreamConfig};
use orchestrator_rp::{Idp, IdpSettings};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use crate::error::ProviderError;

/// Claims taken as they are when an upstream maps none (`claims` empty).
const STANDARD_CLAIMS: [&str; 11] = [
    "email",
    "name",
    "given_name",
    "family_name",
    "middle_name",
    "nickname",
    "preferred_username",
    "picture",
    "locale",
    "zoneinfo",
    "groups",
];

/// The prefix of the user names of upstream users (config refuses it for
/// local users).
pub(crate) use orchestrator_config::UPSTREAM_USERNAME_PREFIX as USERNAME_PREFIX;

/// One upstream.
pub(crate) struct Upstream {
    pub(crate) name: String,
    pub(crate) label: String,
    pub(crate) idp: Idp,
    trust_email: bool,
    claims: Vec<(String, String)>,
    groups: GroupTransforms,
    email_domains: Vec<String>,
    /// Email domains routed to other upstreams: an address there that this
    /// upstream asserts is never verified (it is not this IdP's to vouch for).
    foreign_domains: Vec<String>,
    subject: Vec<String>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// All upstreams, in config order.
#[derive(Debug, Default)]
pub(crate) struct Upstreams {
    list: Vec<Arc<Upstream>>,
}

impl Upstreams {
    pub(crate) fn new(cfg: &[UpstreamConfig]) -> Result<Self, ProviderError> {
        let mut list = Vec::new();
        for (i, u) in cfg.iter().enumerate() {
            let key = format!("oidcProvider.upstreams[{i}]");
            let idp = Idp::new(IdpSettings {
                name: &u.name,
                issuer: &u.issuer,
                client_id: &u.client_id,
                client_secret: u.client_secret.as_ref().map(|s| s.expose()),
                scopes: &u.scopes,
                ca_file: u.ca_file.as_deref(),
                key: &key,
            })
            .map_err(|e| ProviderError::Upstream(e.to_string()))?;
            let claims = if u.claims.is_empty() {
                STANDARD_CLAIMS
                    .iter()
                    .map(|c| ((*c).to_owned(), (*c).to_owned()))
                    .collect()
            } else {
                u.claims
                    .iter()
                    .map(|(ours, theirs)| (ours.clone(), theirs.clone()))
                    .collect()
            };
            list.push(Arc::new(Upstream {
                name: u.name.clone(),
                label: u.display_name.clone().unwrap_or_else(|| u.name.clone()),
                idp,
                trust_email: u.trust_email,
                claims,
                groups: u.groups.clone(),
                email_domains: u
                    .email_domains
                    .iter()
                    .map(|d| d.to_ascii_lowercase())
                    .collect(),
                foreign_domains: cfg
                    .iter()
                    .filter(|other| other.name != u.name)
                    .flat_map(|other| other.email_domains.iter())
                    .map(|d| d.to_ascii_lowercase())
                    .collect(),
                subject: u.subject.clone(),
            }));
        }
        Ok(Self { list })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<Upstream>> {
        self.list.iter()
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Arc<Upstream>> {
        self.list.iter().find(|u| u.name == name)
    }

    /// The only upstream, when there is exactly one.
    pub(crate) fn only(&self) -> Option<&Arc<Upstream>> {
        match self.list.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }

    /// Home-realm discovery: the upstream whose `emailDomains` holds the
    /// domain of `login_hint` (an email address).
    pub(crate) fn for_login_hint(&self, hint: &str) -> Option<&Arc<Upstream>> {
        let (_, domain) = hint.rsplit_once('@')?;
        let domain = domain.trim().to_ascii_lowercase();
        self.list.iter().find(|u| u.email_domains.contains(&domain))
    }
}

impl Upstream {
    /// Our `sub` for the upstream user with `claims`: a digest of the
    /// upstream's name and of the claims that identify the user there
    /// (`subject`), so it is stable across logins and replicas, never the raw
    /// upstream `sub`, and two upstreams can never produce the same one. An
    /// email change never changes it (nOAuth). `None` when a subject claim
    /// is missing.
    pub(crate) fn subject(&self, claims: &Map<String, Value>) -> Option<String> {
        let mut h = Sha256::new();
        h.update(b"orchestrator upstream subject\0");
        h.update(self.name.as_bytes());
        for claim in &self.subject {
            let value = match claims.get(claim)? {
                Value::String(s) if !s.is_empty() => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return None,
            };
            h.update([0]);
            h.update((value.len() as u64).to_be_bytes());
            h.update(value.as_bytes());
        }
        let digest = URL_SAFE_NO_PAD.encode(h.finalize());
        Some(format!("{}.{}", self.name, &digest[..32]))
    }

    /// Our claims from the upstream's (verified ID token, userinfo merged):
    /// the mapping, the group transforms, `email_verified` only when the
    /// upstream says so or `trustEmail` is set, the upstream's `amr`, and
    /// `idp` naming the upstream.
    pub(crate) fn map_claims(&self, upstream: &Map<String, Value>) -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        for (ours, theirs) in &self.claims {
            if let Some(v) = lookup(upstream, theirs) {
                out.insert(ours.clone(), v.clone());
            }
        }
        if let Some(groups) = out.remove("groups") {
            let groups = self.transform_groups(&groups);
            if !groups.is_empty() {
                out.insert("groups".to_owned(), Value::from(groups));
            }
        }
        if let Some(email) = out.get("email").and_then(Value::as_str) {
            // The upstream's `email_verified` speaks of its `email` claim only.
            let from_email = self
                .claims
                .iter()
                .any(|(o, t)| o == "email" && t == "email");
            let vouched =
                from_email && upstream.get("email_verified").and_then(as_bool) == Some(true);
            let foreign = email.rsplit_once('@').is_some_and(|(_, d)| {
                self.foreign_domains
                    .iter()
                    .any(|f| f.eq_ignore_ascii_case(d))
            });
            out.insert(
                "email_verified".to_owned(),
                Value::Bool((vouched || self.trust_email) && !foreign),
            );
        } else {
            out.remove("email_verified");
        }
        if let Some(amr) = upstream.get("amr").filter(|v| v.is_array()) {
            out.insert("amr".to_owned(), amr.clone());
        }
        out.insert("idp".to_owned(), Value::String(self.name.clone()));
        out
    }

    fn transform_groups(&self, groups: &Value) -> Vec<String> {
        let names: Vec<String> = match groups {
            Value::Array(items) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            Value::String(s) => vec![s.clone()],
            _ => Vec::new(),
        };
        let t = &self.groups;
        names
            .into_iter()
            .filter(|g| t.include.is_empty() || t.include.iter().any(|p| glob(p, g)))
            .map(|g| t.rename.get(&g).cloned().unwrap_or(g))
            .map(|g| format!("{}{g}", t.prefix))
            .collect()
    }
}

/// `email_verified` as a boolean (some IdPs send `"true"`).
fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// The value at a dotted path (`address.country`) of `claims`.
fn lookup<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    let mut parts = path.split('.');
    let mut v = claims.get(parts.next()?)?;
    for part in parts {
        v = v.as_object()?.get(part)?;
    }
    Some(v)
}

/// `*`-wildcard match of `text` against `pattern`.
fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else {
        return text.is_empty();
    };
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let tail: Vec<&str> = parts.collect();
    let Some((last, middle)) = tail.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn upstream(extra: Value) -> Upstream {
        let mut cfg = json!({
            "name": "corp",
            "issuer": "https://login.corp.example",
            "clientId": "orchestrator",
        });
        if let (Some(c), Some(e)) = (cfg.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        let cfg: UpstreamConfig = serde_json::from_value(cfg).expect("config");
        let list = Upstreams::new(&[cfg]).expect("builds");
        let only = list.list.into_iter().next().expect("one");
        Arc::try_unwrap(only).expect("sole owner")
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("object")
    }

    #[test]
    fn subjects_are_namespaced_stable_and_ignore_the_email() {
        let u = upstream(json!({}));
        let a = obj(json!({"iss": "https://login.corp.example", "sub": "123", "email": "a@x"}));
        let b = obj(json!({"iss": "https://login.corp.example", "sub": "123", "email": "new@x"}));
        let sub = u.subject(&a).expect("sub");
        assert!(sub.starts_with("corp."), "{sub}");
        assert_eq!(
            u.subject(&b),
            Some(sub.clone()),
            "an email change is the same user"
        );
        assert_ne!(sub, "123");
        let other = upstream(json!({"name": "other"}));
        assert_ne!(other.subject(&a), Some(sub), "two upstreams never collide");
        assert_eq!(u.subject(&obj(json!({"iss": "x"}))), None);
        let entra = upstream(json!({"subject": ["tid", "oid"]}));
        let e1 = obj(json!({"tid": "t", "oid": "o", "sub": "pairwise-1"}));
        let e2 = obj(json!({"tid": "t", "oid": "o", "sub": "pairwise-2"}));
        assert_eq!(entra.subject(&e1), entra.subject(&e2));
    }

    #[test]
    fn claims_are_mapped_and_email_verified_only_when_vouched_for() {
        let u = upstream(
            json!({"claims": {"email": "mail", "preferred_username": "upn", "country": "address.country", "groups": "roles"}}),
        );
        let c = u.map_claims(&obj(json!({
            "mail": "a@corp.example", "upn": "alice@corp", "address": {"country": "NL"},
            "roles": ["eng", "ops"], "name": "not mapped"
        })));
        assert_eq!(c["email"], "a@corp.example");
        assert_eq!(c["preferred_username"], "alice@corp");
        assert_eq!(c["country"], "NL");
        assert_eq!(c["groups"], json!(["eng", "ops"]));
        assert_eq!(c["email_verified"], false, "Entra sends no email_verified");
        assert_eq!(c["idp"], "corp");
        assert!(!c.contains_key("name"));
        let vouched =
            upstream(json!({})).map_claims(&obj(json!({"email": "a@x", "email_verified": true})));
        assert_eq!(vouched["email_verified"], true);
        let trusted =
            upstream(json!({"trustEmail": true})).map_claims(&obj(json!({"email": "a@x"})));
        assert_eq!(trusted["email_verified"], true);
        let no_mail =
            upstream(json!({"trustEmail": true})).map_claims(&obj(json!({"email_verified": true})));
        assert!(!no_mail.contains_key("email_verified"));
        // Its email_verified speaks of its `email`, not of another claim mapped there.
        let other = upstream(json!({"claims": {"email": "mail"}})).map_claims(&obj(
            json!({"mail": "a@x", "email": "b@x", "email_verified": true}),
        ));
        assert_eq!(other["email_verified"], false);
    }

    #[test]
    fn an_address_routed_to_another_upstream_is_never_verified_here() {
        let list = Upstreams::new(&[
            serde_json::from_value(json!({"name": "corp", "issuer": "https://a.example", "clientId": "x", "emailDomains": ["corp.example"]})).expect("a"),
            serde_json::from_value(json!({"name": "social", "issuer": "https://b.example", "clientId": "x", "trustEmail": true})).expect("b"),
        ])
        .expect("builds");
        let social = list.get("social").expect("social");
        let c = social.map_claims(&obj(
            json!({"email": "ceo@Corp.Example", "email_verified": true}),
        ));
        assert_eq!(c["email_verified"], false);
        let c = social.map_claims(&obj(
            json!({"email": "me@gmail.example", "email_verified": true}),
        ));
        assert_eq!(c["email_verified"], true);
    }

    #[test]
    fn groups_are_filtered_renamed_and_prefixed() {
        let u = upstream(
            json!({"groups": {"include": ["eng-*", "admins"], "rename": {"admins": "ops"}, "prefix": "corp:"}}),
        );
        let c = u.map_claims(&obj(
            json!({"groups": ["eng-web", "sales", "admins", "eng"]}),
        ));
        assert_eq!(c["groups"], json!(["corp:eng-web", "corp:ops"]));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b", "ab-"));
        assert!(glob("*", "anything"));
        assert!(glob("exact", "exact"));
        assert!(!glob("exact", "exactly"));
    }

    #[test]
    fn home_realm_discovery_by_email_domain() {
        let list = Upstreams::new(&[
            serde_json::from_value(json!({"name": "a", "issuer": "https://a.example", "clientId": "x", "emailDomains": ["corp.example"]})).expect("a"),
            serde_json::from_value(json!({"name": "b", "issuer": "https://b.example", "clientId": "x"})).expect("b"),
        ])
        .expect("builds");
        assert_eq!(
            list.for_login_hint("alice@Corp.Example")
                .map(|u| u.name.as_str()),
            Some("a")
        );
        assert!(list.for_login_hint("alice@other.example").is_none());
        assert!(list.for_login_hint("alice").is_none());
        assert!(list.only().is_none());
    }
}
