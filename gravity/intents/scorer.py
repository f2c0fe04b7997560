"""The learned scorer: translation embeddings (TransE-style, ``head + relation ~ tail``) over
every edge of the graph, trained with the BPR loss against a corrupted tail of the same kind,
plus a learned bias per tail node (an item's general appeal).

``score(h, r, t) = bias[t] - ||e[h] + w[r] - e[t]||``. A user's score for an item is
``score(u, rated, i)``; the path behind it is the intent ``c`` maximising
``score(u, holds, c) + score(i, serves, c)`` among the item's intents (or, for an item without
extracted intents, among all intents: marked ``learned``). Seeded and deterministic on CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from gravity.errors import GravityError

if TYPE_CHECKING:
    import numpy as np

    from gravity.intents.config import ScorerConfig
    from gravity.intents.graph import Graph

SCORER_KEYS = ("entity", "relation", "bias")


def check_scorer(scorer: dict[str, Any], n_nodes: int, path: Path) -> None:
    """Raise a one-line error naming ``path`` unless the arrays fit a graph of ``n_nodes``."""
    import numpy as np

    from gravity.intents.graph import RELATIONS

    for key in SCORER_KEYS:
        if key not in scorer:
            raise GravityError(f"{path}: {key}: missing array")
        if not np.issubdtype(scorer[key].dtype, np.floating) or not np.all(
            np.isfinite(scorer[key])
        ):
            raise GravityError(f"{path}: {key}: not finite floating-point numbers")
    ent, rel, bias = (scorer[k] for k in SCORER_KEYS)
    if ent.ndim != 2 or ent.shape[0] != n_nodes:
        raise GravityError(f"{path}: entity: shape {ent.shape} does not fit {n_nodes} nodes")
    if rel.shape != (len(RELATIONS), ent.shape[1]):
        raise GravityError(f"{path}: relation: shape {rel.shape} does not fit the entities")
    if bias.shape != (n_nodes,):
        raise GravityError(f"{path}: bias: shape {bias.shape} does not fit {n_nodes} nodes")


def train_scorer(
    nodes: list[str],
    kinds: list[str],
    edges: list[tuple[str, str, str, float]],
    cfg: ScorerConfig,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Train on ``edges`` (src, dst, relation, weight); returns the arrays saved as scorer.npz."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        return _train(nodes, kinds, edges, cfg, progress)
    finally:
        torch.set_num_threads(threads)


def _train(nodes, kinds, edges, cfg, progress) -> dict[str, np.ndarray]:
    import torch

    from gravity.intents.graph import RELATIONS
    from gravity.progress import Progress

    index = {n: k for k, n in enumerate(nodes)}
    rel_index = {r: k for k, r in enumerate(RELATIONS)}
    kind_pools: dict[str, Any] = {}
    for kind in set(kinds):
        kind_pools[kind] = torch.tensor([k for k, x in enumerate(kinds) if x == kind])
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    # Sparse gradients: a step updates only the rows of its batch, not the whole table (with
    # dense Adam, a graph of 300k nodes made each step 20x slower).
    ent = torch.nn.Embedding(len(nodes), cfg.dim, sparse=True)
    rel = torch.nn.Embedding(len(RELATIONS), cfg.dim, sparse=True)
    bias = torch.nn.Embedding(len(nodes), 1, sparse=True)
    with torch.no_grad():
        ent.weight.copy_(torch.randn(len(nodes), cfg.dim, generator=gen) * 0.1)
        rel.weight.copy_(torch.randn(len(RELATIONS), cfg.dim, generator=gen) * 0.1)
        bias.weight.zero_()
    if not edges:
        return _arrays(ent, rel, bias)
    h = torch.tensor([index[e[0]] for e in edges])
    t = torch.tensor([index[e[1]] for e in edges])
    r = torch.tensor([rel_index[e[2]] for e in edges])
    w = torch.tensor([float(e[3]) for e in edges], dtype=torch.float32)
    # Negatives are drawn from the tail's own kind (an item for an item, an intent for an intent).
    tail_kind = [kinds[index[e[1]]] for e in edges]
    groups = {
        k: torch.tensor([j for j, x in enumerate(tail_kind) if x == k]) for k in set(tail_kind)
    }
    params = list(ent.parameters()) + list(rel.parameters()) + list(bias.parameters())
    opt = torch.optim.SparseAdam(params, lr=cfg.lr)
    n = len(edges)
    steps = (n + cfg.batch_size - 1) // cfg.batch_size
    with Progress(cfg.epochs * steps, "train scorer", enabled=progress, unit="batches") as bar:
        for _ in range(cfg.epochs):
            neg = torch.empty(n, dtype=torch.long)
            for k, rows in groups.items():
                pool = kind_pools[k]
                neg[rows] = pool[torch.randint(len(pool), (len(rows),), generator=gen)]
            order = torch.randperm(n, generator=gen)
            for s in range(steps):
                b = order[s * cfg.batch_size : (s + 1) * cfg.batch_size]
                hb, rb, tb, nb = ent(h[b]), rel(r[b]), ent(t[b]), ent(neg[b])
                pos = bias(t[b]).squeeze(1) - (hb + rb - tb).norm(dim=1)
                negs = bias(neg[b]).squeeze(1) - (hb + rb - nb).norm(dim=1)
                loss = -(w[b] * torch.nn.functional.logsigmoid(pos - negs)).sum() / w[b].sum()
                if cfg.l2:
                    loss = loss + cfg.l2 * (hb.pow(2).sum() + tb.pow(2).sum() + nb.pow(2).sum())
                opt.zero_grad()
                loss.backward()
                opt.step()
                bar.advance()
    return _arrays(ent, rel, bias)


def _arrays(ent: Any, rel: Any, bias: Any) -> dict[str, np.ndarray]:
    return {
        "entity": ent.weight.detach().numpy().astype("float32").copy(),
        "relation": rel.weight.detach().numpy().astype("float32").copy(),
        "bias": bias.weight.detach().numpy()[:, 0].astype("float32").copy(),
    }


class Scorer:
    """Scores and paths from a loaded graph's arrays."""

    def __init__(self, graph: Graph) -> None:
        import numpy as np

        from gravity.intents.graph import RELATIONS

        self.graph = graph
        ids = graph.nodes["id"].to_pylist()
        kinds = graph.nodes["kind"].to_pylist()
        self.index = {n: k for k, n in enumerate(ids)}
        self.ent = graph.scorer["entity"].astype(np.float32)
        self.rel = {r: graph.scorer["relation"][k] for k, r in enumerate(RELATIONS)}
        self.bias = graph.scorer["bias"].astype(np.float32)
        self.items = np.array([k for k, x in enumerate(kinds) if x == "item"], dtype=np.int64)
        self.intents = np.array([k for k, x in enumerate(kinds) if x == "intent"], dtype=np.int64)
        self.item_keys = [ids[k][2:] for k in self.items]
        self.labels = graph.labels()
        self.ids = ids
        self.serves: dict[int, list[int]] = {}
        self.held: dict[int, dict[int, float]] = {}
        for src, dst, _ in graph.edges_of("serves"):
            self.serves.setdefault(self.index[src], []).append(self.index[dst])
        for src, dst, wt in graph.edges_of("holds"):
            self.held.setdefault(self.index[src], {})[self.index[dst]] = wt
        self._item_sq = (self.ent[self.items] ** 2).sum(axis=1)

    def item_scores(self, users: list[int]) -> np.ndarray:
        """Scores of every item (columns: ``self.items`` order) for node indexes ``users``."""
        q = self.ent[users] + self.rel["rated"]
        d2 = (q**2).sum(axis=1)[:, None] + self._item_sq[None, :] - 2.0 * q @ self.ent[self.items].T
        return self.bias[self.items][None, :] - (d2.clip(min=0.0) ** 0.5)

    def score(self, h: int, r: str, t: Any) -> Any:
        """``score(h, r, t)`` for one head and one or several tails (node indexes)."""
        import numpy as np

        diff = self.ent[h] + self.rel[r] - self.ent[t]
        return self.bias[t] - np.linalg.norm(diff, axis=-1)

    def paths(self, user: int, item: int, top: int = 1) -> list[dict[str, Any]]:
        """The best user -> intent -> item paths: intent label, its score, whether the graph
        has the user hold it and the item serve it (else it was inferred by the scorer)."""
        import numpy as np

        candidates = self.serves.get(item)
        source = "graph" if candidates else "learned"
        pool = np.array(candidates if candidates else self.intents, dtype=np.int64)
        if len(pool) == 0:
            return []
        s = self.score(user, "holds", pool) + self.score(item, "serves", pool)
        order = sorted(range(len(pool)), key=lambda j: (-float(s[j]), int(pool[j])))[:top]
        held = self.held.get(user, {})
        return [
            {
                "intent": self.labels[self.ids[pool[j]]],
                "score": round(float(s[j]), 4),
                "item_serves": source == "graph",
                "user_holds": round(float(held.get(int(pool[j]), 0.0)), 4),
            }
            for j in order
        ]
