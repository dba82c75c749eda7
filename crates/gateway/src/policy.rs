//! Per-app access policy, evaluated against the claims of a session.

use orchestrator_config::PolicyConfig;
use serde_json::{Map, Value};

/// Who may use an app; every listed condition must hold, none = any logged-in user.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    groups: Vec<String>,
    domains: Vec<String>,
    claims: Vec<(String, Vec<String>)>,
    /// The IdP's `email` counts as verified without `email_verified`.
    trust_email: bool,
}

impl Policy {
    /// From the app's `policy:` section and its IdP's `trustEmail`.
    pub(crate) fn new(cfg: &PolicyConfig, trust_email: bool) -> Self {
        Self {
            trust_email,
            groups: cfg.allow_groups.clone(),
            domains: cfg
                .allow_email_domains
                .iter()
                .map(|d| d.trim_start_matches('@').to_ascii_lowercase())
                .collect(),
            claims: cfg
                .claims
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// True when the user with these claims may pass.
    pub(crate) fn allows(&self, claims: &Map<String, Value>) -> bool {
        if !self.groups.is_empty() {
            let groups = claim_strings(claims.get("groups"));
            if !groups.iter().any(|g| self.groups.contains(g)) {
                return false;
            }
        }
        if !self.domains.is_empty() {
            // Only an address the IdP vouches for proves a domain: Entra ID
            // sends no `email_verified` and lets users edit `email` (the
            // "nOAuth" takeover), so a missing one counts as unverified
            // unless the IdP is trusted to verify every address it sends.
            // An explicit `false` is the IdP's own word and always counts.
            let verified = match claims.get("email_verified") {
                None => self.trust_email,
                Some(Value::Bool(b)) => *b,
                Some(Value::String(s)) => s == "true",
                Some(_) => false,
            };
            let domain = claims
                .get("email")
                .and_then(Value::as_str)
                .and_then(email_domain);
            match domain {
                Some(d) if verified && self.domains.contains(&d) => {}
                _ => return false,
            }
        }
        self.claims.iter().all(|(name, accepted)| {
            claim_strings(claims.get(name))
                .iter()
                .any(|v| accepted.contains(v))
        })
    }
}

/// A claim as strings: a string, each string/number/bool of an array, or a scalar.
pub(crate) fn claim_strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items.iter().filter_map(scalar_string).collect(),
        Some(v) => scalar_string(v).into_iter().collect(),
        None => Vec::new(),
    }
}

fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The lower-cased domain of a plain `local@domain` address, or `None` for
/// anything that is not one: several `@`, quotes, spaces, comments, empty parts.
fn email_domain(address: &str) -> Option<String> {
    let (local, domain) = address.split_once('@')?;
    if local.is_empty() || domain.is_empty() || domain.contains('@') {
        return None;
    }
    let local_ok = local
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.".contains(&b));
    let domain_ok = domain.split('.').all(|label| {
        !label.is_empty()
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    (local_ok && domain_ok && !local.starts_with('.') && !local.ends_with('.'))
        .then(|| domain.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(groups: &[&str], domains: &[&str], claims: &[(&str, &[&str])]) -> Policy {
        policy_trusting(groups, domains, claims, false)
    }

    fn policy_trusting(
        groups: &[&str],
        domains: &[&str],
        claims: &[(&str, &[&str])],
        trust_email: bool,
    ) -> Policy {
        Policy::new(
            &PolicyConfig {
                allow_groups: groups.iter().map(|s| (*s).to_owned()).collect(),
                allow_email_domains: domains.iter().map(|s| (*s).to_owned()).collect(),
                claims: claims
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.iter().map(|s| (*s).to_owned()).collect()))
                    .collect(),
            },
            trust_email,
        )
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn policy_table() {
        let open = policy(&[], &[], &[]);
        let eng = policy(&["engineering"], &[], &[]);
        let dom = policy(&[], &["example.com"], &[]);
        let trusted = policy_trusting(&[], &["example.com"], &[], true);
        let sales = policy(&[], &[], &[("department", &["sales", "support"])]);
        let both = policy(&["engineering"], &["example.com"], &[]);
        let verified = |email: &str| json!({"email": email, "email_verified": true});
        let cases: &[(&Policy, Value, bool)] = &[
            (&open, json!({"sub": "a"}), true),
            (&eng, json!({"groups": ["admins", "engineering"]}), true),
            (&eng, json!({"groups": "engineering"}), true),
            (&eng, json!({"groups": ["sales"]}), false),
            (&eng, json!({}), false),
            // No `email_verified` (Entra ID): unverified unless the IdP is trusted.
            (&dom, json!({"email": "a@example.com"}), false),
            (&trusted, json!({"email": "a@example.com"}), true),
            (&trusted, json!({"email": "a@evil.example"}), false),
            (
                &trusted,
                json!({"email": "a@example.com", "email_verified": false}),
                false,
            ),
            (
                &dom,
                json!({"email": "a@example.com", "email_verified": "true"}),
                true,
            ),
            (
                &dom,
                json!({"email": "A@EXAMPLE.COM", "email_verified": true}),
                true,
            ),
            (
                &dom,
                json!({"email": "a@example.com", "email_verified": false}),
                false,
            ),
            (
                &dom,
                json!({"email": "a@example.com", "email_verified": "false"}),
                false,
            ),
            (&dom, verified("a@evil.example@example.com"), false),
            (&dom, verified("a@example.com.evil.example"), false),
            (&dom, verified("a@sub.example.com"), false),
            (&dom, verified("\"a@x\"@example.com"), false),
            (&dom, verified("a b@example.com"), false),
            (&dom, verified("@example.com"), false),
            (&dom, json!({"email": ["a@example.com"]}), false),
            (&dom, json!({}), false),
            (&sales, json!({"department": "sales"}), true),
            (&sales, json!({"department": ["x", "support"]}), true),
            (&sales, json!({"department": "engineering"}), false),
            (
                &both,
                json!({"groups": ["engineering"], "email": "a@example.com", "email_verified": true}),
                true,
            ),
            (
                &both,
                json!({"groups": ["engineering"], "email": "a@evil.example", "email_verified": true}),
                false,
            ),
        ];
        for (p, c, want) in cases {
            assert_eq!(p.allows(&claims(c.clone())), *want, "{p:?} {c}");
        }
    }
}
