//! What the gateway asks the IdP about bearer tokens: its signing keys, and
//! token introspection (RFC 7662).

use super::*;

impl Idp {
    /// The IdP's signing keys; `refresh` rediscovers them (an unknown `kid`),
    /// at most once per `MIN_REFRESH_INTERVAL`.
    pub async fn jwks(&self, refresh: bool) -> Result<Arc<Vec<Jwk>>, RpError> {
        Ok(self.client(refresh).await?.jwks.clone())
    }

    /// Asks the IdP's introspection endpoint about `token` (RFC 7662),
    /// authenticated as the gateway's client (HTTP Basic, RFC 6749 §2.3.1).
    /// The answer as sent; the caller decides what it admits.
    #[tracing::instrument(target = "otel", level = "trace", name = "oidc.introspect", skip_all, fields(otel.kind = "client", orchestrator.idp = %self.name))]
    pub async fn introspect(&self, token: &str) -> Result<Map<String, Value>, RpError> {
        let Ok(_permit) = self.introspections.try_acquire() else {
            tracing::warn!(idp = %self.name, "introspection: too many calls in flight");
            return Err(self.unavailable());
        };
        let d = self.client(false).await?;
        let endpoint = d.introspection.clone().ok_or(RpError::InvalidToken(
            "the identity provider has no introspection endpoint",
        ))?;
        let enc = |v: &str| -> String { form_urlencoded::byte_serialize(v.as_bytes()).collect() };
        let mut request = self
            .http
            .post(endpoint)
            .headers(trace_headers())
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&[("token", token), ("token_type_hint", "access_token")]);
        if let Some(secret) = &self.client_secret {
            request = request.basic_auth(enc(self.client_id.as_str()), Some(enc(secret.secret())));
        }
        let call = Call::start(&self.name, "introspection");
        let response = request.send().await;
        call.done(
            response
                .as_ref()
                .is_ok_and(|r| !r.status().is_server_error()),
        );
        let response = response.map_err(|e| {
            tracing::warn!(idp = %self.name, error = %e, "introspection unreachable");
            self.unavailable()
        })?;
        if !response.status().is_success() {
            tracing::warn!(idp = %self.name, status = %response.status(), "introspection refused");
            return Err(if response.status().is_server_error() {
                self.unavailable()
            } else {
                RpError::InvalidToken("introspection refused")
            });
        }
        response
            .json::<Map<String, Value>>()
            .await
            .map_err(|_| RpError::InvalidToken("unreadable introspection answer"))
    }
}
