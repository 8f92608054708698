"""The history interaction's parameters (_count, _since, _at and the page cursor)."""

from __future__ import annotations

from collections.abc import Mapping

from app.fhir.errors import BadRequestError
from app.fhir.instants import parse_range
from app.fhir.store import HistoryQuery

HISTORY_PARAMETERS = ("_count", "_since", "_at")


def parse_count(raw: str | None, default: int, maximum: int) -> int:
    if raw is None or raw == "":
        return default
    if not raw.isdigit():
        raise BadRequestError(f"_count '{raw}' is not a whole number of 0 or more", ("_count",))
    return min(int(raw), maximum)


def history_query(
    params: Mapping[str, str],
    resource_type: str | None,
    resource_id: str | None,
    default_count: int,
    max_count: int,
) -> tuple[HistoryQuery, list[tuple[str, str]], str | None]:
    """The query, the parameters to carry into paging links, and the cursor of this page."""
    count = parse_count(params.get("_count"), default_count, max_count)
    since = params.get("_since")
    at = params.get("_at")
    cursor = params.get("_cursor")
    if cursor is not None and not cursor.isdigit():
        raise BadRequestError(
            f"_cursor '{cursor}' is not a page this server handed out", ("_cursor",)
        )
    query = HistoryQuery(
        resource_type=resource_type,
        resource_id=resource_id,
        since=parse_range(since, "_since")[0] if since else None,
        at=parse_range(at, "_at") if at else None,
        count=count,
        before=int(cursor) if cursor else None,
    )
    kept = [(name, params[name]) for name in HISTORY_PARAMETERS if params.get(name)]
    if "_count" not in params:
        kept.insert(0, ("_count", str(count)))
    return query, kept, cursor
