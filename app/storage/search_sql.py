"""A SearchRequest as SQL: one statement for the page (each criterion a subquery of matching
resource keys over its index table), one for the total, one per include step."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    Table,
    and_,
    false,
    func,
    literal,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.sql.elements import UnaryExpression

from app.fhir.compartment import stored_params
from app.search.aliases import stored_as
from app.search.dates import EPOCH, MAX_US, MIN_US, to_us
from app.search.index_values import SEVERAL_PATIENTS, fold, patient_hash
from app.search.indexer import patient_rows
from app.search.query import (
    ANY_TYPE,
    Chain,
    CompositeValue,
    Criterion,
    Has,
    RangeValue,
    ReferenceValue,
    SearchRequest,
    TokenValue,
)
from app.search.registry import by_url, param
from app.storage.derived import fit, prefix_fits
from app.storage.tables import INDEX_TABLES
from app.storage.tables import resource_table as r
from app.storage.tables import version_table as v

_CURRENT_JOIN = r.join(v, and_(v.c.res_key == r.c.res_key, v.c.version_id == r.c.version_id))

_SORT_COLUMN = {
    "date": ("low", "high"),
    "string": ("norm", "norm"),
    "token": ("code", "code"),
    "number": ("value", "value"),
    "quantity": ("value", "value"),
    "reference": ("target_id", "target_id"),
    "uri": ("value", "value"),
}


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _dt(us: float) -> datetime:
    """Epoch microseconds as a datetime, within years 1-9999 (a float's rounding, or ap's
    widening, may step past 9999-12-31T23:59:59.999999, which datetime cannot hold)."""
    return EPOCH + timedelta(microseconds=min(max(int(us), MIN_US), MAX_US))


def _ap_range(v: RangeValue) -> tuple[int, int]:
    """ap on a date (search.html#prefix: "the server decides", recommended 10% of the gap
    between now and the value): the search range widened on both sides by a tenth of its
    start's distance from now, at least a day, within the dates FHIR can write. Ordinary date
    parameters and _lastUpdated both use it."""
    now_us = to_us(datetime.now(UTC))
    low, high = int(v.low), int(v.high)
    margin = max(abs(now_us - low) // 10, 86_400_000_000)
    return max(low - margin, MIN_US), min(high + margin, MAX_US)


def _width(t: Any, name: str) -> int:
    """The width of a varchar index column (app/storage/tables.py); `t` is a table, an
    alias or a _Hidden view of one."""
    table = t.table if isinstance(t, _Hidden) else t
    kind = table.c[name].type
    assert isinstance(kind, String), name
    assert kind.length is not None, name
    return kind.length


def _fit(t: Any, name: str, value: str) -> str:
    """A search value as the column stores it (app/storage/derived.py: values longer than
    their column are stored bounded; a value that fits is itself, so ordinary searches are
    unchanged)."""
    return fit(value, _width(t, name))


def _starts_with(t: Any, name: str, prefix: str) -> ColumnElement[bool]:
    """column LIKE 'prefix%'; a prefix longer than a bounded value's head also matches the
    value equal to it (a longer stored value that starts with it cannot be told)."""
    like = t.c[name].like(_like_prefix(prefix), escape="\\")
    if prefix_fits(prefix, _width(t, name)):
        return like
    return or_(like, t.c[name] == _fit(t, name, prefix))


# -- value conditions ----------------------------------------------------------------------------
def _range(
    prefix: str,
    low: Any,
    high: Any,
    v: RangeValue,
    point_col: Any = None,
    low_col: Any = None,
    high_col: Any = None,
) -> ColumnElement[bool]:
    """A prefix comparison. Dates compare ranges (low_col/high_col); numbers and quantities
    compare the stored point (point_col) with the search value's implicit range."""
    if point_col is not None:
        p = point_col
        if prefix == "eq":
            return and_(p >= low, p < high)
        if prefix == "ne":
            return or_(p < low, p >= high)
        if prefix in {"gt", "sa"}:
            return p > v.point
        if prefix in {"lt", "eb"}:
            return p < v.point
        if prefix == "ge":
            return p >= v.point
        if prefix == "le":
            return p <= v.point
        margin = abs(v.point) * 0.1  # ap: within 10% (search.html#prefix)
        return and_(p >= v.point - margin, p <= v.point + margin)
    lo, hi = low_col, high_col
    # Each prefix as search.html defines it, rewritten so one side is a plain range on an
    # indexed column (lo <= hi always holds): eq = [lo, hi] inside [low, high];
    # ge = hi > high OR eq, which equals hi >= low AND (hi > high OR lo >= low); le likewise.
    if prefix == "eq":
        return and_(lo >= low, lo <= high, hi <= high)
    if prefix == "ne":
        return or_(lo < low, hi > high)
    if prefix == "gt":
        return hi > high
    if prefix == "lt":
        return lo < low
    if prefix == "ge":
        return and_(hi >= low, or_(hi > high, lo >= low))
    if prefix == "le":
        return and_(lo <= high, or_(lo < low, hi <= high))
    if prefix == "sa":
        return lo > high
    if prefix == "eb":
        return hi < low
    # ap: overlap with the search range widened by 10% of its distance from now (_ap_range)
    ap_low, ap_high = _ap_range(v)
    if isinstance(low, datetime):  # _lastUpdated: a datetime column
        return and_(lo <= _dt(ap_high), hi >= _dt(ap_low))
    return and_(lo <= ap_high, hi >= ap_low)


