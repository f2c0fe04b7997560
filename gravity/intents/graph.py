"""The intent graph: nodes (users, items, intents) and weighted, typed edges, on disk as
``nodes.parquet``, ``edges.parquet``, ``scorer.npz`` and ``manifest.json`` (counts, config,
fingerprints), written into a temp folder and swapped into place.

Edges (``src -> dst``, relation, weight):
- ``rated`` user -> item: every personal event; weight from the rating mapped onto [0.2, 1]
  (an event without a rating: ``implicit_weight``); repeated events keep the highest weight.
- ``follows`` user -> user: relational events (weight: number of them, capped at 5, / 5).
- ``serves`` item -> intent: the item's extracted phrases, by canonical intent.
- ``holds`` user -> intent: aggregated over the user's items, weighted by the rating edge,
  normalised so a user's strongest intent has weight 1; the ``user_intents`` strongest kept.
- ``shares_intent`` item -> item (densification): items linked by the intents they share
  (shared weight over the union), the ``densify_k`` strongest per item.
Node ids carry their kind (``u:``, ``i:``, ``c:``) so a user and an item with one id never meet.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gravity.errors import GravityError, first_problem
from gravity.intents.config import BuildConfig
from gravity.io import read_parquet

NODES, EDGES, SCORER, MANIFEST = "nodes.parquet", "edges.parquet", "scorer.npz", "manifest.json"
RELATIONS = ("rated", "follows", "serves", "holds", "shares_intent")
KINDS = ("user", "item", "intent")
NODE_SCHEMA = pa.schema(
    [("id", pa.string()), ("kind", pa.string()), ("key", pa.string()), ("label", pa.string())]
)
EDGE_SCHEMA = pa.schema(
    [
        ("src", pa.string()),
        ("dst", pa.string()),
        ("relation", pa.string()),
        ("weight", pa.float32()),
    ]
)


@dataclass
class Graph:
    """A built graph in memory: node and edge tables, the manifest, the trained scorer."""

    nodes: pa.Table
    edges: pa.Table
    manifest: dict[str, Any]
    scorer: dict[str, Any]

    def ids(self, kind: str) -> list[str]:
        """Node ids of one kind, in table order."""
        return [
            n
            for n, k in zip(self.nodes["id"].to_pylist(), self.nodes["kind"].to_pylist())
            if k == kind
        ]

    def labels(self) -> dict[str, str]:
        """Node id -> label."""
        return dict(zip(self.nodes["id"].to_pylist(), self.nodes["label"].to_pylist()))

    def edges_of(self, relation: str) -> list[tuple[str, str, float]]:
        """(src, dst, weight) of one relation, in table order."""
        t = self.edges.filter(pc.equal(self.edges["relation"], relation))
        return list(zip(t["src"].to_pylist(), t["dst"].to_pylist(), t["weight"].to_pylist()))


def rating_weight(value: float | None, low: float, high: float, implicit: float) -> float:
    """An event's edge weight: a rating mapped linearly onto [0.2, 1]; no rating: ``implicit``."""
    if value is None:
        return implicit
    if high <= low:
        return 1.0
    share = min(max((value - low) / (high - low), 0.0), 1.0)
    return 0.2 + 0.8 * share


