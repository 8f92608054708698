"""From extracted FHIR elements to index rows, one normaliser per search parameter type
(search.html: which datatypes each parameter type matches, and how)."""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from typing import Any

from app.fhir.errors import BadRequestError
from app.search.dates import MAX_US, MIN_US, range_us
from app.search.extract import reference_type
from app.search.ucum import UCUM_SYSTEM, canonical

CURRENCY_SYSTEM = "urn:iso:std:iso:4217"


@lru_cache(maxsize=65_536)
def fold(text: str) -> str:
    """Case- and accent-insensitive form for string search (search.html#string)."""
    if text.isascii():
        return " ".join(text.lower().split())
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.casefold().split())


TABLE_KINDS = ("token", "string", "date", "number", "quantity", "reference", "uri", "composite")


def patient_hash(resource_id: str) -> int:
    """A 64-bit key for a patient id, stored on token rows (IndexRows.patient)."""
    digest = hashlib.blake2b(resource_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


SEVERAL_PATIENTS = 0  # IndexRows.patient of a resource whose `patient` names more than one


@dataclass(slots=True)
class IndexRows:
    """Rows for one resource, by index table. Each tuple starts with the parameter code.

    `patient` is what the resource's `patient` parameter points at: patient_hash of the one
    target id, SEVERAL_PATIENTS, or None (no such parameter or no value). Token rows carry it,
    so "this patient's observations with this code" is one index range, not a probe of every
    observation of the patient (app/storage/search_sql.py)."""

    token: set[tuple[str, str | None, str | None, str | None]] = field(default_factory=set)
    string: set[tuple[str, str, str]] = field(default_factory=set)
    date: set[tuple[str, int, int]] = field(default_factory=set)
    number: set[tuple[str, float]] = field(default_factory=set)
    quantity: set[tuple[str, float, str | None, str | None, float | None, str | None]] = field(
        default_factory=set
    )
    reference: set[tuple[str, str | None, str | None, str | None]] = field(default_factory=set)
    uri: set[tuple[str, str]] = field(default_factory=set)
    composite: set[tuple[Any, ...]] = field(default_factory=set)
    patient: int | None = None

    def count(self) -> int:
        return sum(len(getattr(self, kind)) for kind in TABLE_KINDS)

    def table_rows(self, kind: str) -> Collection[tuple[Any, ...]]:
        """The rows of one index table, each as its columns after res_key and resource_type
        and before seq (only token rows gain a column: the patient)."""
        rows: Collection[tuple[Any, ...]] = getattr(self, kind)
        if kind == "token":
            return [(*row, self.patient) for row in rows]
        return rows


# -- tokens --------------------------------------------------------------------------------------
def tokens(value: Any) -> list[tuple[str | None, str | None, str | None]]:
    """(system, code, folded text) triples a token parameter matches for this element."""
    if isinstance(value, bool):
        return [(None, "true" if value else "false", None)]
    if isinstance(value, str):
        return [(None, value, None)]
    if not isinstance(value, dict):
        return []
    out: list[tuple[str | None, str | None, str | None]] = []
    if "coding" in value or ("text" in value and "code" not in value and "value" not in value):
        for coding in value.get("coding", ()):
            out.extend(tokens(coding))
        # The text as a row of its own only when no coding's display carries it already: only
        # :text reads it, and the usual concept (text = display) then costs one row, not two.
        if isinstance(value.get("text"), str):
            text = fold(value["text"])
            if all(row[2] != text for row in out):
                out.append((None, None, text))
        return out
    if "code" in value or "display" in value:  # Coding (also Quantity's code)
        display = value.get("display")
        return [
            (
                value.get("system"),
                value.get("code"),
                fold(display) if isinstance(display, str) else None,
            )
        ]
    if "value" in value and isinstance(value["value"], str):  # Identifier, ContactPoint
        kind = value.get("type")
        type_text = kind.get("text") if isinstance(kind, dict) else None
        out.append(
            (
                value.get("system"),
                value["value"],
                fold(type_text) if isinstance(type_text, str) else None,
            )
        )
    return out


def identifier_types(value: Any) -> list[tuple[str | None, str]]:
    """(type system, "type-code|value") pairs for the :of-type modifier."""
    if not isinstance(value, dict) or not isinstance(value.get("value"), str):
        return []
    codings = value.get("type", {}).get("coding", []) if isinstance(value.get("type"), dict) else []
    return [
        (c.get("system"), f"{c.get('code')}|{value['value']}")
        for c in codings
        if isinstance(c, dict) and c.get("code")
    ]


# -- strings -------------------------------------------------------------------------------------
_NAME_PARTS = ("text", "family", "given", "prefix", "suffix")
_ADDRESS_PARTS = ("text", "line", "city", "district", "state", "postalCode", "country")


def strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, dict):
        return []
    parts = _NAME_PARTS if ("family" in value or "given" in value) else _ADDRESS_PARTS
    out: list[str] = []
    for part in parts:
        item = value.get(part)
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, list):
            out.extend(i for i in item if isinstance(i, str))
    if not out:  # any other complex value: its text-like leaves (Annotation.text, ...)
        out.extend(
            v
            for k, v in value.items()
            if k in {"text", "display", "value", "name"} and isinstance(v, str)
        )
    return out


