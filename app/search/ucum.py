"""UCUM canonicalisation for quantity search.

``canonical(value, code)`` turns a quantity with a UCUM unit code into a value expressed in
root units plus a canonical unit string; two quantities are comparable exactly when their
canonical unit strings are equal (``1063 mg`` -> ``(1.063, "g")``, ``1 g`` -> ``(1.0, "g")``).

Parsing goes through ``ucumvert`` (a UCUM grammar plus a pint registry extended with the UCUM
atoms); the value is brought to pint's *root* units (``to_root_units``), whose mass unit is the
gram, as in UCUM's own canonical form.

The canonical unit string is built here rather than taken from pint's formatter, so that it
does not depend on pint's formatting defaults: each root unit is written as its pint symbol
(``m``, ``g``, ``s``, ``mol``, ``K``, ...) with a UCUM-style exponent suffix, joined with ``.``;
positive exponents first, then negative ones, each group sorted by symbol. Examples: mass
``g``, volume ``m3``, amount-per-volume ``mol.m-3``, mass-per-volume ``g.m-3``, rate ``s-1``,
pressure ``g.m-1.s-2``, dimensionless ``1``. The string is itself valid UCUM.

UCUM *arbitrary* units (``[iU]``, ``[IU]``, ``[arb'U]``, ``[CFU]``, ...) are dimensionless in
pint but, per UCUM, commensurable only with themselves, so they are kept in the canonical
string as their UCUM atom (``[IU]`` is written ``[iU]``, its UCUM definition): ``5 [iU]/L``
-> ``(5000.0, "[iU].m-3")``, not comparable with ``10*9/L`` (``m-3``).

``None`` is returned for codes that cannot be canonicalised: unparseable or unknown codes,
codes longer than ``MAX_CODE_LENGTH``, UCUM *special* (non-ratio) units such as ``Cel``,
``[degF]``, ``[pH]``, ``B``/``dB``, and non-finite values. The function never raises.

The codes of FHIR's ucum-common value set come precomputed from data/ucum_common.json (written
by ucum_gen.py with this module's own conversion, and checked against it by a test), and bare
annotations are the unit 1: neither builds the pint registry, ~0.5 s per process.

The per-code work (parsing, unit conversion, string building) is done once and cached
(``functools.lru_cache``); a cached call costs one float multiplication and a round to
15 significant digits. pint registries are not thread-safe, so the lazily created module-level
registry is only ever touched under ``_LOCK``.
"""

from __future__ import annotations

import json
import math
import re
import threading
import warnings
from collections import Counter
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

UCUM_SYSTEM = "http://unitsofmeasure.org"

# UCUM codes in real data are short; the Earley parser is super-linear, so refuse giants.
MAX_CODE_LENGTH = 128
_SIGNIFICANT_DIGITS = 15
_ATOM_TOKENS = frozenset({"UNIT_METRIC", "UNIT_NON_METRIC"})


class _Ucum(NamedTuple):
    """The shared parser, transformer and pint registry, plus UCUM unit metadata."""

    registry: Any
    parser: Any
    transformer: Any
    special: frozenset[str]  # UCUM atoms with isSpecial="yes" (offset/log units)
    arbitrary: dict[str, str]  # pint base unit name -> UCUM atom, for isArbitrary="yes"


_LOCK = threading.Lock()
_state: _Ucum | None = None


def _round(value: float) -> float:
    return float(f"{value:.{_SIGNIFICANT_DIGITS}g}")


def _ucum() -> _Ucum:
    """Build the module's single registry on first use (caller must hold ``_LOCK``)."""
    global _state
    if _state is None:
        from ucumvert import (
            PintUcumRegistry,
            UcumToPintTransformer,
            get_ucum_parser,
            parse_ucum,
        )
        from ucumvert.xml_util import (
            get_units_with_full_definition,
        )

        registry = PintUcumRegistry()
        parser = get_ucum_parser()
        transformer = UcumToPintTransformer(ureg=registry)
        definitions = get_units_with_full_definition()
        special = frozenset(d.code_cs for d in definitions if d.is_special)
        arbitrary: dict[str, str] = {}
        for d in definitions:
            if not d.is_arbitrary:
                continue
            try:
                quantity = transformer.transform(parse_ucum(d.code_cs, parser))
                ((name, _),) = quantity.unit_items()
            except Exception:  # an atom pint cannot express: codes using it fail later
                continue
            base = registry.parse_unit_name(name)[0][1]
            arbitrary.setdefault(base, d.code_cs)  # XML order: [iU] before [IU]
        _state = _Ucum(registry, parser, transformer, special, arbitrary)
    return _state