def _token(
    t: Any, value: TokenValue, system_col: str = "system", code_col: str = "code"
) -> ColumnElement[bool]:
    conds = []
    if value.code is not None:
        conds.append(t.c[code_col] == _fit(t, code_col, value.code))
    if value.no_system:
        conds.append(t.c[system_col].is_(None))
    elif value.system is not None:
        conds.append(t.c[system_col] == _fit(t, system_col, value.system))
    return and_(*conds) if conds else true()


def _date_value(value: RangeValue, lo: Any, hi: Any) -> ColumnElement[bool]:
    return _range(value.prefix, int(value.low), int(value.high), value, low_col=lo, high_col=hi)


def _quantity(
    t: Any,
    value: RangeValue,
    prefix: str = "",
) -> ColumnElement[bool]:
    cols = {
        name: t.c[prefix + name]
        for name in ("value", "system", "code", "canon_value", "canon_code")
    }
    if value.canonical:
        assert value.code is not None
        return and_(
            cols["canon_code"] == _fit(t, prefix + "canon_code", value.code),
            _range(value.prefix, value.low, value.high, value, cols["canon_value"]),
        )
    conds = [_range(value.prefix, value.low, value.high, value, cols["value"])]
    if value.code is not None:
        conds.append(cols["code"] == _fit(t, prefix + "code", value.code))
    if value.system is not None:
        conds.append(cols["system"] == _fit(t, prefix + "system", value.system))
    return and_(*conds)


def _reference(
    t: Table, value: ReferenceValue, targets: tuple[str, ...] = ()
) -> ColumnElement[bool]:
    """A bare id (`subject=123`) matches references to it of each of the parameter's target
    types: the type leads the index that answers references (app/storage/tables.py)."""
    local = None
    if value.target_id is not None:
        local = t.c.target_id == _fit(t, "target_id", value.target_id)
        if value.target_type is not None:
            local = and_(local, t.c.target_type == _fit(t, "target_type", value.target_type))
        elif targets:
            local = and_(local, t.c.target_type.in_(targets))
    if value.url is not None:
        by_url_cond = t.c.url == _fit(t, "url", value.url)
        return or_(by_url_cond, local) if local is not None else by_url_cond
    assert local is not None
    return local


def _composite(t: Table, criterion: Criterion, value: CompositeValue) -> ColumnElement[bool]:
    first = _token(t, value.first, "c1_system", "c1_code")
    return and_(first, _component(t, _second_type(criterion), value.second, "c2_"))


def _second_type(criterion: Criterion) -> str:
    assert criterion.definition is not None
    second_def = by_url(criterion.definition.components[1][0])
    assert second_def is not None
    return second_def.type


def _component(t: Any, kind: str, value: Any, prefix: str) -> ColumnElement[bool]:
    """A composite's second component against `t`: a composite row's c2_ columns (prefix
    "c2_") or the rows of the component's own parameter (prefix "")."""
    if kind == "token":
        return _token(t, value, prefix + "system", prefix + "code")
    if kind == "quantity":
        return _quantity(t, value, prefix)
    if kind == "date":
        return _date_value(value, t.c[prefix + "low"], t.c[prefix + "high"])
    if kind == "number":
        return _range(value.prefix, value.low, value.high, value, t.c[prefix + "value"])
    column = t.c.c2_text if prefix else t.c.norm
    return column.like(_like_prefix(fold(value)), escape="\\")


