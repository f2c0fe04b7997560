"""The learned scorer: translation embeddings (TransE-style, ``head + relation ~ tail``) over
every edge of the graph, plus a learned bias per tail node (an item's general appeal), plus,
for a user and an item, the user -> intent -> item paths, all trained jointly with the BPR loss
against a corrupted tail of the same kind.

``score(h, r, t) = bias[t] - ||e[h] + w[r] - e[t]||``. A user's score for an item is

    score(u, rated, i) + alpha * max_c [score(u, holds, c) + score(i, serves, c)]

the max over the intents ``c`` the item serves in the graph (its ``serves`` edges); an item
that serves none gets ``beta`` instead of the path term. ``alpha`` and ``beta`` are learned with
the embeddings (``intent_paths: false`` leaves them at 0: translation only). The path behind a
score, the one that contributed most to it, is the maximising intent; an item without intents
has no contributing path, and its explanation is the best path over all intents (marked
``learned``). Seeded and deterministic on CPU.
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
# [alpha, beta] of the path term; optional (a graph written before it scores by translation).
PATH_KEY = "path"


def check_scorer(scorer: dict[str, Any], n_nodes: int, path: Path) -> None:
    """Raise a one-line error naming ``path`` unless the arrays fit a graph of ``n_nodes``."""
    import numpy as np

    from gravity.intents.graph import RELATIONS

    for key in SCORER_KEYS + ((PATH_KEY,) if PATH_KEY in scorer else ()):
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
    if PATH_KEY in scorer and scorer[PATH_KEY].shape != (2,):
        raise GravityError(f"{path}: path: shape {scorer[PATH_KEY].shape} is not (2,)")


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


class _Model:
    """The trainable tables and the score of a batch of edges."""

    def __init__(self, n_nodes: int, pad: Any, cfg: ScorerConfig, gen: Any) -> None:
        import torch

        from gravity.intents.graph import RELATIONS

        # Sparse gradients: a step updates only the rows of its batch, not the whole table (with
        # dense Adam, a graph of 300k nodes made each step 20x slower).
        self.ent = torch.nn.Embedding(n_nodes, cfg.dim, sparse=True)
        self.rel = torch.nn.Embedding(len(RELATIONS), cfg.dim, sparse=True)
        self.bias = torch.nn.Embedding(n_nodes, 1, sparse=True)
        with torch.no_grad():
            self.ent.weight.copy_(torch.randn(n_nodes, cfg.dim, generator=gen) * 0.1)
            self.rel.weight.copy_(torch.randn(len(RELATIONS), cfg.dim, generator=gen) * 0.1)
            self.bias.weight.zero_()
        self.path = torch.zeros(2, requires_grad=pad is not None)  # alpha, beta
        self.pad = pad  # node -> its served intents (-1: none), or None: no path term
        self.rated = RELATIONS.index("rated")
        self.holds = RELATIONS.index("holds")
        self.serves = RELATIONS.index("serves")

    def sparse_params(self) -> list[Any]:
        return [*self.ent.parameters(), *self.rel.parameters(), *self.bias.parameters()]

    def triple(self, h: Any, r: Any, t: Any) -> Any:
        return self.bias(t).squeeze(-1) - (self.ent(h) + self.rel(r) - self.ent(t)).norm(dim=-1)

    def paths(self, u: Any, i: Any) -> Any:
        """The path term of users ``u`` and items ``i`` (1-d, same length)."""
        import torch

        c = self.pad[i]  # (B, M)
        mask = c >= 0
        cc = c.clamp(min=0)
        hold = torch.full_like(cc, self.holds)
        serve = torch.full_like(cc, self.serves)
        s = self.triple(u[:, None].expand_as(cc), hold, cc)
        s = s + self.triple(i[:, None].expand_as(cc), serve, cc)
        best = s.masked_fill(~mask, float("-inf")).max(dim=1).values
        has = mask.any(dim=1)
        return torch.where(has, self.path[0] * best.masked_fill(~has, 0.0), self.path[1])

    def score(self, h: Any, r: Any, t: Any) -> Any:
        """Scores of edges (h, r, t): the triple's, plus the path term on ``rated`` edges."""
        s = self.triple(h, r, t)
        if self.pad is None:
            return s
        on = r == self.rated
        if bool(on.any()):
            s = s.clone()
            s[on] = s[on] + self.paths(h[on], t[on])
        return s


