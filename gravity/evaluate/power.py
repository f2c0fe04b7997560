"""Power of a paired comparison over readers: what effect a run could have seen.

A headline difference (focus system minus a baseline) is a mean of per-reader differences, so
its power follows from the per-reader standard deviation ``sd`` and the number of readers
``n``. At two-sided level ``alpha`` and power ``power``, the smallest true difference a paired
t test detects is about

    (t[1 - alpha/2, n - 1] + t[power, n - 1]) * sd / sqrt(n)

(the usual approximation; at n = 32 and sd = 0.029: 0.0148). Where readers share books and the
interval is two-way, its degrees of freedom are min(readers, books) - 1 instead of n - 1, and a
projection to other reader counts assumes the books grow with the readers (``power_rows``; a
plan's two-way lines keep the books fixed instead). ``readers_needed`` inverts it.
``sd_from_ci`` backs a per-reader SD out of a reported interval (exact for a t interval, with
its degrees of freedom; approximate for a bootstrap one). The level is per comparison: a report
that labels many comparisons after a Holm correction needs a larger effect than these lines say.
"""

from __future__ import annotations

import math
from typing import Any

HEADLINE = ("alignment", "preference_gain", "top1")
"""Paired metrics whose power a report and a dry run state."""


def _t(q: float, df: int) -> float:
    from scipy.stats import t

    return float(t.ppf(q, df))


def detectable(
    sd: float, n: int, alpha: float = 0.05, power: float = 0.8, df: int | None = None
) -> float:
    """The smallest true mean difference a paired t test over ``n`` readers detects with
    probability ``power`` at two-sided level ``alpha``, its t quantiles at ``df`` degrees of
    freedom (default ``n - 1``; a two-way interval has min(readers, books) - 1); ``inf``
    below 2 readers or 1 degree of freedom."""
    df = n - 1 if df is None else df
    if n < 2 or df < 1:
        return math.inf
    return (_t(1 - alpha / 2, df) + _t(power, df)) * sd / math.sqrt(n)


def _two_way_df(n: int, books_per_reader: float | None) -> int | None:
    """The two-way interval's degrees of freedom at ``n`` readers when the books grow with the
    readers at ``books_per_reader``; None (``n - 1``) for a readers-only interval."""
    if books_per_reader is None:
        return None
    return min(n, max(1, round(n * books_per_reader))) - 1


def readers_needed(
    effect: float,
    sd: float,
    alpha: float = 0.05,
    power: float = 0.8,
    limit: int = 10**7,
    books_per_reader: float | None = None,
) -> int | None:
    """The fewest readers at which ``effect`` is detectable; None for a zero effect or beyond
    ``limit`` readers. ``books_per_reader``: for a two-way interval, the books it assumes grow
    with the readers at that rate (its degrees of freedom follow them)."""
    if effect == 0 or not math.isfinite(effect):
        return None
    if sd == 0:
        return 2
    effect = abs(effect)

    def seen(n: int) -> bool:
        return detectable(sd, n, alpha, power, _two_way_df(n, books_per_reader)) <= effect

    low, high = 2, 2
    while not seen(high):
        if high >= limit:
            return None
        low, high = high, min(limit, high * 2)
    while low < high:  # the first n in (low, high] whose detectable effect is small enough
        mid = (low + high) // 2
        if seen(mid):
            high = mid
        else:
            low = mid + 1
    return high


def sd_from_ci(
    ci: tuple[float, float] | list[float] | None,
    n: int,
    level: float = 0.95,
    df: int | None = None,
) -> float | None:
    """The per-reader SD implied by a ``level`` t interval of a mean over ``n`` readers with
    ``df`` degrees of freedom (default ``n - 1``); None without a finite interval."""
    if n < 2 or ci is None or len(ci) != 2 or None in ci or not all(map(math.isfinite, ci)):
        return None
    df = n - 1 if df is None else df
    if df < 1:
        return None
    half = (ci[1] - ci[0]) / 2
    return half * math.sqrt(n) / _t(1 - (1 - level) / 2, df)


def power_rows(
    metrics: dict[str, Any], n: int | None = None, alpha: float = 0.05, power: float = 0.8
) -> list[dict[str, Any]]:
    """Per baseline and headline metric of ``metrics.json``'s ``overall.paired`` block: the
    observed difference, its per-reader SD (recorded, else backed out of the interval), the
    smallest effect detectable at ``n`` readers (default: the run's own) and the readers the
    observed difference would need."""
    level = metrics.get("bootstrap", {}).get("level", 0.95)
    rows = []
    for baseline, cells in metrics.get("overall", {}).get("paired", {}).items():
        for metric in HEADLINE:
            cell = cells.get(metric)
            if not _usable(cell):
                continue
            two_way = cell.get("method") == "two-way-t"
            # a two-way interval has min(readers, books) - 1 degrees of freedom; projected to
            # other reader counts, its books are assumed to grow with the readers
            per_reader = cell.get("books", cell["n"]) / cell["n"] if two_way else None
            sd = cell.get("sd")
            if sd is None:
                # a clipped interval (metrics.py) keeps its computed one for this
                df = _two_way_df(cell["n"], per_reader)
                sd = sd_from_ci(cell.get("ci_uncut") or cell.get("ci"), cell["n"], level, df)
            if sd is None:
                continue
            at = cell["n"] if n is None else n
            rows.append(
                {
                    "baseline": baseline,
                    "metric": metric,
                    "observed": cell["value"],
                    "sd": sd,
                    "readers": at,
                    "two_way": two_way,
                    "alpha": alpha,
                    "power": power,
                    "detectable": detectable(sd, at, alpha, power, _two_way_df(at, per_reader)),
                    "readers_needed": readers_needed(
                        cell["value"], sd, alpha, power, books_per_reader=per_reader
                    ),
                }
            )
    return rows