def _paired_keys(criterion: Criterion, pair: tuple[str, str]) -> Select[Any]:
    """Keys of resources with a row of the pair's first parameter and one of its second that
    match a value's components (app/search/aliases.py, PAIRED): the first's token rows drive,
    the second's rows of each candidate are probed by primary key."""
    first, second = pair
    kind = _second_type(criterion)
    rt = criterion.resource_type
    tokens = INDEX_TABLES["token"].alias()
    rows = INDEX_TABLES[kind].alias()

    def second_rows(*conds: ColumnElement[bool]) -> ColumnElement[bool]:
        return (
            select(literal(1))
            .where(rows.c.res_key == tokens.c.res_key, rows.c.param == second, *conds)
            .exists()
        )

    base = [tokens.c.resource_type == rt, tokens.c.param == first]
    if criterion.modifier == "missing":
        return select(tokens.c.res_key).where(*base, tokens.c.code.is_not(None), second_rows())
    matches = [
        and_(_token(tokens, value.first), second_rows(_component(rows, kind, value.second, "")))
        for value in criterion.values
    ]
    return select(tokens.c.res_key).where(*base, or_(*matches))


Spans = Mapping[tuple[str, str], int]


def _span_bound(
    t: Table, criterion: Criterion, value: RangeValue, spans: Spans
) -> ColumnElement[bool] | None:
    """high <= (upper bound of low) + widest span: redundant, but it bounds the index scan."""
    span = spans.get((criterion.resource_type, criterion.code))
    if span is None:
        return None
    upper = {"lt": value.low, "le": value.high, "eq": value.high}.get(value.prefix)
    return t.c.high <= int(upper) + span if upper is not None else None


def _value_condition(
    t: Table, criterion: Criterion, value: Any, spans: Spans | None = None
) -> ColumnElement[bool]:
    kind, modifier = criterion.kind, criterion.modifier
    if kind == "date" and spans:
        bound = _span_bound(t, criterion, value, spans)
        condition = _date_value(value, t.c.low, t.c.high)
        return and_(condition, bound) if bound is not None else condition
    if kind == "token":
        if modifier == "text":
            return _starts_with(t, "text", value)
        return _token(t, value)
    if kind == "string":
        if modifier == "exact":
            return t.c.exact == _fit(t, "exact", value)
        if modifier == "contains":
            return t.c.norm.like("%" + _like_prefix(fold(value)), escape="\\")
        return t.c.norm.like(_like_prefix(fold(value)), escape="\\")
    if kind == "date":
        return _date_value(value, t.c.low, t.c.high)
    if kind == "number":
        return _range(value.prefix, value.low, value.high, value, t.c.value)
    if kind == "quantity":
        return _quantity(t, value)
    if kind == "reference":
        return _reference(t, value, criterion.definition.targets if criterion.definition else ())
    if kind == "uri":
        if modifier == "below":
            # LIKE narrows by index; the substr makes it exact (SQLite's LIKE ignores case)
            below = and_(
                t.c.value.like(_like_prefix(value), escape="\\"),
                func.substr(t.c.value, 1, len(value)) == value,
            )
            if prefix_fits(value, _width(t, "value")):
                return below
            return or_(below, t.c.value == _fit(t, "value", value))  # (_starts_with)
        if modifier == "above":
            # the stored uri is a prefix of the value (not a LIKE pattern: its _ and % are text)
            above = and_(
                func.length(t.c.value) <= len(value),
                func.substr(literal(value), 1, func.length(t.c.value)) == t.c.value,
            )
            fitted = _fit(t, "value", value)
            # a bounded stored uri is found when it is the value itself
            return above if fitted == value else or_(above, t.c.value == fitted)
        return t.c.value == _fit(t, "value", value)
    if kind == "composite":
        return _composite(t, criterion, value)
    raise AssertionError(kind)


# -- criteria ------------------------------------------------------------------------------------
def _type_filter(column: Any, resource_type: str) -> ColumnElement[bool]:
    return true() if resource_type == ANY_TYPE else column == resource_type


def _param_filter(
    table: Any, resource_type: str, code: str, suffix: str = "", hidden: bool = False
) -> list[ColumnElement[bool]]:
    """The rows of parameter `code`: its own, or for an alias those of the parameters holding
    them (app/search/aliases.py). `hidden` keeps the terms out of index selection (`|| ''`)."""
    stored = stored_as(resource_type, code)
    column = table.c.param.concat("") if hidden else table.c.param
    codes = [c + suffix for c in stored.codes]
    conds = [column == codes[0] if len(codes) == 1 else column.in_(codes)]
    if stored.target_type is not None:
        target = table.c.target_type.concat("") if hidden else table.c.target_type
        conds.append(target == stored.target_type)
    return conds


