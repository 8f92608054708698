"""_summary and _elements: subsets of a resource, tagged SUBSETTED (search.html#summary)."""

from __future__ import annotations

from functools import cache

from app.fhir import jsonio
from app.fhir.models import model_class

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "subsetted",
}
_ALWAYS = frozenset({"resourceType", "id", "meta"})


@cache
def _elements_flagged(resource_type: str, flag: str) -> frozenset[str]:
    names: set[str] = set()
    for name, field in model_class(resource_type).model_fields.items():
        extra = field.json_schema_extra
        if isinstance(extra, dict) and extra.get(flag):
            names.add(field.alias or name)
            names.add("_" + (field.alias or name))
    return frozenset(names)


def _keep(
    resource_type: str, summary: str | None, elements: tuple[str, ...]
) -> frozenset[str] | None:
    if elements:
        wanted = {e.split(".", 1)[-1] if "." in e else e for e in elements}
        return frozenset(_ALWAYS | wanted | {"_" + e for e in wanted})
    if summary == "true":
        return _ALWAYS | _elements_flagged(resource_type, "summary_element_property")
    if summary == "text":
        return _ALWAYS | {"text"} | _elements_flagged(resource_type, "element_required")
    return None


def subset(content: bytes, summary: str | None, elements: tuple[str, ...]) -> bytes:
    """The stored resource reduced as asked; unchanged (same bytes) when nothing is asked."""
    if summary in (None, "false", "count") and not elements:
        return content
    resource = jsonio.loads(content)
    keep = _keep(resource["resourceType"], summary, elements)
    if keep is not None:
        resource = {k: v for k, v in resource.items() if k in keep}
    elif summary == "data":
        resource.pop("text", None)
    meta = dict(resource.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    resource["meta"] = meta
    return jsonio.dumps(resource)