def _usable(cell: dict[str, Any] | None) -> bool:
    """A cell with an estimate and an interval that says something about its spread."""
    if not cell or cell.get("value") is None or not cell.get("n"):
        return False
    if cell.get("status", "ok") != "ok" or cell.get("method") == "constant":
        return False
    return math.isfinite(cell["value"])


def detectable_two_way(
    reader_part: float,
    book_part: float,
    readers: int,
    books: int,
    alpha: float = 0.05,
    power: float = 0.8,
) -> float:
    """The smallest detectable mean difference when readers share ``books`` items: standard
    error sqrt(reader_part / readers + book_part / books) (``intervals.variance_components``),
    with min(readers, books) - 1 degrees of freedom, as the report's two-way interval has;
    ``inf`` below 2 readers or books. Adding readers does not shrink the book part."""
    df = min(readers, books) - 1
    if df < 1:
        return math.inf
    se = math.sqrt(reader_part / readers + book_part / books)
    return (_t(1 - alpha / 2, df) + _t(power, df)) * se


def two_way_rows(
    cases: list[dict[str, Any]],
    focus: str,
    readers: int,
    books: int,
    alpha: float = 0.05,
    power: float = 0.8,
) -> list[dict[str, Any]]:
    """Per baseline: the alignment difference's smallest detectable effect at ``readers``
    readers sharing ``books`` books, from a reference evaluation's per-case values
    (``cases.jsonl``: ``reader_id``, ``item_id``, ``alignment``)."""
    from gravity.evaluate.intervals import variance_components

    systems = sorted({s for c in cases for s in c.get("alignment", {})})
    rows = []
    for baseline in (s for s in systems if s != focus):
        data = [
            (
                c["reader_id"],
                c.get("item_id") or c.get("book_id") or c["case_id"],
                a[focus] - a[baseline],
            )
            for c in cases
            if (a := c.get("alignment", {})).get(focus) is not None and a.get(baseline) is not None
        ]
        if len({r for r, _, _ in data}) < 2:
            continue
        reader_part, book_part, ref_readers, ref_books = variance_components(data)
        rows.append(
            {
                "baseline": baseline,
                "metric": "alignment",
                "readers": readers,
                "books": books,
                "reader_part": reader_part,
                "book_part": book_part,
                "reference": {"readers": ref_readers, "books": ref_books},
                "detectable": detectable_two_way(
                    reader_part, book_part, readers, books, alpha, power
                ),
                "alpha": alpha,
                "power": power,
            }
        )
    return rows


def two_way_lines(rows: list[dict[str, Any]], focus: str) -> list[str]:
    """One line per two-way row."""
    return [
        f"{focus} - {r['baseline']}, alignment, readers sharing {r['books']} held-out items: "
        f"smallest effect detectable at {r['readers']} readers {r['detectable']:.4g} "
        f"({r['power']:.0%} power, two-sided {r['alpha']:.0%}; reader and item variance from "
        f"the reference's {r['reference']['readers']} readers and {r['reference']['books']} "
        "items; more readers do not shrink the item part)"
        for r in rows
    ]


def power_lines(rows: list[dict[str, Any]], focus: str) -> list[str]:
    """One line per row: what the run could see and what the observed effect would need."""
    lines = []
    for r in rows:
        need = r["readers_needed"]
        needed = f"{need} readers" if need is not None else "no finite number of readers"
        # as the report's tables show them: Top-1 and preference gain in points
        scale = 100 if r["metric"] == "top1" else 1
        unit = " points" if r["metric"] in ("top1", "preference_gain") else ""
        lines.append(
            f"{focus} - {r['baseline']}, {r['metric']}: smallest effect detectable at "
            f"{r['readers']} readers {r['detectable'] * scale:.4g}{unit} ({r['power']:.0%} "
            f"power, two-sided {r['alpha']:.0%}, per-reader SD {r['sd'] * scale:.4g}{unit}); "
            f"the observed {r['observed'] * scale:+.4g}{unit} would need {needed}; unadjusted "
            "for the report's Holm correction"
            + ("; readers share items: assumes items grow with readers" if r.get("two_way") else "")
        )
    return lines