def matching_keys(
    criterion: Criterion | Chain | Has, spans: Spans | None = None
) -> tuple[Select[Any], bool]:
    """A SELECT of the resource keys the criterion selects, and whether to negate it (:not,
    :missing=true select by what is absent)."""
    if isinstance(criterion, Chain):
        return _chain(criterion, spans), False
    if isinstance(criterion, Has):
        return _has(criterion, spans), False
    rt = criterion.resource_type
    if criterion.kind in {"_id", "_lastUpdated"}:
        row = r.alias()  # its own alias: as an EXISTS probe it must not correlate with `r`
        if criterion.kind == "_id":
            match: ColumnElement[bool] = row.c.resource_id.in_(criterion.values)
        else:
            match = or_(
                *(
                    _range(  # a point [t, t] against the value's range, both ends inclusive
                        v.prefix,
                        _dt(v.low),
                        _dt(v.high),
                        v,
                        low_col=row.c.last_updated,
                        high_col=row.c.last_updated,
                    )
                    for v in criterion.values
                )
            )
        return select(row.c.res_key).where(_type_filter(row.c.resource_type, rt), match), False
    if criterion.kind == "composite" and (pairs := stored_as(rt, criterion.code).pairs):
        return _composite_keys(criterion, pairs), criterion.missing is True
    return _stored_keys(criterion, spans)


def _stored_keys(criterion: Criterion, spans: Spans | None) -> tuple[Select[Any], bool]:
    """matching_keys of a criterion answered from its parameter's own index rows."""
    rt = criterion.resource_type
    table = INDEX_TABLES[criterion.kind]
    suffix = ":of-type" if criterion.modifier == "of-type" else ""
    base = [
        _type_filter(table.c.resource_type, rt),
        *_param_filter(table, rt, criterion.code, suffix),
    ]
    if criterion.modifier == "missing":
        return select(table.c.res_key).where(*base), bool(criterion.missing)
    conds = [_value_condition(table, criterion, value, spans) for value in criterion.values]
    if not conds:
        return select(table.c.res_key).where(false()), False
    combined = and_(*conds) if criterion.same_row else or_(*conds)
    keys = select(table.c.res_key).where(*base, combined)
    return keys, criterion.modifier == "not"


def _composite_keys(criterion: Criterion, pairs: tuple[tuple[str, str], ...]) -> Select[Any]:
    """A composite read from parameter pairs, and from its own rows where it has stored ones
    (combo-code-value-quantity: code-value-quantity's pair and component-code-value-quantity's
    rows). More than one source becomes a UNION ALL of keys: duplicates are harmless where
    keys are used (DISTINCT drivers, IN and EXISTS)."""
    parts = [_paired_keys(criterion, pair) for pair in pairs]
    if stored_as(criterion.resource_type, criterion.code).codes:
        parts.append(_stored_keys(criterion, None)[0])
    if len(parts) == 1:
        return parts[0]
    keys = union_all(*parts).subquery()
    return select(keys.c.res_key)


def _negated(criterion: Criterion | Chain | Has) -> bool:
    """Whether the criterion selects by absence (:not, :missing=true); matches matching_keys."""
    return isinstance(criterion, Criterion) and (
        criterion.modifier == "not" or (criterion.modifier == "missing" and bool(criterion.missing))
    )


class _Hidden:
    """A table whose value columns take no part in index selection (`|| ''`, `+ 0`), so a
    probe by (res_key, param) uses the primary key, which carries the values."""

    def __init__(self, table: Table) -> None:
        self.table = table

    @property
    def c(self) -> _Hidden:
        return self

    def __getattr__(self, name: str) -> Any:
        return self[name]

    def __getitem__(self, name: str) -> Any:
        column = self.table.c[name]
        return column.concat("") if isinstance(column.type, String) else column + 0


# Kinds whose key index carries the values a probe compares (app/storage/tables.py)
_KEY_PROBED = {"token", "date"}


def _key_probe(criterion: Criterion, spans: Spans | None) -> tuple[Select[Any], bool] | None:
    """The candidate's rows by primary key, the values compared outside the index. No type
    term: the candidate's key fixes its type, and the key's index does not carry it."""
    if criterion.kind not in _KEY_PROBED or criterion.modifier in {"text", "missing"}:
        return None
    table = INDEX_TABLES[criterion.kind]
    hidden: Any = _Hidden(table)
    suffix = ":of-type" if criterion.modifier == "of-type" else ""
    conds = [_value_condition(hidden, criterion, value, spans) for value in criterion.values]
    if not conds:
        return None
    combined = and_(*conds) if criterion.same_row else or_(*conds)
    keys = select(table.c.res_key).where(
        *_param_filter(table, criterion.resource_type, criterion.code, suffix), combined
    )
    return keys, criterion.modifier == "not"


