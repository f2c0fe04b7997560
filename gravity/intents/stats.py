"""Bootstrap confidence intervals over users, for the ranking metrics of ``evaluate``.

- ``bootstrap_ci``: the mean of per-user values and its percentile bootstrap interval: users are
  resampled with replacement ``resamples`` times (seeded) and the interval is the
  ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the resampled means.
- ``paired_difference``: the mean of per-user differences ``a - b`` (the same users ranked by
  two systems) with its bootstrap interval, and a two-sided bootstrap p-value (twice the smaller
  share of resampled means on either side of 0, at least 1 / resamples). Pairing removes the
  users' own variance (a user easy for one system is easy for the other), which is what makes
  a difference of a few hits visible when it is there and not when it is not.
- ``holm``: Holm's step-down adjustment of a family of p-values (statsmodels' ``multipletests``):
  the report compares the intent scorer with every other system, and some of those raw
  p-values fall under 0.05 by chance alone; the adjusted ones, and whether each difference
  stands at the report's level after the adjustment, say which do not. The intervals stay the
  raw (per-comparison) ones. A bootstrap p-value is at least 1 / resamples, so an adjusted one
  is at least (family size) / resamples.
- Values in [0, 1] that are all 0 (no user had a hit) or all 1: every resample has the same
  mean, and the percentile interval shrinks to a point, [0, 0], which claims a certainty that
  n users cannot give. ``unit=True`` gives the exact one-sided binomial bound instead: with no
  hit among n users the share of users with a hit is below ``1 - (1 - level) ** (1 / n)`` (about
  3 / n at 95%, the rule of three), and so is the mean of a metric that is 0 without a hit and
  at most 1 (Recall, NDCG, HR); all 1 mirrors it. A difference of two such systems gets the
  interval between the bounds.
Percentile intervals fit here: an evaluation has hundreds to thousands of users (the project's
small-sample t intervals, ``gravity.evaluate.intervals``, are for 8-32 readers).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _resampled_means(x: Any, resamples: int, seed: int) -> Any:
    """Means of ``resamples`` bootstrap samples of ``x`` (in blocks: memory stays small)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n = len(x)
    out = np.empty(resamples)
    block = max(1, 2_000_000 // max(n, 1))
    for start in range(0, resamples, block):
        stop = min(resamples, start + block)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = x[idx].mean(axis=1)
    return out


def exact_bound(n: int, level: float = 0.95) -> float:
    """The one-sided upper bound at ``level`` of a share with no success among ``n`` trials
    (Clopper-Pearson; about 3 / n at 95%)."""
    return 1.0 - (1.0 - level) ** (1.0 / n)


def bootstrap_ci(
    values: Sequence[float],
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    unit: bool = False,
) -> dict[str, Any]:
    """``{"value", "ci", "n"}``: the mean of ``values`` and its percentile bootstrap interval
    (None for no value; ``ci`` None for fewer than two). ``unit``: the values lie in [0, 1],
    and all 0 (or all 1) get the exact bound (``"exact": True``) instead of a point."""
    import numpy as np

    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return {"value": None, "ci": None, "n": 0}
    mean = float(x.mean())
    if x.size < 2:
        return {"value": mean, "ci": None, "n": 1}
    if unit and (not np.any(x) or np.all(x == 1.0)):
        bound = exact_bound(x.size, level)
        ci = [0.0, bound] if mean == 0.0 else [1.0 - bound, 1.0]
        return {"value": mean, "ci": ci, "n": int(x.size), "exact": True}
    means = _resampled_means(x, resamples, seed)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return {"value": mean, "ci": [float(lo), float(hi)], "n": int(x.size)}


def paired_difference(
    a: Sequence[float],
    b: Sequence[float],
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    unit: bool = False,
) -> dict[str, Any]:
    """``{"value", "ci", "n", "p"}`` of the mean per-user difference ``a - b``. ``unit``: the
    values lie in [0, 1]; where both are all 0 (or both all 1) the interval is the one the two
    exact bounds allow, ``[-bound, bound]``, not [0, 0]."""
    import numpy as np

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    x = a - b
    same_constant = not np.any(x) and (not np.any(a) or np.all(a == 1.0))
    if unit and x.size >= 2 and same_constant:
        bound = exact_bound(x.size, level)
        return {"value": 0.0, "ci": [-bound, bound], "n": int(x.size), "p": 1.0, "exact": True}
    out = bootstrap_ci(x, resamples, level, seed)
    if out["ci"] is None:
        return out | {"p": None}
    if not np.any(x):
        return out | {"p": 1.0}
    means = _resampled_means(x, resamples, seed)
    tail = min(float((means <= 0).mean()), float((means >= 0).mean()))
    return out | {"p": min(1.0, max(2 * tail, 1 / resamples))}


def holm(pvalues: Sequence[float], alpha: float = 0.05) -> tuple[list[float], list[bool]]:
    """Holm-adjusted ``pvalues`` (one family) and whether each is below ``alpha`` after it."""
    if not len(pvalues):
        return [], []
    try:
        from statsmodels.stats.multitest import multipletests
    except ImportError:
        from gravity.errors import MissingDependencyError

        raise MissingDependencyError("the Holm correction", "eval", "statsmodels") from None
    reject, adjusted, _, _ = multipletests(list(pvalues), alpha=alpha, method="holm")
    return [float(p) for p in adjusted], [bool(r) for r in reject]
