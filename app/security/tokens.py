"""Bearer access tokens: JWTs from the hospital's authorization server, checked against its
JWKS (PyJWT does the JOSE work). Only asymmetric algorithms are accepted: `none` and the HS*
family never (a JWKS's public key must not double as an HMAC secret)."""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
import jwt

from app.fhir.access import Access

ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
LEEWAY_SECONDS = 30  # clock skew between this server and the authorization server
REFRESH_MIN_SECONDS = 30.0  # an unknown kid refetches the JWKS at most this often
JWKS_MAX_AGE_SECONDS = 300.0


class TokenError(Exception):
    """The token is not acceptable; the message says why (it is safe to return)."""


class ConfigurationError(Exception):
    """Authorization settings that cannot work; the server refuses to start."""


@dataclass(frozen=True, slots=True)
class TrustedKey:
    kid: str | None
    algorithm: str | None  # the JWK's `alg`, when it names one
    key_type: str
    key: Any  # a cryptography public key


# Which key types may verify which algorithms; `oct` (shared secrets) verify nothing here.
_KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}


class KeySource(Protocol):
    def key(self, kid: str | None) -> TrustedKey: ...


def _pick(keys: list[TrustedKey], kid: str | None) -> TrustedKey | None:
    if kid is None:
        return keys[0] if len(keys) == 1 else None
    return next((k for k in keys if k.kid == kid), None)


def parse_jwks(data: Any, where: str) -> list[TrustedKey]:
    """The signature keys of a JWKS; symmetric and encryption-only keys are left out."""
    raw = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(raw, list):
        raise ConfigurationError(f"{where} is not a JWKS (no `keys` list)")
    keys = []
    for jwk in raw:
        if not isinstance(jwk, dict) or jwk.get("kty") not in ("RSA", "EC", "OKP"):
            continue
        if jwk.get("use", "sig") != "sig" or "d" in jwk:
            continue  # encryption keys, and private keys that should never have been published
        try:
            parsed = jwt.PyJWK(jwk)
        except jwt.PyJWTError as exc:
            raise ConfigurationError(f"{where} holds a key that cannot be used: {exc}") from exc
        kid, alg = jwk.get("kid"), jwk.get("alg")
        keys.append(
            TrustedKey(
                kid if isinstance(kid, str) else None,
                alg if isinstance(alg, str) else None,
                jwk["kty"],
                parsed.key,
            )
        )
    if not keys:
        raise ConfigurationError(f"{where} holds no signature keys")
    return keys


class JwksFile:
    """A JWKS in a file, read again when the file changes (key rotation without a restart)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._mtime = -1.0
        self._keys = self._load()

    def _load(self) -> list[TrustedKey]:
        try:
            self._mtime = self._path.stat().st_mtime
            text = self._path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigurationError(f"cannot read the JWKS file {self._path}: {exc}") from exc
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigurationError(f"the JWKS file {self._path} is not JSON") from exc
        return parse_jwks(data, f"the JWKS file {self._path}")

    def key(self, kid: str | None) -> TrustedKey:
        found = _pick(self._keys, kid)
        if found is None:
            with self._lock:
                try:
                    changed = self._path.stat().st_mtime != self._mtime
                except OSError:
                    changed = False
                if changed:
                    try:
                        self._keys = self._load()
                    except ConfigurationError as exc:  # keep answering with the old keys
                        raise TokenError(f"the trusted JWKS file is unusable: {exc}") from exc
                found = _pick(self._keys, kid)
        if found is None:
            raise TokenError(f"no signing key with kid {kid!r} in the trusted JWKS")
        return found


class JwksUrl:
    """A JWKS fetched over HTTPS, cached, and fetched again when a token names a kid it lacks
    (key rotation) but at most every REFRESH_MIN_SECONDS, so tokens with made-up kids cannot
    turn this server into a flood of requests to the authorization server."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        parts = urlsplit(url)
        local = parts.hostname in ("localhost", "127.0.0.1", "::1")
        if parts.scheme != "https" and not (parts.scheme == "http" and local):
            raise ConfigurationError(f"FHIR_AUTH_JWKS must be an https URL or a file: {url}")
        self._url = url
        self._timeout = timeout
        self._lock = threading.Lock()
        self._keys: list[TrustedKey] | None = None
        self._fetched = float("-inf")

    def _fetch(self) -> None:
        try:
            response = httpx.get(self._url, timeout=self._timeout)
            response.raise_for_status()
            data = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise TokenError(f"the trusted JWKS could not be fetched: {exc}") from exc
        finally:
            self._fetched = time.monotonic()
        try:
            self._keys = parse_jwks(data, self._url)
        except ConfigurationError as exc:
            raise TokenError(str(exc)) from exc

    def key(self, kid: str | None) -> TrustedKey:
        with self._lock:
            age = time.monotonic() - self._fetched
            if self._keys is None or age > JWKS_MAX_AGE_SECONDS:
                if self._keys is None and age < REFRESH_MIN_SECONDS:
                    raise TokenError("the trusted JWKS is unavailable; try again shortly")
                self._fetch()
            assert self._keys is not None
            found = _pick(self._keys, kid)
            if found is None and time.monotonic() - self._fetched >= REFRESH_MIN_SECONDS:
                self._fetch()
                found = _pick(self._keys, kid)
        if found is None:
            raise TokenError(f"no signing key with kid {kid!r} in the trusted JWKS")
        return found