def _exists(
    criterion: Criterion | Chain | Has, res_key: Any, spans: Spans | None = None
) -> ColumnElement[bool]:
    """The criterion as a correlated EXISTS probe of one candidate's index rows: for the
    criteria that do not drive the query, this costs per candidate, where IN (subquery) would
    materialise every matching row of the table first."""
    probed = _key_probe(criterion, spans) if isinstance(criterion, Criterion) else None
    keys, negate = probed or matching_keys(criterion, spans)
    key_column = keys.selected_columns[0]
    # OFFSET 0 keeps PostgreSQL from flattening the probe into a semi join: misled by
    # statistics, it had rescanned every pain-score row of the token index per candidate
    # (a 1M-row search ran for minutes). SQLite runs EXISTS as a correlated probe anyway.
    probe = keys.with_only_columns(literal(1)).where(key_column == res_key).offset(0).exists()
    return ~probe if negate else probe


def _keys_condition(
    column: Any, criterion: Criterion | Chain | Has, spans: Spans | None = None
) -> ColumnElement[bool]:
    keys, negate = matching_keys(criterion, spans)
    return column.not_in(keys) if negate else column.in_(keys)


_RESOLVE_LIMIT = 1000


def _linked(
    key: Any, link: Chain | Has, resource_type: str, spans: Spans | None = None
) -> list[ColumnElement[bool]]:
    """The conditions on the far side of a chain or _has: its inner criterion and the
    bounds a token's scopes put on that type."""
    conds = [_keys_condition(key, link.inner, spans)]
    conds.extend(_keys_condition(key, c, spans) for c in link.also)
    compartment = compartment_condition(key, link.compartment, (resource_type,))
    if compartment is not None:
        conds.append(compartment)
    return conds


def resolve_links(
    conn: Any, criterion: Criterion | Chain | Has, spans: Spans | None
) -> Criterion | Chain | Has:
    """Chains and _has with their targets looked up first, when there are few: a chain becomes
    a plain reference criterion, a _has an _id criterion. One small query each, and then the
    main statement drives from an index lookup of known ids, which no planner misjudges (a
    planner working from stale statistics turned a chain into a walk over every reference)."""
    if isinstance(criterion, Chain):
        inner = resolve_links(conn, criterion.inner, spans)
        target = criterion.target_types[0]
        row = r.alias()
        ids = (
            conn.execute(
                select(row.c.resource_id)
                .where(
                    row.c.resource_type == target,
                    row.c.deleted == false(),
                    *_linked(row.c.res_key, replace(criterion, inner=inner), target, spans),
                )
                .limit(_RESOLVE_LIMIT + 1)
            )
            .scalars()
            .all()
        )
        if len(ids) > _RESOLVE_LIMIT:
            return replace(criterion, inner=inner)
        return Criterion(
            criterion.resource_type,
            criterion.code,
            "reference",
            None,
            tuple(ReferenceValue(target, i, None) for i in ids),
            param(criterion.resource_type, criterion.code),
        )
    if isinstance(criterion, Has):
        inner = resolve_links(conn, criterion.inner, spans)
        x = INDEX_TABLES["reference"]
        ids = (
            conn.execute(
                select(x.c.target_id)
                .where(
                    x.c.resource_type == criterion.source_type,
                    *_param_filter(x, criterion.source_type, criterion.code),
                    x.c.target_type == criterion.resource_type,
                    x.c.target_id.is_not(None),
                    *_linked(
                        x.c.res_key, replace(criterion, inner=inner), criterion.source_type, spans
                    ),
                )
                .distinct()
                .limit(_RESOLVE_LIMIT + 1)
            )
            .scalars()
            .all()
        )
        if len(ids) > _RESOLVE_LIMIT:
            return replace(criterion, inner=inner)
        return Criterion(criterion.resource_type, "_id", "_id", None, tuple(ids))
    return criterion


