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
  n users cannot give. ``unit=True`` gives the exact binomial interval instead: with no hit
  among n users the share of users with a hit is in [0, ``1 - ((1 - level) / 2) ** (1 / n)``]
  (two-sided Clopper-Pearson, about 3.7 / n at 95%), and so is the mean of a metric that is
  0 without a hit and at most 1 (Recall, NDCG, HR); all 1 mirrors it. A difference of two
  such systems gets the interval between the bounds.
- ``crossed_bootstrap_ci`` (the cold-item slice): a user's value there is the mean of one value
  per relevant item (Recall: hit or not; NDCG: the item's share of it), and the items are a
  sample too: a few easy or hard cold items move every user's value. Each resample draws the
  items with replacement, then the users (crossed): a user's value is the weighted mean over the
  drawn copies of their items (users left with none drop out of that resample), the statistic
  the weighted mean over the drawn users. Its interval holds the variation between items that
  resampling users alone leaves out; with both factors resampled it errs on the wide side.
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
    """The upper end of the two-sided Clopper-Pearson interval at ``level`` of a share with no
    success among ``n`` trials (its lower end is 0): ``1 - ((1 - level) / 2) ** (1 / n)``, about
    3.7 / n at 95%; two-sided, as the percentile intervals beside it are."""
    return 1.0 - ((1.0 - level) / 2.0) ** (1.0 / n)


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


def _counts(rng: Any, b: int, n: int) -> Any:
    """(b, n): how often each of n units is drawn in each of b samples of n with replacement."""
    import numpy as np

    draws = rng.integers(0, n, (b, n)) + (np.arange(b) * n)[:, None]
    return np.bincount(draws.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)


def _crossed_means(per_user: Sequence[dict[Any, float]], resamples: int, seed: int) -> Any:
    """Means of ``resamples`` crossed bootstrap samples (items, then users) of the mean over
    users of each user's mean over their items (nan where no user kept an item)."""
    import numpy as np
    import scipy.sparse as sp

    items = sorted({i for row in per_user for i in row}, key=str)
    col = {i: k for k, i in enumerate(items)}
    rows = [u for u, row in enumerate(per_user) for _ in row]
    cols = [col[i] for row in per_user for i in row]
    vals = [v for row in per_user for v in row.values()]
    shape = (len(per_user), len(items))
    value = sp.csr_matrix((np.asarray(vals, dtype=np.float64), (rows, cols)), shape=shape)
    member = sp.csr_matrix((np.ones(len(vals)), (rows, cols)), shape=shape)
    rng = np.random.default_rng(seed)
    n_u, n_i = shape
    out = np.full(resamples, np.nan)
    block = max(1, 2_000_000 // max(n_u + n_i, 1))
    for start in range(0, resamples, block):
        b = min(resamples, start + block) - start
        w = _counts(rng, b, n_i)
        v = _counts(rng, b, n_u)
        num = np.asarray((value @ w.T).T)  # (b, users): each user's weighted sum
        den = np.asarray((member @ w.T).T)
        kept = v * (den > 0)
        ratio = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
        total = kept.sum(axis=1)
        out[start : start + b] = np.where(
            total > 0, (kept * ratio).sum(axis=1) / np.maximum(total, 1), np.nan
        )
    return out


def crossed_bootstrap_ci(
    per_user: Sequence[dict[Any, float]],
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    unit: bool = False,
    paired: bool = False,
) -> dict[str, Any]:
    """``{"value", "ci", "n", "items", "crossed": True}`` of the mean over users of each
    user's mean over their items (``per_user``: one item -> value mapping per user), the
    interval from resampling items, then users. ``unit``: as in ``bootstrap_ci`` (all 0 or all
    1: the exact bound over users); ``paired``: the values are differences of two systems (the
    caller handles two systems with no hits, as ``paired_difference`` does), and a two-sided p
    (as in ``paired_difference``) is added."""
    import numpy as np

    user_means = [float(np.mean(list(row.values()))) for row in per_user if row]
    n_items = len({i for row in per_user for i in row})
    base = {"n": len(user_means), "items": n_items, "crossed": True}
    if len(user_means) < 2 or n_items < 2:
        est = bootstrap_ci(user_means, resamples, level, seed, unit)
        return est | ({"p": None} if paired else {})
    x = np.asarray(user_means)
    mean = float(x.mean())
    if paired and not np.any([v for row in per_user for v in row.values()]):
        return {"value": 0.0, "ci": [0.0, 0.0], "p": 1.0} | base  # the same hits, item by item
    if unit and not paired and (not np.any(x) or np.all(x == 1.0)):
        return bootstrap_ci(user_means, resamples, level, seed, unit) | base
    means = _crossed_means([row for row in per_user if row], resamples, seed)
    means = means[~np.isnan(means)]
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    out = {"value": mean, "ci": [float(lo), float(hi)]} | base
    if paired:
        tail = min(float((means <= 0).mean()), float((means >= 0).mean()))
        out["p"] = min(1.0, max(2 * tail, 1 / resamples))
    return out
