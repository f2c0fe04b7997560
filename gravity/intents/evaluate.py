"""Evaluation of the intent graph's recommendations against library baselines.

- The split: per user with at least two explicitly rated items, a seeded share of those items
  (at least one) is held out; which ones depends only on (seed, user, item), through sha256.
  It is written as a parquet file (``user_id``, ``item_id``, ``value``; seed and share in the
  file's metadata) so anyone can rebuild the graph without those pairs and rerun.
- Full ranking: every system ranks all items of the training graph for each evaluated user,
  the user's training items excluded; Recall@k, NDCG@k, HR@k (``metrics``) overall, on
  cold-start users (at most ``cold_max`` training interactions) and on long-tail items (the
  held-out items outside the ``head_share`` most-interacted training items).
- Baselines from the ``implicit`` package (optional extra ``intents``): item-kNN (cosine),
  ALS, BPR; and popularity (training interaction counts).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gravity.errors import GravityError, MissingDependencyError
from gravity.intents.config import SYSTEMS, EvalConfig
from gravity.intents.metrics import hit_at_k, mean_of, ndcg_at_k, recall_at_k, top_k

if TYPE_CHECKING:
    from gravity.events.store import EventsData
    from gravity.intents.graph import Graph

SPLIT_COLUMNS = ("user_id", "item_id", "value")


def _rank_key(seed: int, user: str, item: str) -> bytes:
    return hashlib.sha256(f"gravity-intents-split:{seed}:{user}:{item}".encode()).digest()


def make_split(data: EventsData, users: set[str] | None, seed: int = 0, share: float = 0.2) -> Any:
    """The held-out pairs (a pyarrow table) of the users in ``users`` (None: all)."""
    import pyarrow as pa

    if not 0 < share < 1:
        raise GravityError(f"--share: {share} is not between 0 and 1")
    rated: dict[str, dict[str, float]] = defaultdict(dict)
    ev = data.events
    for user, kind, item, value in zip(
        ev["user_id"].to_pylist(),
        ev["kind"].to_pylist(),
        ev["item_id"].to_pylist(),
        ev["value"].to_pylist(),
    ):
        if kind == "personal" and value is not None and (users is None or user in users):
            rated[user][item] = max(value, rated[user].get(item, value))
    rows = []
    for user in sorted(rated):
        items = rated[user]
        if len(items) < 2:
            continue
        n_test = max(1, round(share * len(items)))
        for item in sorted(items, key=lambda i: _rank_key(seed, user, i))[:n_test]:
            rows.append({"user_id": user, "item_id": item, "value": items[item]})
    schema = pa.schema(
        [("user_id", pa.string()), ("item_id", pa.string()), ("value", pa.float32())]
    )
    meta = {"gravity_split": json.dumps({"seed": seed, "share": share})}
    return pa.Table.from_pylist(rows, schema=schema.with_metadata(meta))


def write_split(table: Any, path: Path) -> None:
    """Write the split atomically."""
    import io

    import pyarrow.parquet as pq

    from gravity.io import atomic_write_bytes

    buf = io.BytesIO()
    pq.write_table(table, buf)
    atomic_write_bytes(Path(path), buf.getvalue())


def read_split(path: Path) -> tuple[set[tuple[str, str]], dict[str, Any]]:
    """Held-out (user, item) pairs of a split file and its description (path, digest, counts)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from gravity.intents.graph import file_digest

    path = Path(path)
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise GravityError(f"{path}: cannot read the split: {exc}") from None
    missing = [c for c in SPLIT_COLUMNS[:2] if c not in table.column_names]
    if missing:
        raise GravityError(f"{path}: missing column(s) {', '.join(missing)}")
    users, items = table["user_id"].to_pylist(), table["item_id"].to_pylist()
    if any(not isinstance(x, str) for x in users + items):
        raise GravityError(f"{path}: user_id/item_id: null or non-text values")
    meta = (table.schema.metadata or {}).get(b"gravity_split", b"{}").decode("utf-8", "replace")
    try:
        params = json.loads(meta)
    except json.JSONDecodeError:
        params = {}
    pairs = set(zip(users, items))
    desc = {"path": str(path.resolve()), "digest": file_digest(path), "pairs": len(pairs)}
    return pairs, desc | {k: v for k, v in params.items() if k in ("seed", "share")}


