"""The clinical course as a picture, like the case report's Figure 1: pain (PI-NRS) over time,
ranges drawn as ranges and derived values hollow, each infusion as a bar of its dose (unknown
doses hatched and labelled "?", never drawn as zero), courses shaded, liver tests marked.

matplotlib's object API (no pyplot state, so concurrent requests do not share a figure), SVG
with text as paths: a self-contained file. Every mark carries an id (pain-point-N, dose-N,
dose-unknown-N, course-N, lft-N, ...) so tests and clients can find them.
"""

from __future__ import annotations

import io
from datetime import date, timedelta

import matplotlib

matplotlib.use("svg")  # no display; also keeps a GUI backend from being imported

from matplotlib.dates import DateFormatter, date2num
from matplotlib.figure import Figure

from app.clinical.liver import LiverSafety
from app.clinical.pain import PainResponse

_PAIN = "#b22222"
_DOSE = "#4a6fa5"
_UNKNOWN = "#9aa9c2"
_COURSE = "#f1e8c8"
_LFT = "#2e7d32"


def _x(day: date) -> float:
    return float(date2num(day))  # type: ignore[no-untyped-call]


def clinical_course_svg(pain: PainResponse, liver: LiverSafety, title: str) -> bytes:
    figure = Figure(figsize=(10, 5.2), dpi=100)
    doses_axis = figure.add_subplot(111)
    pain_axis = doses_axis.twinx()
    # pain in front of the dose bars
    pain_axis.set_zorder(doses_axis.get_zorder() + 1)
    pain_axis.patch.set_visible(False)

    for number, course in enumerate(pain.courses):
        span = doses_axis.axvspan(
            _x(course.start) - 0.5,
            _x(course.end) + 0.5,
            color=_COURSE,
            zorder=0,
            label="course" if number == 0 else None,
        )
        span.set_gid(f"course-{number}")

    known_max = max(
        (float(a.dose_mg) for c in pain.courses for a in c.administrations if a.dose_mg),
        default=100.0,
    )
    unknown_height = known_max * 0.35
    known_n = unknown_n = 0
    for course in pain.courses:
        for administration in course.administrations:
            x = _x(administration.event.day)
            if administration.dose_mg is not None:
                (bar,) = doses_axis.bar(
                    x, float(administration.dose_mg), width=0.8, color=_DOSE, zorder=2
                )
                bar.set_gid(f"dose-{known_n}")
                known_n += 1
            else:
                (bar,) = doses_axis.bar(
                    x,
                    unknown_height,
                    width=0.8,
                    facecolor="white",
                    edgecolor=_UNKNOWN,
                    hatch="///",
                    zorder=2,
                )
                bar.set_gid(f"dose-unknown-{unknown_n}")
                label = doses_axis.text(
                    x, unknown_height, "?", ha="center", va="bottom", color=_UNKNOWN
                )
                label.set_gid(f"dose-unknown-label-{unknown_n}")
                unknown_n += 1

    for number, point in enumerate(pain.points):
        x = _x(point.pain.event.day)
        low, high = float(point.pain.low), float(point.pain.high)
        if low != high:
            (line,) = pain_axis.plot([x, x], [low, high], color=_PAIN, linewidth=3, zorder=4)
            line.set_gid(f"pain-range-{number}")
        derived = point.pain.derived
        (marker,) = pain_axis.plot(
            [x],
            [(low + high) / 2],
            marker="o",
            markersize=8,
            color=_PAIN,
            markerfacecolor="white" if derived else _PAIN,
            linestyle="none",
            zorder=5,
        )
        marker.set_gid(f"{'pain-derived' if derived else 'pain-point'}-{number}")
    if pain.points:
        xs = [_x(p.pain.event.day) for p in pain.points]
        ys = [float(p.pain.low + p.pain.high) / 2 for p in pain.points]
        (trend,) = pain_axis.plot(xs, ys, color=_PAIN, linewidth=1, alpha=0.5, zorder=3)
        trend.set_gid("pain-line")

    dated = [t for t in liver.tests if t.day is not None]
    for number, day in enumerate(sorted({t.day for t in dated if t.day is not None})):
        elevated = any(t.status == "elevated" for t in dated if t.day == day)
        (mark,) = pain_axis.plot(
            [_x(day)],
            [-0.6],
            marker="^",
            markersize=9,
            color="#c62828" if elevated else _LFT,
            linestyle="none",
            clip_on=False,
            zorder=5,
        )
        mark.set_gid(f"lft-{number}")

    days = [p.pain.event.day for p in pain.points] + [
        a.event.day for c in pain.courses for a in c.administrations
    ]
    if days:
        doses_axis.set_xlim(_x(min(days) - timedelta(days=10)), _x(max(days) + timedelta(days=10)))
    pain_axis.set_ylim(-1, 10.5)
    pain_axis.set_ylabel("pain, PI-NRS 0-10 (hollow: derived; bar: range)", color=_PAIN)
    pain_axis.yaxis.set_label_position("left")
    pain_axis.yaxis.tick_left()
    doses_axis.yaxis.set_label_position("right")
    doses_axis.yaxis.tick_right()
    doses_axis.set_ylabel("ketamine dose, mg (hatched ?: dose not reported)", color=_DOSE)
    doses_axis.set_ylim(0, known_max * 1.15)
    doses_axis.xaxis.set_major_formatter(
        DateFormatter("%Y-%m-%d")  # type: ignore[no-untyped-call]
    )
    doses_axis.tick_params(axis="x", labelrotation=30)
    doses_axis.set_title(title)
    figure.text(0.01, 0.01, "triangles: liver tests (green: normal)", fontsize=8, color=_LFT)
    figure.tight_layout()
    out = io.BytesIO()
    figure.savefig(out, format="svg", metadata={"Date": None})
    return out.getvalue()
