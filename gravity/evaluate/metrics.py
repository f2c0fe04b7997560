"""Metrics over rankings: Top-1 win rate, preference gain, interestingness, with bootstrap CIs.

A *judgment* ranks every system's description for one case (reader x book), best first; one case
may have several judgments (permutations of the candidates, or several human raters). Per case,
systems are ordered by their mean rank over its judgments; ties are split:

- Top-1 win rate of S: mean over cases of 1/k if S is among the k systems with the best mean rank,
  else 0.
- Pairwise win rate of S over B: mean over cases of 1 if S's mean rank is better, 0.5 if equal,
  else 0. Preference gain = (pairwise win rate - 0.5) x 100, in points.
- Interestingness: mean 1-5 rating over every judgment that gave one.

Bootstrap CIs resample *readers* (all of a reader's cases together), seeded.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Judgment:
    """One ranking of a case's systems (best first), with optional 1-5 interest ratings."""

    case_id: str
    reader_id: str
    country: str
    ranking: tuple[str, ...]
    interest: dict[str, float] = field(default_factory=dict)


def mean_ranks(judgments: Sequence[Judgment]) -> dict[str, dict[str, float]]:
    """case id -> system -> mean rank (1 = best) over that case's judgments."""
    ranks: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for j in judgments:
        for position, system in enumerate(j.ranking, start=1):
            ranks[j.case_id][system].append(position)
    return {
        case: {s: statistics.fmean(r) for s, r in by_system.items()}
        for case, by_system in ranks.items()
    }


def top1_rates(judgments: Sequence[Judgment], systems: Sequence[str]) -> dict[str, float]:
    """Share of cases in which each system is ranked first (ties split)."""
    per_case = mean_ranks(judgments)
    wins = dict.fromkeys(systems, 0.0)
    for ranks in per_case.values():
        best = min(ranks.values())
        leaders = [s for s, r in ranks.items() if r == best]
        for s in leaders:
            if s in wins:
                wins[s] += 1 / len(leaders)
    n = len(per_case)
    return {s: (w / n if n else float("nan")) for s, w in wins.items()}


def pairwise_win_rate(judgments: Sequence[Judgment], system: str, baseline: str) -> float:
    """Share of cases where ``system`` is ranked above ``baseline`` (ties count half)."""
    scores = []
    for ranks in mean_ranks(judgments).values():
        if system in ranks and baseline in ranks:
            a, b = ranks[system], ranks[baseline]
            scores.append(1.0 if a < b else 0.5 if a == b else 0.0)
    return statistics.fmean(scores) if scores else float("nan")


def preference_gain(judgments: Sequence[Judgment], system: str, baseline: str) -> float:
    """Pairwise win rate minus 50%, in points."""
    return (pairwise_win_rate(judgments, system, baseline) - 0.5) * 100


def mean_interest(judgments: Sequence[Judgment], systems: Sequence[str]) -> dict[str, float]:
    """Mean 1-5 interest rating per system (NaN where none was given)."""
    values: dict[str, list[float]] = defaultdict(list)
    for j in judgments:
        for s, v in j.interest.items():
            values[s].append(v)
    return {s: (statistics.fmean(values[s]) if values[s] else float("nan")) for s in systems}


def bootstrap_ci(
    judgments: Sequence[Judgment],
    statistic: Callable[[Sequence[Judgment]], float],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile CI of ``statistic`` over readers resampled with replacement."""
    by_reader: dict[str, list[Judgment]] = defaultdict(list)
    for j in judgments:
        by_reader[j.reader_id].append(j)
    readers = sorted(by_reader)
    if not readers:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(n_boot):
        sample: list[Judgment] = []
        for k, index in enumerate(rng.integers(0, len(readers), size=len(readers))):
            # A reader drawn twice contributes two independent copies of its cases.
            sample.extend(
                Judgment(f"{j.case_id}#{k}", j.reader_id, j.country, j.ranking, j.interest)
                for j in by_reader[readers[index]]
            )
        value = statistic(sample)
        if not np.isnan(value):
            stats.append(value)
    if not stats:
        return (float("nan"), float("nan"))
    alpha = (1 - level) / 2 * 100
    low, high = np.percentile(stats, [alpha, 100 - alpha])
    return (float(low), float(high))


def reader_bootstrap_mean(
    values: dict[str, list[float]], n_boot: int = 1000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of per-reader values (reader -> values) and its reader-bootstrap 95% CI."""
    readers = sorted(r for r, v in values.items() if v)
    flat = [x for r in readers for x in values[r]]
    if not flat:
        return (float("nan"), float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(n_boot):
        picks = rng.integers(0, len(readers), size=len(readers))
        stats.append(statistics.fmean(x for i in picks for x in values[readers[i]]))
    low, high = np.percentile(stats, [2.5, 97.5])
    return (statistics.fmean(flat), float(low), float(high))
