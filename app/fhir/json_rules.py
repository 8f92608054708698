"""FHIR JSON rules the R4B models let through, checked on the JSON as sent.

fhir.resources validates in pydantic's lax mode: `"active": "true"`, `"valueInteger": "12"` or
`"birthDate": 0` become a valid model. The server stores the body as sent, not the model's
rendering (decimals keep their text), so what the model forgave would be stored. This walk,
driven by the models' own field definitions, refuses:

- a primitive of the wrong JSON type (json.html#primitive): boolean is true/false, integer,
  positiveInt and unsignedInt a JSON integer in their range, decimal a number, the rest strings;
- an empty string, a string over 1 MB (datatypes.html#string; the narrative's xhtml too, but not
  base64Binary, which an Attachment's data may need),
  and characters no FHIR string holds: control characters but tab, LF and CR, lone surrogates,
  U+FFFE and U+FFFF (XML 1.0 cannot carry the last three, and every stored resource must render
  as XML);
- a null in a primitive array other than where its `_name` partner has an entry (json.html:
  both arrays the same length, never null in both);
- a malformed literal reference (references.html#literal): `Type/id`, `Type/id/_history/v`,
  an absolute URI, `#id` naming a contained resource (ref-1); and `Type?query` (a conditional
  reference) only in a transaction or batch Bundle, which resolves it before storing.

A field table per model class is built once (lazily; ~680 classes in all) so a walk is one dict
lookup per member.
"""

from __future__ import annotations

import re
import threading
from decimal import Decimal
from functools import cache
from typing import Annotated, Any, get_args, get_origin

from app.fhir.errors import Issue, UnknownTypeError
from app.fhir.ids import is_valid_id

MAX_STRING = 1024 * 1024  # characters: string.value maxLength in R4B

# kinds of member
_BOOLEAN, _INTEGER, _DECIMAL, _STRING, _TEXT, _MODEL, _RESOURCE, _ANY = range(8)
_INTEGER_RANGE = {
    "Integer": (-(2**31), 2**31 - 1),
    "PositiveInt": (1, 2**31 - 1),
    "UnsignedInt": (0, 2**31 - 1),
}
_UNLIMITED = frozenset({"EncodedBytes"})  # base64Binary: an Attachment may hold more
_BAD_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class _Member:
    __slots__ = ("bounds", "kind", "many", "model", "name")

    def __init__(
        self, name: str, kind: int, many: bool, model: Any = None, bounds: Any = None
    ) -> None:
        self.name, self.kind, self.many, self.model, self.bounds = name, kind, many, model, bounds


_TABLES: dict[Any, dict[str, _Member]] = {}
_BUILDING = threading.Lock()


def _table(model: Any) -> dict[str, _Member]:
    table = _TABLES.get(model)
    if table is None:
        with _BUILDING:
            table = _TABLES.get(model)
            if table is None:
                table = _TABLES[model] = _build(model)
    return table


def _build(model: Any) -> dict[str, _Member]:
    table: dict[str, _Member] = {}
    for name, field in model.model_fields.items():
        alias = field.alias or name
        if alias in ("resourceType", "fhir_comments"):
            continue
        many, kind, klass, bounds = _classify(field.annotation)
        table[alias] = _Member(alias, kind, many, klass, bounds)
    return table


def _classify(annotation: Any) -> tuple[bool, int, Any, Any]:
    """(is a list, kind, model class, integer bounds) of a field's annotation."""
    many = False
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            marker = get_args(annotation)[1]
            name = type(marker).__name__
            if name in _INTEGER_RANGE:
                return many, _INTEGER, None, _INTEGER_RANGE[name]
            if name == "Decimal":
                return many, _DECIMAL, None, None
            return many, _TEXT if name in _UNLIMITED else _STRING, None, None
        if origin is list:
            many = True
            annotation = get_args(annotation)[0]
            continue
        args = [a for a in get_args(annotation) if a is not type(None)]
        if args:  # Optional[X], X | None
            annotation = args[0]
            continue
        if annotation is bool:
            return many, _BOOLEAN, None, None
        getter = getattr(annotation, "get_model_klass", None)
        if getter is not None:
            klass = getter()
            if klass.__name__ in ("Resource", "DomainResource"):
                return many, _RESOURCE, None, None
            return many, _MODEL, klass, None
        return many, _ANY, None, None


_JSON_TYPE = {_BOOLEAN: "a boolean", _INTEGER: "an integer", _DECIMAL: "a number"}
_LITERAL = re.compile(r"([A-Z][A-Za-z]*)/([^/]*)(?:/_history/([^/]*))?")
_ABSOLUTE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:\S+")
_CONDITIONAL = re.compile(r"([A-Z][A-Za-z]*)\?\S*")


