//! Values many sessions hold the same of (an IdP's ID token header, an
//! app's host), kept once and shared. Each table holds a bounded number of
//! short values; when it is full (a wildcard app's hosts are the client's
//! to choose, keys rotate) it starts over: values handed out stay valid,
//! and the ones in use are shared again as they come back.

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
    let mut values = table
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    share(&mut values, value)
}

/// `value`'s copy in `values`, put there if it is short enough.
fn share<T>(values: &mut HashSet<Arc<T>>, value: &T) -> Arc<T>
where
    T: ?Sized + Eq + Hash + AsRef<[u8]>,
    Arc<T>: for<'a> From<&'a T>,
{
    if let Some(found) = values.get(value) {
        return Arc::clone(found);
    }
    let new = Arc::from(value);
    if value.as_ref().len() <= MAX_LEN {
        if values.len() >= MAX_VALUES {
            values.clear();
        }
        values.insert(Arc::clone(&new));
    }
    new
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_share_one_copy() {
        let a = host("app.example");
        let b = host(&String::from("app.example"));
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(&*a, "app.example");
        let h = header(br#"{"alg":"ES256"}"#);
        assert!(Arc::ptr_eq(&h, &header(br#"{"alg":"ES256"}"#)));
    }

    #[test]
    fn a_full_table_starts_over_and_long_values_are_not_kept() {
        let mut values: HashSet<Arc<str>> = HashSet::new();
        let first = share(&mut values, "h0.wild.example");
        for i in 1..MAX_VALUES {
            share(&mut values, &*format!("h{i}.wild.example"));
        }
        assert_eq!(values.len(), MAX_VALUES);
        assert!(Arc::ptr_eq(&first, &share(&mut values, "h0.wild.example")));
        // One more: the table starts over with it.
        let next = share(&mut values, "one.more.example");
        assert_eq!(values.len(), 1);
        assert!(Arc::ptr_eq(&next, &share(&mut values, "one.more.example")));
        assert_eq!(&*first, "h0.wild.example", "handed-out values stay valid");
        let long = "x".repeat(MAX_LEN + 1);
        let kept = share(&mut values, &*long);
        assert_eq!(&*kept, long);
        assert_eq!(values.len(), 1, "not kept");
    }
}
