"""LightGCN (He et al., 2020), the graph-convolution baseline of ``evaluate``: PyTorch
Geometric's ``torch_geometric.nn.models.LightGCN`` (optional extra ``graph``) on the user-item
graph of the training interactions, trained here with its BPR loss.

- The graph: one node per user and per item, an undirected edge per training interaction. The
  interaction weights are not used (LightGCN propagates over a binary graph, as ``implicit``'s
  BPR treats every interaction as a positive); each layer multiplies by the symmetric-normalised
  adjacency ``D^-1/2 A D^-1/2`` (no self-loops), computed once here as a CSR matrix (in PyG's
  ``gcn_norm``), not per layer and step: sparse products are about twice as fast on CPU as
  PyG's gather-scatter over an edge list, with the same result.
- The embedding: the mean of the layer-0 embedding and the ``layers`` propagated ones.
- Training: ``epochs`` passes over the interactions in shuffled batches of ``batch_size``, one
  negative item per positive, drawn uniformly among the items with an interaction and redrawn
  where it is one of the user's (a few rounds); BPR loss with ``l2`` on the batch's layer-0
  embeddings (PyG's ``recommendation_loss``), Adam at ``lr``. Each step propagates over the
  whole graph, which is what LightGCN's loss asks for and what makes it the slowest baseline.
- Seeded: the initialisation (under a forked torch RNG, the global one left as it was), the
  batch order and the negatives all come from ``seed``; no set or hash order enters.

An item with no interaction has no edge: LightGCN cannot score it (``can_score_cold``).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from gravity.errors import MissingDependencyError

EXTRA = "graph"
PACKAGE = "torch_geometric"


def missing() -> str | None:
    """Why the ``lightgcn`` system cannot run here (None: it can)."""
    try:
        import torch_geometric  # noqa: F401  (the package itself, not a cached submodule)
        from torch_geometric.nn.models import LightGCN  # noqa: F401
    except ImportError:
        return str(MissingDependencyError("the lightgcn baseline", EXTRA, PACKAGE))
    return None


def fit_lightgcn(train: Any, point: dict[str, Any], threads: int, seed: int) -> Any:
    """LightGCN fitted on ``train`` (users x items CSR; its non-zeros are the interactions)
    with grid ``point`` (fields of ``LightGCNConfig``); returns users -> their item scores."""
    import torch

    from gravity.intents.config import LightGCNConfig

    if missing():
        raise MissingDependencyError("the lightgcn baseline", EXTRA, PACKAGE)
    cfg = LightGCNConfig.model_validate(point)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        emb = _train(train.tocsr(), cfg, seed)
    finally:
        torch.set_num_threads(before)
    n_users = train.shape[0]
    user_f, item_f = emb[:n_users], emb[n_users:]
    return lambda users: user_f[users] @ item_f.T


def _adjacency(train: Any) -> Any:
    """The symmetric-normalised user-item adjacency over users then items, as torch CSR."""
    import torch
    from torch_geometric.nn.conv.gcn_conv import gcn_norm
    from torch_geometric.utils import to_torch_csr_tensor

    n_users, n_items = train.shape
    coo = train.tocoo()
    users = torch.as_tensor(coo.row, dtype=torch.long)
    items = torch.as_tensor(coo.col, dtype=torch.long) + n_users
    edges = torch.stack([torch.cat([users, items]), torch.cat([items, users])])
    n = n_users + n_items
    edges, weight = gcn_norm(edges, None, n, add_self_loops=False)
    with warnings.catch_warnings():  # torch: "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        return to_torch_csr_tensor(edges, weight, size=(n, n))


def _negatives(rng: np.random.Generator, users: Any, train: Any, pool: Any) -> Any:
    """One item per user drawn uniformly from ``pool``; draws that hit one of the user's
    interactions are redrawn (up to five rounds; what is left is kept: rare on sparse data)."""
    items = pool[rng.integers(len(pool), size=len(users))]
    for _ in range(5):
        hit = np.asarray(train[users, items]).ravel() != 0
        if not hit.any():
            break
        items[hit] = pool[rng.integers(len(pool), size=int(hit.sum()))]
    return items


def _train(train: Any, cfg: Any, seed: int) -> Any:
    """Trained layer-mean embeddings of users then items (a float32 array)."""
    import torch
    from torch_geometric.nn.models import LightGCN

    n_users, n_items = train.shape
    adj = _adjacency(train)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LightGCN(n_users + n_items, cfg.dim, cfg.layers, normalize=False)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    rng = np.random.default_rng(seed)
    coo = train.tocoo()
    pos_u, pos_i = coo.row.astype(np.int64), coo.col.astype(np.int64)
    pool = np.flatnonzero(train.getnnz(axis=0)).astype(np.int64)
    binary = (train != 0).astype(np.int8).tocsr()
    for _ in range(cfg.epochs):
        order = rng.permutation(len(pos_u))
        for start in range(0, len(order), cfg.batch_size):
            batch = order[start : start + cfg.batch_size]
            u, i = pos_u[batch], pos_i[batch]
            j = _negatives(rng, u, binary, pool)
            emb = model.get_embedding(adj)
            ut, it, jt = (torch.as_tensor(x) for x in (u, i + n_users, j + n_users))
            pos = (emb[ut] * emb[it]).sum(-1)
            neg = (emb[ut] * emb[jt]).sum(-1)
            nodes = torch.cat([ut, it, jt]).unique()
            loss = model.recommendation_loss(pos, neg, node_id=nodes, lambda_reg=cfg.l2)
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        return model.get_embedding(adj).numpy().astype(np.float32)