class _Walk:
    def __init__(self, model_class: Any, conditional: bool) -> None:
        self.model_class = model_class
        self.conditional = conditional
        self.issues: list[Issue] = []

    def resource(self, data: dict[str, Any], path: str, contained: frozenset[str]) -> None:
        kind = data.get("resourceType")
        if not isinstance(kind, str):
            return  # the model refused it already
        try:
            model = self.model_class(kind)
        except UnknownTypeError:  # refused by the model already
            return
        inner = data.get("contained")
        if isinstance(inner, list):
            contained = frozenset(
                str(r["id"]) for r in inner if isinstance(r, dict) and isinstance(r.get("id"), str)
            )
        self.element(data, model, path, contained)

    def element(
        self, data: dict[str, Any], model: Any, path: str, contained: frozenset[str]
    ) -> None:
        table = _table(model)
        for key, value in data.items():
            member = table.get(key)
            if member is None:
                continue  # resourceType, fhir_comments; unknown keys were refused by the model
            where = f"{path}.{key}"
            if member.many:
                if not isinstance(value, list):
                    continue  # the model refused it
                if member.kind <= _TEXT:
                    self.nulls(value, data.get(f"_{key}"), where)
                elif key.startswith("_") and not isinstance(data.get(key[1:]), list):
                    self.nulls(value, None, where)
                for index, item in enumerate(value):
                    if item is not None:
                        self.value(item, member, f"{where}[{index}]", contained)
            else:
                self.value(value, member, where, contained)
        if model is _reference_class() and isinstance(data.get("reference"), str):
            self.reference(data["reference"], f"{path}.reference", contained)

    def nulls(self, items: list[Any], partner: Any, where: str) -> None:
        """A primitive array beside its `_name` partner (json.html#primitive): the same length,
        null only opposite an entry."""
        if isinstance(partner, list):
            if len(partner) != len(items):
                self.add(
                    where,
                    f"has {len(items)} items but its _-prefixed partner has {len(partner)}: "
                    "a primitive array and its extensions must line up (json.html#primitive)",
                )
                return
            for index, (own, other) in enumerate(zip(items, partner, strict=True)):
                if own is None and other is None:
                    self.add(f"{where}[{index}]", "is null in both arrays (json.html#primitive)")
            return
        for index, item in enumerate(items):
            if item is None:
                self.add(
                    f"{where}[{index}]",
                    "null is allowed in a primitive array only opposite an entry of its "
                    "partner array (json.html#primitive)",
                )

    def value(self, value: Any, member: _Member, where: str, contained: frozenset[str]) -> None:
        kind = member.kind
        if kind >= _MODEL:
            if not isinstance(value, dict):
                return  # the model refused it
            if kind == _MODEL:
                self.element(value, member.model, where, contained)
            elif kind == _RESOURCE:
                # a contained resource resolves `#id` against its container's list
                inner = contained if member.name == "contained" else frozenset()
                self.resource(value, where, inner)
            return
        if kind <= _DECIMAL:
            if _json_type_matches(value, kind, member.bounds):
                return
            if kind == _INTEGER and type(value) is int:
                low, high = member.bounds
                self.add(where, f"{value} is out of range ({low} to {high})")
                return
            self.add(where, f"must be {_JSON_TYPE[kind]} in FHIR JSON, not {_describe(value)}")
            return
        if not isinstance(value, str):
            self.add(where, f"must be a string in FHIR JSON, not {_describe(value)}")
        elif not value:
            self.add(where, "empty strings are not allowed in FHIR JSON (json.html#primitive)")
        elif kind == _STRING and len(value) > MAX_STRING:
            self.add(where, f"strings SHALL NOT exceed {MAX_STRING:,} characters")
        else:
            bad = _BAD_CHARACTERS.search(value)
            if bad is not None:
                self.add(where, _bad_character(bad.group()))

    def reference(self, text: str, where: str, contained: frozenset[str]) -> None:
        problem = reference_problem(text, contained, self.conditional)
        if problem is not None:
            self.add(where, problem)

    def add(self, where: str, message: str) -> None:
        self.issues.append(Issue("invalid", f"{where}: {message}", "error", (where,)))


def _json_type_matches(value: Any, kind: int, bounds: Any) -> bool:
    if kind == _BOOLEAN:
        return type(value) is bool
    if kind == _INTEGER:
        return type(value) is int and bounds[0] <= value <= bounds[1]
    return type(value) in (int, float) or isinstance(value, Decimal)


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float | Decimal):
        return f"the number {getattr(value, 'text', value)}"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    return "an array" if isinstance(value, list) else "an object"


def _bad_character(char: str) -> str:
    code = ord(char)
    if code < 0x20:
        return (
            "strings may not hold control characters (below U+0020) other than tab, line feed "
            "and carriage return"
        )
    if 0xD800 <= code <= 0xDFFF:
        return f"a lone surrogate (U+{code:04X}) is not a character"
    return f"U+{code:04X} is not a character FHIR strings may hold (XML 1.0 cannot carry it)"


def reference_problem(text: str, contained: frozenset[str], conditional: bool) -> str | None:
    """Why `text` is no literal reference (references.html#literal), or None when it is one;
    `conditional`: whether a conditional reference (resolved by a Bundle) is allowed."""
    if text.startswith("#"):
        if text == "#" or text[1:] in contained:
            return None  # "#": the container itself
        return f"'{text}' names no contained resource (ref-1)"
    if _ABSOLUTE.fullmatch(text):
        return None
    if _CONDITIONAL.fullmatch(text):
        if conditional:
            return None  # the type is checked with the element's allowed types
        return (
            f"'{text[:80]}' is a conditional reference: this server resolves those only in "
            "transaction and batch Bundles (http.html#trules)"
        )
    literal = _LITERAL.fullmatch(text)
    if literal is None:
        return (
            f"'{text[:80]}' is not a reference: expected Type/id, Type/id/_history/version, "
            "an absolute URL or #id of a contained resource"
        )
    _, resource_id, version = literal.groups()
    if not is_valid_id(resource_id):
        return f"'{text[:80]}': '{resource_id[:80]}' is not a valid id ([A-Za-z0-9\\-.]{{1,64}})"
    if version is not None and not is_valid_id(version):
        return f"'{text[:80]}': '{version[:80]}' is not a valid version id"
    return None


def json_issues(
    data: dict[str, Any], model_class: Any, *, conditional_references: bool = False
) -> list[Issue]:
    """The rules above, for a resource the model accepted; `model_class(type)` gives a type's
    model class."""
    walk = _Walk(model_class, conditional_references)
    walk.resource(data, str(data.get("resourceType")), frozenset())
    return walk.issues


@cache
def _reference_class() -> Any:
    from fhir.resources.R4B.reference import Reference

    return Reference
