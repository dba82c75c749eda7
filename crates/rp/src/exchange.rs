//! A login at the IdP: the authorization request (code + PKCE S256 + state
//! + nonce), the code exchange with ID token verification, and userinfo.

use super::*;

/// The payload of a compact JWS as a JSON object (no verification).
pub(crate) fn payload_claims(jwt: &str) -> Option<Map<String, Value>> {
    let p = jwt.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(p).ok()?;
    serde_json::from_slice::<Map<String, Value>>(&bytes).ok()
}

impl LoginResult {
    /// Every claim: the verified ID token's payload, and userinfo's
    /// claims that it lacks.
    pub fn claims(&self) -> Map<String, Value> {
        let mut claims = payload_claims(&self.id_token).unwrap_or_default();
        for (k, v) in &self.extra {
            claims.entry(k.clone()).or_insert_with(|| v.clone());
        }
        claims
    }
}

impl Idp {
    /// Starts a login: the authorization URL with PKCE S256, state and nonce;
    /// with `force_login`, `prompt=login` (the IdP asks for credentials even
    /// when its own session is alive).
    pub async fn start(
        &self,
        redirect_uri: &str,
        force_login: bool,
    ) -> Result<AuthorizationStart, RpError> {
        let d = self.client(false).await?;
        let redirect = RedirectUrl::new(redirect_uri.to_owned())
            .map_err(|_| RpError::BadRequest("cannot build the callback URL for this host"))?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = d
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scopes(self.scopes.iter().cloned())
            .set_pkce_challenge(challenge)
            .set_redirect_uri(Cow::Owned(redirect));
        if force_login {
            request = request.add_prompt(CoreAuthPrompt::Login);
        }
        let (url, state, nonce) = request.url();
        Ok(AuthorizationStart {
            url,
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        })
    }

    /// Starts a login with the caller's own `state`, `nonce` and PKCE
    /// verifier (43 to 128 unreserved characters): for a caller that seals
    /// them into the state instead of storing them (nothing is written for
    /// an unauthenticated request).
    pub async fn start_with(
        &self,
        redirect_uri: &str,
        force_login: bool,
        state: String,
        nonce: String,
        pkce_verifier: &str,
    ) -> Result<url::Url, RpError> {
        let d = self.client(false).await?;
        let redirect = RedirectUrl::new(redirect_uri.to_owned())
            .map_err(|_| RpError::BadRequest("cannot build the callback URL"))?;
        let challenge = PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(
            pkce_verifier.to_owned(),
        ));
        let mut request = d
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state),
                move || Nonce::new(nonce),
            )
            .add_scopes(self.scopes.iter().cloned())
            .set_pkce_challenge(challenge)
            .set_redirect_uri(Cow::Owned(redirect));
        if force_login {
            request = request.add_prompt(CoreAuthPrompt::Login);
        }
        Ok(request.url().0)
    }

    /// Redeems the code and verifies the ID token (signature, `iss`, `aud`,
    /// `exp`, `nonce`); merges userinfo claims when the IdP has the endpoint.
    #[tracing::instrument(target = "otel", level = "trace", name = "oidc.code_exchange", skip_all, fields(otel.kind = "client", orchestrator.idp = %self.name))]
    pub async fn finish(
        &self,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
        redirect_uri: &str,
    ) -> Result<LoginResult, RpError> {
        let failed =
            |what: &str| RpError::LoginFailed(format!("{what} (identity provider {})", self.name));
        let d = self.client(false).await?;
        let redirect =
            RedirectUrl::new(redirect_uri.to_owned()).map_err(|_| failed("bad redirect URI"))?;
        let call = Call::start(&self.name, "token");
        let token = d
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|_| failed("no token endpoint"))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .set_redirect_uri(Cow::Owned(redirect))
            .request_async(&self.traced())
            .await;
        call.done(token.is_ok());
        let token = token.map_err(|e| {
            // Display, not Debug: a parse error's Debug holds the response body.
            tracing::info!(idp = %self.name, error = %e, "code exchange failed");
            failed("code exchange failed")
        })?;
        let id_token = token.id_token().ok_or_else(|| failed("no ID token"))?;
        let nonce = Nonce::new(nonce.to_owned());
        let verified = match id_token.claims(&d.id_token_verifier(), &nonce) {
            Ok(c) => c.subject().to_string(),
            Err(first) => {
                // Perhaps the IdP rotated its keys: refresh once and retry.
                let d2 = self.client(true).await?;
                match id_token.claims(&d2.id_token_verifier(), &nonce) {
                    Ok(c) => c.subject().to_string(),
                    Err(_) => {
                        tracing::info!(idp = %self.name, error = %first, "ID token rejected");
                        return Err(failed("ID token rejected"));
                    }
                }
            }
        };
        let raw = id_token.to_string();
        // The signature over exactly these bytes was verified above; read
        // every claim (groups, custom ones) from the payload.
        let claims = payload_claims(&raw).ok_or_else(|| failed("unreadable ID token"))?;
        let extra = self
            .userinfo(&d, token.access_token().secret(), &verified, &claims)
            .await?
            .unwrap_or_default();
        Ok(LoginResult {
            id_token: raw,
            extra,
            refresh_token: token.refresh_token().map(|t| t.secret().clone()),
        })
    }

    /// Userinfo's claims that `claims` lack, read with `access_token`;
    /// `None` when the IdP has no userinfo endpoint or it did not answer.
    pub(crate) async fn userinfo(
        &self,
        d: &Discovered,
        access_token: &str,
        sub: &str,
        claims: &Map<String, Value>,
    ) -> Result<Option<Map<String, Value>>, RpError> {
        let Some(userinfo) = d.client.user_info_url() else {
            return Ok(None);
        };
        let call = Call::start(&self.name, "userinfo");
        let response = self
            .http
            .get(userinfo.url().clone())
            .headers(trace_headers())
            .bearer_auth(access_token)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await;
        call.done(response.as_ref().is_ok_and(|r| r.status().is_success()));
        match response {
            Ok(r) if r.status().is_success() => match r.json::<Map<String, Value>>().await {
                Ok(info) => {
                    // OIDC Core 5.3.4: a userinfo `sub` that differs is not this user.
                    if info.get("sub").and_then(Value::as_str) != Some(sub) {
                        return Err(RpError::LoginFailed(format!(
                            "userinfo subject mismatch (identity provider {})",
                            self.name
                        )));
                    }
                    Ok(Some(
                        info.into_iter()
                            .filter(|(k, _)| !claims.contains_key(k))
                            .collect(),
                    ))
                }
                // Signed/encrypted userinfo is not supported; the ID token suffices.
                Err(e) => {
                    tracing::info!(idp = %self.name, error = %e, "userinfo unreadable");
                    Ok(None)
                }
            },
            Ok(r) => {
                tracing::info!(idp = %self.name, status = %r.status(), "userinfo refused");
                Ok(None)
            }
            Err(e) => {
                tracing::info!(idp = %self.name, error = %e, "userinfo unreachable");
                Ok(None)
            }
        }
    }
}
