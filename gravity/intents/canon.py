"""Canonical intents: intent phrases clustered by sentence embeddings (agglomerative, average
linkage on cosine distance, cut at a distance threshold); each cluster's label is its most
central phrase (highest mean cosine to the other members; ties by the phrase itself)."""

from __future__ import annotations

from dataclasses import dataclass

from gravity.errors import MissingDependencyError


@dataclass
class Canon:
    """Canonical intents: ``labels[k]`` names intent ``k``; ``of_phrase`` maps each phrase to
    its intent; ``members[k]`` lists the phrases of intent ``k``."""

    labels: list[str]
    members: list[list[str]]
    of_phrase: dict[str, int]


def canonical_intents(phrases: list[str], threshold: float = 0.35) -> Canon:
    """Cluster distinct ``phrases``; intents come ordered by size (largest first), then label."""
    import numpy as np

    from gravity.embed import embed

    unique = sorted(set(phrases))
    if not unique:
        return Canon([], [], {})
    vectors = embed(unique)
    if len(unique) == 1:
        assign = np.zeros(1, dtype=int)
    else:
        try:
            from sklearn.cluster import AgglomerativeClustering
        except ImportError:
            raise MissingDependencyError("clustering intents", "eval", "scikit-learn") from None

        assign = AgglomerativeClustering(
            n_clusters=None, distance_threshold=threshold, metric="cosine", linkage="average"
        ).fit_predict(vectors)
    clusters: dict[int, list[int]] = {}
    for pos, c in enumerate(assign):
        clusters.setdefault(int(c), []).append(pos)
    found = []
    for members in clusters.values():
        sims = vectors[members] @ vectors[members].T
        centrality = sims.mean(axis=1)
        best = max(range(len(members)), key=lambda j: (centrality[j], -j))
        found.append((unique[members[best]], [unique[m] for m in members]))
    found.sort(key=lambda x: (-len(x[1]), x[0]))
    of_phrase = {p: k for k, (_, ms) in enumerate(found) for p in ms}
    return Canon([lab for lab, _ in found], [ms for _, ms in found], of_phrase)
