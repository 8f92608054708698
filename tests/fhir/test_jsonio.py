from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.fhir import jsonio
from app.fhir.errors import StructureError


@pytest.mark.parametrize(
    "text",
    [
        "1.50",
        "0.10",
        "100.000",
        "1e2",
        "1.5E-7",
        "-0.0",
        "3.141592653589793238462643383279",
        "12345678901234567890",
        "0.0000001",
        "1.0",
        "7",
        "-12",
        "1e-05",
        "2.5e-06",
        "-0",
        "123456789012345678901234567890",
        "-9223372036854775809",
    ],
)
def test_numbers_are_written_back_as_they_were_read(text: str) -> None:
    raw = f'{{"value":{text},"list":[{text}, {text}]}}'.encode()
    assert jsonio.dumps(jsonio.loads(raw)) == f'{{"value":{text},"list":[{text},{text}]}}'.encode()


def test_plain_documents_take_the_fast_path_and_stay_equal() -> None:
    raw = b'{"a":1,"b":[1.5,2.25,"x"],"c":{"d":true,"e":null}}'
    value = jsonio.loads(raw)
    assert isinstance(value["b"][0], float)
    assert jsonio.dumps(value) == raw


def test_exact_numbers_compare_as_decimals() -> None:
    value = jsonio.loads(b'{"v": 1.50}')["v"]
    assert value == Decimal("1.5")


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b'{"a":NaN}', b'{"a":Infinity}', b"[1,]", b'{"a":1e400}', b"\xff", b'{"a": 1.50,}'],
)
def test_invalid_json_raises_structure_error(raw: bytes) -> None:
    with pytest.raises(StructureError):
        jsonio.loads(raw)


def test_pretty_output_keeps_precision() -> None:
    assert jsonio.reformat(b'{"a":1.50}', pretty=True) == b'{\n  "a": 1.50\n}'
    assert jsonio.reformat(b'{"a":1.50}', pretty=False) == b'{"a":1.50}'


def test_fragments_are_spliced_unparsed() -> None:
    stored = b'{"resourceType":"Patient","id":"x"}'
    assert jsonio.dumps({"entry": [{"resource": jsonio.Fragment(stored)}]}) == (
        b'{"entry":[{"resource":' + stored + b"}]}"
    )


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a":1,"a":2}',
        b'{"a" : 1, "a" :2}',
        b'{"b":{"a":1,"a":1}}',
        b'{"s":"x\\":y","s":1}',
        b'{"s":"\\\\","b":[{"a":1,"a":2}]}',
        b'{"n":1.50,"n":2}',
    ],
)
def test_duplicate_keys_are_refused_naming_the_key(raw: bytes) -> None:
    with pytest.raises(StructureError, match="appears twice"):
        jsonio.loads_unique(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a":1,"b":{"a":2},"c":[{"a":3},{"a":4}]}',
        b'{"s":"\\":\\"","t":"a\\":"}',
        b'{"s":"\\\\","a" : {"s":1}}',
        b'{"s" : ":x"}',  # a spaced key, and a value starting with a colon
        b'{"s":"\\u003ax","t":[":"]}',  # the colon escaped in the text, not when written back
    ],
)
def test_the_same_key_in_different_objects_is_fine(raw: bytes) -> None:
    assert jsonio.loads_unique(raw) == jsonio.loads(raw)


def test_a_lone_surrogate_is_refused_on_the_exact_path_too() -> None:
    with pytest.raises(StructureError):
        jsonio.loads(b'{"n":1.50,"s":"\\ud800"}')


def _keys(value: object) -> int:
    if isinstance(value, dict):
        return len(value) + sum(_keys(v) for v in value.values())
    if isinstance(value, list):
        return sum(_keys(v) for v in value)
    return 0


_TEXT = st.text(alphabet=st.sampled_from(['"', "\\", ":", " ", "a", "/", "\n", "é"]), max_size=8)
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=20,
)


@given(_JSON, st.sampled_from([None, 1]))
def test_keys_are_counted_whatever_the_strings_hold(value: object, indent: int | None) -> None:
    """Quotes, backslashes and colons inside keys and values (escaped in every way json.dumps
    writes them, spaced or not) never change the count."""
    raw = json.dumps(value, indent=indent, ensure_ascii=False).encode()
    assert jsonio._key_count(raw, exact=True) == _keys(value)
    written = jsonio.dumps(jsonio.loads_unique(raw))  # no false duplicate
    if b"\\" not in raw + written and indent is None:  # the quick count, both alike
        assert jsonio._key_count(raw, exact=False) == jsonio._key_count(written, exact=False)
