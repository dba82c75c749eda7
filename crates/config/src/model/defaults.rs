//! Defaults that more than one section uses.

pub(super) fn default_true() -> bool {
    true
}

pub(super) fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "profile".into(), "email".into()]
}