def _chain(chain: Chain, spans: Spans | None) -> Select[Any]:
    x = INDEX_TABLES["reference"].alias()
    target = chain.target_types[0]
    target_row = r.alias()
    targets = select(target_row.c.resource_id).where(
        target_row.c.resource_type == target,
        target_row.c.deleted == false(),
        *_linked(target_row.c.res_key, chain, target),
    )
    return select(x.c.res_key).where(
        _type_filter(x.c.resource_type, chain.resource_type),
        *_param_filter(x, chain.resource_type, chain.code),
        x.c.target_type == target,
        x.c.target_id.in_(targets),
    )


def _has(has: Has, spans: Spans | None) -> Select[Any]:
    x = INDEX_TABLES["reference"].alias()
    referenced = select(x.c.target_id).where(
        x.c.resource_type == has.source_type,
        *_param_filter(x, has.source_type, has.code),
        x.c.target_type == has.resource_type,
        *_linked(x.c.res_key, has, has.source_type),
    )
    row = r.alias()
    return select(row.c.res_key).where(
        row.c.resource_type == has.resource_type, row.c.resource_id.in_(referenced)
    )


# How selective a criterion usually is, most first: the first positive one drives the query.
_SELECTIVITY = {
    "_id": 0,
    "reference": 1,
    "token": 2,
    "composite": 3,
    "string": 4,
    "uri": 5,
    "date": 6,
    "quantity": 7,
    "number": 8,
    "_lastUpdated": 9,
}


def _rank(criterion: Criterion | Chain | Has) -> int:
    if isinstance(criterion, Criterion) and criterion.modifier == "missing":
        return 11  # presence selects most of a parameter's rows: a probe, unless alone
    if isinstance(criterion, Chain):
        return 1  # a chain usually resolves to a few targets (an identifier, a name)
    if isinstance(criterion, Has):
        return 5
    return _SELECTIVITY.get(criterion.kind, 10)


_RANGE_KINDS = {"date", "number", "quantity"}


def merge_ranges(criteria: list[Criterion | Chain | Has]) -> list[Criterion | Chain | Has]:
    """`date=ge2016-01-01&date=lt2017-01-01` as one range that one value must fall in.

    Read literally, each repetition may be met by a different value of a multi-valued element;
    like HAPI FHIR, this server reads repeated single-valued range criteria on one parameter as
    bounds on the same value, which is what such queries mean and lets one index range scan
    answer them (documented in docs/architecture.md)."""
    merged: dict[tuple[str, str], Criterion] = {}
    out: list[Criterion | Chain | Has] = []
    for criterion in criteria:
        if (
            isinstance(criterion, Criterion)
            and criterion.kind in _RANGE_KINDS
            and criterion.modifier is None
            and len(criterion.values) == 1
        ):
            key = (criterion.resource_type, criterion.code)
            if key in merged:
                first = merged[key]
                merged[key] = replace(first, values=first.values + criterion.values, same_row=True)
                out[out.index(first)] = merged[key]
                continue
            merged[key] = criterion
        out.append(criterion)
    return out


@dataclass(frozen=True)
class Plan:
    """How a search reads: FROM `source` WHERE `conds`, correlated on `key`.

    keys_only: `source` is the driving criterion's index rows alone. Index rows exist only for
    current, non-deleted resources, so the page's keys are found, filtered and sorted without
    touching `resource` or `resource_version`, and only the page's rows are read from them
    (a pain search at 1M had read 200 resource rows to return 20)."""

    source: Any
    conds: list[ColumnElement[bool]]
    key: Any
    keys_only: bool


