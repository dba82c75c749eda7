//! Renewing a login with its refresh token (OpenID Connect Core §12).

use super::*;
use crate::exchange::payload_claims;

impl Idp {
    /// Renews a login with its refresh token (OpenID Connect Core §12):
    /// a new ID token is verified like the login's and must name the same
    /// user as `id_token` (the session's); userinfo is read again.
    /// [`RpError::Refused`] when the IdP said no (the grant is gone: user
    /// removed, session ended, token revoked); [`RpError::IdpUnavailable`]
    /// when it could not be asked.
    #[tracing::instrument(target = "otel", level = "trace", name = "oidc.refresh", skip_all, fields(otel.kind = "client", orchestrator.idp = %self.name))]
    pub async fn refresh(&self, refresh_token: &str, id_token: &str) -> Result<Refreshed, RpError> {
        let refused =
            |what: String| RpError::Refused(format!("{what} (identity provider {})", self.name));
        let d = self.client(false).await?;
        let before = payload_claims(id_token).unwrap_or_default();
        let text = |c: &str| before.get(c).and_then(Value::as_str).map(str::to_owned);
        let (sub, nonce) = (text("sub").unwrap_or_default(), text("nonce"));
        let refresh = openidconnect::RefreshToken::new(refresh_token.to_owned());
        let request = d
            .client
            .exchange_refresh_token(&refresh)
            .map_err(|_| refused("no token endpoint".into()))?;
        let call = Call::start(&self.name, "token");
        let token = request.request_async(&self.traced()).await;
        // A refusal is an answer, not an error of the IdP's.
        call.done(matches!(
            &token,
            Ok(_) | Err(openidconnect::RequestTokenError::ServerResponse(_))
        ));
        let token = token.map_err(|e| match e {
            // Only `invalid_grant` says the grant is gone (RFC 6749
            // §5.2); any other answer (`invalid_client` after a secret
            // rotation, `server_error`…) is the IdP's or our config's
            // trouble, and must not sign everybody out.
            openidconnect::RequestTokenError::ServerResponse(r)
                if r.error().as_ref() == "invalid_grant" =>
            {
                tracing::info!(idp = %self.name, "refresh refused: invalid_grant");
                refused("refresh refused: invalid_grant".into())
            }
            other => {
                tracing::warn!(idp = %self.name, error = %other, "refresh failed");
                self.unavailable()
            }
        })?;
        // The refresh token is spent from here on: what follows must not
        // fail for a reason that passes (the caller would retry with a
        // spent token), so keys are rediscovered once before refusing.
        let mut claims = before.clone();
        let new_id_token = match token.id_token() {
            None => None,
            Some(new) => {
                let verify = |d: &Discovered| {
                    // §12.2: no nonce, or the original one.
                    let expected = nonce.clone();
                    let nonce_check = move |n: Option<&Nonce>| match (n, &expected) {
                        (None, _) => Ok(()),
                        (Some(n), Some(e)) if n.secret() == e => Ok(()),
                        _ => Err("nonce differs from the login's".to_owned()),
                    };
                    new.claims(&d.id_token_verifier(), nonce_check)
                        .map(|c| c.subject().to_string())
                };
                let verified = match verify(&d) {
                    Ok(s) => s,
                    // The token is spent: no rediscovery means no identity.
                    Err(_) => match verify(&*self.client(true).await.map_err(|_| {
                        refused("refreshed ID token: the keys could not be fetched".into())
                    })?) {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::info!(idp = %self.name, error = %e, "refreshed ID token rejected");
                            return Err(refused("refreshed ID token rejected".into()));
                        }
                    },
                };
                let raw = new.to_string();
                let fresh = payload_claims(&raw).unwrap_or_default();
                // §12.2: the same user, audience and authorized party.
                let same = |c: &str| fresh.get(c) == before.get(c);
                if verified != sub || !same("aud") || !same("azp") {
                    return Err(refused(
                        "refreshed ID token is not for the same user and client".into(),
                    ));
                }
                claims = fresh;
                Some(raw)
            }
        };
        let extra = match self
            .userinfo(&d, token.access_token().secret(), &sub, &claims)
            .await
        {
            Ok(extra) => extra,
            // Userinfo about someone else: not this user's identity.
            Err(_) => return Err(refused("userinfo names another user".into())),
        };
        Ok(Refreshed {
            id_token: new_id_token,
            extra,
            refresh_token: token.refresh_token().map(|t| t.secret().clone()),
            expires_in: token.expires_in(),
        })
    }
}
