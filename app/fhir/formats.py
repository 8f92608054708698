"""FHIR's two wire formats. JSON is native (stored bytes go out as they are); XML is converted
through the R4B models on the way in and out, which is slower but exact."""

from __future__ import annotations

import re
from typing import Any

from lxml import etree
from pydantic import ValidationError

from app.fhir import jsonio
from app.fhir.errors import BadRequestError, StructureError
from app.fhir.models import model_class, require_resource_type, validation_error

JSON = "json"
XML = "xml"
FHIR_NS = "http://hl7.org/fhir"

# FHIR JSON forbids null members and empty objects or arrays; only look closer when the bytes
# contain something that might be one.
_MAYBE_EMPTY = re.compile(rb"null|\{\s*\}|\[\s*\]")


def _safe_parser() -> etree.XMLParser:
    # No entity expansion, no network, no DTD: an XML body must not read files or fetch URLs.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=True,
    )


def parse_json_resource(raw: bytes) -> Any:
    data = jsonio.loads_unique(raw)
    if _MAYBE_EMPTY.search(raw):
        _check_no_empties(
            data, str(data.get("resourceType", "$")) if isinstance(data, dict) else "$"
        )
    return data


def _check_no_empties(node: Any, path: str) -> None:
    if isinstance(node, dict):
        if not node:
            raise StructureError(f"{path}: empty objects are not allowed in FHIR JSON", (path,))
        for key, value in node.items():
            if value is None:
                raise StructureError(
                    f"{path}.{key}: null is not allowed in FHIR JSON", (f"{path}.{key}",)
                )
            _check_no_empties(value, f"{path}.{key}")
    elif isinstance(node, list):
        if not node:
            raise StructureError(f"{path}: empty arrays are not allowed in FHIR JSON", (path,))
        for index, item in enumerate(node):
            # null array items are allowed: they pad primitive arrays paired with `_name` arrays
            if item is not None:
                _check_no_empties(item, f"{path}[{index}]")


def parse_xml_resource(raw: bytes, max_depth: int | None = None) -> Any:
    """`max_depth`: the deepest element nesting accepted (libxml2 alone stops at 256, deeper
    than the model code's recursion reaches)."""
    try:
        root = etree.fromstring(raw, parser=_safe_parser())
    except etree.XMLSyntaxError as exc:
        raise StructureError(f"The body is not well-formed XML: {exc}") from None
    if max_depth is not None and _xml_depth_exceeds(root, max_depth):
        raise BadRequestError(
            f"The body nests elements more than {max_depth} levels deep, the limit of this "
            "server (FHIR_MAX_JSON_DEPTH)",
            code="too-costly",
        )
    qname = etree.QName(root)
    if qname.namespace != FHIR_NS:
        raise StructureError(f"The XML root element must be in the FHIR namespace {FHIR_NS}")
    resource_type = require_resource_type(qname.localname)
    try:
        instance = model_class(resource_type).model_validate_xml(raw, xmlparser=_safe_parser())
    except ValidationError as exc:
        raise validation_error(resource_type, exc) from None
    except (ValueError, TypeError, etree.XMLSyntaxError) as exc:
        raise StructureError(f"The XML is not a valid {resource_type}: {exc}") from None
    return jsonio.loads(instance.model_dump_json())


def _xml_depth_exceeds(root: Any, limit: int) -> bool:
    depth = 0
    for event, _ in etree.iterwalk(root, events=("start", "end")):
        if event == "start":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def parse_resource(raw: bytes, fmt: str, *, max_depth: int | None = None) -> Any:
    """A body as a resource dict. JSON's nesting is checked on the bytes before (see
    jsonio.nesting_exceeds); XML's here, on the parsed tree, when `max_depth` is given."""
    return parse_xml_resource(raw, max_depth) if fmt == XML else parse_json_resource(raw)


def json_to_xml(content: bytes, *, pretty: bool = False) -> bytes:
    data = jsonio.loads(content)
    model = model_class(data["resourceType"]).model_validate(data)
    xml: str | bytes = model.model_dump_xml(pretty_print=pretty)
    return xml.encode() if isinstance(xml, str) else xml


def render(content: bytes, fmt: str, *, pretty: bool = False) -> bytes:
    """Stored (or built) JSON bytes in the format the client asked for."""
    if fmt == XML:
        return json_to_xml(content, pretty=pretty)
    return jsonio.reformat(content, pretty=pretty)
