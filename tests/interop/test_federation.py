"""Identity orchestration driven by Authlib: code + PKCE through our provider into an upstream
IdP (panva's oidc-provider) and back; the ID token (verified with PyJWT) has our issuer, a sub
derived from the upstream identity and the mapped claims."""

import re
from urllib.parse import parse_qs, urljoin, urlparse

import jwt
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session


def login_at_upstream(federated, url: str, user: str) -> str:
    """A browser: our authorize → the upstream's login form → back to the client with a code."""
    browser = requests.Session()
    for _ in range(12):
        resp = browser.get(url, allow_redirects=False, timeout=10)
        if resp.status_code in (302, 303):
            url = urljoin(url, resp.headers["location"])
            if url.startswith(federated["redirect_uri"]):
                return url
            continue
        assert resp.status_code == 200, resp.text
        action = re.search(r'action="([^"]+)"', resp.text).group(1)
        resp = browser.post(
            urljoin(url, action), data={"login": user, "password": f"{user}-password"}, allow_redirects=False, timeout=10
        )
        assert resp.status_code in (302, 303), resp.text
        url = urljoin(url, resp.headers["location"])
    raise AssertionError("too many redirects")


def code_flow(federated, user: str) -> dict:
    doc = requests.get(f"{federated['issuer']}/.well-known/openid-configuration", timeout=5).json()
    verifier, nonce = generate_token(48), generate_token(16)
    client = OAuth2Session(
        "app", "app-secret", scope="openid profile email groups",
        redirect_uri=federated["redirect_uri"], code_challenge_method="S256",
    )
    url, state = client.create_authorization_url(doc["authorization_endpoint"], code_verifier=verifier, nonce=nonce)
    back = login_at_upstream(federated, url, user)
    assert parse_qs(urlparse(back).query)["state"] == [state]
    token = client.fetch_token(doc["token_endpoint"], authorization_response=back, code_verifier=verifier)
    jwks = jwt.PyJWKClient(doc["jwks_uri"])
    key = jwks.get_signing_key_from_jwt(token["id_token"])
    claims = jwt.decode(
        token["id_token"], key.key, algorithms=doc["id_token_signing_alg_values_supported"],
        audience="app", issuer=federated["issuer"], options={"require": ["exp", "iat", "iss", "sub"]},
    )
    assert claims["nonce"] == nonce
    userinfo = requests.get(
        doc["userinfo_endpoint"], headers={"Authorization": f"Bearer {token['access_token']}"}, timeout=5
    ).json()
    return {"id": claims, "userinfo": userinfo}


def test_authlib_code_flow_through_an_upstream(federated):
    alice = code_flow(federated, "alice")
    claims = alice["id"]
    assert claims["iss"] == federated["issuer"], "our issuer, not the upstream's"
    assert claims["sub"].startswith("corp.") and claims["sub"] != "alice"
    assert claims["email"] == "alice@example.com" and claims["email_verified"] is True
    # groups: only eng*, prefixed ("admins" is filtered out).
    assert claims["groups"] == ["corp:engineering"]
    assert claims["idp"] == "corp"
    assert alice["userinfo"]["sub"] == claims["sub"]
    assert alice["userinfo"]["groups"] == ["corp:engineering"]
    # The same upstream user is the same user again; another one is not.
    assert code_flow(federated, "alice")["id"]["sub"] == claims["sub"]
    bob = code_flow(federated, "bob")["id"]
    assert bob["sub"] != claims["sub"]
    assert bob["email_verified"] is False
    assert "groups" not in bob, "sales is filtered out"