def _implicit() -> Any:
    try:
        import implicit
    except ImportError:
        raise MissingDependencyError("the evaluation baselines", "intents", "implicit") from None
    return implicit


def baseline_recs(name: str, train: Any, users: list[int], cfg: EvalConfig) -> list[list[int]]:
    """Top-k item columns per user row of ``train`` (a users x items CSR of training
    interactions) for baseline ``name``, training items excluded."""
    import numpy as np

    if name == "popularity":
        counts = np.asarray(train.getnnz(axis=0), dtype=np.float64)
        return [
            top_k(counts, cfg.k, train.indices[train.indptr[u] : train.indptr[u + 1]])
            for u in users
        ]
    _implicit()
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"):  # implicit's own threads do the work; BLAS must not fight
        if name == "itemknn":
            from implicit.nearest_neighbours import CosineRecommender

            model = CosineRecommender(K=cfg.knn_k, num_threads=cfg.threads)
        elif name == "als":
            from implicit.cpu.als import AlternatingLeastSquares

            model = AlternatingLeastSquares(
                factors=cfg.factors,
                iterations=cfg.als_iterations,
                random_state=cfg.seed,
                num_threads=cfg.threads,
            )
        elif name == "bpr":
            from implicit.cpu.bpr import BayesianPersonalizedRanking

            model = BayesianPersonalizedRanking(
                factors=cfg.factors,
                iterations=cfg.bpr_iterations,
                random_state=cfg.seed,
                num_threads=cfg.threads,
            )
        else:
            raise GravityError(f"--systems: unknown system {name!r}; known: {', '.join(SYSTEMS)}")
        model.fit(train, show_progress=False)
        ids, _ = model.recommend(
            np.asarray(users), train[users], N=cfg.k, filter_already_liked_items=True
        )
    return [[int(i) for i in row if i >= 0] for row in np.atleast_2d(ids)]


def intents_recs(
    graph: Graph, train: Any, users: list[int], user_nodes: list[int], k: int
) -> list[list[int]]:
    """Top-k item columns per user by the graph's scorer, training items excluded."""
    from gravity.intents.scorer import Scorer

    scorer = Scorer(graph)
    out: list[list[int]] = []
    for start in range(0, len(users), 256):
        chunk = users[start : start + 256]
        scores = scorer.item_scores([user_nodes[u] for u in chunk])
        for row, u in zip(scores, chunk):
            out.append(top_k(row, k, train.indices[train.indptr[u] : train.indptr[u + 1]]))
    return out


def evaluate(
    graph: Graph, heldout: set[tuple[str, str]], cfg: EvalConfig, progress: bool = True
) -> dict[str, Any]:
    """Metrics per system and slice, with the counts behind them."""
    import numpy as np

    from gravity.progress import Progress

    ids = graph.nodes["id"].to_pylist()
    user_ids, item_ids, train = _rated_matrix(graph)
    relevant, counts = _relevant(heldout, user_ids, item_ids, train)
    users = sorted(relevant)
    if cfg.max_users is not None and len(users) > cfg.max_users:
        rng = np.random.default_rng(cfg.seed)
        users = sorted(int(u) for u in rng.choice(users, cfg.max_users, replace=False))
    n_train = np.asarray(train.getnnz(axis=1))
    pop = np.asarray(train.getnnz(axis=0))
    order = np.lexsort((np.arange(len(pop)), -pop))
    head = set(order[: int(np.ceil(cfg.head_share * len(pop)))].tolist())
    cold = {u for u in users if n_train[u] <= cfg.cold_max}
    node_index = {n: k for k, n in enumerate(ids)}
    user_nodes = [node_index[f"u:{u}"] for u in user_ids]
    results: dict[str, Any] = {}
    timings: dict[str, float] = {}
    with Progress(len(cfg.systems), "evaluate systems", enabled=progress, unit="systems") as bar:
        for name in cfg.systems:
            t0 = time.monotonic()
            if name == "intents":
                recs = intents_recs(graph, train, users, user_nodes, cfg.k)
            else:
                recs = baseline_recs(name, train, users, cfg)
            timings[name] = round(time.monotonic() - t0, 2)
            results[name] = _slices(recs, users, relevant, cold, head, cfg.k)
            bar.advance()
    return {
        "k": cfg.k,
        "counts": counts
        | {
            "users_evaluated": len(users),
            "cold_users": len(cold),
            "items": len(item_ids),
            "head_items": len(head),
            "training_interactions": int(train.nnz),
        },
        "metrics": results,
        "timings_s": timings,
        "config": cfg.model_dump(mode="json"),
    }


