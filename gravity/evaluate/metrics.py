"""Metrics of an evaluation: per-case outcomes, per-reader means, paired differences with
CIs (``intervals.py``) and judge quality; the copy rate is in ``copying.py``, the
length-controlled win rate in ``length.py``.

Every judged case (one reader x one book) becomes a ``CaseOutcome``:

- ``wins[(S, B)]`` in [0, 1]: how much S's description beat B's (pairwise protocol: the judge's
  probability that S is better, averaged over both orders, so 1 / 0 when a one-hot verdict holds
  in both orders and 0.5 when it flips; 0.5 for identical texts or equal scores);
  ``wins[(B, S)] = 1 - wins[(S, B)]``.
- ``top1[S]``: 1/k if S is among the k systems with the largest sum of pairwise win values (ties
  within 1e-9), else 0.
- ``interest[S]``: the judge's 1-5 rating of S's description.

A reader's value of a metric is the mean over that reader's cases; the reported value is the mean
over readers (each reader weighs the same), with a bootstrap CI that resamples readers. The
paired difference of the focus system F against a baseline B is computed per case (F's value
minus B's, only where both have one), averaged per reader, then over readers, so
reader-to-reader and book-to-book variation cancel and a system is never scored on a subset of
cases its baseline is not.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gravity.errors import MissingDependencyError
from gravity.evaluate.copying import echoes
from gravity.evaluate.intervals import (
    BootstrapSettings,
    binomial_p,
    bootstrap_mean,
    clip_ci,
    crossed_mean,
    holm,
    proportion_ci,
)


def _require(module: str, package: str, what: str) -> Any:
    """Import an optional module of the ``eval`` extra, or say which package to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(what, "eval", package) from None


@dataclass(frozen=True)
class Judgment:
    """One rater's ranks of a case's systems (1 = best), with optional 1-5 ratings. Systems
    whose descriptions were identical (shown once) share a rank."""

    case_id: str
    reader_id: str
    country: str
    ranks: dict[str, int]
    interest: dict[str, float] = field(default_factory=dict)
    rater: str = "judge"


@dataclass(frozen=True)
class CaseOutcome:
    """What was decided about one case."""

    case_id: str
    reader_id: str
    country: str
    wins: dict[tuple[str, str], float]
    top1: dict[str, float]
    interest: dict[str, float] = field(default_factory=dict)


def _top1_from_points(points: dict[str, float]) -> dict[str, float]:
    best = max(points.values())
    # Points are sums of averaged probabilities: rounding noise must not break a tie.
    leaders = [s for s, p in points.items() if p >= best - 1e-9]
    return {s: (1 / len(leaders) if s in leaders else 0.0) for s in points}


def outcome_from_pairs(
    case_id: str,
    reader_id: str,
    country: str,
    pairs: dict[tuple[str, str], float],
    interest: dict[str, float] | None = None,
) -> CaseOutcome:
    """A case from pairwise results ``(S, B) -> S's score`` (one direction per pair is enough)."""
    wins: dict[tuple[str, str], float] = {}
    for (s, b), v in pairs.items():
        wins[(s, b)], wins[(b, s)] = v, 1.0 - v
    systems = sorted({s for pair in wins for s in pair})
    points = {s: sum(v for (a, _), v in wins.items() if a == s) for s in systems}
    return CaseOutcome(case_id, reader_id, country, wins, _top1_from_points(points), interest or {})


def outcome_from_scores(
    case_id: str,
    reader_id: str,
    country: str,
    scores: dict[str, float],
    interest: dict[str, float] | None = None,
) -> CaseOutcome:
    """A case from one score per system (higher is better; equal scores tie)."""
    pairs = {}
    systems = sorted(scores)
    for i, s in enumerate(systems):
        for b in systems[i + 1 :]:
            a, c = scores[s], scores[b]
            pairs[(s, b)] = 1.0 if a > c else 0.5 if a == c else 0.0
    return outcome_from_pairs(case_id, reader_id, country, pairs, interest)


