"""Parameters whose index rows are another parameter's rows, so they are not stored twice.

Many spec parameters select a subset or a union of what others already index:
- `Observation.patient` is `Observation.subject.where(resolve() is Patient)`: the subject rows
  whose target type is Patient;
- `Observation.combo-code` is `Observation.code | Observation.component.code`: the rows of `code`
  and of `component-code` together;
- two parameters with the same expression hold the same rows;
- `Observation.code-value-quantity` pairs each of the resource's codes with each of its values,
  so "a row matching both components" is "a code row and a value row matching each": it is read
  from the rows of `code` and of `value-quantity` (PAIRED below) and stores none of its own.

Every index entry costs a B-tree page write at commit (docs/architecture.md, "where a write's
time goes"), and a pain Observation's rows were a third aliases. The indexer skips aliases and
the query side reads them from their stored parameters; tests/search/test_aliases.py checks over
the fixtures that the rows derived this way equal the rows the alias's own expression gives.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from app.search.registry import SearchParamDef, by_url, expression_for, params_for, split_union

# Answered from the resource table itself, not from index rows.
RESOURCE_COLUMNS = frozenset({"_id", "_lastUpdated"})

_RESOLVE_IS = re.compile(r"^(.+)\.where\(\s*resolve\(\)\s+is\s+([A-Za-z]+)\s*\)$")


@dataclass(frozen=True, slots=True)
class Stored:
    """Where a parameter's rows live: under `codes`, restricted to references of `target_type`;
    for a composite, also `pairs`: (first, second) parameters whose rows on one resource pair up
    as the composite's (a resource matches when it has a row of each matching its component)."""

    codes: tuple[str, ...]
    target_type: str | None = None
    pairs: tuple[tuple[str, str], ...] = ()


# Composites rooted at the resource itself: every value of the first component pairs with every
# value of the second, so the rows are the two parameters' rows crossed. Listed rather than
# derived because each second component must give exactly its parameter's rows, which the
# expressions do not show: value-quantity also reads SampledData (no quantity to index, so the
# same rows), while value-string also reads CodeableConcept.text, so code-value-string keeps rows
# of its own. tests/search/test_aliases.py checks every pairing over every fixture.
PAIRED: dict[tuple[str, str], tuple[str, str]] = {
    ("Observation", "code-value-quantity"): ("code", "value-quantity"),
    ("Observation", "code-value-concept"): ("code", "value-concept"),
    ("Observation", "code-value-date"): ("code", "value-date"),
}


def _unwrap(expression: str) -> str:
    """Without parentheses that enclose the whole expression: `(a as T)` is `a as T`."""
    expression = expression.strip()
    while expression.startswith("(") and _closing(expression) == len(expression) - 1:
        expression = expression[1:-1].strip()
    return expression


def _closing(expression: str) -> int:
    """Index of the parenthesis closing the one at 0 (string literals hold none we index)."""
    depth = 0
    for index, char in enumerate(expression):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0:
            return index
    return -1


def _signature(definition: SearchParamDef) -> tuple[tuple[str | None, str], ...]:
    """What a composite's rows are made of besides its root: component types and paths."""
    parts = []
    for url, expression in definition.components:
        component = by_url(url)
        parts.append((component.type if component else None, expression.strip()))
    return tuple(parts)


def indexed_params(resource_type: str) -> dict[str, SearchParamDef]:
    """The parameters of the type whose values are extracted and stored as index rows."""
    aliases = _aliases(resource_type)
    return {
        code: definition
        for code, definition in params_for(resource_type).items()
        if code not in aliases
        and (resource_type, code) not in PAIRED
        and code not in RESOURCE_COLUMNS
        and definition.type != "special"
        and expression_for(definition, resource_type)
    }


@cache
def stored_as(resource_type: str, code: str) -> Stored:
    """Where the rows of `code` on `resource_type` are stored (itself unless it is an alias)."""
    stored = _aliases(resource_type).get(code) or Stored((code,))
    pairs = tuple(PAIRED[(resource_type, c)] for c in stored.codes if (resource_type, c) in PAIRED)
    if not pairs:
        return stored
    codes = tuple(c for c in stored.codes if (resource_type, c) not in PAIRED)
    return Stored(codes, stored.target_type, pairs)


@cache
def _aliases(resource_type: str) -> dict[str, Stored]:
    params = {
        code: (definition, _unwrap(expression))
        for code, definition in sorted(params_for(resource_type).items())
        if code not in RESOURCE_COLUMNS
        and definition.type != "special"
        and (expression := expression_for(definition, resource_type))
    }
    # The first parameter (by code) with a given type and expression holds the rows.
    holder: dict[tuple[object, ...], str] = {}
    for code, (definition, expression) in params.items():
        holder.setdefault((definition.type, _signature(definition), expression), code)

    # What each parameter would be an alias of; resolved below through aliases of aliases.
    # No cycles: a restriction's base and a union's parts have shorter expressions, and an
    # expression's holder is never a same-expression alias itself.
    candidates: dict[str, tuple[str, tuple[str, ...], str | None]] = {}
    for code, (definition, expression) in params.items():
        key = (definition.type, _signature(definition))
        same = holder[(*key, expression)]
        restricted = _RESOLVE_IS.match(expression) if definition.type == "reference" else None
        branches = [_unwrap(b) for b in split_union(expression)]
        if same != code:
            candidates[code] = ("same", (same,), None)
        elif restricted and (base := holder.get((*key, _unwrap(restricted.group(1))))):
            candidates[code] = ("restrict", (base,), restricted.group(2))
        elif len(branches) > 1 and (parts := _partition(branches, key, holder, code)):
            candidates[code] = ("union", parts, None)

    resolved: dict[str, Stored | None] = {}

    def resolve(code: str) -> Stored | None:
        if code not in resolved:
            resolved[code] = _resolve(code)
        return resolved[code]

    def _resolve(code: str) -> Stored | None:
        if code not in candidates:
            return None
        how, parts, target_type = candidates[code]
        if how == "restrict":
            base = resolve(parts[0])
            if base is None:
                return Stored(parts, target_type)
            single = base.target_type is None and len(base.codes) == 1
            return Stored(base.codes, target_type) if single else None
        codes: list[str] = []
        for part in parts:
            inner = resolve(part)
            if inner is not None and inner.target_type is not None:
                return Stored((part,)) if how == "same" else None
            codes.extend(inner.codes if inner else (part,))
        return Stored(tuple(dict.fromkeys(codes)))

    return {code: stored for code in candidates if (stored := resolve(code)) is not None}


def _partition(
    branches: list[str],
    key: tuple[object, ...],
    holder: dict[tuple[object, ...], str],
    code: str,
) -> tuple[str, ...] | None:
    """Parameters whose expressions are groups of `branches` covering them all: the widest
    group first (`value-quantity` is itself a union of two of combo-value-quantity's four)."""
    groups = []
    for (kind, signature, expression), holding in holder.items():
        if (kind, signature) != key or holding == code:
            continue
        own = [_unwrap(b) for b in split_union(str(expression))]
        if own and all(b in branches for b in own):
            groups.append((len(own), holding, own))
    remaining = list(branches)
    parts: list[str] = []
    for _, holding, own in sorted(groups, key=lambda g: -g[0]):
        if all(b in remaining for b in own):
            parts.append(holding)
            remaining = [b for b in remaining if b not in own]
    return tuple(parts) if not remaining else None