def _exponent(exp: float) -> str:
    number = float(exp)
    return str(int(number)) if number.is_integer() else repr(number)


def _unit_string(powers: Counter[str]) -> str:
    terms = sorted(
        ((sym, exp) for sym, exp in powers.items() if exp != 0),
        key=lambda item: (item[1] < 0, item[0]),
    )
    if not terms:
        return "1"
    return ".".join(sym if exp == 1 else f"{sym}{_exponent(exp)}" for sym, exp in terms)


def _compile(code: str) -> tuple[float, str] | None:
    """The factor from ``code`` to its root units, and the canonical unit string."""
    from lark import Token
    from ucumvert import parse_ucum

    ucum = _ucum()
    tree = parse_ucum(code, ucum.parser)
    atoms = {
        str(t) for t in tree.scan_values(lambda v: isinstance(v, Token) and v.type in _ATOM_TOKENS)
    }
    if atoms & ucum.special:
        return None
    registry = ucum.registry
    result = ucum.transformer.transform(tree)
    if isinstance(result, Token):  # a bare annotation such as "{score}"
        result = 1
    quantity = result if isinstance(result, registry.Quantity) else registry.Quantity(result)
    if not quantity._is_multiplicative:  # belt and braces: offset units pint knows about
        return None

    powers: Counter[str] = Counter()
    for name, exp in list(quantity.unit_items()):
        base = registry.parse_unit_name(name)[0][1]
        if base in ucum.arbitrary:
            unit = registry.Quantity(1, name)
            prefix_factor = unit.to(base).magnitude
            quantity = quantity / unit**exp * prefix_factor**exp
            powers[ucum.arbitrary[base]] += exp
    root = quantity.to_root_units()
    for name, exp in root.unit_items():
        powers[registry.get_symbol(name)] += exp
    factor = float(root.magnitude)
    if not math.isfinite(factor) or factor == 0:
        return None
    return _round(factor), _unit_string(powers)


# The codes of FHIR's ucum-common value set, computed by ucum_gen.py: code -> [factor, unit]
# or None. A code found here needs neither the parser nor the registry.
COMMON_PATH = Path(__file__).parent / "data" / "ucum_common.json"
_COMMON: dict[str, list[Any] | None] = json.loads(COMMON_PATH.read_text())


@lru_cache(maxsize=4096)
def is_valid(code: str) -> bool:
    """Whether ``code`` is a UCUM expression (special and arbitrary units included)."""
    if not code or len(code) > MAX_CODE_LENGTH:
        return False
    return code in _COMMON or _ANNOTATION.fullmatch(code) is not None or parses(code)


def parses(code: str) -> bool:
    """Whether the UCUM grammar accepts ``code``, asked of the parser (not the table)."""
    from ucumvert import parse_ucum

    with _LOCK:
        try:
            parse_ucum(code, _parser())
        except Exception:  # lark's parse errors share no base class worth naming here
            return False
    return True


_grammar: Any = None


def _parser() -> Any:
    """The UCUM parser alone (caller holds ``_LOCK``): validity needs no pint registry."""
    global _grammar
    if _grammar is None:
        from ucumvert import get_ucum_parser

        _grammar = _state.parser if _state is not None else get_ucum_parser()
    return _grammar


# A bare annotation (`{score}`) stands for the unit 1 in UCUM; the value set lists none of them.
_ANNOTATION = re.compile(r"\{[!-z|~]*\}")


@lru_cache(maxsize=4096)
def _converter(code: str) -> tuple[float, str] | None:
    if _ANNOTATION.fullmatch(code):
        return 1.0, "1"
    if code in _COMMON:
        found = _COMMON[code]
        return (float(found[0]), str(found[1])) if found is not None else None
    return compiled(code)


def compiled(code: str) -> tuple[float, str] | None:
    """The factor and canonical unit of ``code`` computed by the registry (not the table)."""
    with _LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return _compile(code)
        except Exception:  # unparseable, unknown to pint, or otherwise unconvertible
            return None


def canonical(value: Decimal | float | int, code: str) -> tuple[float, str] | None:
    """``value`` ``code`` in root units, with the canonical unit string; ``None`` if impossible.

    >>> canonical(1063, "mg")
    (1.063, 'g')
    """
    if not isinstance(code, str) or not code or len(code) > MAX_CODE_LENGTH:
        return None
    converter = _converter(code)
    if converter is None:
        return None
    factor, unit = converter
    try:
        result = float(value) * factor
    except (TypeError, ValueError, OverflowError):
        return None
    if not math.isfinite(result):
        return None
    return _round(result), unit
