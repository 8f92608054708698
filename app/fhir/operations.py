"""FHIR operations over the clinical analyses: reading their inputs (operation parameters from a
query or a Parameters body), gathering a patient's resources, and answering as Parameters.
No HTTP here; app/api/operation_routes.py exposes these."""

from __future__ import annotations

import functools
import html
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from typing import Any

import orjson

from app.clinical import chart, fibromyalgia, liver, pain
from app.fhir import jsonio
from app.fhir.errors import (
    BadRequestError,
    FhirError,
    GoneError,
    Issue,
    NotFoundError,
    operation_outcome,
)
from app.fhir.models import require_resource_type, validate
from app.fhir.service import ResourceService
from app.search.dates import parse_range
from app.search.query import SearchRequest, parse_search

_MAX_PAGE = 1000
_ALL_PAGE = 10_000  # when every match is read (a patient's resources of one type)


def parameters_from_body(body: Any) -> list[tuple[str, str]]:
    """A Parameters resource's primitive parameters as (name, text) pairs, like a query's."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise BadRequestError("The body of an operation must be a Parameters resource")
    pairs = []
    for number, parameter in enumerate(body.get("parameter", [])):
        name = parameter.get("name")
        values = [v for k, v in parameter.items() if k.startswith("value")]
        if not isinstance(name, str) or len(values) != 1 or isinstance(values[0], dict | list):
            raise BadRequestError(
                "Each parameter needs a name and one primitive value",
                (f"Parameters.parameter[{number}]",),
            )
        value = values[0]
        pairs.append((name, str(value).lower() if isinstance(value, bool) else str(value)))
    return pairs


def _single(pairs: list[tuple[str, str]], allowed: set[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in pairs:
        if name not in allowed:
            raise BadRequestError(
                f"Unknown parameter '{name}'; this operation takes {', '.join(sorted(allowed))}",
                (name,),
                code="not-supported",
            )
        if name in found:
            raise BadRequestError(f"Parameter '{name}' is given more than once", (name,))
        found[name] = value
    return found


def _number(values: dict[str, str], name: str) -> Fraction | None:
    if name not in values:
        return None
    try:
        return Fraction(Decimal(values[name]))
    except (ArithmeticError, ValueError):
        raise BadRequestError(
            f"Parameter '{name}': '{values[name]}' is not a number", (name,)
        ) from None


def _token(text: str, name: str) -> tuple[str | None, str]:
    system, bar, code = text.rpartition("|")
    if not code:
        raise BadRequestError(f"Parameter '{name}': '{text}' is not a token (system|code)", (name,))
    return (system or None) if bar else None, code


def _all(service: ResourceService, resource_type: str, pairs: list[tuple[str, str]]) -> list[Any]:
    """Every match of a search: one statement per _ALL_PAGE matches, none to count them."""
    out: list[Any] = []
    offset = 0
    while True:
        _, page, _ = service.search(
            (resource_type,),
            [*pairs, ("_count", str(_ALL_PAGE)), ("_offset", str(offset)), ("_total", "none")],
            _ALL_PAGE,
            _ALL_PAGE,
        )
        out.extend(record.content for record in page.matches)
        if not page.has_more:
            return out
        offset += _ALL_PAGE


def _resources(service: ResourceService, resource_type: str, patient: str) -> list[Any]:
    return _parsed([c for c in _all(service, resource_type, [("patient", patient)]) if c])


def _parsed(contents: list[bytes]) -> list[Any]:
    """Stored resources as dicts, as jsonio.loads reads each, but parsed together: one orjson
    parse of the whole list (~5x faster than one jsonio.loads each, whose scan for decimals
    costs more than the parse). When writing the list back gives the same bytes, each number's
    text is what orjson writes for its double, so none changed (where jsonio.loads would give
    a Decimal of that same text, for a string its scan takes for a number, this gives the
    float: the same number to the analyses, which read numbers as Fraction(str(value)));
    otherwise (bytes orjson did not write, a decimal kept as written like 1.50) each resource
    goes through jsonio.loads."""
    if not contents:
        return []
    joined = b"[" + b",".join(contents) + b"]"
    try:
        parsed = orjson.loads(joined)
        if (
            isinstance(parsed, list)
            and len(parsed) == len(contents)
            and orjson.dumps(parsed) == joined
        ):
            return parsed
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        pass
    return [jsonio.loads(c) for c in contents]


def pain_response(
    service: ResourceService, patient_id: str, pairs: list[tuple[str, str]]
) -> dict[str, Any]:
    values = _single(pairs, {"threshold", "baselineLookbackDays", "medication", "painCode"})
    threshold = _number(values, "threshold")
    lookback = _number(values, "baselineLookbackDays")
    if lookback is not None and lookback.denominator != 1:
        raise BadRequestError(
            "Parameter 'baselineLookbackDays' must be a whole number of days",
            ("baselineLookbackDays",),
        )
    medication = _token(values["medication"], "medication") if "medication" in values else None
    codes: tuple[tuple[str, str], ...] = pain.PAIN_CODES
    if "painCode" in values:
        system, code = _token(values["painCode"], "painCode")
        codes = ((system or pain.LOINC, code),)
    observations, administrations, medications = _patient_data(service, patient_id)
    try:
        result = pain.analyse(
            observations,
            administrations,
            threshold=threshold if threshold is not None else pain.DEFAULT_THRESHOLD,
            lookback_days=int(lookback) if lookback is not None else None,
            medication=medication,
            pain_codes=codes,
            medications=medications,
        )
    except pain.ClinicalInputError as exc:
        name = "threshold" if "threshold" in str(exc) else "baselineLookbackDays"
        raise BadRequestError(str(exc), (name,)) from None
    return _pain_parameters(result)


def _patient_data(
    service: ResourceService, patient_id: str
) -> tuple[list[Any], list[Any], dict[str, Any]]:
    """The patient's Observations, MedicationAdministrations and the Medications these name;
    404 / 410 when there is no such patient."""
    service.read("Patient", patient_id)
    observations = _resources(service, "Observation", patient_id)
    administrations = _resources(service, "MedicationAdministration", patient_id)
    return observations, administrations, _medications(service, administrations)


def _medications(service: ResourceService, administrations: list[Any]) -> dict[str, Any]:
    """Medication resources the administrations point at (contained ones included)."""
    found: dict[str, Any] = {}
    for resource in administrations:
        for contained in resource.get("contained", []):
            if contained.get("resourceType") == "Medication":
                found[f"#{contained.get('id')}"] = contained
        reference = (resource.get("medicationReference") or {}).get("reference", "")
        if reference.startswith("Medication/") and reference not in found:
            try:
                record = service.read("Medication", reference.split("/", 1)[1])
            except (NotFoundError, GoneError):  # unknown or deleted: its codes are unknown
                continue
            found[reference] = jsonio.loads(record.content or b"{}")
    return found


def liver_safety(
    service: ResourceService, patient_id: str, pairs: list[tuple[str, str]]
) -> dict[str, Any]:
    values = _single(pairs, {"medication"})
    medication = _token(values["medication"], "medication") if "medication" in values else None
    observations, administrations, medications = _patient_data(service, patient_id)
    doses = pain.administrations(administrations, medications, medication)
    result = liver.liver_safety(observations, doses)
    out: list[dict[str, Any]] = []
    for test in result.tests:
        parts = [
            _part("observation", **_ref(test.key)),
            _part("analyte", valueCode=test.analyte),
        ]
        if test.day is not None:
            parts.append(_part("date", valueDate=test.day.isoformat()))
        if test.value is not None:
            parts.append(_part("value", valueDecimal=decimal(test.value)))
        if test.uln is not None:
            parts.append(_part("upperLimitOfNormal", valueDecimal=decimal(test.uln)))
        if test.ratio is not None:
            parts.append(_part("ratioToUln", valueDecimal=decimal(test.ratio)))
        parts.append(_part("status", valueCode=test.status))
        parts.append(
            _part("basis", valueCode="ratio" if test.ratio is not None else "interpretation")
        )
        if test.pre_dose:
            parts.append(_part("timing", valueCode="pre-infusion"))
        if test.days_from_first_dose is not None:
            parts.append(_part("daysFromFirstDose", valueInteger=test.days_from_first_dose))
        out.append(_part("test", part=parts))
    out.append(_part("testCount", valueInteger=len(result.tests)))
    out.append(_part("abnormalCount", valueInteger=result.abnormal))
    out.append(_part("ulnComputable", valueBoolean=result.uln_computable))
    if result.dili_signal is None:
        out.append(_part("diliSignalStatus", valueCode="not-computable"))
    else:
        out.append(_part("diliSignal", valueBoolean=result.dili_signal))
    out += [_part("diliCriterion", valueString=c) for c in result.dili_criteria]
    if result.pattern is not None and result.r_ratio is not None:
        out.append(_part("pattern", valueCode=result.pattern))
        out.append(_part("rRatio", valueDecimal=decimal(result.r_ratio)))
    if result.last_dated_test is not None:
        out.append(_part("lastDatedTest", valueDate=result.last_dated_test.isoformat()))
    out.append(
        _part("administrationsAfterLastLft", valueInteger=result.administrations_after_last_test)
    )
    return {"resourceType": "Parameters", "parameter": out}


_FM_INPUTS = {
    "wpi",
    "ss",
    "symptomDurationMonths",
    "otherDisorderExplainsPain",
    "generalizedPain",
    "version",
}
FIBROMYALGIA = ("http://snomed.info/sct", "203082005")


def fibromyalgia_criteria(
    service: ResourceService, patient_id: str | None, pairs: list[tuple[str, str]]
) -> dict[str, Any]:
    values = _single(pairs, _FM_INPUTS)
    months = _number(values, "symptomDurationMonths")
    derived_from = None
    if patient_id is not None:
        service.read("Patient", patient_id)
        if months is None:
            derived_from, months = _onset_months(service, patient_id)
    try:
        result = fibromyalgia.evaluate(
            wpi=_whole(values, "wpi"),
            ss=_whole(values, "ss"),
            symptom_months=float(months) if months is not None else None,
            other_disorder=_flag(values, "otherDisorderExplainsPain"),
            generalized_pain=_flag(values, "generalizedPain"),
            version=values.get("version", "2010"),
        )
    except fibromyalgia.CriteriaInputError as exc:
        raise BadRequestError(str(exc), (exc.name,)) from None
    out = [
        _part("result", valueCode=result.result),
        _part("version", valueCode=result.version),
        *(_part("missing", valueString=m) for m in result.missing),
        *(_part("failed", valueString=f) for f in result.failed),
    ]
    if derived_from is not None:
        out.append(_part("durationFrom", **_ref(derived_from)))
    return {"resourceType": "Parameters", "parameter": out}


def _whole(values: dict[str, str], name: str) -> int | None:
    number = _number(values, name)
    if number is None:
        return None
    if number.denominator != 1:
        raise BadRequestError(f"Parameter '{name}' must be a whole number", (name,))
    return int(number)


def _flag(values: dict[str, str], name: str) -> bool | None:
    if name not in values:
        return None
    if values[name] not in ("true", "false"):
        raise BadRequestError(f"Parameter '{name}' must be true or false", (name,))
    return values[name] == "true"


def _onset_months(service: ResourceService, patient_id: str) -> tuple[str | None, Fraction | None]:
    """Months from a fibromyalgia Condition's onset to today, when the onset is recorded."""
    conditions = _resources(service, "Condition", patient_id)
    for condition in conditions:
        codes = [
            (c.get("system"), c.get("code")) for c in condition.get("code", {}).get("coding", [])
        ]
        onset = condition.get("onsetDateTime")
        if FIBROMYALGIA in codes and isinstance(onset, str) and len(onset) >= 10:
            days = (date.today() - date.fromisoformat(onset[:10])).days
            return f"Condition/{condition['id']}", Fraction(days * 12, 365)
    return None, None


