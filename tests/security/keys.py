"""Signing keys and tokens for the security tests: an RSA and an EC key the server trusts (in
a JWKS file), and one it does not."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from functools import cache
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ISSUER = "https://auth.example.org/realms/clinic"
AUDIENCE = "https://fhir.example.org/fhir"


@cache
def rsa_key(name: str = "trusted-rsa") -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@cache
def ec_key(name: str = "trusted-ec") -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_jwk(key: Any, kid: str, alg: str | None = None) -> dict[str, Any]:
    jwk: dict[str, Any] = json.loads(
        jwt.algorithms.get_default_algorithms()[
            "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
        ].to_jwk(key.public_key())
    )
    jwk["kid"] = kid
    jwk["use"] = "sig"
    if alg:
        jwk["alg"] = alg
    return jwk


def write_jwks(path: Path, *jwks: dict[str, Any]) -> Path:
    path.write_text(json.dumps({"keys": list(jwks)}))
    return path


def trusted_jwks(path: Path) -> Path:
    return write_jwks(
        path,
        public_jwk(rsa_key(), "rsa-1", "RS256"),
        public_jwk(ec_key(), "ec-1"),
    )


def claims(scope: str = "user/*.cruds", **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    out: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "nurse-7",
        "client_id": "infusion-app",
        "scope": scope,
        "iat": now,
        "exp": now + 600,
    }
    out.update(extra)
    return {k: v for k, v in out.items() if v is not None}


def token(scope: str = "user/*.cruds", *, key: Any = None, kid: str = "rsa-1", **extra: Any) -> str:
    key = key or rsa_key()
    alg = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
    return jwt.encode(claims(scope, **extra), key, algorithm=alg, headers={"kid": kid})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(scope: str = "system/*.*") -> str:
    """alg: none, no signature."""
    header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": "rsa-1"}).encode())
    return f"{header}.{_b64(json.dumps(claims(scope)).encode())}."


def hmac_with_public_key(scope: str = "system/*.*") -> str:
    """The classic confusion attack: HS256 keyed with the trusted RSA public key's PEM."""
    secret = (
        rsa_key()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode())
    body = _b64(json.dumps(claims(scope)).encode())
    signature = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64(signature)}"


def forged_tokens() -> dict[str, str]:
    """Tokens a server trusting trusted_jwks must refuse, by what is wrong with them."""
    return {
        "signed by an untrusted key": token(key=rsa_key("attacker")),
        "alg none": unsigned(),
        "HS256 keyed with the public key": hmac_with_public_key(),
        "expired": token(exp=int(time.time()) - 120, iat=int(time.time()) - 900),
        "not yet valid": token(nbf=int(time.time()) + 600),
        "wrong audience": token(aud="https://other.example.org/fhir"),
        "wrong issuer": token(iss="https://evil.example.org"),
        "no expiry": token(exp=None),
        "unknown kid": token(kid="rsa-9"),
        "signature tampered": token()[:-6] + "AAAAAA",
        "not a JWT": "not-a-jwt",
        "EC key named as RS256": _header_swapped(),
    }


def _header_swapped() -> str:
    """A token whose header says RS256 with the EC key's kid (signed by the trusted RSA key)."""
    return jwt.encode(claims(), rsa_key(), algorithm="RS256", headers={"kid": "ec-1"})
