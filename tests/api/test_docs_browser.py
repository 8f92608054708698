"""The API docs work offline (issue 8): a real server with the case loaded, driven in headless
Chromium (the system's, through Playwright). Every request to another host is refused and
recorded, and there must be none: /docs renders, "Try it out" on the Observation search returns
the case's pain scores, /redoc and the landing page render.

The browser reaches the server as http://fhir.hospital.test:<port> (mapped to 127.0.0.1 in
Chromium), not as localhost: Swagger UI hides some of its external calls (the validator badge)
on localhost, and a hospital's host name is not localhost.

Screenshots go to $TEST_ARTIFACTS, else to <pytest basetemp>/artifacts; the path is printed.
Skipped when /usr/bin/chromium (Debian's chromium) or Playwright is missing, unless
FHIR_TEST_REQUIRE_BROWSER=1 (as in CI), where that is a failure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import ROOT
from tests.live_server import live_server
from tests.security.test_auth_api import secured_server

CHROMIUM = Path(os.environ.get("FHIR_TEST_CHROMIUM", "/usr/bin/chromium"))
HOST = "fhir.hospital.test"
PATIENT_SEARCH = "https://doi.org/10.14740/jmc3017w"  # the case patient's identifier system
PAIN = "72514-3"  # LOINC: PI-NRS (pain intensity, numeric rating scale)
# The case's pain scores (app/case/data/ketamine-case-bundle.json): values, and ranges low-high
CASE_SCORES = {
    ("2016-01-27", 10),
    ("2016-08-22", 6),
    ("2016-08-31", (0, 1)),
    ("2016-09-21", 4),
    ("2016-12-21", (3, 4)),
    ("2017-03-22", 2),
}


def _missing(reason: str) -> None:
    if os.environ.get("FHIR_TEST_REQUIRE_BROWSER") == "1":
        pytest.fail(f"FHIR_TEST_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def playwright_api() -> Any:
    try:
        from playwright import sync_api
    except ImportError:
        _missing("Playwright's Python package is not installed (pip install -e '.[test]')")
    if not CHROMIUM.exists():
        _missing(f"{CHROMIUM} is missing (apt-get install chromium)")
    return sync_api


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("TEST_ARTIFACTS")
    folder = Path(configured) if configured else tmp_path_factory.getbasetemp() / "artifacts"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, playwright_api: Any) -> Iterator[str]:
    """A uvicorn process on a new SQLite database with the case loaded (python -m app
    load-case), as http://fhir.hospital.test:<port>."""
    url = f"sqlite:///{tmp_path_factory.mktemp('docs') / 'fhir.sqlite3'}"
    env = {**os.environ, "DATABASE_URL": url}
    loaded = subprocess.run(
        [sys.executable, "-m", "app", "load-case"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert loaded.returncode == 0, loaded.stderr
    with live_server(url, workers=1) as base:
        yield base.replace("127.0.0.1", HOST)


@pytest.fixture(scope="module")
def browser(playwright_api: Any) -> Iterator[Any]:
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[f"--host-resolver-rules=MAP {HOST} 127.0.0.1", "--no-proxy-server"],
        )
        try:
            yield chromium
        finally:
            chromium.close()


class Offline:
    """A page whose requests to any host but the server's are refused, and recorded.

    A request that the page's Content-Security-Policy stops (ReDoc's logo on cdn.redoc.ly)
    never leaves the browser: Chromium reports it, failed with "csp", and it is not counted."""

    def __init__(self, browser: Any, server: str) -> None:
        self.origin = urlsplit(server).netloc
        self.external: list[str] = []  # sent towards another host (refused here)
        self.attempted: list[str] = []  # asked for by the page, sent or not
        self.kept_in: list[str] = []  # stopped by the page's Content-Security-Policy
        self.failed: list[str] = []
        self.context = browser.new_context(viewport={"width": 1280, "height": 1000})
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("request", self._asked)
        self.page.on("requestfailed", self._failed)
        self.page.on("pageerror", lambda e: self.failed.append(f"page error: {e}"))

    def _is_external(self, url: str) -> bool:
        parts = urlsplit(url)
        return parts.scheme not in ("data", "blob", "about") and parts.netloc != self.origin

    def _asked(self, request: Any) -> None:
        if self._is_external(request.url):
            self.attempted.append(request.url)

    def _failed(self, request: Any) -> None:
        failure = str(request.failure or "")
        if "csp" in failure.lower():
            self.kept_in.append(request.url)
        elif not self._is_external(request.url):
            self.failed.append(f"{request.url}: {failure}")

    def _route(self, route: Any) -> None:
        if self._is_external(route.request.url):
            self.external.append(route.request.url)
            route.abort("blockedbyclient")
        else:
            route.continue_()

    def check(self) -> None:
        assert self.external == [], f"requests to other hosts: {self.external}"
        unaccounted = [url for url in self.attempted if url not in self.kept_in]
        assert unaccounted == [], f"requests to other hosts: {unaccounted}"
        assert self.failed == [], f"failed requests or page errors: {self.failed}"

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def offline(browser: Any, server: str) -> Iterator[Offline]:
    page = Offline(browser, server)
    try:
        yield page
    finally:
        page.close()


def _pain_scores(bundle: dict[str, Any]) -> set[tuple[str, Any]]:
    found: set[tuple[str, Any]] = set()
    for entry in bundle.get("entry", []):
        obs = entry["resource"]
        if not any(c.get("code") == PAIN for c in obs.get("code", {}).get("coding", [])):
            continue
        when = obs["effectiveDateTime"][:10]
        if "valueQuantity" in obs:
            found.add((when, obs["valueQuantity"]["value"]))
        else:
            found.add(
                (when, (obs["valueRange"]["low"]["value"], obs["valueRange"]["high"]["value"]))
            )
    return found


def test_docs_try_it_out_finds_the_pain_scores(
    offline: Offline, server: str, artifacts: Path
) -> None:
    page = offline.page
    page.goto(f"{server}/docs")
    page.wait_for_selector(".swagger-ui .information-container .title", timeout=30_000)
    assert "Ketamine infusion FHIR server" in page.inner_text(".information-container .title")

    search = page.locator(
        "#operations-type-search_type_fhir__resource_type__get"
    )  # GET /fhir/{resource_type}, tag "type" (deep-link id: tag, operationId)
    search.scroll_into_view_if_needed()
    search.locator(".opblock-summary").first.click()
    search.get_by_role("button", name="Try it out").click()

    resource_type = search.locator("tr[data-param-name='resource_type']")
    if resource_type.locator("select").count():
        resource_type.locator("select").select_option("Observation")
    else:
        resource_type.locator("input").fill("Observation")
    search.locator("tr[data-param-name='_count'] input").fill("100")
    search.locator("tr[data-param-name='_sort'] input").fill("date")
    search.get_by_role("button", name="Execute").click()

    live = search.locator(".live-responses-table tr.response")  # the header row is not one
    live.first.wait_for(timeout=30_000)
    assert live.locator(".response-col_status").first.inner_text().strip() == "200"
    body = live.locator(".response-col_description pre").first
    body.scroll_into_view_if_needed()
    shown = json.loads(body.inner_text())
    assert shown["resourceType"] == "Bundle"
    assert _pain_scores(shown) == CASE_SCORES

    score = body.locator("span", has_text=PAIN)  # the screenshot shows a pain score
    if score.count():
        score.first.scroll_into_view_if_needed()
    shot = artifacts / "docs-try-it-out.png"
    page.screenshot(path=str(shot), full_page=False)
    print(f"screenshot: {shot}")
    offline.check()


def test_redoc_renders_offline(offline: Offline, server: str, artifacts: Path) -> None:
    page = offline.page
    page.goto(f"{server}/redoc")
    page.wait_for_selector(".api-content h1", timeout=60_000)  # ReDoc's rendered title
    assert "Ketamine infusion FHIR server" in page.inner_text(".api-content h1")
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(artifacts / "redoc.png"))
    offline.check()
    assert set(offline.kept_in) <= {"https://cdn.redoc.ly/redoc/logo-mini.svg"}  # no other


