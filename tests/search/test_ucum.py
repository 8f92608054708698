"""UCUM canonicalisation: root-unit values and comparable canonical unit strings."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest

from app.search import ucum
from app.search.ucum import MAX_CODE_LENGTH, UCUM_SYSTEM, canonical

MASS = "g"
VOLUME = "m3"
AMOUNT_PER_VOLUME = "mol.m-3"
MASS_PER_VOLUME = "g.m-3"
COUNT_PER_VOLUME = "m-3"
TIME = "s"
RATE = "s-1"
PRESSURE = "g.m-1.s-2"
LENGTH = "m"
DIMENSIONLESS = "1"


def test_system_uri() -> None:
    assert UCUM_SYSTEM == "http://unitsofmeasure.org"


@pytest.mark.parametrize(
    ("value", "code", "expected_value", "expected_unit"),
    [
        # the brief's own examples
        (1063, "mg", 1.063, MASS),
        (1, "g", 1.0, MASS),
        (1, "kg", 1000.0, MASS),
        (1, "[lb_av]", 453.59237, MASS),
        (1, "pg", 1e-12, MASS),
        (5.4, "mmol/L", 5.4, AMOUNT_PER_VOLUME),
        (5400, "umol/L", 5.4, AMOUNT_PER_VOLUME),
        (140, "meq/L", 140.0, AMOUNT_PER_VOLUME),  # UCUM: eq = 1 mol
        (1, "mL", 1e-6, VOLUME),
        (1, "L", 0.001, VOLUME),
        (1, "dL", 0.0001, VOLUME),
        (90, "fL", 9e-17, VOLUME),
        (2, "h", 7200.0, TIME),
        (3, "min", 180.0, TIME),
        (7, "s", 7.0, TIME),
        (1, "d", 86400.0, TIME),
        (1, "wk", 604800.0, TIME),
        (1, "mo", 2629800.0, TIME),  # the mean Julian month, 30.4375 d
        (1, "a", 31557600.0, TIME),  # the Julian year, 365.25 d
        (7, "{score}", 7.0, DIMENSIONLESS),
        (3, "1", 3.0, DIMENSIONLESS),
        (45, "%", 0.45, DIMENSIONLESS),
        (60, "/min", 1.0, RATE),
        (72, "{beats}/min", 1.2, RATE),
        (120, "mm[Hg]", 15998686.4898, PRESSURE),
        (1, "kPa", 1e6, PRESSURE),
        (25, "kg/m2", 25000.0, "g.m-2"),
        (95, "mg/dL", 950.0, MASS_PER_VOLUME),
        (14, "g/dL", 140000.0, MASS_PER_VOLUME),
        (2, "ng/mL", 0.002, MASS_PER_VOLUME),
        (2, "ug/L", 0.002, MASS_PER_VOLUME),
        (6, "10*3/uL", 6e12, COUNT_PER_VOLUME),
        (6, "10*9/L", 6e12, COUNT_PER_VOLUME),
        (6, "10*3{cells}/uL", 6e12, COUNT_PER_VOLUME),
        (1, "U/L", 1.66666666666667e-5, "mol.m-3.s-1"),  # U = umol/min
        (5, "[iU]/L", 5000.0, "[iU].m-3"),
        (5, "[IU]/L", 5000.0, "[iU].m-3"),  # [IU] is defined as 1 [iU]
        (5, "m[iU]/mL", 5000.0, "[iU].m-3"),
        (310, "K", 310.0, "K"),
        (170, "cm", 1.7, LENGTH),
        (2, "m", 2.0, LENGTH),
        (10, "[in_i]", 0.254, LENGTH),
        (1, "mg/kg/h", 2.77777777777778e-10, RATE),
    ],
)
def test_canonical_value_and_unit(
    value: float, code: str, expected_value: float, expected_unit: str
) -> None:
    result = canonical(value, code)
    assert result is not None, code
    got_value, got_unit = result
    assert got_unit == expected_unit
    assert got_value == pytest.approx(expected_value, rel=1e-12)


@pytest.mark.parametrize(
    ("value", "code", "expected"),
    [
        (1063, "mg", (1.063, MASS)),  # exact: no 1.0630000000000002 noise
        (Decimal("1063"), "mg", (1.063, MASS)),
        (Decimal("1.063"), "g", (1.063, MASS)),
        (1.0, "g", (1.0, MASS)),
        (1, "kg", (1000.0, MASS)),
        (1, "mmol/L", (1.0, AMOUNT_PER_VOLUME)),  # pint alone gives 0.9999999999999999
        (1, "mL", (1e-6, VOLUME)),  # pint alone gives 1.0000000000000002e-06
        (1, "mg/dL", (10.0, MASS_PER_VOLUME)),
        (1, "{score}", (1.0, DIMENSIONLESS)),
        (50, "%", (0.5, DIMENSIONLESS)),
    ],
)
def test_canonical_is_exact_after_rounding(
    value: Decimal | float, code: str, expected: tuple[float, str]
) -> None:
    assert canonical(value, code) == expected


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ((1063, "mg"), (1.063, "g")),
        ((1, "kg"), (1000, "g")),
        ((1, "g"), (1000, "mg")),
        ((1, "mg"), (1000, "ug")),
        ((1, "ug"), (1000000, "pg")),
        ((1, "dL"), (100, "mL")),
        ((1, "L"), (1000, "mL")),
        ((1, "mL"), (1e12, "fL")),
        ((5.4, "mmol/L"), (5400, "umol/L")),
        ((140, "meq/L"), (140, "mmol/L")),
        ((1, "h"), (60, "min")),
        ((1, "min"), (60, "s")),
        ((1, "d"), (24, "h")),
        ((1, "wk"), (7, "d")),
        ((1, "a"), (12, "mo")),
        ((60, "/min"), (1, "/s")),
        ((60, "{beats}/min"), (60, "/min")),
        ((100, "mg/dL"), (1, "g/L")),
        ((1, "g/dL"), (10, "g/L")),
        ((1, "ng/mL"), (1, "ug/L")),
        ((6, "10*3/uL"), (6, "10*9/L")),
        ((1, "[iU]/L"), (1, "[IU]/L")),
        ((1, "[iU]/mL"), (1000, "[iU]/L")),
        ((1, "m"), (100, "cm")),
        ((1, "[in_i]"), (2.54, "cm")),
        ((1, "kg/m2"), (0.1, "g/cm2")),
        ((50, "%"), (0.5, "1")),
        ((3, "{score}"), (3, "1")),
        ((1, "cm[H2O]"), (98.0665, "Pa")),
    ],
)
def test_equal_quantities_compare_equal(left: tuple[float, str], right: tuple[float, str]) -> None:
    a, b = canonical(*left), canonical(*right)
    assert a is not None
    assert b is not None
    assert a[1] == b[1]
    assert a[0] == pytest.approx(b[0], rel=1e-12)


@pytest.mark.parametrize(
    ("left", "right", "rel"),
    [
        ((180, "[lb_av]"), (81.65, "kg"), 1e-4),
        ((120, "mm[Hg]"), (16.0, "kPa"), 1e-3),
        ((72, "[in_i]"), (182.88, "cm"), 1e-12),
    ],
)
def test_approximately_equal_quantities(
    left: tuple[float, str], right: tuple[float, str], rel: float
) -> None:
    a, b = canonical(*left), canonical(*right)
    assert a is not None
    assert b is not None
    assert a[1] == b[1]
    assert a[0] == pytest.approx(b[0], rel=rel)


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("mg", "mL"),  # mass vs volume
        ("mmol/L", "mg/dL"),  # amount vs mass concentration
        ("[iU]/L", "10*9/L"),  # arbitrary units are commensurable only with themselves
        ("[iU]/L", "U/L"),
        ("[iU]", "1"),
        ("[iU]/L", "[CFU]/L"),
        ("h", "/h"),
        ("%", "mg"),
        ("kg/m2", "kg"),
    ],
)
def test_incommensurable_units_differ(left: str, right: str) -> None:
    a, b = canonical(1, left), canonical(1, right)
    assert a is not None
    assert b is not None
    assert a[1] != b[1]


@pytest.mark.parametrize(
    "code",
    [
        "Cel",  # offset units are not canonicalised
        "[degF]",
        "[degRe]",
        "[pH]",  # UCUM special (non-ratio) units
        "dB",
        "Np",
        "%[slope]",
        "mg//",
        "",
        "notaunit",
        "MMOL/L",  # UCUM is case-sensitive
        "mEq/L",  # common in the wild, but not UCUM (meq/L is)
        "Kg",
        " mg",
        "mg/",
        "/",
        "{unclosed",
        "kg*",
        "10*-",
        "(mg",
        "m" * (MAX_CODE_LENGTH + 1),
    ],
)
def test_uncanonicalisable_codes_give_none(code: str) -> None:
    assert canonical(1, code) is None


@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), Decimal("NaN"), Decimal("sNaN"), Decimal("1e400")],
)
def test_non_finite_values_give_none(value: Decimal | float) -> None:
    assert canonical(value, "mg") is None


def test_codes_are_case_sensitive() -> None:
    assert canonical(1, "mg") == (0.001, MASS)  # milligram
    assert canonical(1, "Mg") == (1e6, MASS)  # megagram
    mega_gauss = canonical(1, "MG")  # megagauss, not milligram
    assert mega_gauss is not None
    assert mega_gauss[1] != MASS


def test_ten_star_is_the_number_ten() -> None:
    assert canonical(1, "10*") == (10.0, DIMENSIONLESS)
    assert canonical(1, "10*6") == (1e6, DIMENSIONLESS)


def test_non_string_code_gives_none() -> None:
    assert canonical(1, None) is None  # type: ignore[arg-type]
    assert canonical(1, ["mg"]) is None  # type: ignore[arg-type]


def test_a_long_garbage_code_is_refused_quickly() -> None:
    start = time.perf_counter()
    assert canonical(1, "(" * 60 + "mg" + ")" * 60) == (0.001, MASS)
    assert canonical(1, "m" * (MAX_CODE_LENGTH + 1)) is None
    assert time.perf_counter() - start < 2


def test_concurrent_first_use_is_consistent() -> None:
    codes = ["mg/h", "mmol/d", "ug/min", "nmol/L", "mL/h", "kg/L", "cm2", "mm/h"]
    expected = {code: canonical(2, code) for code in codes}
    assert all(v is not None for v in expected.values())
    results: list[tuple[str, tuple[float, str] | None]] = []
    lock = threading.Lock()

    def worker(offset: int) -> None:
        for i in range(len(codes)):
            code = codes[(i + offset) % len(codes)]
            out = canonical(2, code + "{t}")  # fresh cache entries, same meaning
            with lock:
                results.append((code, out))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 64
    for code, out in results:
        assert out == expected[code]


def test_cached_call_is_cheap() -> None:
    canonical(1, "mg")
    n = 10_000
    start = time.perf_counter()
    for _ in range(n):
        canonical(1063, "mg")
    per_call = (time.perf_counter() - start) / n
    assert per_call < 50e-6  # ~1 us measured; generous bound for slow CI machines
    assert math.isfinite(per_call)


# -- the precomputed common codes (app/search/ucum_gen.py) -----------------------------------------
def test_the_common_codes_table_equals_what_the_registry_computes() -> None:
    table = json.loads(ucum.COMMON_PATH.read_text())
    assert len(table) > 1300  # FHIR's ucum-common value set, less 18 codes UCUM's grammar refuses
    assert table["mg"] == [0.001, "g"]
    assert table["Cel"] is None
    wrong = {
        code: (found, ucum.compiled(code))
        for code, found in table.items()
        if (tuple(found) if found is not None else None) != ucum.compiled(code)
        or not ucum.parses(code)
    }
    assert wrong == {}, "run: python -m app.search.ucum_gen PACKAGE_DIR"


@pytest.mark.parametrize("code", ["{score}", "{T-score}", "{}", "{a b}", "{x{y}", "{é}", "{~|}"])
def test_a_bare_annotation_is_the_unit_one_exactly_when_the_grammar_says_so(code: str) -> None:
    assert ucum.is_valid(code) == ucum.parses(code)
    assert ucum._converter.__wrapped__(code) == ucum.compiled(code)


def test_common_codes_and_annotations_need_no_pint_registry() -> None:
    """The registry costs ~0.5 s per process (each bulk-load worker): the usual codes skip it."""
    script = (
        "from app.search import ucum; "
        "assert ucum.canonical(1063, 'mg') == (1.063, 'g'); "
        "assert ucum.canonical(6, '{score}') == (6.0, '1'); "
        "assert ucum.is_valid('mm[Hg]') and ucum.is_valid('{score}'); "
        "assert ucum._state is None, 'the registry was built'"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=Path(__file__).parents[2])