def clinical_course(
    service: ResourceService, patient_id: str, pairs: list[tuple[str, str]], kind: str
) -> bytes:
    """Patient/$clinical-course: the chart as SVG, or an HTML page with it and the pain table."""
    values = _single(pairs, {"threshold"})
    threshold = _number(values, "threshold")
    observations, administrations, medications = _patient_data(service, patient_id)
    try:
        result = pain.analyse(
            observations,
            administrations,
            threshold=threshold if threshold is not None else pain.DEFAULT_THRESHOLD,
            medications=medications,
        )
    except pain.ClinicalInputError as exc:
        raise BadRequestError(str(exc), ("threshold",)) from None
    doses = pain.administrations(administrations, medications)
    safety = liver.liver_safety(observations, doses)
    svg = chart.clinical_course_svg(result, safety, f"Clinical course of Patient/{patient_id}")
    if kind == "svg":
        return svg
    return _course_page(patient_id, svg, result).encode()


def _course_page(patient_id: str, svg: bytes, result: pain.PainResponse) -> str:
    text = svg.decode()
    inline = text[text.index("<svg") :]  # without the XML prolog and doctype
    rows = []
    for point in result.points:
        low, high = decimal(point.pain.low), decimal(point.pain.high)
        value = f"{low}" if low == high else f"{low}-{high}"
        improvement = "-"
        if point.improvement is not None:
            a, b = (decimal(x) for x in point.improvement)
            improvement = f"{a}%" if a == b else f"{a}-{b}%"
        rows.append(
            "<tr>"
            f"<td>{point.pain.event.day.isoformat()}</td>"
            f"<td>{value}{' (derived)' if point.pain.derived else ''}</td>"
            f"<td>{decimal(point.cumulative_known_mg)}"
            f"{' +' + str(point.unknown_before) + ' unknown' if point.unknown_before else ''}</td>"
            f"<td>{improvement}</td><td>{point.relapse}</td>"
            "</tr>"
        )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Clinical course: Patient/{html.escape(patient_id)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}</style></head><body>"
        f"<h1>Clinical course of Patient/{html.escape(patient_id)}</h1>{inline}"
        "<h2>Pain response</h2><table><thead><tr><th>date</th><th>PI-NRS</th>"
        "<th>cumulative known ketamine, mg</th><th>improvement from baseline</th>"
        "<th>relapse</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table></body></html>"
    )


