"""Hostile input in every kind of search parameter and in ids, on both databases, under a
patient-context token (`patient/*.rs`, patient A) and a user token (`user/*.rs`).

SQL injection strings, LIKE wildcards, backslashes, NUL and other unicode edge cases, very long
values, path traversal, prefixes on types that take none, and patient B's id hidden in the value
are sent through string, token, reference, date, number, quantity, uri, composite and special
parameters, `_id`, `_lastUpdated`, `_has`, chains, includes, the result parameters, modifiers,
parameter names and POST `_search`; so are a thousand values in one parameter and a value of
60,000 characters. Each answer is 200 or a 4xx with an OperationOutcome (never a 5xx); A's token
never gets one of B's resources, nor a total that counts them, while the same query with the
user token does find B's; LIKE wildcards match literally; ids outside the id rule are a 400 or
404 to GET, PUT, PATCH and DELETE; hostile requests are audited; and nothing is written: the
database holds exactly the seed afterwards (read with a system token and from the tables).

One seeded server per module (and per database, and per pytest worker that runs some of the
module's tests); its teardown checks the data once more after every hostile request it served.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import httpx
import pytest
from sqlalchemy import Engine, text

from app.config import Settings
from app.fhir.loading import references
from app.storage.engine import make_engine
from app.storage.migrate import upgrade
from tests.helpers import ketamine_administration, pain_observation
from tests.helpers import patient as patient_resource
from tests.security.test_auth_api import Call, _as, secured_server

LOINC = "http://loinc.org"
PROFILE = "http://example.org/fhir/StructureDefinition/pain_score"
MRN = "http://example.org/mrn"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"


# -- the seed: patients A and B, each with observations, a condition, a dose, a risk ------------
def _patient(id_: str, family: str, given: str, born: str, city: str) -> dict[str, Any]:
    return {
        **patient_resource(family),
        "id": id_,
        "identifier": [
            {
                "type": {"coding": [{"system": V2_0203, "code": "MR"}]},
                "system": MRN,
                "value": f"{id_}-1",
            }
        ],
        "name": [{"family": family, "given": [given]}],
        "birthDate": born,
        "address": [{"city": city}],
    }


def _pain(id_: str, patient: str, value: int, day: str) -> dict[str, Any]:
    return {
        **pain_observation(value, f"Patient/{patient}"),
        "id": id_,
        "meta": {"profile": [PROFILE]},
        "effectiveDateTime": day,
    }


def _blood_pressure(id_: str, patient: str, systolic: int) -> dict[str, Any]:
    def component(code: str, value: int) -> dict[str, Any]:
        return {
            "code": {"coding": [{"system": LOINC, "code": code}]},
            "valueQuantity": {
                "value": value,
                "unit": "mm[Hg]",
                "system": "http://unitsofmeasure.org",
                "code": "mm[Hg]",
            },
        }

    return {
        "resourceType": "Observation",
        "id": id_,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "85354-9", "display": "Blood pressure"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": "2016-08-22T10:00:00Z",
        "component": [component("8480-6", systolic), component("8462-4", 80)],
    }


def _condition(id_: str, patient: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": id_,
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "active",
                }
            ]
        },
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "203082005"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "onsetDateTime": "2015-01-01",
    }


def _risk(id_: str, patient: str, probability: float) -> dict[str, Any]:
    return {
        "resourceType": "RiskAssessment",
        "id": id_,
        "status": "final",
        "subject": {"reference": f"Patient/{patient}"},
        "prediction": [{"probabilityDecimal": probability}],
    }


def _of(patient: str, pain: tuple[int, int], systolic: int, risk: float) -> list[dict[str, Any]]:
    return [
        _pain(f"o{patient}1", patient, pain[0], "2016-08-22"),
        _pain(f"o{patient}2", patient, pain[1], "2017-03-22"),
        _blood_pressure(f"o{patient}3", patient, systolic),
        _condition(f"c{patient}", patient),
        {**ketamine_administration(subject=f"Patient/{patient}"), "id": f"m{patient}"},
        _risk(f"r{patient}", patient, risk),
    ]


# A's family has an apostrophe and A's city the LIKE wildcards, to be matched literally.
SEED = [
    _patient("A", "O'Brien", "Ann", "1970-01-01", "100% _Town"),
    _patient("B", "Bravo", "Bo", "1980-02-02", "Bravo City"),
    *_of("A", (5, 3), 120, 0.3),
    *_of("B", (7, 8), 150, 0.8),
]
A_KEYS = {("Patient", "A")} | {(r["resourceType"], r["id"]) for r in SEED[2:8]}
B_KEYS = {("Patient", "B")} | {(r["resourceType"], r["id"]) for r in SEED[8:]}


@pytest.fixture(scope="module")
def server(
    database_url: str, admin_engines: dict[str, Engine], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[httpx.Client]:
    with secured_server(
        database_url, admin_engines, tmp_path_factory.mktemp("injection"), SEED
    ) as client:
        _probe_the_audit_trail(client)
        yield client
        # every hostile request this server answered is behind us: the seed must be intact
        problems = _seed_problems(client, admin_engines[database_url])
        assert not problems, "\n".join(problems)


@pytest.fixture(scope="module")
def readers(server: httpx.Client) -> dict[str, Call]:
    return {
        "patient-A": _as(server, "patient/*.rs launch/patient", patient="A"),
        "user": _as(server, "user/*.rs"),
    }


@pytest.fixture(scope="module")
def writer(server: httpx.Client) -> Call:
    return _as(server, "user/*.cruds")


@pytest.fixture
def postgres(database_url: str) -> bool:
    return not database_url.startswith("sqlite")


# -- what an answer must be ----------------------------------------------------------------------
def _encode(value: str) -> str:
    """The value percent-encoded as UTF-8; lone surrogates as their (invalid) UTF-8 bytes."""
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


def _send(call: Call, method: str, url: str, body: Any = None) -> httpx.Response | str:
    """The response, or what the app raised (a 5xx: the ASGI transport re-raises it)."""
    try:
        return call(method, url, body)
    except Exception as exc:  # any exception out of the app is a server error (a 5xx)
        return f"server error: {type(exc).__name__}: {str(exc)[:300]}"


def _outcome_problem(response: httpx.Response) -> str | None:
    try:
        outcome = response.json()
        issue = outcome["issue"][0]
        if outcome["resourceType"] == "OperationOutcome" and issue["severity"] and issue["code"]:
            return None
    except (ValueError, KeyError, IndexError, TypeError):
        pass
    return f"{response.status_code} without an OperationOutcome: {response.text[:300]}"


def _is_b(resource: dict[str, Any]) -> bool:
    if (resource.get("resourceType"), resource.get("id")) in B_KEYS:
        return True
    return any(r == "Patient/B" or r.endswith("/Patient/B") for r in references(resource))


def _searched_types(url: str) -> set[str]:
    path = url.split("?", 1)[0].removeprefix("/fhir").strip("/")
    name = path.split("/", 1)[0]
    return {name} if name else {t for t, _ in A_KEYS}


def _problems(who: str, method: str, url: str, response: httpx.Response | str) -> list[str]:
    """Why the answer to a hostile search is wrong, if it is."""
    where = f"{who} {method} {url[:160]}"
    if isinstance(response, str):
        return [f"{where}: {response}"]
    status = response.status_code
    if 400 <= status < 500:
        problem = _outcome_problem(response)
        return [f"{where}: {problem}"] if problem else []
    if status != 200:
        return [f"{where}: status {status}: {response.text[:300]}"]
    try:
        bundle = response.json()
    except ValueError:
        return [f"{where}: 200 that is not JSON: {response.text[:300]}"]
    if bundle.get("resourceType") != "Bundle":
        return [f"{where}: 200 that is not a Bundle: {response.text[:300]}"]
    if who != "patient-A":
        return []
    out = []
    for entry in bundle.get("entry", []):
        resource = entry.get("resource", {})
        if entry.get("search", {}).get("mode") != "outcome" and _is_b(resource):
            out.append(f"{where}: B's {resource['resourceType']}/{resource['id']} leaked")
    visible = sum(1 for t, _ in A_KEYS if t in _searched_types(url))
    if bundle.get("total", 0) > visible:
        out.append(f"{where}: total {bundle['total']} counts resources A may not see")
    return out


def _run(callers: dict[str, Call], requests: list[tuple[str, str, str | None]]) -> list[str]:
    problems = []
    for who, call in callers.items():
        for method, url, body in requests:
            problems += _problems(who, method, url, _send(call, method, url, body))
    return problems


# -- the hostile values --------------------------------------------------------------------------
HOSTILE = {
    "sql-or": "' OR '1'='1",
    "sql-paren": "1) OR 1=1--",
    "sql-drop": "'; DROP TABLE resource;--",
    "like-percent": "%",
    "like-underscore": "_",
    "backslash": "\\",
    "star": "*",
    "nul": "a\x00",
    "rtl-emoji": "\u202eA\u200f\U0001f600",
    "lone-surrogate": "\ud800",
    "very-long": "A" * 8000,
    "traversal": "../Patient/B",
}
# Prefixes on types that take none
PREFIXED = {"prefix-ge": "ge5", "prefix-sa": "sa2016", "prefix-ap-garbage": "apx"}
# B's id in shapes the server may refuse (those it takes: test_b_in_the_value_... below)
B_SHAPED = {
    "b-versioned": "Patient/B/_history/1",
    "b-escaped-comma": "A\\,B",
    "b-other-server": "http://evil.example/fhir/Patient/B",
    "b-encoded-slash": "Patient%2FB",
}

# Where a value goes ({v}), per kind of parameter; each request is sent with both tokens.
SLOTS: dict[str, list[str]] = {
    "string": ["/fhir/Patient?family={v}", "/fhir/Patient?name:contains={v}"],
    "token": ["/fhir/Observation?code={v}", "/fhir/Observation?code:text={v}"],
    "reference": ["/fhir/Observation?subject={v}", "/fhir/Observation?patient={v}"],
    "date": ["/fhir/Observation?date={v}", "/fhir/Patient?birthdate=ge{v}"],
    "number": ["/fhir/RiskAssessment?probability={v}"],
    "quantity": [
        "/fhir/Observation?value-quantity={v}",
        "/fhir/Observation?value-quantity=5|{v}|{v}",
    ],
    "uri": ["/fhir/Observation?_profile:below={v}", "/fhir/Observation?_profile:above={v}"],
    "composite": [
        "/fhir/Observation?code-value-quantity={v}",
        f"/fhir/Observation?code-value-quantity={LOINC}|72514-3${{v}}",
    ],
    "special": ["/fhir/Location?near={v}"],
    "_id": ["/fhir/Patient?_id={v}"],
    "_lastUpdated": ["/fhir/Observation?_lastUpdated={v}"],
    "_has": [
        "/fhir/Patient?_has:Observation:subject:_id={v}",
        "/fhir/Patient?_has:{v}:subject:_id=oB1",
    ],
    "chain": [
        "/fhir/Observation?subject:Patient._id={v}",
        "/fhir/Observation?subject:Patient.{v}=B",
    ],
    "include": ["/fhir/Observation?_include={v}", "/fhir/Patient?_revinclude={v}"],
    "result": [
        "/fhir/Observation?_sort={v}",
        "/fhir/Observation?_count={v}",
        "/fhir/Observation?_elements={v}",
        "/fhir/Observation?_summary={v}",
    ],
    "modifier": [
        "/fhir/Patient?family:{v}=O",
        "/fhir/Observation?code:not={v}",
        f"/fhir/Patient?identifier:of-type={V2_0203}|MR|{{v}}",
        "/fhir/Observation?value-quantity:missing={v}",
        "/fhir/Observation?subject:identifier={v}",
    ],
    "name": ["/fhir/Patient?{v}=B", "/fhir?_type={v}"],
    "post": ["Observation/_search code={v}&subject={v}"],
}
# the kinds a prefix is not meant for
UNPREFIXED_KINDS = ("string", "token", "reference", "uri", "_id")
ID_KINDS = ("reference", "_id", "_has", "chain")


def _requests(kind: str, value: str) -> list[tuple[str, str, str | None]]:
    encoded = _encode(value)
    out: list[tuple[str, str, str | None]] = []
    for slot in SLOTS[kind]:
        if kind == "post":
            path, _, form = slot.partition(" ")
            out.append(("POST", f"/fhir/{path}", form.replace("{v}", encoded)))
        else:
            out.append(("GET", slot.replace("{v}", encoded), None))
    return out


def _cases() -> list[Any]:
    cases = [
        pytest.param(kind, value, id=f"{kind}-{name}")
        for name, value in HOSTILE.items()
        for kind in SLOTS
    ]
    cases += [
        pytest.param(kind, value, id=f"{kind}-{name}")
        for name, value in PREFIXED.items()
        for kind in UNPREFIXED_KINDS
    ]
    cases += [
        pytest.param(kind, value, id=f"{kind}-{name}")
        for name, value in B_SHAPED.items()
        for kind in ID_KINDS
    ]
    return cases


@pytest.mark.parametrize(("kind", "value"), _cases())
def test_hostile_search_values_are_refused_or_harmless(
    readers: dict[str, Call], kind: str, value: str
) -> None:
    problems = _run(readers, _requests(kind, value))
    assert not problems, "\n".join(problems)


# -- many values, huge values (POST _search: past what fits in a URL) ----------------------------
MANY = 1200  # SQLite's limit is an expression depth of 1,000


@pytest.mark.parametrize("name", ["code", "family"])
def test_a_thousand_values_are_refused_or_harmless(readers: dict[str, Call], name: str) -> None:
    resource_type = "Patient" if name == "family" else "Observation"
    values = ",".join(f"x{i}" for i in range(MANY))
    url = f"/fhir/{resource_type}/_search"
    problems = _run(readers, [("POST", url, f"{name}={values}")])
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "name",
    ["family", "name:contains", "address-city", "code:text", "_profile:below", "_id", "subject"],
)
def test_a_value_of_60000_characters_is_refused_or_harmless(
    readers: dict[str, Call], name: str
) -> None:
    resource_type = (
        "Patient" if name in {"family", "name:contains", "address-city"} else "Observation"
    )
    url = f"/fhir/{resource_type}/_search"
    problems = _run(readers, [("POST", url, f"{name}={'A' * 60000}")])
    assert not problems, "\n".join(problems)


# -- B's id hidden in the value: the user token finds B's data, A's token never ---------------
A_OBS = {"Observation/oA1", "Observation/oA2", "Observation/oA3"}
# (query, one of B's resources the user token finds, what A's token gets: matches and includes)
HIDDEN_B: list[tuple[str, str, set[str]]] = [
    ("Observation?subject=Patient/B", "Observation/oB1", set()),
    ("Observation?subject=B", "Observation/oB1", set()),
    ("Observation?patient=B", "Observation/oB1", set()),
    ("Observation?subject=http://testserver/fhir/Patient/B", "Observation/oB1", set()),
    ("Observation?subject=Patient/A,Patient/B", "Observation/oB1", A_OBS),
    ("Observation?subject:Patient=B", "Observation/oB1", set()),
    ("Observation?subject:Patient._id=B", "Observation/oB1", set()),
    ("Observation?subject:Patient.family=Bravo", "Observation/oB1", set()),
    (f"Observation?patient.identifier={MRN}|B-1", "Observation/oB1", set()),
    ("Observation?_id=oB1", "Observation/oB1", set()),
    ("Observation?_id=oA1,oB1", "Observation/oB1", {"Observation/oA1"}),
    ("Patient?_id=B", "Patient/B", set()),
    ("Patient?_id=A,B", "Patient/B", {"Patient/A"}),
    ("Patient?family=Bravo", "Patient/B", set()),
    ("Patient?identifier=B-1", "Patient/B", set()),
    ("Patient?_has:Observation:subject:_id=oB1", "Patient/B", set()),
    ("Patient?_has:Observation:patient:value-quantity=8", "Patient/B", set()),
    ("Patient?_has:Condition:subject:_id=cB", "Patient/B", set()),
    ("Patient?_revinclude=Observation:subject", "Observation/oB1", {"Patient/A", *A_OBS}),
    ("Observation?_id=oB1&_include=Observation:subject", "Patient/B", set()),
    ("Condition?_include=Condition:subject", "Patient/B", {"Condition/cA", "Patient/A"}),
    ("RiskAssessment?probability=gt0.5", "RiskAssessment/rB", set()),
    ("Observation?value-quantity=8", "Observation/oB2", set()),
    (f"Observation?component-code-value-quantity={LOINC}|8480-6$gt140", "Observation/oB3", set()),
    ("Observation?_sort=-value-quantity&_count=1", "Observation/oB2", {"Observation/oA1"}),
    ("?_type=Patient,Observation&_id=B,oB1", "Patient/B", set()),
    ("?_id=B", "Patient/B", set()),
]


def _keys(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in response.json().get("entry", [])
        if e.get("search", {}).get("mode") != "outcome"
    }


@pytest.mark.parametrize(("query", "found", "seen"), HIDDEN_B, ids=[q for q, _, _ in HIDDEN_B])
def test_b_in_the_value_finds_b_for_the_user_and_nothing_for_a(
    readers: dict[str, Call], query: str, found: str, seen: set[str]
) -> None:
    url = f"/fhir/{query}"
    assert found in _keys(readers["user"]("GET", url))  # the query does reach B's data
    answer = _send(readers["patient-A"], "GET", url)
    problems = _problems("patient-A", "GET", url, answer)
    assert not problems, "\n".join(problems)
    assert isinstance(answer, httpx.Response)
    assert _keys(answer) == seen
    if not seen:
        assert answer.json()["total"] == 0
    count = readers["patient-A"]("GET", f"{url}{'&' if '?' in url else '?'}_summary=count")
    assert count.status_code == 200, count.text
    assert count.json()["total"] == answer.json()["total"]


# -- LIKE wildcards are literal ------------------------------------------------------------------
LITERAL = [
    ("Patient?family=%25", set()),
    ("Patient?family=_", set()),
    ("Patient?family=%25%25", set()),
    ("Patient?family=%5C", set()),
    ("Patient?family=O%27", {"Patient/A"}),
    ("Patient?family=O%27Brien", {"Patient/A"}),
    ("Patient?family:exact=O%27Brien", {"Patient/A"}),
    ("Patient?family=O_Brien", set()),
    ("Patient?family:exact=O_Brien", set()),
    ("Patient?name:contains=%25", set()),
    ("Patient?name:contains=_", set()),
    ("Patient?name:contains=%27", {"Patient/A"}),
    ("Patient?address-city=100%25", {"Patient/A"}),
    ("Patient?address-city=100%25%20_", {"Patient/A"}),
    ("Patient?address-city=100_", set()),
    ("Patient?address-city=1%25", set()),
    ("Patient?address-city=_00", set()),
    ("Patient?address-city:contains=%25%20_", {"Patient/A"}),
    ("Patient?address-city:contains=0_", set()),
    ("Patient?address-city:contains=%25%25", set()),
    ("Observation?code:text=%25", set()),
    ("Observation?code:text=_ain", set()),
    (
        "Observation?code:text=pain",
        {"Observation/oA1", "Observation/oA2", "Observation/oB1", "Observation/oB2"},
    ),
    ("Observation?_profile:below=http://example.org/fhir/%25", set()),
    ("Observation?_profile:below=http://example.org/fhir/StructureDefinition/pai_", set()),
    (
        "Observation?_profile:below=http://example.org/fhir/StructureDefinition/pain_",
        {"Observation/oA1", "Observation/oA2", "Observation/oB1", "Observation/oB2"},
    ),
    ("Observation?_profile:below=HTTP://EXAMPLE.ORG/fhir/", set()),
    (
        "Observation?_profile:above=http://example.org/fhir/StructureDefinition/pain_score/v2",
        {"Observation/oA1", "Observation/oA2", "Observation/oB1", "Observation/oB2"},
    ),
    (
        "Observation?_profile:above=http://example.org/fhir/StructureDefinition/painXscore",
        set(),
    ),
    ("Observation?_profile=http://example.org/fhir/StructureDefinition/pain%25", set()),
    ("Patient?_id=%25", set()),
    ("Patient?_id=_", set()),
    ("Patient?_id=b", set()),
    ("Patient?identifier=%25", set()),
    ("Patient?identifier=B-_", set()),
]


@pytest.mark.parametrize(("query", "expected"), LITERAL, ids=[q for q, _ in LITERAL])
def test_wildcards_in_values_match_literally(
    readers: dict[str, Call], query: str, expected: set[str]
) -> None:
    assert _keys(readers["user"]("GET", f"/fhir/{query}")) == expected


# -- ids -----------------------------------------------------------------------------------------
# Outside the id rule ([A-Za-z0-9.-]{1,64}), as they appear in the URL's path
BAD_IDS = {
    "65-chars": _encode("a" * 65),
    "space": _encode("a b"),
    "slash": "a/b",
    "encoded-slash": _encode("a/b"),
    "nul": _encode("a\x00"),
    "newline": _encode("a\n"),
    "script": _encode("<script>alert(1)</script>"),
    "sql-or": _encode("' OR '1'='1"),
    "sql-drop": _encode("B'; DROP TABLE resource;--"),
    "percent": _encode("%"),
    "underscore": "_",
    "star": "*",
    "backslash": _encode("\\"),
    "emoji": _encode("\U0001f600"),
    "rtl": _encode("\u202eB"),
    "lone-surrogate": _encode("\ud800"),
    "traversal": _encode("../Patient/B"),
    "traversal-dots": "%2e%2e%2fPatient%2fB",
    "traversal-backslash": _encode("..\\Patient\\B"),
    "b-comma": "A,B",
}
PATCH = [{"op": "replace", "path": "/gender", "value": "other"}]


def _snapshot(engine: Engine) -> list[tuple[Any, ...]]:
    """Every resource but the audit trail's, with all its versions (straight from the tables)."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT r.resource_type, r.resource_id, r.version_id, r.deleted, v.version_id, "
                "v.method FROM resource r JOIN resource_version v ON v.res_key = r.res_key "
                "WHERE r.resource_type <> 'AuditEvent' "
                "ORDER BY r.resource_type, r.resource_id, v.version_id"
            )
        )
        return [tuple(row) for row in rows]


