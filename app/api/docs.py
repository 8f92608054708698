"""The API docs and a landing page that work offline, outside /fhir: no token, no audit event.

FastAPI's own /docs and /redoc load Swagger UI and ReDoc from a CDN, so behind a hospital's
firewall they are blank. Here the pages load them from /static/docs: the files the
fastapi-offline package ships (Swagger UI's bundle and CSS, ReDoc's standalone bundle, a
favicon), mounted as they are. Nothing on these pages asks another host for anything: no Google
fonts for ReDoc, and no validator badge for Swagger UI (it would load an image from
validator.swagger.io). ReDoc's sidebar still names an image on cdn.redoc.ly (its "API docs by
Redocly" logo, which hides itself when it does not load): each page's Content-Security-Policy
keeps the browser on this server, so that request is never made.

- GET /docs: Swagger UI on /openapi.json ("Try it out" sends the requests to this server).
- GET /redoc: ReDoc on /openapi.json.
- GET /: a small page linking the docs, the CapabilityStatement, the case patient and its
  clinical-course chart.

The HTML pages are not in /openapi.json (include_in_schema=False): they are not the API."""

from __future__ import annotations

from html import escape
from importlib.resources import files
from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

from app.api.context import runtime
from app.case.load import PATIENT_IDENTIFIER, case_patient_id

STATIC = "/static/docs"
# swagger-ui-bundle.js, swagger-ui.css, redoc.standalone.js, favicon.png
ASSETS = Path(str(files("fastapi_offline").joinpath("static")))
TITLE = "Ketamine infusion FHIR server"
OAUTH2_REDIRECT = "/docs/oauth2-redirect"

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)

# This server only. The pages' own inline scripts and styles, and ReDoc's workers (blob:)
# and inline images (data:), are allowed.
_CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "worker-src 'self' blob:",
        "connect-src 'self'",
        "frame-ancestors 'self'",
    )
)


def _page(response: HTMLResponse) -> HTMLResponse:
    response.headers["Content-Security-Policy"] = _CSP
    return response


def install(app: FastAPI) -> None:
    """Mounts the assets and adds the pages (create the app with docs_url=None, redoc_url=None,
    so that FastAPI's CDN pages are not there too)."""
    app.mount(STATIC, StaticFiles(directory=ASSETS), name="docs-static")
    app.include_router(router)


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    root = _root(request)
    return _page(
        get_swagger_ui_html(
            openapi_url=f"{root}{request.app.openapi_url}",
            title=f"{TITLE} - Swagger UI",
            swagger_js_url=f"{root}{STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{root}{STATIC}/favicon.png",
            oauth2_redirect_url=f"{root}{OAUTH2_REDIRECT}",
            # FastAPI's defaults, less the online validator's badge (an external image)
            swagger_ui_parameters={"validatorUrl": None},
        )
    )


@router.get(OAUTH2_REDIRECT)
async def swagger_ui_redirect() -> HTMLResponse:
    return _page(get_swagger_ui_oauth2_redirect_html())


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    root = _root(request)
    return _page(
        get_redoc_html(
            openapi_url=f"{root}{request.app.openapi_url}",
            title=f"{TITLE} - ReDoc",
            redoc_js_url=f"{root}{STATIC}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{STATIC}/favicon.png",
            with_google_fonts=False,
        )
    )


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" type="image/png" href="{root}{static}/favicon.png">
<style>
body {{ font-family: system-ui, sans-serif; max-width: 44rem; margin: 2rem auto; padding: 0 1rem;
       line-height: 1.5; color: #222; }}
h1 {{ font-size: 1.4rem; }} h2 {{ font-size: 1.1rem; margin-top: 1.5rem; }}
code {{ background: #f3f3f3; padding: 0 .2rem; }}
</style>
</head>
<body>
<h1>{title}</h1>
<p>A FHIR R4B server for ketamine infusion therapy and the pain outcomes that follow it.
The FHIR base is <code>{root}/fhir</code>.</p>
<h2>API</h2>
<ul>
<li><a href="{root}/docs">API docs (Swagger UI, with "Try it out")</a></li>
<li><a href="{root}/redoc">API reference (ReDoc)</a></li>
<li><a href="{root}/openapi.json">OpenAPI document</a></li>
<li><a href="{root}/fhir/metadata?_format=json&amp;_pretty=true">CapabilityStatement</a>
(<code>/fhir/metadata</code>)</li>
</ul>
<h2>The case</h2>
{case}
</body>
</html>
"""


@router.get("/")
async def landing(request: Request) -> HTMLResponse:
    rt = runtime(request)
    root = escape(_root(request))
    if rt.verifier is not None:  # the page needs no token, so it looks nothing up
        search = f"{root}/fhir/Patient?identifier={quote(PATIENT_IDENTIFIER)}"
        case = (
            f'<p>Find the case patient with <a href="{search}">a search by identifier</a>'
            " (an access token is needed), then open its chart at"
            " <code>/fhir/Patient/{id}/$clinical-course?_format=html</code>.</p>"
        )
    else:
        patient_id = await rt.call(case_patient_id, rt.service)
        if patient_id is None:
            case = (
                "<p>The published case is not loaded: <code>python -m app load-case</code>"
                " (or <code>python -m app serve --load-case</code>) loads it.</p>"
            )
        else:
            patient = f"{root}/fhir/Patient/{escape(quote(patient_id))}"
            case = (
                "<p>The published case (Hanna et al., J Med Cases 2018,"
                " doi:10.14740/jmc3017w):</p>\n<ul>\n"
                f'<li><a href="{patient}?_format=json&amp;_pretty=true">The case patient</a>'
                f" (<code>Patient/{escape(patient_id)}</code>)</li>\n"
                f'<li><a href="{patient}/$clinical-course?_format=html">Its clinical course</a>:'
                " the chart of pain scores and doses, with the pain table"
                f' (<a href="{patient}/$clinical-course?_format=svg">SVG</a>)</li>\n'
                f'<li><a href="{patient}/$pain-response?_format=json&amp;_pretty=true">'
                "Its pain response</a> ($pain-response)</li>\n</ul>"
            )
    page = _PAGE.format(title=TITLE, root=root, static=STATIC, case=case)
    return _page(HTMLResponse(page, headers={"Cache-Control": "no-store"}))
