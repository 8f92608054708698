"""Bearer tokens on the way in (RFC 6750): every /fhir route but the public ones runs
`authenticate`, which leaves the request's Access on request.state for handlers to check."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from app.api.context import base_url, runtime
from app.api.openapi import ERRORS, SMART_CONFIGURATION
from app.fhir import jsonio
from app.fhir.access import EVERYONE, Access
from app.fhir.errors import UnauthorizedError
from app.security.tokens import TokenError

_NOBODY = Access()
REALM = 'Bearer realm="fhir"'


async def authenticate(request: Request) -> None:
    """FastAPI dependency of the protected routers."""
    verifier = runtime(request).verifier
    if verifier is None:
        request.state.access = EVERYONE
        return
    header = request.headers.get("authorization")
    if header is None:
        raise UnauthorizedError(
            "This server needs an access token: Authorization: Bearer <token>",
            headers={"WWW-Authenticate": REALM},
        )
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise UnauthorizedError(
            "The Authorization header must be 'Bearer <token>'",
            headers={"WWW-Authenticate": f'{REALM}, error="invalid_request"'},
        )
    try:
        request.state.access = verifier.verify(token.strip())
    except TokenError as exc:
        reason = str(exc).replace('"', "'")
        raise UnauthorizedError(
            f"The access token was refused: {exc}",
            headers={
                "WWW-Authenticate": f'{REALM}, error="invalid_token", error_description="{reason}"'
            },
        ) from exc


def access(request: Request) -> Access:
    """The request's Access. A route that skipped `authenticate` gets nothing (fail closed)
    when authorization is configured."""
    found = getattr(request.state, "access", None)
    if isinstance(found, Access):
        return found
    return EVERYONE if runtime(request).verifier is None else _NOBODY


# -- discovery (SMART App Launch, "well-known" configuration) ------------------------------------
public = APIRouter(default_response_class=Response, responses=ERRORS)

CAPABILITIES = [
    "permission-v1",
    "permission-v2",
    "permission-user",
    "permission-patient",
    "context-standalone-patient",
    "client-confidential-asymmetric",
]


def smart_configuration(request: Request) -> dict[str, Any]:
    settings = runtime(request).settings
    document: dict[str, Any] = {
        "issuer": settings.auth_issuer or None,
        "jwks_uri": settings.auth_jwks if settings.auth_jwks.startswith("https://") else None,
        "authorization_endpoint": settings.auth_authorize_url or None,
        "token_endpoint": settings.auth_token_url or None,
        "grant_types_supported": ["authorization_code", "client_credentials"],
        "scopes_supported": [
            "openid",
            "fhirUser",
            "launch/patient",
            "offline_access",
            "patient/*.rs",
            "patient/*.c",
            "user/*.cruds",
            "system/*.cruds",
            "patient/*.read",
            "user/*.*",
            "system/*.*",
        ],
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "capabilities": CAPABILITIES,
        "fhir_base": base_url(request),
    }
    return {k: v for k, v in document.items() if v is not None}


@public.get(
    "/.well-known/smart-configuration",
    summary="SMART App Launch configuration: how to get tokens for this server",
    tags=["system"],
    responses={
        200: {
            "description": "The configuration",
            "content": {"application/json": {"schema": SMART_CONFIGURATION}},
        }
    },
)
@public.get("/fhir/.well-known/smart-configuration", include_in_schema=False)
async def well_known(request: Request) -> Response:
    return Response(jsonio.dumps(smart_configuration(request)), media_type="application/json")