def _intent_pad(index: dict[str, int], edges: list, cfg: ScorerConfig) -> Any:
    """node -> the intents it serves, padded with -1 (None without the path term or intents)."""
    import torch

    served: dict[int, list[int]] = {}
    for src, dst, rel, _ in edges:
        if rel == "serves":
            served.setdefault(index[src], []).append(index[dst])
    if not cfg.intent_paths or not served:
        return None
    width = max(len(v) for v in served.values())
    pad = torch.full((len(index), width), -1, dtype=torch.long)
    for node, cs in served.items():
        pad[node, : len(cs)] = torch.tensor(sorted(cs))
    return pad


def _train(nodes, kinds, edges, cfg, progress) -> dict[str, np.ndarray]:
    import torch

    from gravity.intents.graph import RELATIONS
    from gravity.progress import Progress

    index = {n: k for k, n in enumerate(nodes)}
    rel_index = {r: k for k, r in enumerate(RELATIONS)}
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = _Model(len(nodes), _intent_pad(index, edges, cfg), cfg, gen)
    if not edges:
        return _arrays(model)
    h = torch.tensor([index[e[0]] for e in edges])
    t = torch.tensor([index[e[1]] for e in edges])
    r = torch.tensor([rel_index[e[2]] for e in edges])
    w = torch.tensor([float(e[3]) for e in edges], dtype=torch.float32)
    # Negatives are drawn from the tail's own kind (an item for an item, an intent for an intent),
    # kind by kind in sorted order: a set's order changes with PYTHONHASHSEED, and so did the
    # draws (the same seed trained different scorers in different processes).
    kind_pools = {
        k: torch.tensor([j for j, x in enumerate(kinds) if x == k]) for k in sorted(set(kinds))
    }
    tail_kind = [kinds[index[e[1]]] for e in edges]
    groups = {
        k: (torch.tensor([j for j, x in enumerate(tail_kind) if x == k]), kind_pools[k])
        for k in sorted(set(tail_kind))
    }
    opts = [torch.optim.SparseAdam(model.sparse_params(), lr=cfg.lr)]
    if model.pad is not None:
        opts.append(torch.optim.Adam([model.path], lr=cfg.lr))
    steps = (len(edges) + cfg.batch_size - 1) // cfg.batch_size
    with Progress(cfg.epochs * steps, "train scorer", enabled=progress, unit="batches") as bar:
        for _ in range(cfg.epochs):
            neg = _negatives(len(edges), groups, gen)
            order = torch.randperm(len(edges), generator=gen)
            for s in range(steps):
                b = order[s * cfg.batch_size : (s + 1) * cfg.batch_size]
                _step(model, opts, (h[b], r[b], t[b], neg[b], w[b]), cfg.l2)
                bar.advance()
    return _arrays(model)


def _negatives(n: int, groups: dict[str, tuple[Any, Any]], gen: Any) -> Any:
    import torch

    neg = torch.empty(n, dtype=torch.long)
    for rows, pool in groups.values():
        neg[rows] = pool[torch.randint(len(pool), (len(rows),), generator=gen)]
    return neg


def _step(model: _Model, opts: list[Any], batch: tuple[Any, ...], l2: float) -> None:
    import torch

    hb, rb, tb, nb, wb = batch
    pos = model.score(hb, rb, tb)
    negs = model.score(hb, rb, nb)
    loss = -(wb * torch.nn.functional.logsigmoid(pos - negs)).sum() / wb.sum()
    if l2:
        e = model.ent
        loss = loss + l2 * (e(hb).pow(2).sum() + e(tb).pow(2).sum() + e(nb).pow(2).sum())
    for opt in opts:
        opt.zero_grad()
    loss.backward()
    for opt in opts:
        opt.step()