# -- dates ---------------------------------------------------------------------------------------
def date_ranges(value: Any) -> list[tuple[int, int]]:
    try:
        if isinstance(value, str):
            return [range_us(value)]
        if not isinstance(value, dict):
            return []
        if "start" in value or "end" in value:  # Period: an open end is unbounded
            low = range_us(value["start"])[0] if isinstance(value.get("start"), str) else MIN_US
            high = range_us(value["end"])[1] if isinstance(value.get("end"), str) else MAX_US
            return [(low, high)]
        if "event" in value or "repeat" in value:  # Timing: its events and bounds
            out = [range_us(e) for e in value.get("event", ()) if isinstance(e, str)]
            bounds = value.get("repeat", {}).get("boundsPeriod")
            if isinstance(bounds, dict):
                out.extend(date_ranges(bounds))
            return out
    except BadRequestError:
        return []  # a value the model accepted but no range can be given for (year 9999 +1)
    return []


# -- numbers and quantities ----------------------------------------------------------------------
def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | Decimal):
        return float(value)
    return None


def numbers(value: Any) -> list[float]:
    number = _number(value)
    if number is not None:
        return [number]
    if isinstance(value, dict):  # a Quantity-shaped value where a number is asked for
        inner = _number(value.get("value"))
        return [inner] if inner is not None else []
    return []


def quantities(value: Any) -> list[tuple[float, str | None, str | None, float | None, str | None]]:
    """(value, system, code, canonical value, canonical code) per Quantity or Money."""
    if not isinstance(value, dict):
        return []
    number = _number(value.get("value"))
    if number is None:
        return []
    if "currency" in value:
        return [(number, CURRENCY_SYSTEM, value["currency"], None, None)]
    system = value.get("system")
    code = value.get("code") or value.get("unit")
    canon = None
    if system == UCUM_SYSTEM and isinstance(value.get("code"), str):
        canon = canonical(value["value"], value["code"])
    return [(number, system, code, canon[0] if canon else None, canon[1] if canon else None)]


# -- references and uris -------------------------------------------------------------------------
def references(value: Any, root: dict[str, Any]) -> list[tuple[str | None, str | None, str | None]]:
    """(target type, target id, url) per Reference or canonical. Local references give type
    and id; absolute ones also keep the URL; canonicals and urn: references only the URL."""
    if isinstance(value, str):  # canonical or uri
        return [(None, None, value)]
    if not isinstance(value, dict):
        return []
    ref = value.get("reference")
    if not isinstance(ref, str) or ref.startswith("#"):
        return []
    kind = reference_type(value, root)
    parts = ref.split("/_history/")[0].rstrip("/").split("/")
    if "://" in ref or ref.startswith("urn:"):
        if kind and len(parts) >= 2 and parts[-2] == kind:
            return [(kind, parts[-1], ref)]
        return [(kind, None, ref)]
    if len(parts) == 2:
        return [(parts[0], parts[1], None)]
    return []


def uris(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else []
