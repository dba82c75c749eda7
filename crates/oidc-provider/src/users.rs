//! The built-in user directory: argon2id password verification (off the
//! async runtime) and the claims each scope releases.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, SaltString};
use orchestrator_config::UserConfig;
use serde_json::Value;

use crate::error::ProviderError;
use crate::password::PasswordChecker;

/// Claims each scope releases (OpenID Connect Core §5.4, plus `groups`).
const SCOPE_CLAIMS: &[(&str, &[&str])] = &[
    (
        "profile",
        &[
            "name",
            "family_name",
            "given_name",
            "middle_name",
            "nickname",
            "preferred_username",
            "profile",
            "picture",
            "website",
            "gender",
            "birthdate",
            "zoneinfo",
            "locale",
            "updated_at",
        ],
    ),
    ("email", &["email", "email_verified"]),
    ("phone", &["phone_number", "phone_number_verified"]),
    ("address", &["address"]),
    ("groups", &["groups"]),
];

/// Every claim any scope can release (discovery's `claims_supported`).
pub(crate) fn supported_claims() -> Vec<&'static str> {
    let mut all = vec![
        "sub",
        "iss",
        "aud",
        "exp",
        "iat",
        "auth_time",
        "nonce",
        "at_hash",
        "sid",
    ];
    for (_, claims) in SCOPE_CLAIMS {
        all.extend_from_slice(claims);
    }
    all
}

/// One user.
#[derive(Debug)]
pub(crate) struct User {
    pub(crate) username: String,
    pub(crate) sub: String,
    password_hash: String,
    claims: BTreeMap<String, Value>,
    /// The upstream this user logged in through; none for a local user.
    pub(crate) upstream: Option<String>,
}

impl User {
    /// A user of an upstream, from the claims mapped at its last login.
    pub(crate) fn federated(
        username: String,
        sub: String,
        upstream: String,
        claims: BTreeMap<String, Value>,
    ) -> Self {
        Self {
            username,
            sub,
            password_hash: String::new(),
            claims,
            upstream: Some(upstream),
        }
    }

    /// The claims `scopes` release about this user.
    pub(crate) fn claims_for<'a>(
        &self,
        scopes: impl Iterator<Item = &'a str> + Clone,
    ) -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        for (scope, names) in SCOPE_CLAIMS {
            if !scopes.clone().any(|s| s == *scope) {
                continue;
            }
            for name in *names {
                if let Some(v) = self.claims.get(*name) {
                    out.insert((*name).to_owned(), v.clone());
                }
            }
            // A local user's name is theirs; an upstream user's is internal.
            if *scope == "profile"
                && !out.contains_key("preferred_username")
                && self.upstream.is_none()
            {
                out.insert(
                    "preferred_username".into(),
                    Value::String(self.username.clone()),
                );
            }
            // Addresses in the directory were entered by the operator, so
            // they count as verified unless the config says otherwise; the
            // gateway's email-domain policy relies on it.
            if *scope == "email"
                && out.contains_key("email")
                && !out.contains_key("email_verified")
                && self.upstream.is_none()
            {
                out.insert("email_verified".into(), Value::Bool(true));
            }
        }
        // Which upstream the user came through, and how they signed in
        // there, with the `openid` scope (they describe the login).
        if self.upstream.is_some() && scopes.clone().any(|s| s == "openid") {
            for claim in ["idp", "amr"] {
                if let Some(v) = self.claims.get(claim) {
                    out.insert(claim.to_owned(), v.clone());
                }
            }
        }
        out
    }
}

/// All users, by user name.
#[derive(Debug)]
pub(crate) struct Users {
    by_name: HashMap<String, Arc<User>>,
    /// A hash to verify against for unknown users, so a response's timing
    /// does not reveal whether a user name exists. Made on first use.
    dummy: OnceLock<String>,
    /// Bounded, buffer-reusing argon2 verification (see [`crate::password`]).
    checker: PasswordChecker,
}

/// What a login attempt found.
pub(crate) enum Verified {
    Ok(Arc<User>),
    Bad,
}

impl Users {
    pub(crate) fn new(cfg: &[UserConfig]) -> Result<Self, ProviderError> {
        let mut by_name = HashMap::new();
        for (index, u) in cfg.iter().enumerate() {
            let hash = u.password_hash.expose().to_owned();
            let parsed = PasswordHash::new(&hash).map_err(|e| ProviderError::User {
                index,
                field: "passwordHash",
                reason: format!("not a PHC string: {e}"),
            })?;
            if parsed.algorithm.as_str() != "argon2id" {
                return Err(ProviderError::User {
                    index,
                    field: "passwordHash",
                    reason: "must be an argon2id hash".into(),
                });
            }
            let sub = match u.claims.get("sub") {
                Some(Value::String(s)) if !s.is_empty() => s.clone(),
                None => u.username.clone(),
                Some(_) => {
                    return Err(ProviderError::User {
                        index,
                        field: "claims.sub",
                        reason: "must be a non-empty string".into(),
                    });
                }
            };
            let user = User {
                username: u.username.clone(),
                sub,
                password_hash: hash,
                claims: u.claims.clone(),
                upstream: None,
            };
            if by_name.insert(u.username.clone(), Arc::new(user)).is_some() {
                return Err(ProviderError::User {
                    index,
                    field: "username",
                    reason: format!("duplicate user {:?}", u.username),
                });
            }
        }
        Ok(Self {
            by_name,
            dummy: OnceLock::new(),
            checker: PasswordChecker::per_cpu(),
        })
    }

    /// No local users at all (logins go to upstreams).
    pub(crate) fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    pub(crate) fn get(&self, username: &str) -> Option<Arc<User>> {
        self.by_name.get(username).cloned()
    }

    /// Checks a password with argon2id on the verification threads.
    pub(crate) async fn verify(&self, username: &str, password: String) -> Verified {
        let user = self.get(username);
        let hash = match &user {
            Some(u) => u.password_hash.clone(),
            None => self.dummy_hash(),
        };
        let ok = self.checker.verify(hash, password).await;
        match (ok, user) {
            (true, Some(u)) => Verified::Ok(u),
            _ => Verified::Bad,
        }
    }

    fn dummy_hash(&self) -> String {
        self.dummy
            .get_or_init(|| {
                let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).ok();
                salt.and_then(|s| {
                    Argon2::default()
                        .hash_password(crate::store::random_token().as_bytes(), &s)
                        .ok()
                        .map(|h| h.to_string())
                })
                .unwrap_or_default()
            })
            .clone()
    }
}
