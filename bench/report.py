"""bench/run.py's report: medians of the rounds, the ratio to the baseline, and issue 9's targets
beside the figures (met / missed; `errors` when a run had any error, whatever its figures)."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field

from bench.harness import WrkResult

PINNED = "1 worker on core 1"
UNPINNED = "2 workers, unpinned"
TX_ENTRIES = 100
RSS_LIMIT_MB = 300


@dataclass
class Results:
    """Every wrk run, by (setup, workload, server), and what else the report states."""

    runs: dict[tuple[str, str, str], list[WrkResult]] = field(default_factory=dict)
    rss_after_crud: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, setup: str, workload: str, server: str, result: WrkResult) -> None:
        self.runs.setdefault((setup, workload, server), []).append(result)


@dataclass(frozen=True)
class Summary:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    rounds: int


def summarise(runs: list[WrkResult]) -> Summary:
    return Summary(
        rps=statistics.median(r.rps for r in runs),
        p50_ms=statistics.median(r.p50_ms for r in runs),
        p99_ms=statistics.median(r.p99_ms for r in runs),
        errors=sum(r.errors for r in runs),
        rounds=len(runs),
    )


def _search_size(workload: str) -> int | None:
    return int(workload.split()[1].replace(",", "")) if workload.startswith("search ") else None


def target(
    results: Results, setup: str, workload: str, server: str, summary: Summary
) -> tuple[str, str]:
    """(the target, met | missed) for this row; ("", "") when the issue sets none."""
    if server == "baseline":
        return "", ""
    pinned = setup == PINNED
    if workload == "crud" and pinned:
        return "≥600 req/s per core", _verdict(summary.rps >= 600)
    if workload == "read":
        base = results.runs.get((setup, workload, "baseline"))
        if not base:
            return "≥0.70 x baseline", "n/a"
        return "≥0.70 x baseline", _verdict(summary.rps >= 0.70 * summarise(base).rps)
    if workload == "transaction" and pinned and server == "sqlite":
        return "≥3,000 resources/s", _verdict(summary.rps * TX_ENTRIES >= 3000)
    size = _search_size(workload)
    if size is not None:
        text = "p50 <10 ms, p99 <50 ms"
        met = summary.p50_ms < 10 and summary.p99_ms < 50
        small = results.runs.get((setup, "search 10,000", server))
        if size > 10_000 and small:
            text += ", p50 ≤2x the 10k p50"
            met = met and summary.p50_ms <= 2 * summarise(small).p50_ms
        return text, _verdict(met)
    return "", ""


def _verdict(met: bool) -> str:
    return "met" if met else "missed"


def _ordered(keys: Iterable[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """By setup, then workload, then server, each in the order first measured."""
    keys = list(keys)
    rank: list[dict[str, int]] = [{}, {}, {}]
    for key in keys:
        for part, ranks in zip(key, rank, strict=True):
            ranks.setdefault(part, len(ranks))
    return sorted(keys, key=lambda k: tuple(r[p] for p, r in zip(k, rank, strict=True)))


def table(results: Results) -> list[str]:
    lines = [
        "| setup | workload | server | req/s | p50 ms | p99 ms | x baseline | errors | target | |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for setup, workload, server in _ordered(results.runs):
        summary = summarise(results.runs[(setup, workload, server)])
        base_runs = results.runs.get((setup, workload, "baseline"))
        ratio = f"{summary.rps / summarise(base_runs).rps:.2f}" if base_runs else ""
        wanted, verdict = target(results, setup, workload, server, summary)
        if summary.errors:
            verdict = "errors"
        rate = f"{summary.rps:,.0f}"
        if workload == "transaction":
            rate += f" ({summary.rps * TX_ENTRIES:,.0f} res/s)"
        lines.append(
            f"| {setup} | {workload} | {server} | {rate} | {summary.p50_ms:.2f} | "
            f"{summary.p99_ms:.2f} | {ratio} | {summary.errors} | {wanted} | {verdict} |"
        )
    return lines


def rss_table(results: Results) -> list[str]:
    if not results.rss_after_crud:
        return []
    lines = [
        "| setup | server | VmRSS per worker after the CRUD run (MB) | target | |",
        "| --- | --- | --- | --- | --- |",
    ]
    for (setup, server), workers in results.rss_after_crud.items():
        shown = ", ".join(f"{mb:,.0f}" for mb in workers) or "?"
        if server == "baseline":
            wanted, verdict = "", ""
        else:
            wanted = f"<{RSS_LIMIT_MB} MB"
            verdict = _verdict(bool(workers) and max(workers) < RSS_LIMIT_MB)
        lines.append(f"| {setup} | {server} | {shown} | {wanted} | {verdict} |")
    return lines


def render(header: list[str], results: Results) -> str:
    lines = [*header, "", *table(results)]
    rss = rss_table(results)
    if rss:
        lines += ["", *rss]
    if results.notes:
        lines += ["", *(f"- {note}" for note in results.notes)]
    return "\n".join(lines) + "\n"
