"""Patient/$clinical-course: the SVG parses, and its marks match the case's data (14 dose bars
of which 4 unknown, 6 pain points of which 2 derived and 2 ranges, 3 courses, 2 dated liver
test days); HTML and Binary forms."""

from __future__ import annotations

import base64
from collections import Counter

import httpx
from lxml import etree

from tests.clinical.test_pain_response import case  # noqa: F401 - fixture
from tests.helpers import assert_outcome


def _marks(svg: bytes) -> Counter[str]:
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    root = etree.fromstring(svg, parser)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    kinds: Counter[str] = Counter()
    for element in root.iter():
        mark = element.get("id") or ""
        prefix = mark.rsplit("-", 1)[0]
        if mark[-1:].isdigit() and prefix in {
            "dose",
            "dose-unknown",
            "pain-point",
            "pain-derived",
            "pain-range",
            "course",
            "lft",
        }:
            kinds[prefix] += 1
    return kinds


def test_the_svg_marks_match_the_case(case: tuple[httpx.Client, str]) -> None:  # noqa: F811
    client, patient_id = case
    response = client.get(
        f"/fhir/Patient/{patient_id}/$clinical-course", headers={"Accept": "image/svg+xml"}
    )
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"].startswith("image/svg+xml")
    assert b"<image" not in response.content  # self-contained: no external images
    assert _marks(response.content) == {
        "dose": 10,
        "dose-unknown": 4,
        "pain-point": 4,
        "pain-derived": 2,
        "pain-range": 2,
        "course": 3,
        "lft": 2,
    }


def test_html_and_binary_forms(case: tuple[httpx.Client, str]) -> None:  # noqa: F811
    client, patient_id = case
    page = client.get(f"/fhir/Patient/{patient_id}/$clinical-course?_format=html")
    assert page.headers["content-type"].startswith("text/html")
    assert "<svg" in page.text
    assert page.text.count("<tr>") == 7  # header and six pain observations
    assert "9581 +4 unknown" in page.text
    binary = client.get(f"/fhir/Patient/{patient_id}/$clinical-course").json()
    assert binary["resourceType"] == "Binary"
    assert binary["contentType"] == "image/svg+xml"
    assert _marks(base64.b64decode(binary["data"]))["dose"] == 10
    assert_outcome(client.get("/fhir/Patient/nobody/$clinical-course?_format=svg"), 404)