def _rated_matrix(graph: Graph) -> tuple[list[str], list[str], Any]:
    """(user ids, item ids, the users x items CSR matrix of the graph's training ratings)."""
    import numpy as np
    import scipy.sparse as sp

    ids = graph.nodes["id"].to_pylist()
    kinds = graph.nodes["kind"].to_pylist()
    user_ids = [i[2:] for i, k in zip(ids, kinds) if k == "user"]
    item_ids = [i[2:] for i, k in zip(ids, kinds) if k == "item"]
    u_index = {u: k for k, u in enumerate(user_ids)}
    i_index = {i: k for k, i in enumerate(item_ids)}
    rated = graph.edges_of("rated")
    rows = [u_index[s[2:]] for s, _, _ in rated]
    cols = [i_index[d[2:]] for _, d, _ in rated]
    train = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(user_ids), len(item_ids))
    )
    train.sum_duplicates()
    return user_ids, item_ids, train


def _relevant(
    heldout: set[tuple[str, str]], user_ids: list[str], item_ids: list[str], train: Any
) -> tuple[dict[int, set[int]], dict[str, int]]:
    """(user index -> held-out item indices, counts of the held-out pairs set aside by reason).

    A held-out pair that is a training edge is a leak: refused."""
    u_index = {u: k for k, u in enumerate(user_ids)}
    i_index = {i: k for k, i in enumerate(item_ids)}
    counts = {
        "heldout_pairs": len(heldout),
        "heldout_unknown_user": 0,
        "heldout_unknown_item": 0,
        "heldout_in_training": 0,
    }
    relevant: dict[int, set[int]] = defaultdict(set)
    for user, item in sorted(heldout):
        if user not in u_index:
            counts["heldout_unknown_user"] += 1
        elif item not in i_index:
            counts["heldout_unknown_item"] += 1
        elif train[u_index[user], i_index[item]]:
            counts["heldout_in_training"] += 1
        else:
            relevant[u_index[user]].add(i_index[item])
    if counts["heldout_in_training"]:
        raise GravityError(
            f"{counts['heldout_in_training']} held-out pairs are training edges of the graph: "
            "build it with --split pointing at this split file"
        )
    return relevant, counts


def _slices(recs, users, relevant, cold, head, k) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    slices = {
        "overall": (users, lambda u: relevant[u]),
        "cold_start": ([u for u in users if u in cold], lambda u: relevant[u]),
        "long_tail": (users, lambda u: {i for i in relevant[u] if i not in head}),
    }
    by_user = dict(zip(users, recs))
    for name, (members, rel) in slices.items():
        row: dict[str, Any] = {}
        for metric, fn in (("recall", recall_at_k), ("ndcg", ndcg_at_k), ("hr", hit_at_k)):
            mean, n, skipped = mean_of([fn(by_user[u], rel(u), k) for u in members])
            row[metric] = None if mean is None else round(mean, 4)
            row["users"], row["users_without_relevant"] = n, skipped
        out[name] = row
    return out


def table_lines(report: dict[str, Any]) -> list[str]:
    """The metrics as a markdown table."""
    k = report["k"]
    lines = [
        f"| system | slice | users | Recall@{k} | NDCG@{k} | HR@{k} |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for system, slices in report["metrics"].items():
        for name, row in slices.items():
            cells = [
                f"{row[m]:.4f}" if row[m] is not None else "-" for m in ("recall", "ndcg", "hr")
            ]
            lines.append(f"| {system} | {name} | {row['users']} | " + " | ".join(cells) + " |")
    return lines