def _id_requests(bad: str) -> list[tuple[str, str, Any]]:
    mallory = patient_resource("Mallory")
    reads: list[tuple[str, str, Any]] = [
        ("GET", f"/fhir/Patient/{bad}", None),
        ("GET", f"/fhir/Patient/{bad}/_history/1", None),
        ("GET", f"/fhir/Patient/{bad}/_history", None),
    ]
    writes: list[tuple[str, str, Any]] = [
        ("PUT", f"/fhir/Patient/{bad}", {**mallory, "id": unquote(bad)}),
        ("PUT", f"/fhir/Patient/{bad}", {**mallory, "id": "B"}),
        ("PATCH", f"/fhir/Patient/{bad}", PATCH),
        ("DELETE", f"/fhir/Patient/{bad}", None),
    ]
    return reads + writes


def _id_problems(callers: dict[str, Call], requests: list[tuple[str, str, Any]]) -> list[str]:
    problems = []
    for who, call in callers.items():
        for method, path, body in requests:
            response = _send(call, method, path, body)
            where = f"{who} {method} {path} {body if method == 'PUT' else ''}"
            if isinstance(response, str):
                problems.append(f"{where}: {response}")
            elif response.status_code not in (400, 404):
                problems.append(f"{where}: {response.status_code} {response.text[:300]}")
            elif problem := _outcome_problem(response):
                problems.append(f"{where}: {problem}")
    return problems