def fingerprint(obj: Any) -> str:
    """sha256 of canonical JSON (first 16 hex digits)."""
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes (first 16 hex digits)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def assemble(
    ratings: dict[tuple[str, str], float],
    follows: Counter[tuple[str, str]],
    item_intents: dict[str, list[int]],
    intent_labels: list[str],
    node_labels: dict[str, str],
    cfg: BuildConfig,
    users: list[str] | None = None,
    items: list[str] | None = None,
) -> tuple[pa.Table, pa.Table, dict[str, int]]:
    """Node and edge tables from the training interactions and the items' canonical intents.

    ``ratings`` maps (user, item) to an edge weight; ``item_intents`` item -> intent indexes.
    The nodes are the users and items of ``ratings``, and also ``users`` and ``items`` when
    given (an item nobody rated is a node with its intents only: item cold start).
    """
    users = sorted({u for u, _ in ratings} | set(users or ()))
    items = sorted({i for _, i in ratings} | set(items or ()))
    nodes = (
        [(f"u:{u}", "user", u, u) for u in users]
        + [(f"i:{i}", "item", i, node_labels.get(i, i)) for i in items]
        + [(f"c:{k}", "intent", str(k), lab) for k, lab in enumerate(intent_labels)]
    )
    edges: list[tuple[str, str, str, float]] = [
        (f"u:{u}", f"i:{i}", "rated", w) for (u, i), w in sorted(ratings.items())
    ]
    known = set(users)
    edges += [
        (f"u:{a}", f"u:{b}", "follows", min(n, 5) / 5)
        for (a, b), n in sorted(follows.items())
        if a in known and b in known
    ]
    item_set = set(items)
    present = {i: ks for i, ks in item_intents.items() if i in item_set}
    edges += [(f"i:{i}", f"c:{k}", "serves", 1.0) for i in sorted(present) for k in present[i]]
    edges += _holds_edges(ratings, present, cfg.user_intents)
    if cfg.densify_k:
        edges += _shares_intent_edges(present, cfg.densify_k)
    node_table = pa.Table.from_pylist(
        [dict(zip(NODE_SCHEMA.names, n)) for n in nodes], schema=NODE_SCHEMA
    )
    edge_table = pa.Table.from_pylist(
        [dict(zip(EDGE_SCHEMA.names, e)) for e in edges], schema=EDGE_SCHEMA
    )
    counts = {f"nodes_{k}": sum(n[1] == k for n in nodes) for k in KINDS}
    counts |= {f"edges_{r}": sum(e[2] == r for e in edges) for r in RELATIONS}
    return node_table, edge_table, counts


def _holds_edges(
    ratings: dict[tuple[str, str], float], present: dict[str, list[int]], n: int
) -> list[tuple[str, str, str, float]]:
    """user -> intent: the ``n`` intents a user's rated items serve most, weight relative to
    the user's top intent (ties to the lower intent index)."""
    held: dict[str, Counter[int]] = defaultdict(Counter)
    for (u, i), w in ratings.items():
        for k in present.get(i, ()):
            held[u][k] += w
    edges = []
    for u in sorted(held):
        top = max(held[u].values())
        best = sorted(held[u].items(), key=lambda x: (-x[1], x[0]))[:n]
        edges += [(f"u:{u}", f"c:{k}", "holds", round(w / top, 6)) for k, w in best]
    return edges


def _shares_intent_edges(
    present: dict[str, list[int]], k: int
) -> list[tuple[str, str, str, float]]:
    """item -> item: each item's ``k`` items with the highest Jaccard overlap of intents."""
    by_intent: dict[int, list[str]] = defaultdict(list)
    for i in sorted(present):
        for c in present[i]:
            by_intent[c].append(i)
    edges = []
    for i in sorted(present):
        shared: Counter[str] = Counter()
        for c in present[i]:
            for j in by_intent[c]:
                if j != i:
                    shared[j] += 1
        scored = [(j, n / len(set(present[i]) | set(present[j]))) for j, n in shared.items()]
        scored.sort(key=lambda x: (-x[1], x[0]))
        edges += [(f"i:{i}", f"i:{j}", "shares_intent", w) for j, w in scored[:k]]
    return edges


def write_graph(graph: Graph, out: Path) -> None:
    """Write ``graph`` to folder ``out``, swapped in atomically (never half-written)."""
    import numpy as np

    from gravity.io import remove_dead_dirs, swap_dir_into_place, temp_dir

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise GravityError(f"{out}: exists and is not a folder")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        remove_dead_dirs(out)  # what a killed write of ``out`` left
        tmp = temp_dir(out.parent, f".{out.name}.tmp-")
    except OSError as exc:
        raise GravityError(f"{out}: cannot write: {exc.strerror or exc}") from None
    try:
        pq.write_table(graph.nodes, tmp / NODES)
        pq.write_table(graph.edges, tmp / EDGES)
        np.savez(tmp / SCORER, **graph.scorer)
        manifest = dict(graph.manifest)
        manifest["files"] = {n: file_digest(tmp / n) for n in (NODES, EDGES, SCORER)}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
        swap_dir_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    graph.manifest = manifest


