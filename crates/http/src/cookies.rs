//! The `Cookie` request header, read as bytes.
//!
//! Browsers may send several `Cookie` fields (HTTP/2 splits the header into
//! crumbs, RFC 9113 §8.2.3) and values need not be ASCII, so nothing here
//! assumes one field or valid UTF-8: a field that cannot be decoded is never
//! skipped whole, which would hide the cookies beside it.

use http::header::{self, HeaderMap, HeaderValue};

/// The `name=value` pairs of every `Cookie` field, as bytes, trimmed; parts
/// without `=` or with an empty name are skipped.
pub fn pairs(headers: &HeaderMap) -> impl Iterator<Item = (&[u8], &[u8])> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
        .filter_map(|part| {
            let part = part.trim_ascii();
            let eq = part.iter().position(|b| *b == b'=')?;
            let (name, value) = (part[..eq].trim_ascii(), part[eq + 1..].trim_ascii());
            (!name.is_empty()).then_some((name, value))
        })
}

/// The value of cookie `name`, if the request carries exactly one cookie of
/// that name and its value is ASCII (quotes around it dropped). Two of them
/// mean none: a sibling subdomain or another path can plant a second cookie
/// that browsers send first (cookie tossing), and which one is the user's
/// cannot be known.
pub fn unique(headers: &HeaderMap, name: &str) -> Option<String> {
    first_unique(headers, [name])
}

/// The [`unique`] value of the first of `names` that has one, read in one
/// pass over the fields: `first_unique(h, [a, b])` is
/// `unique(h, a).or_else(|| unique(h, b))`.
pub fn first_unique<const N: usize>(headers: &HeaderMap, names: [&str; N]) -> Option<String> {
    /// What one pass saw of a name: nothing yet, one value, or two or more.
    #[derive(Clone, Copy)]
    enum Seen<'a> {
        No,
        Once(&'a [u8]),
        Twice,
    }
    let mut seen = [Seen::No; N];
    for (n, v) in pairs(headers) {
        for (name, state) in names.iter().zip(seen.iter_mut()) {
            if n == name.as_bytes() {
                *state = match *state {
                    Seen::No => Seen::Once(v),
                    _ => Seen::Twice,
                };
            }
        }
    }
    seen.into_iter().find_map(|state| match state {
        Seen::Once(v) => ascii_value(v),
        _ => None,
    })
}

/// A cookie value without the quotes around it, if it is ASCII.
fn ascii_value(v: &[u8]) -> Option<String> {
    let v = v
        .strip_prefix(b"\"")
        .and_then(|v| v.strip_suffix(b"\""))
        .unwrap_or(v);
    std::str::from_utf8(v)
        .ok()
        .filter(|v| v.is_ascii())
        .map(str::to_owned)
}

/// Removes the named cookies from the `Cookie` field(s), in place.
///
/// Parts that are not `name=value` are dropped too; the rest is sent as one
/// field joined with "; " (as RFC 9113 §8.2.3 says to do for HTTP/1.1).
pub fn strip(headers: &mut HeaderMap, names: &[&str]) {
    let fields = headers.get_all(header::COOKIE).iter().count();
    if fields == 0 {
        return;
    }
    let mut kept: Vec<u8> = Vec::new();
    let mut dropped = false;
    for value in headers.get_all(header::COOKIE) {
        for part in value.as_bytes().split(|b| *b == b';') {
            let part = part.trim_ascii();
            if part.is_empty() {
                continue;
            }
            let name = part
                .iter()
                .position(|b| *b == b'=')
                .map(|eq| part[..eq].trim_ascii());
            match name {
                Some(n) if !n.is_empty() && !names.iter().any(|x| x.as_bytes() == n) => {
                    if !kept.is_empty() {
                        kept.extend_from_slice(b"; ");
                    }
                    kept.extend_from_slice(part);
                }
                _ => dropped = true,
            }
        }
    }
    if !dropped && fields == 1 {
        return;
    }
    headers.remove(header::COOKIE);
    if !kept.is_empty() {
        // The bytes came from header values, so they are valid in one.
        if let Ok(v) = HeaderValue::from_bytes(&kept) {
            headers.insert(header::COOKIE, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_the_named_cookie_whatever_bytes_stand_beside_it() {
        // HTTP/1.1 with two Cookie lines, one not UTF-8, and HTTP/2 crumbs.
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_bytes(b"pref=caf\xe9; sess=secret").unwrap(),
        );
        h.append(header::COOKIE, HeaderValue::from_static("sess=again; b=2"));
        h.append(header::COOKIE, HeaderValue::from_static("junk; c=3"));
        strip(&mut h, &["sess"]);
        let all: Vec<&[u8]> = h
            .get_all(header::COOKIE)
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        assert_eq!(all, vec![&b"pref=caf\xe9; b=2; c=3"[..]]);
        let mut only = HeaderMap::new();
        only.append(header::COOKIE, HeaderValue::from_static("sess=secret"));
        strip(&mut only, &["sess"]);
        assert!(only.get(header::COOKIE).is_none());
    }

    #[test]
    fn two_cookies_of_one_name_are_no_cookie() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_bytes(b"pref=caf\xe9; sess=\"mine\"").unwrap(),
        );
        assert_eq!(unique(&h, "sess").as_deref(), Some("mine"));
        h.append(header::COOKIE, HeaderValue::from_static("sess=tossed"));
        assert_eq!(unique(&h, "sess"), None);
        let mut one = HeaderMap::new();
        one.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; sess=x; sess=y"),
        );
        assert_eq!(unique(&one, "sess"), None);
        let mut non_ascii = HeaderMap::new();
        non_ascii.append(
            header::COOKIE,
            HeaderValue::from_bytes(b"sess=\xff").unwrap(),
        );
        assert_eq!(unique(&non_ascii, "sess"), None);
    }

    #[test]
    fn the_first_name_with_one_cookie_wins() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("b=plain; a=1; a=2"),
        );
        // `a` is tossed (twice), so `b` answers; alone, `a` is none.
        assert_eq!(first_unique(&h, ["a", "b"]).as_deref(), Some("plain"));
        assert_eq!(first_unique(&h, ["a"]), None);
        h.append(header::COOKIE, HeaderValue::from_static("c=\"third\""));
        assert_eq!(first_unique(&h, ["c", "b"]).as_deref(), Some("third"));
        assert_eq!(first_unique(&h, ["b", "c"]).as_deref(), Some("plain"));
        // A non-ASCII value is no value: the next name answers.
        let mut odd = HeaderMap::new();
        odd.append(
            header::COOKIE,
            HeaderValue::from_bytes(b"a=\xff; b=ok").unwrap(),
        );
        assert_eq!(first_unique(&odd, ["a", "b"]).as_deref(), Some("ok"));
        // The same name twice is that name.
        assert_eq!(first_unique(&odd, ["b", "b"]).as_deref(), Some("ok"));
        assert_eq!(first_unique(&odd, ["x", "y"]), None);
    }
}