@pytest.mark.parametrize("bad", list(BAD_IDS.values()), ids=list(BAD_IDS))
def test_bad_ids_are_4xx_and_write_nothing(
    server: httpx.Client,
    readers: dict[str, Call],
    writer: Call,
    admin_engines: dict[str, Engine],
    database_url: str,
    bad: str,
) -> None:
    engine = admin_engines[database_url]
    before = _snapshot(engine)
    requests = _id_requests(bad)
    problems = _id_problems(readers, requests[:3]) + _id_problems({"user": writer}, requests[3:])
    assert not problems, "\n".join(problems)
    assert _snapshot(engine) == before


@pytest.mark.parametrize("dots", ["%2e%2e", "%2e"], ids=["dot-dot", "dot"])
def test_dot_segment_ids_are_refused(tmp_path: Path, dots: str) -> None:
    """On a SQLite database of its own, since the PUT may create (ids are checked before
    storage, so one database tells)."""
    url = f"sqlite:///{tmp_path / 'dots.sqlite3'}"
    engine = make_engine(Settings(DATABASE_URL=url))
    try:
        upgrade(engine)
        with secured_server(url, {url: engine}, tmp_path, SEED[:2]) as client:
            before = _snapshot(engine)
            readers = {
                "patient-A": _as(client, "patient/*.rs", patient="A"),
                "user": _as(client, "user/*.rs"),
            }
            requests = _id_requests(dots)
            problems = _id_problems(readers, requests[:3])
            problems += _id_problems({"user": _as(client, "user/*.cruds")}, requests[3:])
            after = _snapshot(engine)
    finally:
        engine.dispose()
    assert not problems, "\n".join(problems)
    assert after == before


