"""Confidence intervals and tests of the evaluation, chosen by what holds its level at the
reader counts an evaluation has (8-32 per country).

- ``bootstrap_mean``: the mean of per-reader values with a CI. The default, ``t``, is the t
  interval (mean +- t quantile x standard error): on simulated null data (normal and discrete,
  8, 16 and 32 readers) it excludes 0 about 5% of the time, where BCa did 11-14% at 8 readers
  (``tests/test_stats.py`` checks the default's rate). ``BCa`` and ``percentile`` are the
  ``scipy.stats.bootstrap`` intervals, kept for larger samples.
- ``proportion_ci``: a Wilson score interval for a share (the Top-1 win rate), which is never
  ``[0%, 0%]`` when every reader has 0.
- ``crossed_mean``: a paired difference whose readers share books. Readers alone treat two
  readers' verdicts on one book as independent and understate the error (on simulated null data
  with a book effect, 32 readers and 12 books, their t interval excluded 0 on 14-28% of runs);
  the two-way cluster-robust variance (readers and books) does so on 5.4-6.3%. A crossed
  (pigeonhole) bootstrap, tried first, counts the case-level noise twice: with no book effect
  it excluded 0 on 0.25% of runs and its CIs were 1.6 times as wide as needed.
- ``holm``: Holm's step-down adjustment of a family of p-values.

Every estimate is ``{"value", "ci", "n", "status", "method", "p"}``; ``p`` is the two-sided
p-value of "the mean is 0" from the same standard error (a sign test where every reader has
the same value).
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gravity.errors import MissingDependencyError


def _stats() -> Any:
    try:
        import scipy.stats
    except ImportError:
        raise MissingDependencyError("confidence intervals", "eval", "scipy") from None
    return scipy.stats


@dataclass(frozen=True)
class BootstrapSettings:
    """How CIs are computed and when a cell has too few readers to show a number.

    ``method``: ``t`` (t interval; two-way readers x books standard error where readers share
    books), ``BCa`` or ``percentile`` (scipy.stats.bootstrap over readers, ``resamples``)."""

    resamples: int = 2000
    method: str = "t"
    level: float = 0.95
    seed: int = 0
    min_readers: int = 5


def _estimate(
    value: float | None, ci: list[float] | None, n: int, settings: BootstrapSettings, **extra: Any
) -> dict[str, Any]:
    status = "no_data" if n == 0 else "ok" if n >= settings.min_readers else "too_few"
    return {"value": value, "ci": ci, "n": n, "status": status, **extra}


def sign_test_p(x: np.ndarray) -> float:
    """Two-sided p of a constant nonzero value over n readers: 2 x 0.5**n (1 for 0)."""
    return 1.0 if float(x[0]) == 0 else min(1.0, 2 * 0.5 ** int(x.size))


def t_intervals(x: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row-wise t intervals of the mean of ``x`` (evaluations x readers, at least 2 readers):
    (low, high, two-sided p of mean = 0); a row without spread gets its mean as both bounds."""
    t = _stats().t
    n = x.shape[1]
    mean = x.mean(axis=1)
    se = x.std(axis=1, ddof=1) / math.sqrt(n)
    half = float(t.ppf(1 - (1 - level) / 2, n - 1)) * se
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(se > 0, 2 * t.sf(np.abs(mean) / se, n - 1), (mean == 0).astype(float))
    return mean - half, mean + half, p


def t_interval(mean: float, se: float, df: int, level: float) -> tuple[list[float], float]:
    """(mean +- t quantile x se, two-sided p of mean = 0) with ``df`` degrees of freedom."""
    t = _stats().t
    q = float(t.ppf(1 - (1 - level) / 2, df))
    p = float(2 * t.sf(abs(mean) / se, df)) if se > 0 else (1.0 if mean == 0 else 0.0)
    return [mean - q * se, mean + q * se], p


def bootstrap_mean(values: Sequence[float], settings: BootstrapSettings) -> dict[str, Any]:
    """Mean of per-reader ``values`` with a CI (see the module docstring).

    ``ci`` is None for fewer than two readers; identical values give their value as both bounds
    (``method`` ``constant``); ``status`` is ``ok``, ``too_few`` (fewer than ``min_readers``) or
    ``no_data``. When BCa is undefined for the data (its jackknife or bias term degenerates),
    the percentile CI is used and ``method`` says so."""
    x = np.asarray(values, dtype=float)
    n = int(x.size)
    if n == 0:
        return _estimate(None, None, 0, settings, method=None, p=None)
    mean = float(x.mean())
    if n < 2:
        return _estimate(mean, None, n, settings, method=None, p=None)
    if np.ptp(x) == 0:
        return _estimate(mean, [mean, mean], n, settings, method="constant", p=sign_test_p(x))
    low, high, p_row = t_intervals(x[None, :], settings.level)
    ci, p = [float(low[0]), float(high[0])], float(p_row[0])
    method = settings.method
    if method != "t":
        ci = _scipy_ci(x, settings, method)
        if method == "BCa" and not all(math.isfinite(c) for c in ci):
            method = "percentile"
            ci = _scipy_ci(x, settings, method)
    return _estimate(mean, ci, n, settings, method=method, p=p)