def outcomes_from_judgments(judgments: Sequence[Judgment]) -> list[CaseOutcome]:
    """Cases from rankings: systems ordered by their mean rank over the case's judgments
    (several raters or rotations); interest is the mean rating per system."""
    ranks: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    rates: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    meta: dict[str, tuple[str, str]] = {}
    for j in judgments:
        meta[j.case_id] = (j.reader_id, j.country)
        for system, rank in j.ranks.items():
            ranks[j.case_id][system].append(rank)
        for system, value in j.interest.items():
            rates[j.case_id][system].append(value)
    return [
        outcome_from_scores(
            case,
            *meta[case],
            {s: -statistics.fmean(r) for s, r in by_system.items()},
            {s: statistics.fmean(v) for s, v in rates[case].items()},
        )
        for case, by_system in sorted(ranks.items())
    ]


# Per-reader values ---------------------------------------------------------------------------
def reader_means(
    outcomes: Sequence[CaseOutcome], value: Callable[[CaseOutcome], float | None]
) -> dict[str, float]:
    """reader -> mean of ``value`` over the reader's cases (cases where it is None skipped)."""
    per: dict[str, list[float]] = defaultdict(list)
    for o in outcomes:
        v = value(o)
        if v is not None:
            per[o.reader_id].append(v)
    return {r: statistics.fmean(v) for r, v in sorted(per.items()) if v}


# Judge quality --------------------------------------------------------------------------------
def agreement_with_alignment(
    outcomes: Sequence[CaseOutcome], alignment: dict[str, dict[str, float | None]]
) -> dict[str, Any]:
    """How often the judge and the alignment score order a pair of systems the same way
    (pairs the judge tied or the score cannot order are left out), with the two-sided exact
    binomial p of that share against chance (50%); pairs of one reader are treated as
    independent, so p is a screen, not a calibrated test."""
    agree = total = 0
    for o in outcomes:
        scores = alignment.get(o.case_id, {})
        for (s, b), v in o.wins.items():
            if s >= b or abs(v - 0.5) <= 1e-9:
                continue
            a, c = scores.get(s), scores.get(b)
            if a is None or c is None or a == c:
                continue
            total += 1
            agree += (v > 0.5) == (a > c)  # the side the judge leans to, however sure
    return {
        "pairs": total,
        "agreement": agree / total if total else None,
        "p": binomial_p(agree, total),
    }


# Aggregation ------------------------------------------------------------------------------------
CaseValues = dict[str, dict[str, float | None]]  # case id -> system -> value


def _case_value_means(
    values: CaseValues, meta: dict[str, tuple[str, str]], cases: set[str], system: str
) -> dict[str, float]:
    per: dict[str, list[float]] = defaultdict(list)
    for case_id in sorted(cases):
        v = values.get(case_id, {}).get(system)
        if v is not None:
            per[meta[case_id][0]].append(v)
    return {r: statistics.fmean(v) for r, v in per.items()}


CaseGetter = Callable[[str], dict[str, float]]  # case id -> system -> value (missing: absent)


def paired_per_case(
    getter: CaseGetter, case_ids: Sequence[str], meta: dict[str, tuple[str, str]], a: str, b: str
) -> list[tuple[str, str, float]]:
    """(reader, case id, a's value minus b's) for each case where both systems have a value.

    Only such cases count: a system that wrote nothing on a hard case is not scored on the easy
    ones alone while its baseline is scored on both."""
    rows = []
    for case_id in case_ids:
        values = getter(case_id)
        va, vb = values.get(a), values.get(b)
        if va is not None and vb is not None:
            rows.append((meta[case_id][0], case_id, va - vb))
    return rows


BOUNDS = {"top1": 1.0, "copy_rate": 1.0, "interest": 4.0, "preference_gain": 50.0}
"""The largest possible absolute paired difference of each bounded metric."""