# -- standard operations ($validate, $lastn, $everything) ---------------------------------------
def validate_resource(
    service: ResourceService, resource_type: str, resource_id: str | None, body: Any | None
) -> dict[str, Any]:
    """$validate: an OperationOutcome listing the problems (answered with 200 either way)."""
    require_resource_type(resource_type)
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        found = [
            p.get("resource") for p in body.get("parameter", []) if p.get("name") == "resource"
        ]
        if len(found) != 1 or not isinstance(found[0], dict):
            raise BadRequestError(
                "The Parameters body needs exactly one 'resource' parameter", ("Parameters",)
            )
        body = found[0]
    if body is None:
        if resource_id is None:
            raise BadRequestError("$validate on a type needs the resource in the body")
        record = service.read(resource_type, resource_id)
        body = jsonio.loads(record.content or b"{}")
    try:
        validate(body, resource_type)
    except FhirError as exc:
        return exc.outcome()
    if resource_id is not None and body.get("id") not in (None, resource_id):
        return operation_outcome(
            [
                Issue(
                    "invalid",
                    f"The resource id '{body.get('id')}' is not '{resource_id}'",
                    "error",
                    (f"{resource_type}.id",),
                )
            ]
        )
    return operation_outcome([Issue("informational", "No issues found", "information")])


