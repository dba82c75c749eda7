//! Values many sessions hold the same of (an IdP's ID token header, an
//! app's host), kept once and shared. Each table holds a bounded number of
//! short values: past that (a wildcard app's hosts are the client's to
//! choose), a value is simply not shared.

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::{Arc, Mutex, OnceLock};

/// At most this many values per table.
const MAX_VALUES: usize = 64;

/// Longer values are not shared (headers and hosts are shorter).
const MAX_LEN: usize = 512;

/// The shared copy of an ID token header's bytes.
pub(super) fn header(bytes: &[u8]) -> Arc<[u8]> {
    static HEADERS: OnceLock<Mutex<HashSet<Arc<[u8]>>>> = OnceLock::new();
    shared(&HEADERS, bytes)
}

/// The shared copy of a host.
pub(super) fn host(text: &str) -> Arc<str> {
    static HOSTS: OnceLock<Mutex<HashSet<Arc<str>>>> = OnceLock::new();
    shared(&HOSTS, text)
}

fn shared<T>(table: &OnceLock<Mutex<HashSet<Arc<T>>>>, value: &T) -> Arc<T>
where
    T: ?Sized + Eq + Hash + AsRef<[u8]>,
    Arc<T>: for<'a> From<&'a T>,
{
    if value.as_ref().len() > MAX_LEN {
        return Arc::from(value);
    }
    let mut values = table
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(found) = values.get(value) {
        return Arc::clone(found);
    }
    let new = Arc::from(value);
    if values.len() < MAX_VALUES {
        values.insert(Arc::clone(&new));
    }
    new
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_share_one_copy_up_to_the_bound() {
        let a = host("app.example");
        let b = host(&String::from("app.example"));
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(&*a, "app.example");
        let h = header(br#"{"alg":"ES256"}"#);
        assert!(Arc::ptr_eq(&h, &header(br#"{"alg":"ES256"}"#)));
        // Past the bound values are still right, just not shared.
        let many: Vec<_> = (0..MAX_VALUES + 8)
            .map(|i| host(&format!("h{i}.wild.example")))
            .collect();
        let last = format!("h{}.wild.example", MAX_VALUES + 7);
        assert_eq!(&*many[MAX_VALUES + 7], last);
        assert!(!Arc::ptr_eq(&many[MAX_VALUES + 7], &host(&last)));
        let long = "x".repeat(MAX_LEN + 1);
        assert!(!Arc::ptr_eq(&host(&long), &host(&long)));
    }
}
