"""The token verifier the settings describe (None: no authorization configured)."""

from __future__ import annotations

from pathlib import Path

from app.config import Settings
from app.security.devkeys import DEV_AUDIENCE, DEV_ISSUER, DevKey
from app.security.tokens import ConfigurationError, JwksFile, JwksUrl, KeySource, TokenVerifier


def build_verifier(settings: Settings) -> TokenVerifier | None:
    if settings.auth_jwks and settings.auth_dev:
        raise ConfigurationError(
            "FHIR_AUTH_JWKS and FHIR_AUTH_DEV are exclusive: a server trusting the development "
            "key must not also serve real tokens"
        )
    if settings.auth_dev:
        return TokenVerifier(
            DevKey(settings.auth_dev_key), DEV_ISSUER, settings.auth_audience or DEV_AUDIENCE
        )
    if not settings.auth_jwks:
        return None
    if not settings.auth_issuer or not settings.auth_audience:
        raise ConfigurationError(
            "FHIR_AUTH_JWKS needs FHIR_AUTH_ISSUER and FHIR_AUTH_AUDIENCE: tokens are only "
            "accepted from the named issuer, for the named audience"
        )
    source: KeySource
    if settings.auth_jwks.startswith(("https://", "http://")):
        source = JwksUrl(settings.auth_jwks)
    else:
        source = JwksFile(Path(settings.auth_jwks))
    return TokenVerifier(source, settings.auth_issuer, settings.auth_audience)
