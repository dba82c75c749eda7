//! Request parameters (query strings and form bodies) parsed strictly:
//! RFC 6749 §3.1 forbids repeated parameters and says an empty value means
//! "absent"; sizes are bounded so a request cannot make us hold huge strings.

use std::collections::HashMap;

use crate::error::OAuthError;

/// Longest value of a parameter the provider stores or sends back
/// (`state`, `nonce`, `login_hint`), in bytes.
pub(crate) const MAX_ECHOED: usize = 512;
/// Most parameters one request may carry.
const MAX_PARAMS: usize = 64;
/// Longest value of an ordinary parameter, in bytes.
const MAX_VALUE: usize = 4096;
/// Longest value of a parameter that carries a JWT or token.
const MAX_TOKEN_VALUE: usize = 16 * 1024;
/// Parameters allowed up to [`MAX_TOKEN_VALUE`] (`tx`: the sealed login
/// transaction, which carries the request's own parameters).
const TOKEN_PARAMS: &[&str] = &[
    "tx",
    "id_token_hint",
    "token",
    "refresh_token",
    "code",
    "assertion",
];

/// Decoded, de-duplicated parameters.
#[derive(Debug, Default)]
pub(crate) struct Params(HashMap<String, String>);

impl Params {
    /// Parses `application/x-www-form-urlencoded` bytes (a query or a body).
    pub(crate) fn parse(input: &[u8]) -> Result<Self, OAuthError> {
        let mut map = HashMap::new();
        for (name, value) in form_urlencoded::parse(input) {
            // form_urlencoded decodes leniently, replacing invalid UTF-8 with
            // U+FFFD; such a parameter is malformed, not a value to act on.
            if name.contains('\u{FFFD}') || value.contains('\u{FFFD}') {
                return Err(OAuthError::invalid_request("malformed parameter encoding"));
            }
            if name.is_empty() {
                continue;
            }
            let limit = if TOKEN_PARAMS.contains(&name.as_ref()) {
                MAX_TOKEN_VALUE
            } else {
                MAX_VALUE
            };
            if value.len() > limit || name.len() > 64 {
                return Err(OAuthError::invalid_request(format!(
                    "parameter {} too large",
                    printable(&name)
                )));
            }
            if map.len() >= MAX_PARAMS {
                return Err(OAuthError::invalid_request("too many parameters"));
            }
            if map.contains_key(name.as_ref()) {
                return Err(OAuthError::invalid_request(format!(
                    "parameter {} repeated",
                    printable(&name)
                )));
            }
            map.insert(name.into_owned(), value.into_owned());
        }
        // Empty values count as absent (RFC 6749 §3.1).
        map.retain(|_, v| !v.is_empty());
        Ok(Self(map))
    }

    /// Parses a URI's query (none: no parameters).
    pub(crate) fn from_query(query: Option<&str>) -> Result<Self, OAuthError> {
        Self::parse(query.unwrap_or("").as_bytes())
    }

    /// The value of `name`, if present and non-empty.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// The value of `name`, or `invalid_request` naming it.
    pub(crate) fn require(&self, name: &'static str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("{name} missing")))
    }

    /// `invalid_request` when any of `names` is longer than [`MAX_ECHOED`]:
    /// values we keep or echo stay small, and an over-long `state` is never
    /// sent back to a redirect URI.
    pub(crate) fn check_echoed(&self, names: &[&'static str]) -> Result<(), OAuthError> {
        match names
            .iter()
            .find(|n| self.get(n).is_some_and(|v| v.len() > MAX_ECHOED))
        {
            Some(name) => Err(OAuthError::invalid_request(format!(
                "{name} longer than {MAX_ECHOED} bytes"
            ))),
            None => Ok(()),
        }
    }

    /// True when `name` is present.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
}

/// A parameter name fit for an error description (and a header).
fn printable(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .take(32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_parameters_are_refused() {
        let err = Params::parse(b"a=1&b=2&a=3").unwrap_err();
        assert_eq!(err.description, "parameter a repeated");
    }

    #[test]
    fn empty_values_are_absent_and_plus_is_space() {
        let p = Params::parse(b"a=&b=x+y%21").unwrap();
        assert_eq!(p.get("a"), None);
        assert_eq!(p.get("b"), Some("x y!"));
    }

    #[test]
    fn invalid_utf8_and_oversized_values_are_refused() {
        assert!(Params::parse(b"a=%ff%fe").is_err());
        let big = format!("state={}", "x".repeat(MAX_VALUE + 1));
        assert!(Params::parse(big.as_bytes()).is_err());
        let token = format!("code={}", "x".repeat(MAX_VALUE + 1));
        assert!(Params::parse(token.as_bytes()).is_ok());
    }
}