class VerifiedTokens:
    """Tokens already verified, until they expire: a client sends the same token with every
    request, and checking an ES256 signature costs ~240 µs here, a dictionary lookup ~1 µs.
    Bounded (oldest out first); only successes are kept."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[Access, float]] = OrderedDict()

    def get(self, token: str) -> Access | None:
        found = self._entries.get(token)
        if found is None:
            return None
        access, expires = found
        if time.time() >= expires:
            with self._lock:
                self._entries.pop(token, None)
            return None
        return access

    def put(self, token: str, access: Access, expires: float) -> None:
        with self._lock:
            self._entries[token] = (access, expires)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)


@dataclass(frozen=True)
class TokenVerifier:
    keys: KeySource
    issuer: str
    audience: str
    algorithms: tuple[str, ...] = ALGORITHMS
    verified: VerifiedTokens = field(default_factory=VerifiedTokens, compare=False)

    def verify(self, token: str) -> Access:
        """The access a token grants; TokenError when it is forged, expired or not for us."""
        cached = self.verified.get(token)
        if cached is not None:
            return cached
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenError("the access token is not a JWT") from exc
        algorithm = header.get("alg")
        if algorithm not in self.algorithms:
            raise TokenError(f"tokens signed with {algorithm!r} are not accepted")
        kid = header.get("kid")
        key = self.keys.key(kid if isinstance(kid, str) else None)
        if key.algorithm not in (None, algorithm) or key.key_type != _KEY_TYPES[algorithm[:2]]:
            raise TokenError(f"the signing key {kid!r} is not for {algorithm}")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenError("the access token has expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise TokenError("the access token is not valid yet") from exc
        except jwt.InvalidAudienceError as exc:
            raise TokenError("the access token is not for this server (aud)") from exc
        except jwt.InvalidIssuerError as exc:
            raise TokenError("the access token is from an untrusted issuer (iss)") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise TokenError(f"the access token lacks the {exc.claim!r} claim") from exc
        except jwt.PyJWTError as exc:
            raise TokenError("the access token's signature does not verify") from exc
        access = access_from_claims(claims)
        # as long as decode would still accept it: exp plus the clock-skew leeway
        self.verified.put(token, access, float(claims["exp"]) + LEEWAY_SECONDS)
        return access


def access_from_claims(claims: dict[str, Any]) -> Access:
    raw = claims.get("scope", claims.get("scp", ""))
    scopes = raw.split() if isinstance(raw, str) else [s for s in raw if isinstance(s, str)]
    patient = claims.get("patient")
    subject = claims.get("sub")
    client = claims.get("client_id", claims.get("azp"))
    return Access.from_scopes(
        scopes,
        patient=patient if isinstance(patient, str) else None,
        subject=subject if isinstance(subject, str) else None,
        client_id=client if isinstance(client, str) else None,
    )