def lastn(service: ResourceService, pairs: list[tuple[str, str]]) -> tuple[Any, list[Any]]:
    """Observation/$lastn: the `max` most recent observations per code among the matches."""
    wanted = [v for k, v in pairs if k == "max"]
    maximum = 1
    if wanted:
        if len(wanted) > 1 or not wanted[0].isdigit() or int(wanted[0]) < 1:
            raise BadRequestError("max must be one whole number of 1 or more", ("max",))
        maximum = int(wanted[0])
    criteria = [(k, v) for k, v in pairs if k not in ("max", "_sort", "_count", "_offset")]
    if not any(k.split(":")[0] in ("patient", "subject") for k, _ in criteria):
        raise BadRequestError("$lastn needs a patient or subject parameter", ("patient",))
    records = []
    offset = 0
    while True:
        request, page, _ = service.search(
            ("Observation",),
            [*criteria, ("_sort", "-date"), ("_count", str(_MAX_PAGE)), ("_offset", str(offset))],
            _MAX_PAGE,
            _MAX_PAGE,
        )
        records.extend(page.matches)
        if not page.has_more or len(records) >= _LASTN_SCAN:
            break
        offset += _MAX_PAGE
    kept: dict[str, int] = {}
    out = []
    for record in records:
        observation = jsonio.loads(record.content or b"{}")
        code = observation.get("code", {})
        codings = code.get("coding") or [{"text": code.get("text", "")}]
        first = codings[0]
        group = f"{first.get('system', '')}|{first.get('code', first.get('text', ''))}"
        if kept.get(group, 0) < maximum:
            kept[group] = kept.get(group, 0) + 1
            out.append(record)
    return request, out


