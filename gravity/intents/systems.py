"""The systems ``evaluate`` ranks with, each fitted from training interactions and one point of
its tuning grid, each answering a users x items score matrix (columns: the evaluation's items).

- ``intents``: the graph's scorer (translation plus the user -> intent -> item path term,
  ``gravity.intents.scorer``), retrained on the given interactions; ``intents_no_path``: the
  same graph (its intent edges shape the embeddings) with the path term off (alpha and beta fixed
  at 0), which isolates what the path term adds; ``intents_shuffled``: the same as ``intents``
  with the item side of the intent lists permuted over all items (seeded: the same number of
  edges and intents per item, but which items have intents is random), so that intents carry
  no information about items; ``translation``: the same scorer on a graph without
  intent edges and without the path term. The four differ in their intents and in the path term
  only (the ablations).
- Baselines (``implicit``, optional extra ``intents``): item-kNN (cosine), ALS (the interaction
  weights as confidence, scaled by ``alpha``), BPR; and popularity (training interaction counts).
  They get the same weighted interaction matrix as the scorer. ``lightgcn`` (PyTorch
  Geometric, optional extra ``graph``: ``gravity.intents.lightgcn``) propagates over the same
  interactions as a binary user-item graph; without the package it is skipped, with the reason
  (``unavailable``).
An item with no training interaction (item cold start) gets a score only from a system that can
give it one: the intent scorers, through the intents its text gave it (``can_score_cold``);
the collaborative baselines, LightGCN included, have no interaction (edge) to place it by.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gravity.errors import GravityError, MissingDependencyError

if TYPE_CHECKING:
    from gravity.intents.graph import Graph

ScoreFn = Callable[[list[int]], Any]
# system -> (the items' intents: real, shuffled or none; whether the path term is on)
SCORER_SYSTEMS = {
    "intents": ("real", True),
    "intents_no_path": ("real", False),
    "intents_shuffled": ("shuffled", True),
    "translation": ("none", False),
}


def can_score_cold(name: str) -> bool:
    """Whether system ``name`` can score an item nobody interacted with (from its intents: its
    intent edges place it, and the path term reads them)."""
    return name in SCORER_SYSTEMS and SCORER_SYSTEMS[name][0] != "none"


@dataclass
class Parts:
    """What a graph is made of, to rebuild it without some interactions or with other intents.

    ``users`` and ``items`` are the evaluation's rows and columns (sorted ids); ``ratings`` maps
    (user, item) to the rated edge's weight."""

    users: list[str]
    items: list[str]
    ratings: dict[tuple[str, str], float]
    follows: Counter[tuple[str, str]]
    item_intents: dict[str, list[int]]
    intent_labels: list[str]
    build: dict[str, Any]


def graph_parts(graph: Graph) -> Parts:
    """The parts of a built graph (its config, as recorded in the manifest)."""
    labels = graph.labels()
    ratings = {(s[2:], d[2:]): float(w) for s, d, w in graph.edges_of("rated")}
    follows: Counter[tuple[str, str]] = Counter()
    for s, d, w in graph.edges_of("follows"):
        follows[(s[2:], d[2:])] = max(1, round(float(w) * 5))
    intent_ids = graph.ids("intent")
    position = {node: k for k, node in enumerate(intent_ids)}
    item_intents: dict[str, list[int]] = {}
    for s, d, _ in graph.edges_of("serves"):
        item_intents.setdefault(s[2:], []).append(position[d])
    return Parts(
        users=sorted(n[2:] for n in graph.ids("user")),
        items=sorted(n[2:] for n in graph.ids("item")),
        ratings=ratings,
        follows=follows,
        item_intents={i: sorted(ks) for i, ks in item_intents.items()},
        intent_labels=[labels[n] for n in intent_ids],
        build=dict(graph.manifest.get("config") or {}),
    )


def variant_intents(parts: Parts, variant: str, seed: int) -> dict[str, list[int]]:
    """The items' intents for an ablation: ``real``, ``shuffled`` or ``none``.

    ``shuffled`` permutes the item side of the intent lists over every item of the graph, those
    without intents included (seeded): the number of serves edges, each intent's number of items
    and the distribution of intents per item stay; which item has which intents, and which
    items have any, are random. (Permuting among the items with intents only would keep "has
    intents" as a signal: those are the most rated items and the cold ones.)"""
    import numpy as np

    if variant == "real":
        return parts.item_intents
    if variant == "none":
        return {}
    keys = sorted(set(parts.items) | set(parts.item_intents))
    lists = [parts.item_intents.get(i, []) for i in keys]
    order = np.random.default_rng(seed).permutation(len(keys))
    return {keys[j]: lists[int(order[j])] for j in range(len(keys)) if lists[int(order[j])]}