def _paired_estimate(
    rows: list[tuple[str, str, float]],
    items: dict[str, str] | None,
    settings: BootstrapSettings,
    metric: str | None = None,
) -> dict[str, Any]:
    """The mean over readers of per-case differences; readers who share books (``items``: case
    id -> book id) get the two-way readers x books standard error. A bounded metric's interval
    is cut at the bounds (a Top-1 difference cannot pass -100 points); ``clipped`` says so."""
    books = items or {}
    crossed = [(reader, books.get(case, case), v) for reader, case, v in rows]
    est = {**crossed_mean(crossed, settings), "cases": len(rows)}
    bound = BOUNDS.get(metric or "")
    return est if bound is None else clip_ci(est, -bound, bound)


def _case_getters(
    outcomes: Sequence[CaseOutcome], case_values: dict[str, CaseValues]
) -> dict[str, CaseGetter]:
    """metric -> case id -> system -> value, for every per-system metric."""
    by_id = {o.case_id: o for o in outcomes}
    empty = CaseOutcome("", "", "", {}, {})
    getters: dict[str, CaseGetter] = {
        "top1": lambda c: by_id.get(c, empty).top1,
        "interest": lambda c: by_id.get(c, empty).interest,
    }
    for name, table in case_values.items():
        getters[name] = lambda c, table=table: table.get(c, {})
    return getters


def _focus_paired(
    outcomes: Sequence[CaseOutcome],
    cases: set[str],
    systems: Sequence[str],
    focus: str,
    case_values: dict[str, CaseValues],
    meta: dict[str, tuple[str, str]],
    settings: BootstrapSettings,
    items: dict[str, str] | None = None,
) -> dict[str, dict[str, Any]]:
    """baseline -> metric -> the focus system's paired difference, paired per case."""
    getters = _case_getters(outcomes, case_values)
    judged_ids = [o.case_id for o in outcomes]
    result: dict[str, dict[str, Any]] = {}
    for b in systems:
        if b == focus:
            continue
        result[b] = {}
        for metric, getter in getters.items():
            ids = judged_ids if metric in ("top1", "interest") else sorted(cases)
            rows = paired_per_case(getter, ids, meta, focus, b)
            result[b][metric] = _paired_estimate(rows, items, settings, metric)
        gain = [
            (o.reader_id, o.case_id, (o.wins[(focus, b)] - 0.5) * 100)
            for o in outcomes
            if (focus, b) in o.wins
        ]
        result[b]["preference_gain"] = _paired_estimate(gain, items, settings, "preference_gain")
    return result


def _cases_with(outcomes: Sequence[CaseOutcome], system: str) -> int:
    return sum(system in o.top1 for o in outcomes)


LEVEL_RANGES = {"interest": (1.0, 5.0), "copy_rate": (0.0, 1.0)}
"""The range of each bounded per-system level; its interval is cut to it."""


def _level(metric: str, values: list[float], settings: BootstrapSettings) -> dict[str, Any]:
    est = bootstrap_mean(values, settings)
    bounds = LEVEL_RANGES.get(metric)
    return est if bounds is None else clip_ci(est, *bounds)