def plan(request: SearchRequest, spans: Spans | None = None, keys_only: bool = True) -> Plan:
    """Planners (SQLite's especially) would otherwise walk every resource of the type and probe
    each criterion; driving from the most selective criterion's index lookup keeps a search
    proportional to its matches, not to the table."""
    conds: list[ColumnElement[bool]] = [r.c.deleted == false()]
    by_type: dict[str, list[Criterion | Chain | Has]] = {}
    for criterion in request.criteria:
        by_type.setdefault(criterion.resource_type, []).append(criterion)
    if len(by_type) > 1 and ANY_TYPE not in by_type:
        # _type with criteria: each resource must match its own type's version of them.
        conds.append(r.c.resource_type.in_(request.resource_types))
        conds.append(
            or_(
                *(
                    and_(r.c.resource_type == t, *(_keys_condition(r.c.res_key, c) for c in cs))
                    for t, cs in by_type.items()
                )
            )
        )
        return Plan(_CURRENT_JOIN, conds, r.c.res_key, False)
    criteria = merge_ranges(request.criteria)
    positive = sorted((c for c in criteria if not _negated(c)), key=_rank)
    rest = [c for c in criteria if not positive or c is not positive[0]]
    if keys_only and positive and _index_rows_only(positive[0], request):
        by_patient = _token_of_patients(positive)
        if by_patient is not None:
            token, patients = by_patient
            token_rows = INDEX_TABLES["token"]
            keys = matching_keys(token, spans)[0].where(token_rows.c.patient.in_(patients))
            rest = [c for c in criteria if c is not token]
        else:
            keys = matching_keys(positive[0], spans)[0]
        # DISTINCT: one resource can match through several index rows (codings, OR values)
        driver = keys.distinct().subquery()
        key_conds = [_exists(c, driver.c.res_key, spans) for c in rest]
        return Plan(driver, key_conds, driver.c.res_key, True)
    source: Any = _CURRENT_JOIN
    if positive:
        driver = matching_keys(positive[0], spans)[0].distinct().subquery()
        source = driver.join(_CURRENT_JOIN, r.c.res_key == driver.c.res_key)
        if request.resource_types and ANY_TYPE in by_type:
            conds.append(r.c.resource_type.in_(request.resource_types))
    elif request.resource_types:
        conds.append(r.c.resource_type.in_(request.resource_types))
    conds.extend(_exists(c, r.c.res_key, spans) for c in rest)
    return Plan(source, conds, r.c.res_key, False)


def _token_of_patients(
    positive: list[Criterion | Chain | Has],
) -> tuple[Criterion, list[int]] | None:
    """A token criterion to drive from, narrowed to the patients that a reference criterion
    names: token rows carry their resource's patient (IndexRows.patient), so `patient=X&code=Y`
    is one range of the (code, patient) index instead of a probe of each of X's resources.

    The rows kept are a superset: those of X's hash and those of resources with several
    patients. The reference criterion stays as a probe of the candidates, which makes the
    answer exact (also under a hash collision)."""
    token = next(
        (
            c
            for c in positive
            if isinstance(c, Criterion) and c.kind == "token" and c.modifier is None and c.values
        ),
        None,
    )
    if token is None:
        return None
    for criterion in positive:
        if (
            isinstance(criterion, Criterion)
            and criterion.resource_type == token.resource_type
            and _names_patients(criterion)
        ):
            hashes = {patient_hash(value.target_id) for value in criterion.values}
            return token, sorted(hashes | {SEVERAL_PATIENTS})
    return None


def _names_patients(criterion: Criterion) -> bool:
    """Whether every resource the reference criterion matches has the patients it names among
    the targets that IndexRows.patient is computed from (app.search.indexer.patient_rows)."""
    if criterion.kind != "reference" or criterion.resource_type == ANY_TYPE:
        return False
    if criterion.modifier is not None and not criterion.modifier[0].isupper():
        return False
    patient = patient_rows(criterion.resource_type)
    stored = stored_as(criterion.resource_type, criterion.code)
    if patient is None or stored.codes != patient.codes:
        return False
    return all(
        isinstance(value, ReferenceValue)
        and value.url is None
        and value.target_id is not None
        and (patient.target_type in {None, stored.target_type, value.target_type})
        for value in criterion.values
    )


def _index_rows_only(driver: Criterion | Chain | Has, request: SearchRequest) -> bool:
    """Whether the driver's keys are index rows of one known type (so current, not deleted,
    of the right type) and the sort needs no resource column."""
    if isinstance(driver, Has) or driver.resource_type == ANY_TYPE:
        return False
    if isinstance(driver, Criterion) and driver.kind in {"_id", "_lastUpdated"}:
        return False
    return not any(code in {"_id", "_lastUpdated"} for code, _ in request.sort)


def from_clause(
    request: SearchRequest, spans: Spans | None = None
) -> tuple[Any, list[ColumnElement[bool]]]:
    """The FROM (current resources, joined to the driving criterion's keys) and the WHERE."""
    found = plan(request, spans, keys_only=False)
    compartment = compartment_condition(found.key, request.compartment, request.resource_types)
    return found.source, [*found.conds, *([compartment] if compartment is not None else [])]


def needs_spans(criteria: list[Criterion | Chain | Has]) -> bool:
    """Whether any date criterion, also inside a chain or _has, reads the date spans."""
    for criterion in criteria:
        if isinstance(criterion, Chain | Has):
            if needs_spans([criterion.inner, *criterion.also]):
                return True
        elif criterion.kind == "date":
            return True
    return False