_LASTN_SCAN = 10_000  # observations read at most, newest first

STATISTICS_SYSTEM = "http://hl7.org/fhir/observation-statistics"
_STATISTICS = {"average", "maximum", "minimum", "count", "median", "sum", "std-dev", "variance"}


def stats(service: ResourceService, pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Observation/$stats: per code, the asked statistics of the numeric values
    (valueQuantity) of the subject's observations in `period`, as Observations in Parameters."""
    allowed = {"subject", "patient", "code", "system", "coding", "period", "statistic", "include"}
    for name, _ in pairs:
        if name not in allowed:
            raise BadRequestError(
                f"Unknown parameter '{name}' for $stats", (name,), code="not-supported"
            )
    subjects = [v for k, v in pairs if k in ("subject", "patient")]
    if len(subjects) != 1:
        raise BadRequestError("$stats needs one subject (or patient)", ("subject",))
    wanted = [s.strip() for k, v in pairs if k == "statistic" for s in v.split(",") if s.strip()]
    wanted = ["sum" if w == "total" else w for w in wanted]
    unknown = sorted(set(wanted) - _STATISTICS)
    if not wanted or unknown:
        raise BadRequestError(
            f"statistic must name some of {', '.join(sorted(_STATISTICS))} (or total)",
            ("statistic",),
        )
    system = next((v for k, v in pairs if k == "system"), None)
    codes = [c for k, v in pairs if k == "code" for c in v.split(",") if c]
    codes = [f"{system}|{c}" if system and "|" not in c else c for c in codes]
    codes += [v for k, v in pairs if k == "coding"]
    if not codes:
        raise BadRequestError("$stats needs a code or coding", ("code",))
    criteria = [("subject", subjects[0]), ("code", ",".join(codes))]
    periods = [v for k, v in pairs if k == "period"]
    if periods:
        start, _, end = periods[0].partition("/")
        if start:
            criteria.append(("date", f"ge{start}"))
        if end:
            criteria.append(("date", f"le{end}"))
    include = any(k == "include" and v == "true" for k, v in pairs)
    records = []
    offset = 0
    while True:
        _, page, _ = service.search(
            ("Observation",),
            [*criteria, ("_count", str(_MAX_PAGE)), ("_offset", str(offset))],
            _MAX_PAGE,
            _MAX_PAGE,
        )
        records.extend(page.matches)
        if not page.has_more:
            break
        offset += _MAX_PAGE
    groups: dict[tuple[str, str], list[tuple[Fraction, str, dict[str, Any]]]] = {}
    for record in records:
        observation = jsonio.loads(record.content or b"{}")
        quantity = observation.get("valueQuantity")
        if not isinstance(quantity, dict) or "value" not in quantity:
            continue
        coding = (observation.get("code", {}).get("coding") or [{}])[0]
        key = (str(coding.get("system", "")), str(coding.get("code", "")))
        unit = str(quantity.get("code", quantity.get("unit", "")))
        groups.setdefault(key, []).append((Fraction(str(quantity["value"])), unit, observation))
    out: list[dict[str, Any]] = []
    for (code_system, code), values in sorted(groups.items()):
        numbers = sorted(v for v, _, _ in values)
        unit = values[0][1]
        components = [
            {
                "code": {"coding": [{"system": STATISTICS_SYSTEM, "code": name}]},
                "valueQuantity": {"value": decimal(result), **({"unit": unit} if unit else {})},
            }
            for name in wanted
            if (result := _statistic(name, numbers)) is not None
        ]
        out.append(
            _part(
                "statistics",
                resource={
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"coding": [{"system": code_system, "code": code}]},
                    "subject": {
                        "reference": subjects[0] if "/" in subjects[0] else f"Patient/{subjects[0]}"
                    },
                    "component": components,
                },
            )
        )
        if include:
            out += [_part("source", resource=observation) for _, _, observation in values]
    return {"resourceType": "Parameters", "parameter": out}


