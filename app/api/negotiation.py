"""Content negotiation and FHIR request headers: _format/Accept, Content-Type, _pretty, Prefer,
If-Match. Each parse failure is a FhirError, so it is answered as an OperationOutcome."""

from __future__ import annotations

from datetime import datetime
from email.utils import parsedate_to_datetime

from starlette.requests import Request

from app.fhir.errors import BadRequestError, NotAcceptableError, UnsupportedMediaTypeError
from app.fhir.formats import JSON, XML

MEDIA_TYPES = {
    JSON: "application/fhir+json; charset=utf-8",
    XML: "application/fhir+xml; charset=utf-8",
}
JSON_PATCH = "json-patch"
_BY_MEDIA = {
    "application/fhir+json": JSON,
    "application/json": JSON,
    "application/json+fhir": JSON,
    "text/json": JSON,
    "json": JSON,
    "application/fhir+xml": XML,
    "application/xml": XML,
    "application/xml+fhir": XML,
    "text/xml": XML,
    "xml": XML,
}
_PREFER_RETURN = {"minimal", "representation", "OperationOutcome"}


def _media(value: str) -> str:
    # In a query string an unescaped "+" arrives as a space: "application/fhir json".
    return value.split(";", 1)[0].strip().lower().replace(" ", "+")


def response_format(request: Request) -> str:
    explicit = request.query_params.get("_format")
    if explicit:
        fmt = _BY_MEDIA.get(_media(explicit))
        if fmt is None:
            raise NotAcceptableError(
                f"_format '{explicit}' is not supported: use json or xml", ("_format",)
            )
        return fmt
    accept = request.headers.get("accept", "")
    if not accept.strip():
        return JSON
    best: tuple[float, str] | None = None
    for item in accept.split(","):
        media, *params = (p.strip() for p in item.split(";"))
        media = media.lower()
        if media == "text/html":
            return JSON  # a browser: JSON reads best, whatever else it lists
        quality = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    quality = float(param[2:])
                except ValueError:
                    quality = 0.0
        fmt = _BY_MEDIA.get(media) or (JSON if media in {"*/*", "application/*"} else None)
        if fmt is not None and quality > 0 and (best is None or quality > best[0]):
            best = (quality, fmt)
    if best is None:
        raise NotAcceptableError(
            f"None of the media types in Accept '{accept}' is supported: "
            "use application/fhir+json or application/fhir+xml"
        )
    return best[1]


def pretty(request: Request) -> bool:
    return request.query_params.get("_pretty", "").lower() == "true"


def body_format(request: Request, *, patch: bool = False) -> str:
    content_type = request.headers.get("content-type")
    if not content_type:
        raise UnsupportedMediaTypeError(
            "The request has no Content-Type: send application/fhir+json"
            + (" or application/json-patch+json" if patch else "")
        )
    media = _media(content_type)
    if patch and media == "application/json-patch+json":
        return JSON_PATCH
    fmt = _BY_MEDIA.get(media) if media not in {"json", "xml"} else None
    if fmt is None:
        accepted = (
            "application/json-patch+json"
            if patch
            else ("application/fhir+json or application/fhir+xml")
        )
        raise UnsupportedMediaTypeError(
            f"Content-Type '{content_type}' is not supported here: send {accepted}"
        )
    if patch:
        raise UnsupportedMediaTypeError(
            "PATCH takes a JSON Patch document (Content-Type: application/json-patch+json); "
            "FHIRPath Patch is not supported"
        )
    return fmt


def _prefer(request: Request, name: str) -> str | None:
    for header in request.headers.getlist("prefer"):
        for token in header.replace(",", ";").split(";"):
            key, _, value = token.strip().partition("=")
            if key.strip().lower() == name:
                return value.strip().strip('"')
    return None


def prefer_return(request: Request) -> str:
    value = _prefer(request, "return")
    return value if value in _PREFER_RETURN else "representation"


def strict_handling(request: Request) -> bool:
    """Prefer: handling=strict: unknown search parameters are errors, not warnings."""
    return _prefer(request, "handling") == "strict"


def if_match(request: Request) -> int | None:
    value = request.headers.get("if-match")
    if value is None:
        return None
    text = value.strip()
    if text.startswith("W/"):
        text = text[2:]
    text = text.strip('"')
    if not text.isdigit():
        raise BadRequestError(
            f"If-Match '{value}' is not a version ETag such as W/\"3\"", ("If-Match",)
        )
    return int(text)


def if_none_match_any(request: Request) -> bool:
    """If-None-Match: * on PUT: create only if the resource does not exist."""
    value = request.headers.get("if-none-match")
    return value is not None and value.strip() == "*"


def not_modified(request: Request, version_id: int, last_updated: datetime) -> bool:
    """A conditional read (http.html#cread) the client's copy already answers: 304."""
    tags = request.headers.get("if-none-match")
    if tags is not None:
        wanted = {t.strip().removeprefix("W/").strip('"') for t in tags.split(",")}
        return str(version_id) in wanted or "*" in wanted
    since = request.headers.get("if-modified-since")
    if since is not None:
        try:
            when = parsedate_to_datetime(since)
        except (TypeError, ValueError):
            return False  # an unreadable date is ignored (RFC 9110 13.1.3)
        if when.tzinfo is None:
            return False
        return last_updated.replace(microsecond=0) <= when
    return False
