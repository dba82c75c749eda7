//! The provider's HTML: the login page, error pages and the signed-out page.
//! Server-rendered, no JavaScript; every interpolated value goes through
//! [`escape`].

use std::fmt::Write as _;

/// Escapes text for HTML element content and double-quoted attributes.
pub(crate) fn escape(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    for c in input.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:24rem;margin:4rem auto;padding:0 1rem}\
label{display:block;margin-top:1rem}input{width:100%;padding:.4rem;box-sizing:border-box}\
button{margin-top:1.2rem;padding:.5rem 1rem}.error{color:#a00}";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body>\n{body}\n</body></html>\n",
        escape(title)
    )
}

/// What the login form needs to render.
pub(crate) struct LoginForm<'a> {
    /// Where the form posts to.
    pub(crate) action: &'a str,
    /// The pending authorization request it completes.
    pub(crate) transaction: &'a str,
    /// The CSRF token (also in a cookie).
    pub(crate) csrf: &'a str,
    /// Pre-filled user name (`login_hint` or the last attempt).
    pub(crate) username: &'a str,
    /// The client the user is signing in to.
    pub(crate) client: &'a str,
    /// A message shown above the form (bad credentials, throttled).
    pub(crate) message: Option<&'a str>,
}

/// The login page.
pub(crate) fn login_page(form: &LoginForm<'_>) -> String {
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>Sign in</h1>\n<p>to continue to <strong>{}</strong></p>\n",
        escape(form.client)
    );
    if let Some(message) = form.message {
        let _ = writeln!(
            body,
            "<p class=\"error\" role=\"alert\">{}</p>",
            escape(message)
        );
    }
    let _ = write!(
        body,
        "<form method=\"post\" action=\"{action}\">\n\
         <input type=\"hidden\" name=\"tx\" value=\"{tx}\">\n\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\n\
         <label for=\"username\">Username</label>\n\
         <input id=\"username\" name=\"username\" type=\"text\" autocomplete=\"username\" required value=\"{user}\">\n\
         <label for=\"password\">Password</label>\n\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\n\
         <button type=\"submit\">Sign in</button>\n</form>",
        action = escape(form.action),
        tx = escape(form.transaction),
        csrf = escape(form.csrf),
        user = escape(form.username),
    );
    page("Sign in", &body)
}

/// An error page for errors that cannot go back to the client.
pub(crate) fn error_page(code: &str, description: &str) -> String {
    page(
        "Sign-in error",
        &format!(
            "<h1>Sign-in error</h1>\n<p>{}</p>\n<p>Error code: <code id=\"error\">{}</code></p>",
            escape(description),
            escape(code)
        ),
    )
}

/// Shown after logout when there is nowhere to send the user back to.
pub(crate) fn signed_out_page() -> String {
    page(
        "Signed out",
        "<h1>Signed out</h1>\n<p>You have been signed out.</p>",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralises_markup_and_attribute_breakouts() {
        assert_eq!(
            escape("<script>\"x\"&'y'</script>"),
            "&lt;script&gt;&quot;x&quot;&amp;&#x27;y&#x27;&lt;/script&gt;"
        );
    }

    #[test]
    fn login_page_escapes_the_login_hint() {
        let html = login_page(&LoginForm {
            action: "/idp/login",
            transaction: "t",
            csrf: "c",
            username: "\"><script>alert(1)</script>",
            client: "demo",
            message: None,
        });
        assert!(!html.contains("<script>"));
        assert!(html.contains("name=\"username\""));
        assert!(html.contains("name=\"password\""));
    }
}
