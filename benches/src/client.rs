//! The client side of every bench: one keep-alive HTTP/1.1 connection on
//! hyper ([`Conn`]), a small cookie jar ([`CookieJar`]), a browser that walks
//! the login flow with them ([`Browser`]), and an OIDC client that redeems
//! codes ([`OidcClient`]).
//!
//! Everything talks to one listener (`127.0.0.1:port`) and names the virtual
//! host in `Host`, the way the gateway and the provider share one port in
//! `config/orchestrator.yaml`. Redirects to another authority are an error,
//! not followed.

use std::net::SocketAddr;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use sha2::{Digest as _, Sha256};
use tokio::net::TcpStream;

use crate::Error;

/// Most redirects one navigation follows (the login flow needs four).
const MAX_REDIRECTS: usize = 10;

/// One HTTP/1.1 keep-alive connection.
#[derive(Debug)]
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
}

impl Conn {
    /// Connects (TCP_NODELAY, like every browser and load tool).
    pub async fn connect(addr: SocketAddr) -> Result<Self, Error> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            // Ends when the peer closes or the sender is dropped.
            let _ = conn.await;
        });
        Ok(Self { sender })
    }

    /// True once the connection is gone (the server closed it, e.g. after
    /// its keep-alive request limit): connect again before sending.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// Sends one request and returns the response with its body unread.
    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> Result<Response<Incoming>, Error> {
        self.sender.ready().await?;
        Ok(self.sender.send_request(req).await?)
    }

    /// Sends one request and reads the whole body.
    pub async fn fetch(&mut self, req: Request<Full<Bytes>>) -> Result<Fetched, Error> {
        let resp = self.send(req).await?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Fetched {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// Reads a response body to its end without keeping it; returns its length.
pub async fn drain(resp: Response<Incoming>) -> Result<usize, Error> {
    let mut body = resp.into_body();
    let mut n = 0;
    while let Some(frame) = body.frame().await {
        n += frame?.data_ref().map_or(0, Bytes::len);
    }
    Ok(n)
}

/// A response read to its end.
#[derive(Debug)]
pub struct Fetched {
    /// Status code.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Fetched {
    /// The `Location` header, if any.
    pub fn location(&self) -> Option<&str> {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
    }
}

/// A request with a `Host` header and no body.
pub fn get(host: &str, path_and_query: &str) -> Result<Request<Full<Bytes>>, Error> {
    Ok(Request::get(path_and_query)
        .header(header::HOST, host)
        .body(Full::default())?)
}

#[derive(Debug, Clone)]
struct Cookie {
    name: String,
    value: String,
    path: String,
}

/// Cookies by name and path, as a browser keeps them for one host.
/// (Expiry other than removal is ignored: bench runs are short.)
#[derive(Debug, Clone, Default)]
pub struct CookieJar {
    cookies: Vec<Cookie>,
}

impl CookieJar {
    /// Applies every `Set-Cookie` of a response.
    pub fn store(&mut self, headers: &HeaderMap) {
        for v in headers.get_all(header::SET_COOKIE) {
            let Ok(v) = v.to_str() else { continue };
            let mut attrs = v.split(';');
            let Some((name, value)) = attrs.next().and_then(|nv| nv.split_once('=')) else {
                continue;
            };
            let mut path = "/".to_owned();
            let mut removal = value.trim().is_empty();
            for attr in attrs {
                let (k, v) = attr.split_once('=').unwrap_or((attr, ""));
                match k.trim().to_ascii_lowercase().as_str() {
                    "path" => v.trim().clone_into(&mut path),
                    "max-age" => removal |= v.trim().starts_with('-') || v.trim() == "0",
                    _ => {}
                }
            }
            let name = name.trim();
            self.cookies.retain(|c| !(c.name == name && c.path == path));
            if !removal {
                self.cookies.push(Cookie {
                    name: name.to_owned(),
                    value: value.trim().to_owned(),
                    path,
                });
            }
        }
    }

    /// The `Cookie` header a browser would send to `path`.
    pub fn header_for(&self, path: &str) -> Option<String> {
        let sent: Vec<String> = self
            .cookies
            .iter()
            .filter(|c| {
                path.starts_with(&c.path)
                    && (c.path.ends_with('/')
                        || path.len() == c.path.len()
                        || path[c.path.len()..].starts_with(['/', '?']))
            })
            .map(|c| format!("{}={}", c.name, c.value))
            .collect();
        (!sent.is_empty()).then(|| sent.join("; "))
    }

    /// The value of the cookie `name` (any path).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.value.as_str())
    }

    /// Forgets the cookie `name` on every path.
    pub fn remove(&mut self, name: &str) {
        self.cookies.retain(|c| c.name != name);
    }
}

/// A browser on one connection to one listener: follows redirects, keeps cookies.
#[derive(Debug)]
pub struct Browser {
    conn: Conn,
    addr: SocketAddr,
    host: String,
    /// The browser's cookies.
    pub jar: CookieJar,
}

impl Browser {
    /// Connects to `addr`; every request names `host` (e.g. `localhost:8080`).
    pub async fn connect(addr: SocketAddr, host: &str) -> Result<Self, Error> {
        Ok(Self {
            conn: Conn::connect(addr).await?,
            addr,
            host: host.to_owned(),
            jar: CookieJar::default(),
        })
    }

    /// One request with the jar's cookies; stores what comes back.
    /// Reconnects once if the server closed the idle connection.
    async fn request(
        &mut self,
        method: Method,
        path: &str,
        form: Option<String>,
    ) -> Result<Fetched, Error> {
        let path_only = path.split('?').next().unwrap_or("/");
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.host);
        if let Some(c) = self.jar.header_for(path_only) {
            builder = builder.header(header::COOKIE, c);
        }
        let body = match form {
            Some(f) => {
                builder = builder.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                Full::new(Bytes::from(f))
            }
            None => Full::default(),
        };
        let req = builder.body(body)?;
        let fetched = match self.conn.fetch(req.clone()).await {
            Ok(f) => f,
            Err(_) => {
                self.conn = Conn::connect(self.addr).await?;
                self.conn.fetch(req).await?
            }
        };
        self.jar.store(&fetched.headers);
        Ok(fetched)
    }

    /// Sends `method path` and follows redirects (as GETs) to a final response.
    pub async fn navigate(
        &mut self,
        method: Method,
        path: &str,
        form: Option<String>,
    ) -> Result<Fetched, Error> {
        let mut resp = self.request(method, path, form).await?;
        for _ in 0..MAX_REDIRECTS {
            if !resp.status.is_redirection() {
                return Ok(resp);
            }
            let location = resp
                .location()
                .ok_or("redirect without Location")?
                .to_owned();
            let next = self.follow(&location).await?;
            resp = self.request(Method::GET, &next, None).await?;
        }
        Err(format!("more than {MAX_REDIRECTS} redirects from {path}").into())
    }

    /// The path and query of a redirect target; a target on another
    /// loopback port (`localhost:PORT`, `127.0.0.1:PORT`) moves the browser
    /// to that listener. The jar is shared across them: fine for benches,
    /// whose hosts are all one trust domain.
    async fn follow(&mut self, location: &str) -> Result<String, Error> {
        if location.starts_with('/') && !location.starts_with("//") {
            return Ok(location.to_owned());
        }
        let rest = location
            .strip_prefix("http://")
            .ok_or_else(|| format!("redirect to {location}: not http"))?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if !authority.eq_ignore_ascii_case(&self.host) {
            // `localhost`, its subdomains (RFC 6761) and 127.0.0.1 are loopback.
            let port = authority
                .rsplit_once(':')
                .filter(|(host, _)| {
                    let host = host.to_ascii_lowercase();
                    host == "localhost" || host.ends_with(".localhost") || host == "127.0.0.1"
                })
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .ok_or_else(|| format!("redirect to {location}: not a loopback listener"))?;
            self.addr = SocketAddr::from(([127, 0, 0, 1], port));
            self.conn = Conn::connect(self.addr).await?;
            authority.clone_into(&mut self.host);
        }
        Ok(if path.is_empty() { "/" } else { path }.to_owned())
    }

    /// Logs in through the real flow: visits `app_path`, is sent to the
    /// provider's login form, posts the credentials, comes back through the
    /// gateway's callback and ends on `app_path` with a session cookie.
    /// Returns the app's final response (an error unless it is 200).
    pub async fn login(
        &mut self,
        app_path: &str,
        username: &str,
        password: &str,
    ) -> Result<Fetched, Error> {
        let page = self.navigate(Method::GET, app_path, None).await?;
        let html = std::str::from_utf8(&page.body)?;
        if page.status != StatusCode::OK || !html.contains("name=\"password\"") {
            return Err(format!("expected the login form, got {}", page.status).into());
        }
        let action = attr_after(html, "<form", "action").ok_or("login form without action")?;
        // The serializer is not Send: finish it before the next await.
        let form = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            for hidden in ["tx", "csrf"] {
                let value = attr_after(html, &format!("name=\"{hidden}\""), "value")
                    .ok_or_else(|| format!("login form without {hidden}"))?;
                form.append_pair(hidden, &value);
            }
            form.append_pair("username", username);
            form.append_pair("password", password);
            form.finish()
        };
        let done = self.navigate(Method::POST, &action, Some(form)).await?;
        if done.status != StatusCode::OK {
            return Err(format!("login ended with {}", done.status).into());
        }
        Ok(done)
    }
}