def _statistic(name: str, numbers: list[Fraction]) -> Fraction | None:
    n = len(numbers)
    if name == "count":
        return Fraction(n)
    if not numbers:
        return None
    if name == "sum":
        return sum(numbers, Fraction(0))
    if name == "average":
        return sum(numbers, Fraction(0)) / n
    if name == "maximum":
        return numbers[-1]
    if name == "minimum":
        return numbers[0]
    if name == "median":
        middle = n // 2
        return numbers[middle] if n % 2 else (numbers[middle - 1] + numbers[middle]) / 2
    if n < 2:
        return None  # sample variance needs two values
    mean = sum(numbers, Fraction(0)) / n
    variance = sum(((x - mean) ** 2 for x in numbers), Fraction(0)) / (n - 1)
    if name == "variance":
        return variance
    return Fraction(Decimal(float(variance) ** 0.5))  # std-dev: irrational in general


def everything(
    service: ResourceService,
    patient_id: str,
    pairs: list[tuple[str, str]],
    default_count: int,
    max_count: int,
) -> tuple[SearchRequest, Any]:
    """Patient/$everything: the patient and what refers to it, paged (`_count`, `_offset`),
    filtered by `_type` and `_since` (changed after)."""
    values = _single(pairs, {"_count", "_offset", "_type", "_since"})
    service.read("Patient", patient_id)
    request = parse_search(
        ("Patient",),
        [(k, v) for k, v in values.items() if k in ("_count", "_offset")],
        default_count,
        max_count,
    )
    types: tuple[str, ...] = ()
    if "_type" in values:
        types = tuple(t.strip() for t in values["_type"].split(",") if t.strip())
        for name in types:
            try:
                require_resource_type(name)
            except FhirError as exc:
                raise BadRequestError(exc.diagnostics, ("_type",)) from None
    since = parse_range(values["_since"], "_since")[0] if "_since" in values else None
    page = service.store.everything(patient_id, types, since, request.count, request.offset)
    return request, page


# -- rendering ----------------------------------------------------------------------------------
def decimal(value: Fraction) -> Decimal:
    """Exact when the fraction has a finite decimal form, else 4 places (display rounds to 1)."""
    return _decimal(value.numerator, value.denominator)


@functools.lru_cache(maxsize=4096)
def _decimal(numerator: int, denominator: int) -> Decimal:
    # remembered: an answer repeats its values (doses, cumulative totals, percentages of the
    # few distinct scores), and Decimal division costs more than the lookup; Decimals are
    # immutable, so sharing one between answers is safe
    exact = Decimal(numerator) / Decimal(denominator)
    if exact * denominator == numerator:
        return exact.normalize() if exact != exact.to_integral() else exact.quantize(Decimal(1))
    return exact.quantize(Decimal("0.0001"), rounding=ROUND_HALF_EVEN)


