//! A simulated browser for end-to-end tests: a cookie jar, redirects followed
//! by hand (so each hop can be counted and inspected), and the provider's
//! login form filled in when it shows up.

use std::sync::Arc;
use std::time::Duration;

use reqwest::cookie::{CookieStore as _, Jar};

/// Most redirects one visit follows (login is 4–5 hops).
const MAX_HOPS: usize = 12;

/// What one visit ended with.
#[derive(Debug)]
pub struct Visit {
    /// Status of the last response.
    pub status: u16,
    /// Body of the last response.
    pub body: String,
    /// How many times the login form was shown and submitted.
    pub prompts: u32,
    /// How many times the visit went through the IdP's authorize endpoint
    /// (a re-login, with or without a password prompt).
    pub authorizations: u32,
    /// Final URL.
    pub url: String,
}

/// A browser: one cookie jar, no automatic redirects.
#[derive(Clone)]
pub struct Browser {
    client: reqwest::Client,
    jar: Arc<Jar>,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    /// A fresh browser with an empty cookie jar.
    pub fn new() -> Self {
        Self::resolving(&[], std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// A fresh browser that resolves each of `names` to `addr`'s IP (the
    /// port comes from each URL), so tests can use real host names.
    pub fn resolving(names: &[&str], addr: std::net::SocketAddr) -> Self {
        let jar = Arc::new(Jar::default());
        let mut builder = reqwest::Client::builder();
        for name in names {
            builder = builder.resolve(name, addr);
        }
        let client = builder
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(2)
            .build()
            .expect("client");
        Self { client, jar }
    }

    /// The underlying client (shares the cookie jar).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The jar, to plant or read cookies.
    pub fn jar(&self) -> &Jar {
        &self.jar
    }

    /// The `Cookie` header this browser would send to `url`.
    pub fn cookies_for(&self, url: &str) -> String {
        let url = url::Url::parse(url).expect("url");
        self.jar
            .cookies(&url)
            .and_then(|v| v.to_str().ok().map(str::to_owned))
            .unwrap_or_default()
    }

    /// The value of cookie `name` sent to `url`, if any.
    pub fn cookie(&self, url: &str, name: &str) -> Option<String> {
        self.cookies_for(url).split(';').find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == name).then(|| v.to_owned())
        })
    }

    /// GETs `url` and follows redirects, logging in as `user` / `password`
    /// whenever the login form shows up. Errors are transport failures or
    /// a redirect loop, as text.
    pub async fn visit(&self, url: &str, user: &str, password: &str) -> Result<Visit, String> {
        let mut current = url::Url::parse(url).map_err(|e| e.to_string())?;
        let mut prompts = 0;
        let mut authorizations = 0;
        let mut post: Option<(url::Url, Vec<(String, String)>)> = None;
        for _ in 0..MAX_HOPS {
            let resp = match post.take() {
                Some((action, form)) => self.client.post(action).form(&form).send().await,
                None => {
                    if current.path().ends_with("/authorize") {
                        authorizations += 1;
                    }
                    self.client.get(current.clone()).send().await
                }
            }
            .map_err(|e| format!("{current}: {e}"))?;
            let status = resp.status().as_u16();
            if resp.status().is_redirection() {
                let loc = resp
                    .headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| format!("{current}: {status} without Location"))?;
                current = current
                    .join(loc)
                    .map_err(|e| format!("bad Location {loc}: {e}"))?;
                continue;
            }
            let final_url = resp.url().to_string();
            let body = resp.text().await.map_err(|e| format!("{current}: {e}"))?;
            if status == 200 && body.contains("name=\"tx\"") && body.contains("name=\"csrf\"") {
                prompts += 1;
                if prompts > 2 {
                    return Err(format!("login form shown {prompts} times: wrong password?"));
                }
                let action = attr(&body, "action=\"").ok_or("form without action")?;
                let form = vec![
                    ("tx".to_owned(), hidden(&body, "tx").ok_or("no tx")?),
                    ("csrf".to_owned(), hidden(&body, "csrf").ok_or("no csrf")?),
                    ("username".to_owned(), user.to_owned()),
                    ("password".to_owned(), password.to_owned()),
                ];
                let action = current.join(&action).map_err(|e| e.to_string())?;
                post = Some((action, form));
                continue;
            }
            return Ok(Visit {
                status,
                body,
                prompts,
                authorizations,
                url: final_url,
            });
        }
        Err(format!("more than {MAX_HOPS} redirects from {url}"))
    }
}