def test_landing_page_links_the_case(offline: Offline, server: str, artifacts: Path) -> None:
    page = offline.page
    page.goto(f"{server}/")
    links = {a.inner_text(): a.get_attribute("href") for a in page.locator("a").all()}
    assert links['API docs (Swagger UI, with "Try it out")'] == "/docs"
    assert links["API reference (ReDoc)"] == "/redoc"
    assert links["CapabilityStatement"].startswith("/fhir/metadata")
    patient = links["The case patient"]
    assert patient.startswith("/fhir/Patient/")
    chart = links["Its clinical course"]
    assert chart.startswith(patient.split("?")[0] + "/$clinical-course")
    page.screenshot(path=str(artifacts / "landing.png"))

    page.get_by_role("link", name="Its clinical course").click()
    page.wait_for_load_state("load")
    assert page.locator("svg").count() >= 1  # the chart, inline in the HTML page
    assert "72514-3" in page.content() or "pain" in page.content().lower()
    page.screenshot(path=str(artifacts / "clinical-course.png"), full_page=True)

    page.goto(f"{server}{patient}")
    case = json.loads(page.inner_text("body"))
    assert case["resourceType"] == "Patient"
    offline.check()


# -- without a browser (run everywhere) -----------------------------------------------------------
def test_pages_name_only_local_assets(client: Any) -> None:
    for path in ("/docs", "/redoc", "/"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in response.headers["content-security-policy"]
        assert "https://" not in response.text.replace(PATIENT_SEARCH, ""), path
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png"):
        assert client.get(f"/static/docs/{asset}").status_code == 200, asset
    paths = client.get("/openapi.json").json()["paths"]
    assert not {"/", "/docs", "/redoc", "/docs/oauth2-redirect"} & set(paths)
    assert "The published case is not loaded" in client.get("/").text  # an empty database


def test_landing_page_needs_no_token_and_looks_nothing_up(
    database_url: str, admin_engines: dict[str, Any], tmp_path: Path
) -> None:
    with secured_server(database_url, admin_engines, tmp_path, []) as client:
        assert client.get("/fhir/metadata").status_code == 200
        assert client.get("/fhir/Patient").status_code == 401
        for path in ("/", "/docs", "/redoc", "/static/docs/favicon.png"):
            assert client.get(path).status_code == 200, path
        assert "/fhir/Patient?identifier=" in client.get("/").text
