//! Where the checks put what they find: each problem with its key path.

use std::collections::HashSet;
use std::time::Duration;

use crate::error::ConfigError;

#[derive(Default)]
pub(super) struct Validator {
    pub(super) errors: Vec<ConfigError>,
}

impl Validator {
    pub(super) fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError::new(path, message));
    }

    pub(super) fn positive(&mut self, path: &str, d: Duration) {
        if d.is_zero() {
            self.err(path, "must be longer than 0s");
        }
    }

    /// An absolute http(s) URL with a host; `what` completes "is not …".
    pub(super) fn http_url(&mut self, path: &str, value: &str) -> Option<url::Url> {
        match url::Url::parse(value) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Some(u),
            _ => {
                self.err(path, format!("\"{value}\" is not an http(s) URL"));
                None
            }
        }
    }

    pub(super) fn abs_path(&mut self, path: &str, value: &str) {
        if !value.starts_with('/') {
            self.err(path, format!("\"{value}\" must start with \"/\""));
        }
    }

    pub(super) fn unique<'a>(
        &mut self,
        path: &str,
        what: &str,
        items: impl Iterator<Item = &'a str>,
    ) {
        let mut seen = HashSet::new();
        for (i, item) in items.enumerate() {
            if !seen.insert(item) {
                self.err(
                    format!("{path}[{i}]"),
                    format!("duplicate {what} \"{item}\""),
                );
            }
        }
    }

    pub(super) fn header_name(&mut self, path: &str, name: &str) {
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !valid {
            self.err(path, format!("\"{name}\" is not a valid HTTP header name"));
        }
    }
}