def scope_metrics(
    outcomes: Sequence[CaseOutcome],
    cases: set[str],
    systems: Sequence[str],
    focus: str,
    case_values: dict[str, CaseValues],
    meta: dict[str, tuple[str, str]],
    settings: BootstrapSettings,
    items: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Levels per system, preference gains and the focus system's paired differences (paired
    per case) for one scope (all cases, or one country's). ``case_values`` holds
    ``alignment`` and ``copy_rate``."""

    def judged(metric: str, s: str) -> dict[str, float]:
        if metric == "top1":
            return reader_means(outcomes, lambda o: o.top1.get(s))
        return reader_means(outcomes, lambda o: o.interest.get(s))

    def gain(s: str, b: str) -> dict[str, float]:
        wins = reader_means(outcomes, lambda o: o.wins.get((s, b)))
        return {r: (v - 0.5) * 100 for r, v in wins.items()}

    per_reader: dict[str, dict[str, dict[str, float]]] = {
        s: {
            "top1": judged("top1", s),
            "interest": judged("interest", s),
            **{k: _case_value_means(v, meta, cases, s) for k, v in case_values.items()},
        }
        for s in systems
    }
    result: dict[str, Any] = {
        "readers": len({meta[c][0] for c in cases}),
        "judged_readers": len({o.reader_id for o in outcomes}),
        "judged_cases": len(outcomes),
        "systems": {
            s: {
                k: (
                    proportion_ci(list(v.values()), _cases_with(outcomes, s), settings)
                    if k == "top1"
                    else _level(k, list(v.values()), settings)
                )
                for k, v in per_reader[s].items()
            }
            for s in systems
        },
        "preference_gain": {
            s: {b: bootstrap_mean(list(gain(s, b).values()), settings) for b in systems if b != s}
            for s in systems
        },
        "paired": {},
    }
    if focus in systems:
        result["paired"] = _focus_paired(
            outcomes, cases, systems, focus, case_values, meta, settings, items
        )
    return result


def compute_metrics(
    outcomes: Sequence[CaseOutcome],
    meta: dict[str, tuple[str, str]],
    systems: Sequence[str],
    focus: str,
    case_values: dict[str, CaseValues],
    settings: BootstrapSettings,
    items: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Overall and per-country metrics. ``meta``: every case id -> (reader id, country), judged
    or not (alignment and copy rate cover every case); ``items``: case id -> book id, so that
    paired differences of readers who share books get the two-way standard error."""
    countries = sorted({c for _, c in meta.values()})
    metrics: dict[str, Any] = {
        "systems": list(systems),
        "focus": focus if focus in systems else None,
        "bootstrap": {
            "method": settings.method,
            "resamples": settings.resamples,
            "level": settings.level,
            "unit": "reader x book (paired differences)"
            if items and settings.method == "t"
            else "reader",
            "min_readers": settings.min_readers,
        },
        "overall": scope_metrics(
            outcomes, set(meta), systems, focus, case_values, meta, settings, items
        ),
        "by_country": {},
    }
    for country in countries:
        cases = {c for c, (_, k) in meta.items() if k == country}
        subset = [o for o in outcomes if o.case_id in cases]
        metrics["by_country"][country] = scope_metrics(
            subset, cases, systems, focus, case_values, meta, settings, items
        )
    metrics["echoes"] = echoes(case_values.get("copy_rate", {}), meta)
    metrics["multiple_comparisons"] = {
        "method": "Holm",
        "metrics": list(LABELLED),
        "overall": label_family([metrics["overall"]], 1 - settings.level),
        "by_country": label_family(list(metrics["by_country"].values()), 1 - settings.level),
    }
    return metrics


LABELLED = ("preference_gain", "top1", "interest", "alignment")  # the report's claims


def label_family(scopes: Sequence[dict[str, Any]], alpha: float) -> int:
    """Holm-adjust the p-values of the scopes' paired differences in ``LABELLED`` metrics as
    one family; each estimate gets ``p_holm`` and ``label`` ('higher', 'lower' or 'not
    distinguishable from 0': higher/lower only when the adjusted p is below ``alpha`` and the
    raw CI, which stays as computed, excludes 0). Returns the family's size."""
    cells = [
        est
        for scope in scopes
        for by_metric in scope["paired"].values()
        for metric, est in by_metric.items()
        if metric in LABELLED and est["status"] == "ok" and est.get("p") is not None
    ]
    for est, adjusted in zip(cells, holm([est["p"] for est in cells])):
        lo, hi = est["ci"]
        est["p_holm"] = adjusted
        side = "higher" if lo > 0 else "lower" if hi < 0 else None
        est["label"] = side if side and adjusted < alpha else "not distinguishable from 0"
    return len(cells)