def _arrays(model: _Model) -> dict[str, np.ndarray]:
    return {
        "entity": model.ent.weight.detach().numpy().astype("float32").copy(),
        "relation": model.rel.weight.detach().numpy().astype("float32").copy(),
        "bias": model.bias.weight.detach().numpy()[:, 0].astype("float32").copy(),
        PATH_KEY: model.path.detach().numpy().astype("float32").copy(),
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
        alpha_beta = graph.scorer.get(PATH_KEY, np.zeros(2, dtype=np.float32))
        self.alpha, self.beta = float(alpha_beta[0]), float(alpha_beta[1])
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
        self._pairs = self._served_pairs()

    def _served_pairs(self) -> tuple[Any, Any, Any, Any]:
        """(item columns with intents, the start of each one's pairs, each pair's intent
        position in ``self.intents``, each pair's ``score(item, serves, intent)``)."""
        import numpy as np

        pos = {int(c): j for j, c in enumerate(self.intents)}
        cols, starts, where, item_side = [], [], [], []
        for col, node in enumerate(self.items):
            served = sorted(self.serves.get(int(node), []))
            if not served:
                continue
            cols.append(col)
            starts.append(len(where))
            where += [pos[c] for c in served]
            item_side += list(self.score(int(node), "serves", np.array(served, dtype=np.int64)))
        return (
            np.array(cols, dtype=np.int64),
            np.array(starts, dtype=np.int64),
            np.array(where, dtype=np.int64),
            np.array(item_side, dtype=np.float32),
        )

    def _to_many(self, users: list[int], relation: str, tails: Any) -> Any:
        """``score(u, relation, t)`` for every user of ``users`` and every tail node."""
        q = self.ent[users] + self.rel[relation]
        tail = self.ent[tails]
        d2 = (q**2).sum(axis=1)[:, None] + (tail**2).sum(axis=1)[None, :] - 2.0 * q @ tail.T
        return self.bias[tails][None, :] - (d2.clip(min=0.0) ** 0.5)

    def item_scores(self, users: list[int]) -> np.ndarray:
        """Scores of every item (columns: ``self.items`` order) for node indexes ``users``:
        translation plus the path term (see the module docstring)."""
        import numpy as np

        q = self.ent[users] + self.rel["rated"]
        d2 = (q**2).sum(axis=1)[:, None] + self._item_sq[None, :] - 2.0 * q @ self.ent[self.items].T
        scores = self.bias[self.items][None, :] - (d2.clip(min=0.0) ** 0.5)
        if self.alpha == 0.0 and self.beta == 0.0:
            return scores
        cols, starts, where, item_side = self._pairs
        scores += self.beta
        if len(cols):
            held = self._to_many(users, "holds", self.intents)
            best = np.maximum.reduceat(held[:, where] + item_side[None, :], starts, axis=1)
            scores[:, cols] += self.alpha * best - self.beta
        return scores

    def score(self, h: int, r: str, t: Any) -> Any:
        """``score(h, r, t)`` for one head and one or several tails (node indexes)."""
        import numpy as np

        diff = self.ent[h] + self.rel[r] - self.ent[t]
        return self.bias[t] - np.linalg.norm(diff, axis=-1)

    def paths(self, user: int, item: int, top: int = 1) -> list[dict[str, Any]]:
        """The best user -> intent -> item paths: intent label, its path score, its share of
        the item's score (``contribution``: alpha x path score for the best path of an item
        that serves intents, the one the score's max took; 0 for the others), whether the graph
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
                "contribution": round(self.alpha * float(s[j]), 4)
                if source == "graph" and rank == 0
                else 0.0,
                "item_serves": source == "graph",
                "user_holds": round(float(held.get(int(pool[j]), 0.0)), 4),
            }
            for rank, j in enumerate(order)
        ]