def fit_scorer(
    parts: Parts,
    ratings: dict[tuple[str, str], float],
    variant: str,
    point: dict[str, Any],
    paths: bool = True,
) -> ScoreFn:
    """The intent scorer of ``variant`` trained on ``ratings`` with grid ``point`` (fields of
    ``ScorerConfig`` over the graph's own scorer settings); ``paths``: False leaves the path
    term out (it is also out for ``none`` and for a graph built without it)."""
    from gravity.intents.config import BuildConfig, ScorerConfig
    from gravity.intents.graph import Graph, assemble
    from gravity.intents.scorer import Scorer, train_scorer

    build = BuildConfig.model_validate(parts.build)
    intents = variant_intents(parts, variant, build.scorer.seed)
    nodes, edges, _ = assemble(
        ratings, parts.follows, intents, parts.intent_labels, {}, build, parts.users, parts.items
    )
    scfg = ScorerConfig.model_validate(
        build.scorer.model_dump()
        | dict(point)
        # a graph built with the path term off (--no-scorer.intent-paths) is evaluated so
        | {"intent_paths": paths and variant != "none" and build.scorer.intent_paths}
    )
    rows = list(zip(*(edges[c].to_pylist() for c in ("src", "dst", "relation", "weight"))))
    arrays = train_scorer(nodes["id"].to_pylist(), nodes["kind"].to_pylist(), rows, scfg, False)
    scorer = Scorer(Graph(nodes, edges, {}, arrays))
    if scorer.item_keys != parts.items:
        raise GravityError("internal: the rebuilt graph's items are not the evaluation's")
    user_node = [scorer.index[f"u:{u}"] for u in parts.users]
    return lambda users: scorer.item_scores([user_node[u] for u in users])


def _implicit() -> Any:
    try:
        import implicit
    except ImportError:
        raise MissingDependencyError("the evaluation baselines", "intents", "implicit") from None
    return implicit


def fit_baseline(name: str, train: Any, point: dict[str, Any], threads: int, seed: int) -> ScoreFn:
    """Baseline ``name`` fitted on ``train`` (users x items CSR of interaction weights) with
    grid ``point`` (keyword arguments of the ``implicit`` model)."""
    import numpy as np

    if name == "popularity":
        counts = np.asarray(train.getnnz(axis=0), dtype=np.float32)
        return lambda users: np.broadcast_to(counts, (len(users), len(counts)))
    _implicit()
    from threadpoolctl import threadpool_limits

    model = _baseline_model(name, point, threads, seed)
    with threadpool_limits(1, "blas"):  # implicit's own threads do the work; BLAS must not fight
        model.fit(train, show_progress=False)
    if name == "itemknn":
        sim = model.similarity.tocsr().astype(np.float32)
        return lambda users: (train[users] @ sim).toarray()
    user_f = np.asarray(model.user_factors, dtype=np.float32)
    item_f = np.asarray(model.item_factors, dtype=np.float32)
    return lambda users: user_f[users] @ item_f.T


def _baseline_model(name: str, point: dict[str, Any], threads: int, seed: int) -> Any:
    from gravity.intents.config import SYSTEMS

    if name == "itemknn":
        from implicit.nearest_neighbours import CosineRecommender

        return CosineRecommender(num_threads=threads, **point)
    if name == "als":
        from implicit.cpu.als import AlternatingLeastSquares

        return AlternatingLeastSquares(random_state=seed, num_threads=threads, **point)
    if name == "bpr":
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        return BayesianPersonalizedRanking(random_state=seed, num_threads=threads, **point)
    raise GravityError(f"--systems: unknown system {name!r}; known: {', '.join(SYSTEMS)}")


def unavailable(name: str) -> str | None:
    """Why system ``name`` cannot run here, for a system whose package is optional and is
    skipped without it (``lightgcn``); None: it can run (or fails loudly when it cannot)."""
    if name == "lightgcn":
        from gravity.intents.lightgcn import missing

        return missing()
    return None


def fit_system(
    name: str, parts: Parts, train: Any, ratings: dict, point: dict[str, Any], cfg: Any
) -> ScoreFn:
    """System ``name`` fitted on the training interactions (``train`` as a matrix over
    ``parts``' users and items, ``ratings`` as a mapping) with grid ``point``."""
    if name in SCORER_SYSTEMS:
        variant, paths = SCORER_SYSTEMS[name]
        return fit_scorer(parts, ratings, variant, point, paths)
    if name == "lightgcn":
        from gravity.intents.lightgcn import fit_lightgcn

        return fit_lightgcn(train, point, cfg.threads, cfg.seed)
    return fit_baseline(name, train, point, cfg.threads, cfg.seed)


def rank(
    score: ScoreFn,
    users: list[int],
    train: Any,
    k: int,
    allowed: Any = None,
) -> list[list[int]]:
    """Top-k item columns per user (training items excluded; only columns in ``allowed``, a
    boolean mask, when given)."""
    import numpy as np

    from gravity.intents.metrics import top_k

    out: list[list[int]] = []
    for start in range(0, len(users), 128):
        chunk = users[start : start + 128]
        scores = np.array(score(chunk), dtype=np.float64)
        if allowed is not None:
            scores[:, ~allowed] = np.nan
        for row, u in zip(scores, chunk):
            out.append(top_k(row, k, train.indices[train.indptr[u] : train.indptr[u + 1]]))
    return out
