"""Bearer JWTs checked against a JWKS (app/security/tokens.py): forged, expired and foreign
tokens are refused, the trusted ones give their scopes; keys rotate through file and URL."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from app.config import Settings
from app.security import tokens
from app.security.devkeys import DEV_AUDIENCE, DEV_ISSUER, mint
from app.security.setup import build_verifier
from app.security.tokens import (
    ConfigurationError,
    JwksFile,
    JwksUrl,
    TokenError,
    TokenVerifier,
    parse_jwks,
)
from tests.security.keys import (
    AUDIENCE,
    ISSUER,
    ec_key,
    forged_tokens,
    public_jwk,
    rsa_key,
    token,
    trusted_jwks,
    write_jwks,
)


@pytest.fixture
def verifier(tmp_path: Path) -> TokenVerifier:
    return TokenVerifier(JwksFile(trusted_jwks(tmp_path / "jwks.json")), ISSUER, AUDIENCE)


def test_a_trusted_token_gives_its_scopes_and_identity(verifier: TokenVerifier) -> None:
    access = verifier.verify(token("user/Observation.rs openid", patient="p1"))
    assert access.scopes == ("user/Observation.rs", "openid")
    assert access.allows("Observation", "s")
    assert not access.allows("Observation", "c")
    assert (access.subject, access.client_id, access.patient) == ("nurse-7", "infusion-app", "p1")
    ec_access = verifier.verify(token("system/*.*", key=ec_key(), kid="ec-1"))
    assert ec_access.allows("Patient", "d")


def test_scope_as_a_list_and_azp(verifier: TokenVerifier) -> None:
    access = verifier.verify(token(None, scp=["user/*.rs"], client_id=None, azp="spa"))  # type: ignore[arg-type]
    assert access.allows("Condition", "r")
    assert access.client_id == "spa"


@pytest.mark.parametrize("case", sorted(forged_tokens()))
def test_forged_tokens_are_refused(verifier: TokenVerifier, case: str) -> None:
    with pytest.raises(TokenError):
        verifier.verify(forged_tokens()[case])


def test_refusals_say_why(verifier: TokenVerifier) -> None:
    forged = forged_tokens()
    reasons = {
        "expired": "expired",
        "wrong audience": "aud",
        "wrong issuer": "iss",
        "alg none": "'none'",
        "HS256 keyed with the public key": "HS256",
        "unknown kid": "rsa-9",
        "no expiry": "exp",
    }
    for case, reason in reasons.items():
        with pytest.raises(TokenError, match=reason):
            verifier.verify(forged[case])


def test_a_file_jwks_is_read_again_when_it_changes(tmp_path: Path) -> None:
    path = write_jwks(tmp_path / "jwks.json", public_jwk(rsa_key(), "rsa-1"))
    verifier = TokenVerifier(JwksFile(path), ISSUER, AUDIENCE)
    rotated = token(key=ec_key(), kid="ec-1")
    with pytest.raises(TokenError):
        verifier.verify(rotated)
    write_jwks(path, public_jwk(rsa_key(), "rsa-1"), public_jwk(ec_key(), "ec-1"))
    os.utime(path, (time.time() + 5, time.time() + 5))  # a new mtime even on coarse clocks
    assert verifier.verify(rotated).allows("Patient", "r")


def test_jwks_keeps_only_public_signature_keys() -> None:
    keys = parse_jwks(
        {
            "keys": [
                {"kty": "oct", "k": "c2VjcmV0", "kid": "shared"},
                {**public_jwk(rsa_key(), "enc"), "use": "enc"},
                public_jwk(ec_key(), "ec-1"),
            ]
        },
        "test",
    )
    assert [k.kid for k in keys] == ["ec-1"]
    with pytest.raises(ConfigurationError):
        parse_jwks({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}, "test")
    with pytest.raises(ConfigurationError):
        parse_jwks(["not", "a", "jwks"], "test")


class _JwksServer(BaseHTTPRequestHandler):
    jwks: dict[str, object] = {}
    hits = 0

    def do_GET(self) -> None:
        type(self).hits += 1
        body = json.dumps(type(self).jwks).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def jwks_server() -> Iterator[tuple[str, type[_JwksServer]]]:
    handler = type("Handler", (_JwksServer,), {"jwks": {}, "hits": 0})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/jwks", handler
    finally:
        server.shutdown()
        server.server_close()


def test_a_url_jwks_is_cached_and_refetched_for_a_new_kid_at_most_so_often(
    jwks_server: tuple[str, type[_JwksServer]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, handler = jwks_server
    handler.jwks = {"keys": [public_jwk(rsa_key(), "rsa-1")]}
    verifier = TokenVerifier(JwksUrl(url), ISSUER, AUDIENCE)
    for _ in range(3):
        verifier.verify(token())
    assert handler.hits == 1  # cached
    handler.jwks = {"keys": [public_jwk(rsa_key(), "rsa-1"), public_jwk(ec_key(), "ec-1")]}
    rotated = token(key=ec_key(), kid="ec-1")
    with pytest.raises(TokenError):  # too soon after the last fetch to fetch again
        verifier.verify(rotated)
    assert handler.hits == 1
    monkeypatch.setattr(tokens, "REFRESH_MIN_SECONDS", 0.0)
    assert verifier.verify(rotated).allows("Observation", "r")
    assert handler.hits == 2
    for kid in ("made-up-1", "made-up-2"):
        with pytest.raises(TokenError):
            verifier.verify(token(kid=kid))
    monkeypatch.setattr(tokens, "REFRESH_MIN_SECONDS", 3600.0)
    with pytest.raises(TokenError):
        verifier.verify(token(kid="made-up-3"))
    assert handler.hits == 4  # one fetch per unknown kid while allowed, none after


def test_only_https_or_loopback_jwks_urls() -> None:
    with pytest.raises(ConfigurationError, match="https"):
        JwksUrl("http://auth.example.org/jwks")
    JwksUrl("https://auth.example.org/jwks")


def test_settings_build_the_verifier(tmp_path: Path) -> None:
    assert build_verifier(Settings()) is None
    with pytest.raises(ConfigurationError, match="ISSUER"):
        build_verifier(Settings(FHIR_AUTH_JWKS=str(trusted_jwks(tmp_path / "j.json"))))
    with pytest.raises(ConfigurationError, match="exclusive"):
        build_verifier(Settings(FHIR_AUTH_JWKS="https://a/jwks", FHIR_AUTH_DEV=True))
    with pytest.raises(ConfigurationError, match="cannot read"):
        build_verifier(
            Settings(
                FHIR_AUTH_JWKS=str(tmp_path / "missing.json"),
                FHIR_AUTH_ISSUER=ISSUER,
                FHIR_AUTH_AUDIENCE=AUDIENCE,
            )
        )


def test_dev_tokens_verify_only_on_a_dev_server(tmp_path: Path) -> None:
    key = tmp_path / "dev.pem"
    dev = build_verifier(Settings(FHIR_AUTH_DEV=True, FHIR_AUTH_DEV_KEY=key))
    assert dev is not None
    assert (dev.issuer, dev.audience) == (DEV_ISSUER, DEV_AUDIENCE)
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    minted = mint(key, ["user/*.rs"], patient="p1")
    access = dev.verify(minted)
    assert access.allows("Observation", "s")
    assert access.patient == "p1"
    production = TokenVerifier(JwksFile(trusted_jwks(tmp_path / "jwks.json")), ISSUER, AUDIENCE)
    with pytest.raises(TokenError):
        production.verify(minted)
    other_key = build_verifier(Settings(FHIR_AUTH_DEV=True, FHIR_AUTH_DEV_KEY=tmp_path / "b.pem"))
    assert other_key is not None
    with pytest.raises(TokenError):
        other_key.verify(minted)


def test_verified_tokens_are_kept_until_they_expire(tmp_path: Path) -> None:
    class Counting:
        def __init__(self) -> None:
            self.inner = JwksFile(trusted_jwks(tmp_path / "jwks.json"))
            self.calls = 0

        def key(self, kid: str | None) -> tokens.TrustedKey:
            self.calls += 1
            return self.inner.key(kid)

    keys = Counting()
    verifier = TokenVerifier(keys, ISSUER, AUDIENCE)
    good = token("user/*.rs")
    first = verifier.verify(good)
    assert verifier.verify(good) is first
    assert keys.calls == 1
    for _ in range(2):  # refusals are never kept: each is checked again
        with pytest.raises(TokenError):
            verifier.verify(forged_tokens()["signed by an untrusted key"])
    assert keys.calls == 3
    cache = tokens.VerifiedTokens(size=2)
    cache.put("a", first, time.time() - 1)
    assert cache.get("a") is None  # expired
    for name in ("b", "c", "d"):
        cache.put(name, first, time.time() + 60)
    assert cache.get("b") is None  # the oldest made room
    assert cache.get("d") is first
