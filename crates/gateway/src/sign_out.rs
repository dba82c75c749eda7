//! Signing out: a GET shows the confirmation, its POST ends the session and
//! continues at the IdP's end-session endpoint.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use subtle::ConstantTimeEq as _;

use crate::cookies::{removal, set_cookie};
use crate::error::GatewayError;
use crate::headers::{ClientView, cookie_value};
use crate::lookups::current_session;
use crate::rescue::{self, redirect};
use crate::session::SessionId;
use crate::{Gateway, Runtime};
use orchestrator_http::body::BoxBody;

/// Largest sign-out form read (it holds one token).
const MAX_LOGOUT_FORM: usize = 4096;

/// Sign-out. A GET only shows a confirmation form, so a link or an image on
/// another site cannot end a session; the form's POST carries a token that
/// only the session's own pages know ([`SessionId::logout_token`]), ends
/// the session and continues to the IdP's end-session endpoint.
pub(crate) async fn logout<B>(
    gw: &Gateway,
    rt: &Runtime,
    req: Request<B>,
    view: &ClientView,
) -> Result<Response<BoxBody>, GatewayError>
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let https = view.proto == "https";
    let session_cookie = rt.cookies.session(https, &view.route_host);
    let name = session_cookie.name;
    let id = cookie_value(req.headers(), name).and_then(|v| SessionId::parse(&v));
    let method = req.method().clone();
    if method == Method::GET || method == Method::HEAD {
        return Ok(match id {
            Some(id)
                if current_session(gw, rt, req.headers(), https, &view.route_host)
                    .await?
                    .is_some() =>
            {
                rescue::confirm_sign_out(&gw.pages, &rt.logout_path, &id.logout_token())
            }
            _ => rescue::signed_out(&gw.pages, "You are not signed in.", Some("/")),
        });
    }
    if method != Method::POST {
        let mut resp = rescue::method_not_allowed(&gw.pages);
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, POST"));
        return Ok(resp);
    }
    let Some(id) = id else {
        return Ok(rescue::signed_out(
            &gw.pages,
            "You are not signed in.",
            Some("/"),
        ));
    };
    let form = read_form(req.into_body()).await?;
    let token = form
        .iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    if !bool::from(token.as_bytes().ct_eq(id.logout_token().as_bytes())) {
        return Err(GatewayError::LogoutUnconfirmed);
    }
    let session = gw.sessions.get(&id).await?;
    gw.sessions.remove(&id, "logout").await?;
    let mut target = None;
    if let Some(s) = &session {
        if let Some(idp) = rt
            .idps
            .get(&*s.idp)
            .filter(|_| rt.logout_at_idp.contains(&*s.idp))
        {
            let back = format!("{}://{}/", view.proto, view.host);
            target = idp.logout_url(&s.id_token(), &back).await;
        }
    }
    let mut resp = match target {
        Some(url) => redirect(StatusCode::SEE_OTHER, url.as_str())?,
        None => rescue::signed_out(&gw.pages, "You have been signed out.", Some("/")),
    };
    set_cookie(&mut resp, &removal(name, session_cookie.domain, https));
    Ok(resp)
}

/// A small `application/x-www-form-urlencoded` body, read within
/// [`MAX_LOGOUT_FORM`] bytes.
async fn read_form<B>(body: B) -> Result<Vec<(String, String)>, GatewayError>
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let bytes = http_body_util::Limited::new(body, MAX_LOGOUT_FORM)
        .collect()
        .await
        .map_err(|_| GatewayError::BadRequest("sign-out form too large or unreadable"))?
        .to_bytes();
    Ok(form_urlencoded::parse(&bytes).into_owned().collect())
}