/// The value of attribute `attr` in the first tag at or after `marker`,
/// HTML entities of the provider's escaper undone.
fn attr_after(html: &str, marker: &str, attr: &str) -> Option<String> {
    let start = html.find(marker)?;
    let tag_end = start + html[start..].find('>')?;
    let tag_start = html[..start].rfind('<').unwrap_or(start);
    let tag = &html[tag_start..tag_end];
    let needle = format!("{attr}=\"");
    let from = tag.find(&needle)? + needle.len();
    let len = tag[from..].find('"')?;
    Some(
        tag[from..from + len]
            .replace("&quot;", "\"")
            .replace("&#x27;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

/// A confidential OIDC client that redeems codes: authorize (with the
/// browser's SSO session, so no login form) then token.
#[derive(Debug, Clone)]
pub struct OidcClient {
    /// The issuer's path on the listener, e.g. `/idp`.
    pub issuer_path: String,
    /// The client id.
    pub client_id: String,
    /// A registered redirect URI (never visited).
    pub redirect_uri: String,
    authorization: HeaderValue,
    verifier: String,
    challenge: String,
}

impl OidcClient {
    /// A client authenticating with `client_secret_basic`.
    pub fn new(
        issuer_path: &str,
        client_id: &str,
        secret: &str,
        redirect_uri: &str,
    ) -> Result<Self, Error> {
        let basic = STANDARD.encode(format!("{client_id}:{secret}"));
        // One PKCE pair for every exchange: the bench measures the provider,
        // and reusing a verifier across codes is still a valid S256 flow.
        let verifier = URL_SAFE_NO_PAD.encode([7u8; 48]);
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        Ok(Self {
            issuer_path: issuer_path.trim_end_matches('/').to_owned(),
            client_id: client_id.to_owned(),
            redirect_uri: redirect_uri.to_owned(),
            authorization: HeaderValue::from_str(&format!("Basic {basic}"))?,
            verifier,
            challenge,
        })
    }

    /// The authorize request, carrying `cookie` (the SSO session).
    pub fn authorize_request(
        &self,
        host: &str,
        cookie: &str,
    ) -> Result<Request<Full<Bytes>>, Error> {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("scope", "openid profile email groups")
            .append_pair("state", "bench-state")
            .append_pair("nonce", "bench-nonce")
            .append_pair("code_challenge", &self.challenge)
            .append_pair("code_challenge_method", "S256")
            .finish();
        Ok(
            Request::get(format!("{}/authorize?{query}", self.issuer_path))
                .header(header::HOST, host)
                .header(header::COOKIE, cookie)
                .body(Full::default())?,
        )
    }

    /// The token request that redeems `code`.
    pub fn token_request(&self, host: &str, code: &str) -> Result<Request<Full<Bytes>>, Error> {
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", code)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("code_verifier", &self.verifier)
            .finish();
        Ok(Request::post(format!("{}/token", self.issuer_path))
            .header(header::HOST, host)
            .header(header::AUTHORIZATION, self.authorization.clone())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(form)))?)
    }

    /// One code exchange on `conn`: authorize → code → token. Returns the
    /// token response body (JSON with `id_token` and `access_token`).
    pub async fn exchange(
        &self,
        conn: &mut Conn,
        host: &str,
        cookie: &str,
    ) -> Result<Bytes, Error> {
        let auth = conn.fetch(self.authorize_request(host, cookie)?).await?;
        let location = auth
            .location()
            .ok_or_else(|| format!("authorize answered {} without a redirect", auth.status))?;
        let code = code_from(location).ok_or("authorize redirect without a code")?;
        let token = conn.fetch(self.token_request(host, &code)?).await?;
        if token.status != StatusCode::OK {
            return Err(format!("token endpoint answered {}", token.status).into());
        }
        Ok(token.body)
    }
}

/// The `code` parameter of a redirect URI.
pub fn code_from(location: &str) -> Option<String> {
    let query = location.split_once('?')?.1;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jar_scopes_cookies_by_path_and_honours_removal() {
        let mut h = HeaderMap::new();
        h.append(
            header::SET_COOKIE,
            HeaderValue::from_static("a=1; Path=/idp; HttpOnly"),
        );
        h.append(header::SET_COOKIE, HeaderValue::from_static("b=2; Path=/"));
        let mut jar = CookieJar::default();
        jar.store(&h);
        assert_eq!(
            jar.header_for("/idp/authorize").as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(jar.header_for("/idpx").as_deref(), Some("b=2"));
        let mut gone = HeaderMap::new();
        gone.append(
            header::SET_COOKIE,
            HeaderValue::from_static("b=; Path=/; Max-Age=0"),
        );
        jar.store(&gone);
        assert_eq!(jar.header_for("/"), None);
    }

    #[test]
    fn finds_hidden_fields_of_the_login_form() {
        let html = "<form method=\"post\" action=\"/idp/login\">\n\
                    <input type=\"hidden\" name=\"tx\" value=\"T&amp;1\">";
        assert_eq!(
            attr_after(html, "<form", "action").as_deref(),
            Some("/idp/login")
        );
        assert_eq!(
            attr_after(html, "name=\"tx\"", "value").as_deref(),
            Some("T&1")
        );
    }
}