/// The value of hidden input `name` in an HTML form.
pub fn hidden(html: &str, name: &str) -> Option<String> {
    attr(html, &format!("name=\"{name}\" value=\""))
}

fn attr(html: &str, marker: &str) -> Option<String> {
    let start = html.find(marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].replace("&amp;", "&"))
}

/// Signs out of the gateway as a person would: opens the sign-out page at
/// `url` with `client` (which holds the session cookie) and submits its
/// form. Returns the form POST's response.
pub async fn sign_out(client: &reqwest::Client, url: &str) -> reqwest::Response {
    let page = client.get(url).send().await.expect("sign-out page");
    assert_eq!(page.status(), 200, "sign-out page");
    let page = page.text().await.expect("sign-out page body");
    let token = hidden(&page, "token").unwrap_or_else(|| panic!("no sign-out form in {page}"));
    client
        .post(url)
        .form(&[("token", token)])
        .send()
        .await
        .expect("sign-out POST")
}

/// Where a [`walk`] ended.
pub enum End {
    /// At a redirect target `at` chose.
    Redirect(url::Url),
    /// At a page without a form to fill.
    Page {
        /// Its URL.
        url: url::Url,
        /// Its status.
        status: u16,
        /// Its body.
        body: String,
    },
}

/// The value of `attr="…"` after the first occurrence of `marker`.
pub fn after(body: &str, marker: &str) -> Option<String> {
    let start = body.find(marker)? + marker.len();
    Some(body[start..].split('"').next()?.replace("&amp;", "&"))
}

/// Walks a browser `b` from `start`: follows redirects and fills the forms
/// on the way as `user` (password `{user}-password`): our provider's
/// sign-in form, panva's login form, panva's logout confirmation. `at` sees
/// every redirect target (and may rewrite it); when it answers true, the
/// walk ends there.
pub async fn walk(
    b: &Browser,
    start: &str,
    user: &str,
    mut at: impl FnMut(&mut url::Url) -> bool,
) -> Result<End, String> {
    let mut current = url::Url::parse(start).map_err(|e| e.to_string())?;
    let mut post: Option<(url::Url, Vec<(String, String)>)> = None;
    for _ in 0..20 {
        let resp = match post.take() {
            Some((action, form)) => b.client().post(action).form(&form).send().await,
            None => b.client().get(current.clone()).send().await,
        }
        .map_err(|e| format!("{current}: {e}"))?;
        let status = resp.status().as_u16();
        if resp.status().is_redirection() {
            let loc = resp.headers()["location"].to_str().unwrap().to_owned();
            let mut next = current.join(&loc).map_err(|e| e.to_string())?;
            if at(&mut next) {
                return Ok(End::Redirect(next));
            }
            current = next;
            continue;
        }
        let body = resp.text().await.unwrap_or_default();
        let password = format!("{user}-password");
        let fields: Option<Vec<(&str, String)>> =
            if body.contains("name=\"tx\"") && body.contains("name=\"csrf\"") {
                // Our own provider's form (it is the upstream when chained).
                Some(vec![
                    ("tx", hidden(&body, "tx").ok_or("no tx")?),
                    ("csrf", hidden(&body, "csrf").ok_or("no csrf")?),
                    ("username", user.to_owned()),
                    ("password", password),
                ])
            } else if body.contains("name=\"login\"") {
                Some(vec![("login", user.to_owned()), ("password", password)])
            } else if body.contains("name=\"xsrf\"") {
                // panva's "Do you want to sign-out?": yes.
                let xsrf = after(&body, "name=\"xsrf\" value=\"").ok_or("no xsrf")?;
                Some(vec![("xsrf", xsrf), ("logout", "yes".to_owned())])
            } else {
                None
            };
        let Some(fields) = fields else {
            return Ok(End::Page {
                url: current,
                status,
                body,
            });
        };
        let action = after(&body, "action=\"").ok_or("a form without action")?;
        let form = fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        post = Some((current.join(&action).map_err(|e| e.to_string())?, form));
    }
    Err(format!("more than 20 steps from {start}"))
}