def _scipy_ci(x: np.ndarray, settings: BootstrapSettings, method: str) -> list[float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate BCa is detected from the result instead
        res = _stats().bootstrap(
            (x,),
            np.mean,
            n_resamples=settings.resamples,
            confidence_level=settings.level,
            method=method,
            vectorized=True,
            rng=np.random.default_rng(settings.seed),
        )
    return [float(res.confidence_interval.low), float(res.confidence_interval.high)]


def proportion_ci(values: Sequence[float], cases: int, settings: BootstrapSettings) -> dict:
    """Mean of per-reader shares in [0, 1] with a Wilson score interval.

    The interval's sample size is the effective number of independent trials, p(1 - p)
    divided by the squared standard error of the mean, kept between the number of readers and
    the number of ``cases`` (a reader's mean in [0, 1] varies by at most p(1 - p), so readers
    are the cautious count); where every reader has the same value, the readers."""
    x = np.asarray(values, dtype=float)
    n = int(x.size)
    if n < 2:
        return bootstrap_mean(values, settings)
    p = float(x.mean())
    var = float(x.var(ddof=1)) / n
    n_eff = float(n)
    if var > 0 and 0 < p < 1:
        n_eff = min(max(p * (1 - p) / var, n), max(cases, n))
    z = float(_stats().norm.ppf(1 - (1 - settings.level) / 2))
    centre = (p + z * z / (2 * n_eff)) / (1 + z * z / n_eff)
    half = z / (1 + z * z / n_eff) * math.sqrt(p * (1 - p) / n_eff + z * z / (4 * n_eff**2))
    ci = [max(0.0, centre - half), min(1.0, centre + half)]
    return _estimate(p, ci, n, settings, method="Wilson", p=None)


def crossed_mean(
    rows: Sequence[tuple[str, str, float]], settings: BootstrapSettings
) -> dict[str, Any]:
    """Mean over readers of each reader's mean over ``rows`` (reader, book, value).

    Where some book is shared by two or more readers and ``method`` is ``t``, the variance of
    the estimate is the two-way cluster-robust one (Cameron, Gelbach and Miller 2011: clustered
    by reader, plus clustered by book, minus per case), kept at least the readers-only
    variance; when it is larger, the interval is a t interval with min(readers, books) - 1
    degrees of freedom (``method`` ``two-way-t``). Otherwise this is ``bootstrap_mean`` of the
    reader means."""
    per: dict[str, list[float]] = defaultdict(list)
    for reader, _, v in rows:
        per[reader].append(v)
    plain = bootstrap_mean([sum(v) / len(v) for _, v in sorted(per.items())], settings)
    books = sorted({b for _, b, _ in rows})
    shared = 2 <= len(books) < len({(r, b) for r, b, _ in rows})  # one book: no book spread
    if settings.method != "t" or not shared or plain["method"] in (None, "constant"):
        return plain
    variance, readers_only = _two_way_variance(rows, plain["value"])
    if variance <= readers_only:
        return plain
    df = min(len(per), len(books)) - 1
    ci, p = t_interval(plain["value"], math.sqrt(variance), df, settings.level)
    return {**plain, "ci": ci, "p": p, "method": "two-way-t", "books": len(books)}


def _two_way_variance(
    rows: Sequence[tuple[str, str, float]], estimate: float
) -> tuple[float, float]:
    """(two-way cluster-robust variance of the mean of reader means, the readers-only one)."""
    r_index: dict[str, int] = {}
    b_index: dict[str, int] = {}
    r = np.array([r_index.setdefault(reader, len(r_index)) for reader, _, _ in rows])
    b = np.array([b_index.setdefault(book, len(b_index)) for _, book, _ in rows])
    d = np.array([v for _, _, v in rows], dtype=float)
    n_readers = len(r_index)
    weight = 1.0 / (n_readers * np.bincount(r)[r])  # each reader weighs the same
    u = weight * (d - estimate)

    def clustered(groups: np.ndarray, count: int) -> float:
        sums = np.bincount(groups, weights=u, minlength=count)
        return float((sums**2).sum() * count / (count - 1))

    readers_only = clustered(r, n_readers)  # = var(reader means) / readers
    both = readers_only + clustered(b, len(b_index)) - clustered(np.arange(d.size), d.size)
    return both, readers_only


def clip_ci(est: dict[str, Any], low: float, high: float) -> dict[str, Any]:
    """``est`` with its interval cut to [low, high], the range the quantity can take (a t
    interval of a share can pass 0 or 1); ``clipped`` says when it was, and ``ci_uncut`` keeps
    the interval as computed (its width is what a per-reader SD is backed out of). Coverage is
    kept: the true value lies in the range."""
    ci = est.get("ci")
    if ci is not None and (ci[0] < low or ci[1] > high):
        return {**est, "ci": [max(ci[0], low), min(ci[1], high)], "clipped": True, "ci_uncut": ci}
    return est


def variance_components(rows: Sequence[tuple[str, str, float]]) -> tuple[float, float, int, int]:
    """(reader part, book part, readers, books) of the two-way variance of the mean of reader
    means over ``rows`` (reader, book, value), each part scaled to one unit (reader part x
    readers, book part x books), so that at R readers and B books the variance is about
    ``reader / R + book / B``: what a plan projects when the books stay fixed as readers grow.
    The book part is never below 0."""
    per: dict[str, list[float]] = defaultdict(list)
    for reader, _, v in rows:
        per[reader].append(v)
    estimate = float(np.mean([sum(v) / len(v) for v in per.values()]))
    both, readers_only = _two_way_variance(rows, estimate)
    readers, books = len(per), len({b for _, b, _ in rows})
    return readers_only * readers, max(both - readers_only, 0.0) * books, readers, books


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order (each at most 1)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    m = len(p_values)
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def binomial_p(successes: int, trials: int, chance: float = 0.5) -> float | None:
    """Two-sided exact binomial p of ``successes`` in ``trials`` against ``chance``."""
    if trials == 0:
        return None
    return float(_stats().binomtest(successes, trials, chance).pvalue)
