"""A local signing key for development and tests: `python -m app dev-token` mints tokens with
it, and a server started with FHIR_AUTH_DEV=true trusts it (and nothing else). The private key
lives in a file readable by its owner only; production servers never read it."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from app.security.tokens import TrustedKey

DEV_ISSUER = "urn:ketamine-fhir:dev"
DEV_AUDIENCE = "ketamine-fhir"


def load_or_create(path: Path) -> ec.EllipticCurvePrivateKey:
    """The P-256 key at `path`, created (mode 0600, atomically) when absent."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first: use theirs
        else:
            with os.fdopen(fd, "wb") as out:
                out.write(pem)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path} does not hold an EC private key")
    return key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def public_jwk(key: ec.EllipticCurvePrivateKey) -> dict[str, str]:
    """The public half as a JWK, its kid the RFC 7638 thumbprint."""
    numbers = key.public_key().public_numbers()
    jwk = {
        "crv": "P-256",
        "kty": "EC",
        "x": _b64(numbers.x.to_bytes(32, "big")),
        "y": _b64(numbers.y.to_bytes(32, "big")),
    }
    thumbprint = hashlib.sha256(json.dumps(jwk, separators=(",", ":")).encode()).digest()
    return {**jwk, "kid": _b64(thumbprint), "alg": "ES256", "use": "sig"}


class DevKey:
    """The KeySource of a development server: the one local key."""

    def __init__(self, path: Path) -> None:
        private = load_or_create(path)
        jwk = public_jwk(private)
        self._trusted = TrustedKey(jwk["kid"], "ES256", "EC", private.public_key())

    def key(self, kid: str | None) -> TrustedKey:
        return self._trusted


def mint(
    path: Path,
    scopes: list[str],
    *,
    patient: str | None = None,
    subject: str = "dev-user",
    client_id: str = "dev-client",
    audience: str = DEV_AUDIENCE,
    lifetime_seconds: int = 3600,
    extra: dict[str, Any] | None = None,
) -> str:
    private = load_or_create(path)
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": DEV_ISSUER,
        "aud": audience,
        "sub": subject,
        "client_id": client_id,
        "scope": " ".join(scopes),
        "iat": now,
        "nbf": now,
        "exp": now + lifetime_seconds,
        **({"patient": patient} if patient else {}),
        **(extra or {}),
    }
    return jwt.encode(
        claims, private, algorithm="ES256", headers={"kid": public_jwk(private)["kid"]}
    )
