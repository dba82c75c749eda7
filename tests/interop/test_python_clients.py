"""The provider driven by well-known Python client libraries it does not contain:
Authlib's OAuth2Session (code + PKCE, refresh, client credentials, revocation,
introspection) and PyJWT (ID and access token verification from the published JWKS)."""

import re
from urllib.parse import parse_qs, urljoin, urlparse

import jwt
import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session


def discover(issuer):
    doc = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=5).json()
    assert doc["issuer"] == issuer
    return doc


def login_and_get_code(provider, session: OAuth2Session, doc, browser: requests.Session, **extra):
    """What a browser does: authorize → login form → redirect with code."""
    url, state = session.create_authorization_url(doc["authorization_endpoint"], **extra)
    resp = browser.get(url, allow_redirects=False, timeout=5)
    assert resp.status_code == 200, resp.text
    form_action = re.search(r'<form method="post" action="([^"]+)"', resp.text).group(1)
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', resp.text))
    fields.update(username="carol", password=provider["password"])
    resp = browser.post(urljoin(url, form_action), data=fields, allow_redirects=False, timeout=10)
    # The login answers with a redirect back to the client (possibly via authorize again).
    for _ in range(5):
        assert resp.status_code in (302, 303), resp.text
        location = resp.headers["location"]
        if location.startswith(provider["redirect_uri"]):
            break
        resp = browser.get(urljoin(url, location), allow_redirects=False, timeout=5)
    query = parse_qs(urlparse(location).query)
    assert query["state"] == [state]
    return location


def verify(token, doc, audience, nonce=None):
    jwks = jwt.PyJWKClient(doc["jwks_uri"])
    key = jwks.get_signing_key_from_jwt(token)
    claims = jwt.decode(
        token,
        key.key,
        algorithms=doc["id_token_signing_alg_values_supported"],
        audience=audience,
        issuer=doc["issuer"],
        options={"require": ["exp", "iat", "iss", "sub"]},
    )
    if nonce is not None:
        assert claims["nonce"] == nonce
    return claims


def test_discovery_is_complete(provider):
    doc = discover(provider["issuer"])
    for key in (
        "authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri",
        "introspection_endpoint", "revocation_endpoint", "end_session_endpoint",
        "response_types_supported", "subject_types_supported", "id_token_signing_alg_values_supported",
        "code_challenge_methods_supported", "token_endpoint_auth_methods_supported",
    ):
        assert key in doc, key
    assert doc["response_types_supported"] == ["code"]
    assert doc["code_challenge_methods_supported"] == ["S256"]
    keys = requests.get(doc["jwks_uri"], timeout=5).json()["keys"]
    assert {k["kid"] for k in keys} == {"es-1", "rs-old"}, "every configured key is published"
    assert all(k["use"] == "sig" and "alg" in k and "d" not in k for k in keys), "public parts only"


@pytest.mark.parametrize("auth_method", ["client_secret_basic", "client_secret_post"])
def test_confidential_client_code_flow_with_authlib(provider, auth_method):
    doc = discover(provider["issuer"])
    verifier = generate_token(48)
    nonce = generate_token(16)
    client = OAuth2Session(
        "confidential", provider["client_secret"], scope="openid profile email groups",
        redirect_uri=provider["redirect_uri"], code_challenge_method="S256",
        token_endpoint_auth_method=auth_method,
    )
    browser = requests.Session()
    callback = login_and_get_code(provider, client, doc, browser, code_verifier=verifier, nonce=nonce)
    token = client.fetch_token(doc["token_endpoint"], authorization_response=callback, code_verifier=verifier)
    assert token["token_type"].lower() == "bearer"

    claims = verify(token["id_token"], doc, "confidential", nonce=nonce)
    assert claims["sub"] and claims["email"] == "carol@example.com"
    header = jwt.get_unverified_header(token["access_token"])
    assert header["typ"].lower() == "at+jwt", "RFC 9068 access token"

    info = client.get(doc["userinfo_endpoint"], timeout=5).json()
    assert info["sub"] == claims["sub"] and info["groups"] == ["ops"]

    # Refresh rotates; the spent refresh token no longer works.
    old_refresh = token["refresh_token"]
    new = client.refresh_token(doc["token_endpoint"], refresh_token=old_refresh)
    assert new["refresh_token"] != old_refresh
    # Introspection and revocation (RFC 7662 / RFC 7009).
    intro = requests.post(doc["introspection_endpoint"], data={"token": new["access_token"]},
                          auth=("confidential", provider["client_secret"]), timeout=5).json()
    assert intro["active"] is True and intro["sub"] == claims["sub"]
    client.revoke_token(doc["revocation_endpoint"], token=new["refresh_token"], token_type_hint="refresh_token")
    intro = requests.post(doc["introspection_endpoint"], data={"token": new["refresh_token"]},
                          auth=("confidential", provider["client_secret"]), timeout=5).json()
    assert intro == {"active": False}

    # Reuse of the spent refresh token fails and (RFC 9700 §4.14) revokes the whole family,
    # the access token issued with the rotation included.
    again = requests.post(
        doc["token_endpoint"], data={"grant_type": "refresh_token", "refresh_token": old_refresh},
        auth=("confidential", provider["client_secret"]), timeout=5,
    )
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    intro = requests.post(doc["introspection_endpoint"], data={"token": new["access_token"]},
                          auth=("confidential", provider["client_secret"]), timeout=5).json()
    assert intro == {"active": False}