# -- nothing was written -------------------------------------------------------------------------
def _seed_problems(client: httpx.Client, engine: Engine) -> list[str]:
    """How the server's data differs from the seed, read with a system token and from the
    tables."""
    system = _as(client, "system/*.*")
    problems = []
    found = system("GET", "/fhir?_count=1000")
    if found.status_code != 200:
        return [f"system search: {found.status_code} {found.text[:300]}"]
    stored = {
        (e["resource"]["resourceType"], e["resource"]["id"]): e["resource"]
        for e in found.json().get("entry", [])
    }
    for resource in SEED:
        key = (resource["resourceType"], resource["id"])
        got = stored.pop(key, None)
        if got is None:
            problems.append(f"{key} is gone")
            continue
        meta = dict(got.pop("meta"))
        if meta.pop("versionId") != "1":
            problems.append(f"{key} has a new version")
        meta.pop("lastUpdated")
        if meta:
            got["meta"] = meta
        if got != resource:
            problems.append(f"{key} changed: {got}")
    problems += [f"{key} was added" for key in stored]
    expected = sorted((r["resourceType"], r["id"], 1, False, 1, "PUT") for r in SEED)
    if (rows := _snapshot(engine)) != expected:
        problems.append(f"the tables hold {rows}")
    return problems


def test_the_database_holds_exactly_the_seed(
    server: httpx.Client, admin_engines: dict[str, Engine], database_url: str
) -> None:
    problems = _seed_problems(server, admin_engines[database_url])
    assert not problems, "\n".join(problems)