def _part(name: str, **value: Any) -> dict[str, Any]:
    return {"name": name, **value}


def _ref(key: str) -> dict[str, Any]:
    return {"valueReference": {"reference": key}}


def _bounds(prefix: str, bounds: tuple[Fraction, Fraction] | None) -> list[dict[str, Any]]:
    if bounds is None:
        return []
    low, high = _BOUND_NAMES[prefix]
    return [
        {"name": low, "valueDecimal": decimal(bounds[0])},
        {"name": high, "valueDecimal": decimal(bounds[1])},
    ]


_BOUND_NAMES = {p: (f"{p}Low", f"{p}High") for p in ("percentOfBaseline", "improvement")}


def _pain_parts(point: pain.PainPoint) -> list[dict[str, Any]]:
    return [
        _part("observation", **_ref(point.key)),
        _part("date", valueDate=point.event.day.isoformat()),
        _part("low", valueDecimal=decimal(point.low)),
        _part("high", valueDecimal=decimal(point.high)),
    ]


def _pain_parameters(result: pain.PainResponse) -> dict[str, Any]:
    out: list[dict[str, Any]] = []
    if result.baseline is not None:
        parts = _pain_parts(result.baseline)
        if result.days_before_first_dose is not None:
            parts.append(_part("daysBeforeFirstDose", valueInteger=result.days_before_first_dose))
        out.append(_part("baseline", part=parts))
    if result.baseline_status is not None:
        out.append(_part("baselineStatus", valueCode=result.baseline_status))
    for point in result.points:
        parts = _pain_parts(point.pain)
        parts.append(_part("derived", valueBoolean=point.pain.derived))
        parts.append(
            _part("cumulativeKnownDoseMg", valueDecimal=decimal(point.cumulative_known_mg))
        )
        parts.append(_part("unknownDoseAdministrationsBefore", valueInteger=point.unknown_before))
        parts += _bounds("percentOfBaseline", point.percent_of_baseline)
        parts += _bounds("improvement", point.improvement)
        parts.append(_part("relapse", valueCode=point.relapse))
        parts += [_part("orderUndecidableWith", **_ref(k)) for k in point.order_undecidable]
        out.append(_part("point", part=parts))
    if result.nadir is not None:
        out.append(_part("nadir", part=_pain_parts(result.nadir)))
    for course in result.courses:
        parts = []
        if course.key is not None:
            parts.append(_part("procedure", **_ref(course.key)))
        parts += [
            _part("start", valueDate=course.start.isoformat()),
            _part("end", valueDate=course.end.isoformat()),
            _part("administrations", valueInteger=len(course.administrations)),
        ]
        for administration in course.administrations:
            dose = [_part("administration", **_ref(administration.key))]
            if administration.dose_mg is not None:
                dose.append(_part("doseMg", valueDecimal=decimal(administration.dose_mg)))
            else:
                dose.append(_part("doseUnknown", valueBoolean=True))
            parts.append(_part("doses", part=dose))
        parts += [
            _part("knownDoseMg", valueDecimal=decimal(course.known_mg)),
            _part("unknownDoseAdministrations", valueInteger=course.unknown_doses),
            *(_part("escalationSteps", valueInteger=s) for s in course.escalation_steps),
            _part("relapseTriggered", valueBoolean=course.relapse_triggered),
        ]
        out.append(_part("course", part=parts))
    if result.protocol_total_mg is not None:
        out.append(_part("protocolTotalMg", valueDecimal=decimal(result.protocol_total_mg)))
    out.append(_part("knownTotalMg", valueDecimal=decimal(result.known_total_mg)))
    out.append(_part("totalIsLowerBound", valueBoolean=result.total_is_lower_bound))
    if result.days_to_first_relapse is not None:
        out.append(_part("daysToFirstRelapse", valueInteger=result.days_to_first_relapse))
    out += [_part("warning", valueString=w) for w in result.warnings]
    return {"resourceType": "Parameters", "parameter": out}