def sort_values(request: SearchRequest, key: Any = None) -> list[tuple[Any, bool]]:
    """(value, descending) per _sort key; values are correlated on `key` (the resource key)."""
    key = r.c.res_key if key is None else key
    values: list[tuple[Any, bool]] = []
    for code, descending in request.sort:
        if code == "_id":
            column: Any = r.c.resource_id
        elif code == "_lastUpdated":
            column = r.c.last_updated
        else:
            column = _sort_subquery(request, code, descending, key)
        values.append((column, descending))
    return values


def ordered(values: list[tuple[Any, bool]], key: Any) -> list[Any]:
    """ORDER BY terms: each value in its direction, missing values last, then the key."""
    terms: list[Any] = []
    for column, descending in values:
        term: UnaryExpression[Any] = column.desc() if descending else column.asc()
        terms.append(term.nulls_last())
    return [*terms, key]


def order_by(request: SearchRequest, key: Any = None) -> list[Any]:
    """ORDER BY terms; sort values are correlated on `key` (the resource key column)."""
    return ordered(sort_values(request, key), r.c.res_key if key is None else key)


def _sort_subquery(request: SearchRequest, code: str, descending: bool, key: Any) -> Any:
    found = next(((t, d) for t in request.resource_types if (d := param(t, code))), None)
    if found is None or found[1].type not in _SORT_COLUMN:
        return literal(None)
    resource_type, definition = found
    table = INDEX_TABLES[definition.type].alias()
    ascending_col, descending_col = _SORT_COLUMN[definition.type]
    aggregate = (
        func.max(table.c[descending_col]) if descending else func.min(table.c[ascending_col])
    )
    return (
        select(aggregate)
        .where(table.c.res_key == key, *_param_filter(table, resource_type, code))
        .scalar_subquery()
    )


def include_targets(keys: list[int], include: Any) -> Select[Any]:
    """(target type, target id) pairs that the resources `keys` point at through `include`.

    Only the res_key term may use an index: given equality on (type, param), SQLite would
    rather walk every reference of that parameter. `|| ''` keeps the other terms out of index
    selection on both databases without changing their meaning."""
    x = INDEX_TABLES["reference"]
    conds: list[ColumnElement[bool]] = [x.c.res_key.in_(keys)]
    if include.code != "*":
        conds += [
            *_param_filter(x, include.source_type, include.code, hidden=True),
            x.c.resource_type.concat("") == include.source_type,
        ]
    if include.target_type:
        conds.append(x.c.target_type.concat("") == include.target_type)
    return select(x.c.target_type, x.c.target_id).where(*conds).distinct()


def by_type_and_id(
    type_column: Any, id_column: Any, pairs: list[tuple[str, str]]
) -> ColumnElement[bool]:
    """(type, id) IN pairs, as one `type = t AND id IN (...)` per type: row-value IN lists are
    not answered from an index by SQLite."""
    ids: dict[str, list[str]] = {}
    for kind, resource_id in pairs:
        ids.setdefault(kind, []).append(resource_id)
    return or_(*(and_(type_column == kind, id_column.in_(values)) for kind, values in ids.items()))


def revinclude_sources(targets: list[tuple[str, str]], include: Any) -> Select[Any]:
    """Keys of resources of the include's source type that point at any of `targets`."""
    x = INDEX_TABLES["reference"]
    conds = [by_type_and_id(x.c.target_type, x.c.target_id, targets)]
    if include.source_type != "*":
        conds.append(x.c.resource_type == include.source_type)
    if include.code != "*":
        conds.extend(_param_filter(x, include.source_type, include.code))
    return select(x.c.res_key).where(*conds).distinct()


def compartment_condition(
    key: Any, patient_id: str | None, resource_types: tuple[str, ...]
) -> ColumnElement[bool] | None:
    """Keys in the patient's compartment: the patient, and resources of the given types
    referencing Patient/id through one of their type's compartment parameters (one range of
    the reference target index; IN materialises it once)."""
    if patient_id is None:
        return None
    x = INDEX_TABLES["reference"].alias()
    by_type = [
        and_(x.c.resource_type == t, x.c.param.in_(codes))
        for t in resource_types
        if (codes := stored_params(t))
    ]
    parts: list[ColumnElement[bool]] = []
    if by_type:
        members = select(x.c.res_key).where(
            x.c.target_type == "Patient", x.c.target_id == patient_id, or_(*by_type)
        )
        parts.append(key.in_(members))
    if "Patient" in resource_types:
        row = r.alias()
        itself = select(row.c.res_key).where(
            row.c.resource_type == "Patient", row.c.resource_id == patient_id
        )
        parts.append(key.in_(itself))
    return or_(*parts) if parts else false()
