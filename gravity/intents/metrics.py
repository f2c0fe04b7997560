"""Top-k ranking metrics with binary relevance, and the ranking they are computed on.

- ``top_k``: the k best candidates by score, excluding some; equal scores are ordered by
  candidate position (the earlier first), so a ranking never depends on sort stability.
- ``recall_at_k`` = hits in the top k / number of relevant items;
  ``ndcg_at_k`` = DCG / ideal DCG, DCG = sum over hits of 1 / log2(rank + 1) (rank from 1),
  ideal over min(k, relevant) hits; ``hit_at_k`` = 1 if any relevant item is in the top k.
  A user with no relevant item has no value (None): averages leave them out and count them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any


def top_k(scores: Any, k: int, exclude: Iterable[int] = ()) -> list[int]:
    """Positions of the ``k`` highest ``scores`` (a 1-d array), ``exclude``d positions left
    out; ties go to the lower position."""
    import numpy as np

    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError("scores must be one-dimensional")
    banned = np.isnan(s)
    banned[list(exclude)] = True
    allowed = np.flatnonzero(~banned)
    k = min(k, len(allowed))
    if k <= 0:
        return []
    vals = s[allowed]
    if len(vals) > 4 * k:
        # Only candidates at least as good as the k-th best can be in the top k (ties included).
        kth = np.partition(vals, len(vals) - k)[len(vals) - k]
        keep = vals >= kth
        allowed, vals = allowed[keep], vals[keep]
    # lexsort: the last key is primary: score descending, then position ascending.
    order = np.lexsort((allowed, -vals))[:k]
    return [int(p) for p in allowed[order]]


def recall_at_k(ranked: Sequence[Any], relevant: set[Any], k: int) -> float | None:
    """Share of the relevant items found in the top ``k`` of ``ranked``."""
    if not relevant:
        return None
    return sum(1 for x in ranked[:k] if x in relevant) / len(relevant)


def ndcg_at_k(ranked: Sequence[Any], relevant: set[Any], k: int) -> float | None:
    """Normalised discounted cumulative gain at ``k`` (binary gains)."""
    if not relevant:
        return None
    dcg = sum(1 / math.log2(r + 2) for r, x in enumerate(ranked[:k]) if x in relevant)
    ideal = sum(1 / math.log2(r + 2) for r in range(min(k, len(relevant))))
    return dcg / ideal


def hit_at_k(ranked: Sequence[Any], relevant: set[Any], k: int) -> float | None:
    """1.0 if any relevant item is in the top ``k``, else 0.0."""
    if not relevant:
        return None
    return 1.0 if any(x in relevant for x in ranked[:k]) else 0.0


def mean_of(values: Sequence[float | None]) -> tuple[float | None, int, int]:
    """Mean of the values that are not None, how many there were, how many were None."""
    kept = [v for v in values if v is not None]
    return (sum(kept) / len(kept) if kept else None), len(kept), len(values) - len(kept)