def read_graph(path: str | Path) -> Graph:
    """Load a graph folder written by ``gravity intents build``; every error names the file."""
    import numpy as np

    path = Path(path)
    if not path.is_dir():
        raise GravityError(f"{path}: not a graph folder (run `gravity intents build` first)")
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except OSError as exc:
        raise GravityError(f"{path / MANIFEST}: cannot read: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GravityError(f"{path / MANIFEST}: not JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise GravityError(f"{path / MANIFEST}: not a JSON object")
    try:
        Manifest.model_validate(manifest)
    except ValidationError as exc:
        raise GravityError(f"{path / MANIFEST}: {first_problem(exc, Manifest, '<root>')}") from None
    if set(manifest["files"]) != {NODES, EDGES, SCORER}:
        raise GravityError(f"{path / MANIFEST}: files: must list {NODES}, {EDGES}, {SCORER}")
    for name, digest in manifest["files"].items():
        if not (path / name).is_file():
            raise GravityError(f"{path / name}: missing")
        if file_digest(path / name) != digest:
            raise GravityError(f"{path / name}: does not match manifest.json (files.{name})")
    tables = {}
    for name, schema in ((NODES, NODE_SCHEMA), (EDGES, EDGE_SCHEMA)):
        table = read_parquet(path / name, schema.names)
        try:
            tables[name] = table.cast(schema)
        except (pa.ArrowException, ValueError) as exc:
            raise GravityError(f"{path / name}: wrong column types: {exc}") from None
    nodes, edges = tables[NODES], tables[EDGES]
    _check_tables(path, nodes, edges)
    try:
        with np.load(path / SCORER, allow_pickle=False) as z:
            scorer = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise GravityError(f"{path / SCORER}: cannot read: {exc}") from None
    from gravity.intents.scorer import check_scorer

    check_scorer(scorer, nodes.num_rows, path / SCORER)
    return Graph(nodes, edges, manifest, scorer)


class SplitRef(BaseModel):
    """The split a graph was built without: its file and that file's digest."""

    model_config = ConfigDict(extra="allow")

    path: str
    digest: str
    pairs: int = Field(ge=0)


class Manifest(BaseModel):
    """What ``manifest.json`` must hold (other keys are informative)."""

    model_config = ConfigDict(extra="allow")

    version: int = Field(ge=1, le=1)
    counts: dict[str, int]
    config: dict[str, Any]
    files: dict[str, str]
    events: dict[str, Any]
    split: SplitRef | None = None


def _check_tables(path: Path, nodes: pa.Table, edges: pa.Table) -> None:
    ids = nodes["id"].to_pylist()
    kinds = nodes["kind"].to_pylist()
    if any(i is None for i in ids) or len(set(ids)) != len(ids):
        raise GravityError(f"{path / NODES}: id: null or duplicate node ids")
    bad = next((k for k in kinds if k not in KINDS), None)
    if bad is not None or None in kinds:
        raise GravityError(f"{path / NODES}: kind: unknown node kind {bad!r}")
    known = set(ids)
    for col in ("src", "dst"):
        missing = next((v for v in edges[col].to_pylist() if v not in known), "")
        if missing != "":
            raise GravityError(f"{path / EDGES}: {col}: unknown node {missing!r}")
    rel = next((r for r in edges["relation"].to_pylist() if r not in RELATIONS), "")
    if rel != "":
        raise GravityError(f"{path / EDGES}: relation: unknown relation {rel!r}")
    weights = edges["weight"].to_numpy(zero_copy_only=False)
    import numpy as np

    if len(weights) and not np.all(np.isfinite(weights) & (weights >= 0)):
        raise GravityError(f"{path / EDGES}: weight: not a finite non-negative number")