# -- the audit trail keeps hostile requests too -------------------------------------------------


AUDIT_PROBES = ["/fhir/Patient/a%00", "/fhir/Patient/%3Cscript%3E", "/fhir/Patient?name=%27--"]


def _probe_the_audit_trail(client: httpx.Client) -> None:
    """Hostile requests, then a sentinel, as the server's first requests (so no other test's
    events queue before theirs): test_hostile_requests_are_audited looks for their events."""
    prober = _as(client, "user/*.rs", client_id="injection-prober")
    for path in AUDIT_PROBES:
        assert not _problems("user", "GET", path, _send(prober, "GET", path))
    time.sleep(0.05)  # the sentinel's event most likely in a later batch than theirs
    assert prober("GET", "/fhir/Patient/A").status_code == 200


def test_hostile_requests_are_audited(server: httpx.Client) -> None:
    auditor = _as(server, "system/AuditEvent.rs", client_id="injection-auditor")
    entities: list[set[str]] = []
    for _ in range(100):  # the writer retries a failing batch for 2 s before it drops it
        found = auditor("GET", "/fhir/AuditEvent?altid=injection-prober&_count=100").json()
        entities = [
            {x["what"]["reference"] for x in e["resource"].get("entity", []) if "what" in x}
            for e in found.get("entry", [])
        ]
        if {"Patient/A"} in entities:
            break
        time.sleep(0.05)
    assert {"Patient/A"} in entities, "the sentinel request was not audited"
    assert len(entities) == len(AUDIT_PROBES) + 1, entities