def test_public_client_requires_pkce_and_works_with_it(provider):
    doc = discover(provider["issuer"])
    client = OAuth2Session("public-spa", scope="openid", redirect_uri=provider["redirect_uri"],
                           code_challenge_method="S256", token_endpoint_auth_method="none")
    browser = requests.Session()
    # Without PKCE the provider sends the error back to the (registered) redirect URI.
    url, _ = OAuth2Session("public-spa", scope="openid", redirect_uri=provider["redirect_uri"]) \
        .create_authorization_url(doc["authorization_endpoint"])
    resp = browser.get(url, allow_redirects=False, timeout=5)
    assert resp.status_code in (302, 303)
    assert parse_qs(urlparse(resp.headers["location"]).query)["error"] == ["invalid_request"]

    verifier = generate_token(48)
    callback = login_and_get_code(provider, client, doc, browser, code_verifier=verifier)
    token = client.fetch_token(doc["token_endpoint"], authorization_response=callback, code_verifier=verifier)
    verify(token["id_token"], doc, "public-spa")


def test_client_credentials_with_authlib(provider):
    doc = discover(provider["issuer"])
    client = OAuth2Session("confidential", provider["client_secret"])
    token = client.fetch_token(doc["token_endpoint"], grant_type="client_credentials")
    claims = jwt.decode(token["access_token"], options={"verify_signature": False})
    assert claims["client_id"] == "confidential"
    assert "refresh_token" not in token


def test_sso_session_skips_the_password_and_logout_ends_it(provider):
    doc = discover(provider["issuer"])
    browser = requests.Session()
    client = OAuth2Session("confidential", provider["client_secret"], scope="openid",
                           redirect_uri=provider["redirect_uri"], code_challenge_method="S256")
    verifier = generate_token(48)
    callback = login_and_get_code(provider, client, doc, browser, code_verifier=verifier)
    token = client.fetch_token(doc["token_endpoint"], authorization_response=callback, code_verifier=verifier)

    # Second authorization in the same browser: straight back with a code, no form.
    url, _ = client.create_authorization_url(doc["authorization_endpoint"], code_verifier=generate_token(48))
    resp = browser.get(url, allow_redirects=False, timeout=5)
    assert resp.status_code in (302, 303) and resp.headers["location"].startswith(provider["redirect_uri"])

    # RP-initiated logout ends the SSO session: the next authorization shows the form again.
    resp = browser.get(doc["end_session_endpoint"], params={
        "id_token_hint": token["id_token"], "post_logout_redirect_uri": "http://127.0.0.1:1/bye", "state": "s1",
    }, allow_redirects=False, timeout=5)
    assert resp.status_code in (302, 303)
    assert resp.headers["location"].startswith("http://127.0.0.1:1/bye") and "state=s1" in resp.headers["location"]
    url, _ = client.create_authorization_url(doc["authorization_endpoint"], code_verifier=generate_token(48))
    resp = browser.get(url, allow_redirects=False, timeout=5)
    assert resp.status_code == 200 and 'name="password"' in resp.text
