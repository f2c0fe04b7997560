"""Evaluation of the intent graph's recommendations against tuned baselines.

- The test split (``make_split``): per user with at least two explicitly rated items, a share of
  those items (at least one) is held out: the latest ones where every one of them has a
  timestamp (temporal), else a seeded choice that depends only on (seed, user, item), through
  sha256. Written as a parquet file (``user_id``, ``item_id``, ``value``; how it was made in the
  file's metadata) so anyone can rebuild the graph without those pairs and rerun.
- Validation: the same rule applied to each user's training ratings (``val_share``). Every
  system is tuned over the same number of grid points (``TuningGrid``), fitted on training minus
  validation and chosen by NDCG@k on validation only; the chosen point is refitted on all of
  training and the test split is ranked once.
- Relevance: a held-out rating is relevant from ``relevant_min`` up (default: 8 on a scale
  above 5, else 4); a held-out pair with no rating is relevant.
- Full ranking: every system ranks every item with a training interaction for each evaluated
  user, the user's training items excluded; Recall@k, NDCG@k, HR@k (``metrics``) overall, on
  cold-start users (at most ``cold_max`` training interactions) and on long-tail items (held-out
  items outside the head: the most-interacted items, cut at ``head_share`` of the items with the
  items tied at the cut kept in the head). Each mean comes with a bootstrap CI over users, and
  the intent scorer's per-user differences against each other system with theirs (``stats``).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gravity.errors import GravityError
from gravity.intents.config import SCORER_NAMES, EvalConfig
from gravity.intents.metrics import hit_at_k, ndcg_at_k, recall_at_k

if TYPE_CHECKING:
    from gravity.events.store import EventsData
    from gravity.intents.graph import Graph
    from gravity.intents.systems import Parts

SPLIT_COLUMNS = ("user_id", "item_id", "value")
METRICS = (("recall", recall_at_k), ("ndcg", ndcg_at_k), ("hr", hit_at_k))


def _rank_key(seed: int, user: str, item: str) -> bytes:
    return hashlib.sha256(f"gravity-intents-split:{seed}:{user}:{item}".encode()).digest()


def holdout(user: str, items: Mapping[str, Any], seed: int, share: float) -> tuple[list[str], bool]:
    """The items of ``items`` (item -> timestamp or None) held out of one user's: the latest
    ``share`` (at least one, never all) when every item has a timestamp, else a seeded choice;
    and whether the choice was temporal. Fewer than two items: none."""
    if len(items) < 2:
        return [], False
    n = min(len(items) - 1, max(1, round(share * len(items))))
    if all(t is not None for t in items.values()):
        ordered = sorted(items, key=lambda i: (items[i], _rank_key(seed, user, i)))
        return ordered[-n:], True
    return sorted(items, key=lambda i: _rank_key(seed, user, i))[:n], False


def _explicit_ratings(
    data: EventsData, users: set[str] | None
) -> dict[str, dict[str, tuple[float, Any]]]:
    """user -> item -> (highest rating, latest timestamp of a rating event or None)."""
    rated: dict[str, dict[str, tuple[float, Any]]] = defaultdict(dict)
    ev = data.events
    cols = ("user_id", "kind", "item_id", "value", "timestamp")
    for user, kind, item, value, ts in zip(*(ev[c].to_pylist() for c in cols)):
        if kind != "personal" or value is None or (users is not None and user not in users):
            continue
        old = rated[user].get(item)
        if old is None:
            rated[user][item] = (value, ts)
        else:
            latest = None if ts is None or old[1] is None else max(ts, old[1])
            rated[user][item] = (max(value, old[0]), latest)
    return rated


def pick_cold_items(
    data: EventsData, rated: Mapping[str, Mapping[str, Any]], n: int, seed: int
) -> list[str]:
    """The items held out whole (item cold start): ``n`` works, a seeded choice among the
    titled works rated by at least two of the users (so that the slice has users to rank them
    for), each with every edition of it that has an event. Editions are merged by
    ``work_key`` as the rest of the pipeline merges them: an edition left in training would
    give the held-out book ratings under another id."""
    from gravity.events.books import work_key

    if n <= 0:
        return []
    rows = data.items.select(["id", "title", "author"]).to_pylist()
    work = {r["id"]: work_key(r["title"], r["author"]) for r in rows if r["title"]}
    raters: dict[tuple[str, str], set[str]] = defaultdict(set)
    named: dict[tuple[str, str], str] = {}  # a work's seeded rank goes by its smallest rated id
    for user, items in rated.items():
        for i in items:
            if i in work:
                raters[work[i]].add(user)
                named[work[i]] = min(named.get(work[i], i), i)
    pool = [w for w, users in raters.items() if len(users) >= 2]
    chosen = set(sorted(pool, key=lambda w: _rank_key(seed, "cold-item", named[w]))[:n])
    with_events = set(data.events["item_id"].to_pylist())
    return sorted(i for i, w in work.items() if w in chosen and i in with_events)


def make_split(
    data: EventsData,
    users: set[str] | None,
    seed: int = 0,
    share: float = 0.2,
    cold_items: int = 0,
) -> Any:
    """The held-out pairs (a pyarrow table) of the users in ``users`` (None: all): per user,
    ``holdout`` of their ratings; with ``cold_items``, that many works held out whole, each
    edition of them (``pick_cold_items``: every rating of them, in the table; every event of
    them left out of the graph by ``build``)."""
    import pyarrow as pa

    if not 0 < share < 1:
        raise GravityError(f"--share: {share} is not between 0 and 1")
    rated = _explicit_ratings(data, users)
    cold = pick_cold_items(data, rated, cold_items, seed)
    cold_set = set(cold)
    rows, temporal = [], 0
    for user in sorted(rated):
        items = {i: v for i, v in rated[user].items() if i not in cold_set}
        held, by_time = holdout(user, {i: v[1] for i, v in items.items()}, seed, share)
        temporal += by_time
        held += [i for i in rated[user] if i in cold_set]
        rows += [{"user_id": user, "item_id": i, "value": rated[user][i][0]} for i in sorted(held)]
    schema = pa.schema(
        [("user_id", pa.string()), ("item_id", pa.string()), ("value", pa.float32())]
    )
    params = {"seed": seed, "share": share, "temporal_users": temporal, "cold_items": cold}
    meta = {"gravity_split": json.dumps(params)}
    return pa.Table.from_pylist(rows, schema=schema.with_metadata(meta))


def write_split(table: Any, path: Path) -> None:
    """Write the split atomically."""
    import io

    import pyarrow.parquet as pq

    from gravity.io import atomic_write_bytes

    buf = io.BytesIO()
    pq.write_table(table, buf)
    atomic_write_bytes(Path(path), buf.getvalue())


def read_heldout(path: Path) -> tuple[dict[tuple[str, str], float | None], dict[str, Any]]:
    """Held-out (user, item) -> rating of a split file, and its description (path, digest,
    counts, how it was made)."""
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
    values = table["value"].to_pylist() if "value" in table.column_names else [None] * len(users)
    meta = (table.schema.metadata or {}).get(b"gravity_split", b"{}").decode("utf-8", "replace")
    try:
        params = json.loads(meta)
    except json.JSONDecodeError:
        params = {}
    pairs = dict(zip(zip(users, items), values))
    desc = {"path": str(path.resolve()), "digest": file_digest(path), "pairs": len(pairs)}
    kept = ("seed", "share", "temporal_users", "cold_items")
    return pairs, desc | {k: v for k, v in params.items() if k in kept}


def read_split(path: Path) -> tuple[set[tuple[str, str]], dict[str, Any]]:
    """Held-out (user, item) pairs of a split file and its description (path, digest, counts)."""
    pairs, desc = read_heldout(path)
    return set(pairs), desc


def relevance_threshold(cfg: EvalConfig, data: EventsData | None) -> float | None:
    """The rating from which a held-out pair is relevant (None: every pair is)."""
    if cfg.relevant_min is not None:
        return cfg.relevant_min
    if data is None or data.meta.rating_max is None:
        return None
    return 8.0 if data.meta.rating_max > 5 else 4.0


@dataclass
class Context:
    """Everything the systems are fitted and measured on, in the evaluation's indexes."""

    parts: Parts
    train: Any  # users x items CSR of training interaction weights
    warm: Any  # boolean mask of items with a training interaction
    test: dict[int, set[int]]  # user -> relevant held-out warm items
    cold_test: dict[int, set[int]]  # user -> relevant held-out items without interactions
    val_ratings: dict[tuple[str, str], float]  # training minus validation
    val_train: Any
    val: dict[int, set[int]]  # user -> relevant validation items
    head: set[int]
    counts: dict[str, int] = field(default_factory=dict)


def _matrix(ratings: Mapping[tuple[str, str], float], users: list[str], items: list[str]) -> Any:
    import numpy as np
    import scipy.sparse as sp

    u_index = {u: k for k, u in enumerate(users)}
    i_index = {i: k for k, i in enumerate(items)}
    pairs = sorted(ratings)
    rows = [u_index[u] for u, _ in pairs]
    cols = [i_index[i] for _, i in pairs]
    vals = np.array([ratings[p] for p in pairs], dtype=np.float32)
    return sp.csr_matrix((vals, (rows, cols)), shape=(len(users), len(items)))


def head_items(counts: Any, share: float) -> set[int]:
    """The head: items by descending interaction count, cut after ``ceil(share x items)``,
    every item tied with the last one kept in (the cut never splits a tie)."""
    import math

    import numpy as np

    counts = np.asarray(counts)
    if not len(counts):
        return set()
    n = math.ceil(share * len(counts))
    cut = np.sort(counts)[::-1][n - 1]
    return {int(i) for i in np.flatnonzero(counts >= cut)}


def _relevant(
    heldout: Mapping[tuple[str, str], float | None],
    parts: Parts,
    train: Any,
    threshold: float | None,
) -> tuple[dict[int, set[int]], dict[str, int]]:
    """(user index -> relevant held-out item indices, counts of the pairs set aside by reason).

    A held-out pair that is a training edge is a leak: refused."""
    u_index = {u: k for k, u in enumerate(parts.users)}
    i_index = {i: k for k, i in enumerate(parts.items)}
    counts = dict.fromkeys(
        ("heldout_pairs", "heldout_unknown_user", "heldout_unknown_item", "heldout_in_training"),
        0,
    ) | {"heldout_below_threshold": 0, "heldout_pairs": len(heldout)}
    relevant: dict[int, set[int]] = defaultdict(set)
    for (user, item), value in sorted(heldout.items()):
        if user not in u_index:
            counts["heldout_unknown_user"] += 1
        elif item not in i_index:
            counts["heldout_unknown_item"] += 1
        elif train[u_index[user], i_index[item]]:
            counts["heldout_in_training"] += 1
        elif threshold is not None and value is not None and value < threshold:
            counts["heldout_below_threshold"] += 1
        else:
            relevant[u_index[user]].add(i_index[item])
    if counts["heldout_in_training"]:
        raise GravityError(
            f"{counts['heldout_in_training']} held-out pairs are training edges of the graph: "
            "build it with --split pointing at this split file"
        )
    return dict(relevant), counts


def _validation(
    parts: Parts, data: EventsData | None, cfg: EvalConfig
) -> dict[tuple[str, str], float | None]:
    """Validation pairs -> rating: ``holdout`` over each user's training ratings (explicit
    ones where the events have ratings, else all their training interactions)."""
    rated = _explicit_ratings(data, set(parts.users)) if data is not None else {}
    by_user: dict[str, dict[str, Any]] = defaultdict(dict)
    value: dict[tuple[str, str], float | None] = {}
    for user, item in parts.ratings:
        known = rated.get(user, {}).get(item)
        if rated and known is None:
            continue  # an implicit interaction: never a validation target where ratings exist
        by_user[user][item] = known[1] if known else None
        value[(user, item)] = known[0] if known else None
    out: dict[tuple[str, str], float | None] = {}
    for user in sorted(by_user):
        held, _ = holdout(user, by_user[user], cfg.seed + 1, cfg.val_share)
        out |= {(user, i): value[(user, i)] for i in held}
    return out


def build_context(
    graph: Graph,
    heldout: Mapping[tuple[str, str], float | None],
    cfg: EvalConfig,
    data: EventsData | None = None,
) -> Context:
    """The training matrix, the relevant test and validation items, the head."""
    import numpy as np

    from gravity.intents.systems import graph_parts

    parts = graph_parts(graph)
    train = _matrix(parts.ratings, parts.users, parts.items)
    pop = np.asarray(train.getnnz(axis=0))
    warm = pop > 0
    threshold = relevance_threshold(cfg, data)
    relevant, counts = _relevant(heldout, parts, train, threshold)
    test = {u: {i for i in rel if warm[i]} for u, rel in relevant.items()}
    cold = {u: {i for i in rel if not warm[i]} for u, rel in relevant.items()}
    val_pairs = _validation(parts, data, cfg)
    val_ratings = {p: w for p, w in parts.ratings.items() if p not in val_pairs}
    val_train = _matrix(val_ratings, parts.users, parts.items)
    val, _ = _relevant(val_pairs, parts, val_train, threshold)
    warm_cols = np.flatnonzero(warm)
    head = {int(warm_cols[j]) for j in head_items(pop[warm_cols], cfg.head_share)}
    counts |= {
        "relevance_min_rating": threshold,
        "validation_pairs": len(val_pairs),
        "items": len(parts.items),
        "items_without_interactions": int((~warm).sum()),
        "head_items": len(head),
        "training_interactions": int(train.nnz),
    }
    return Context(
        parts,
        train,
        warm,
        {u: r for u, r in test.items() if r},
        {u: r for u, r in cold.items() if r},
        val_ratings,
        val_train,
        val,
        head,
        counts,
    )


def _sample(users: list[int], n: int | None, seed: int) -> list[int]:
    import numpy as np

    if n is None or len(users) <= n:
        return users
    return sorted(int(u) for u in np.random.default_rng(seed).choice(users, n, replace=False))


def tune(name: str, ctx: Context, cfg: EvalConfig) -> dict[str, Any]:
    """Grid point of system ``name`` with the best mean NDCG@k on validation (ties: the first
    point), each point fitted on training minus validation."""
    from gravity.intents.metrics import mean_of
    from gravity.intents.systems import fit_system, rank

    users = _sample(sorted(ctx.val), cfg.val_users, cfg.seed)
    points = cfg.grid.points(name)
    scores: list[float | None] = []
    for point in points:
        if len(points) == 1:
            scores.append(None)  # nothing to choose: no fit spent on validation
            continue
        fn = fit_system(name, ctx.parts, ctx.val_train, ctx.val_ratings, point, cfg)
        recs = rank(fn, users, ctx.val_train, cfg.k, ctx.warm)
        mean, _, _ = mean_of([ndcg_at_k(r, ctx.val[u], cfg.k) for r, u in zip(recs, users)])
        scores.append(None if mean is None else round(mean, 6))
    best = max(range(len(points)), key=lambda j: (scores[j] or 0.0, -j))
    return {
        "points": points,
        "validation_ndcg": scores,
        "chosen": points[best],
        "users": len(users),
    }


def _slices(ctx: Context, cfg: EvalConfig) -> dict[str, tuple[list[int], dict[int, set[int]]]]:
    """Slice -> (its users, their relevant items), the same for every system."""
    import numpy as np

    users = _sample(sorted(ctx.test), cfg.max_users, cfg.seed)
    n_train = np.asarray(ctx.train.getnnz(axis=1))
    tail = {u: ctx.test[u] - ctx.head for u in users}
    out = {
        "overall": (users, ctx.test),
        "cold_start": ([u for u in users if n_train[u] <= cfg.cold_max], ctx.test),
        "long_tail": ([u for u in users if tail[u]], tail),
    }
    if ctx.cold_test:
        out["cold_items"] = (_sample(sorted(ctx.cold_test), cfg.max_users, cfg.seed), ctx.cold_test)
    return out


def measure(
    name: str, point: dict[str, Any], ctx: Context, cfg: EvalConfig, slices: dict
) -> dict[str, dict[str, list[float]]]:
    """Per-user metrics of system ``name`` (fitted on all of training with ``point``) on each
    slice it can score: the test split, touched once."""
    from gravity.intents.systems import can_score_cold, fit_system, rank

    fn = fit_system(name, ctx.parts, ctx.train, ctx.parts.ratings, point, cfg)
    warm_users = sorted({u for s, (us, _) in slices.items() if s != "cold_items" for u in us})
    by_user = dict(zip(warm_users, rank(fn, warm_users, ctx.train, cfg.k, ctx.warm)))
    out: dict[str, dict[str, list[float]]] = {}
    for slice_name, (users, rel) in slices.items():
        if slice_name == "cold_items":
            if not can_score_cold(name):
                continue
            recs = dict(zip(users, rank(fn, users, ctx.train, cfg.k, ~ctx.warm)))
        else:
            recs = by_user
        out[slice_name] = {m: [fn_(recs[u], rel[u], cfg.k) for u in users] for m, fn_ in METRICS}
        if slice_name == "cold_items":  # per item too: its interval resamples items as well
            out[slice_name] |= _item_shares([recs[u] for u in users], [rel[u] for u in users], cfg)
    return out


def _item_shares(
    recs: list[list[int]], rel: list[set[int]], cfg: EvalConfig
) -> dict[str, list[dict[int, float]]]:
    """Per user, each relevant item's share of Recall@k and NDCG@k (``recall_items``,
    ``ndcg_items``): the user's value is the mean of their items' shares."""
    import math

    ideal = [sum(1 / math.log2(r + 2) for r in range(min(cfg.k, len(items)))) for items in rel]
    out: dict[str, list[dict[int, float]]] = {"recall_items": [], "ndcg_items": []}
    for ranked, items, best in zip(recs, rel, ideal):
        pos = {x: r for r, x in enumerate(ranked[: cfg.k])}
        out["recall_items"].append({i: float(i in pos) for i in items})
        out["ndcg_items"].append(
            {i: len(items) / (math.log2(pos[i] + 2) * best) if i in pos else 0.0 for i in items}
        )
    return out


def _summary(per_user: dict[str, list[Any]], cfg: EvalConfig) -> dict[str, Any]:
    from gravity.intents.stats import bootstrap_ci, crossed_bootstrap_ci

    row: dict[str, Any] = {"users": len(per_user["recall"])}
    exact = False
    for metric, _ in METRICS:
        if f"{metric}_items" in per_user:  # cold items: items resampled, then users
            est = crossed_bootstrap_ci(
                per_user[f"{metric}_items"], cfg.bootstrap, cfg.level, cfg.seed, unit=True
            )
            row["ci_resamples"] = "items, users"
        else:
            est = bootstrap_ci(per_user[metric], cfg.bootstrap, cfg.level, cfg.seed, unit=True)
        row[metric] = None if est["value"] is None else round(est["value"], 4)
        row[f"{metric}_ci"] = est["ci"] and [round(c, 4) for c in est["ci"]]
        if metric == "hr":
            exact = bool(est.get("exact")) and est["value"] == 0
    # No user had a hit (the unrounded HR: one hit among 20,000 users rounds to 0): the
    # intervals are exact binomial bounds, not [0, 0].
    row["no_hits"] = bool(row["users"]) and exact
    return row


def _paired(
    focus: str, measured: dict[str, dict[str, dict[str, list[float]]]], cfg: EvalConfig
) -> dict[str, dict[str, Any]]:
    """slice -> other system -> metric -> the focus system's mean difference with its CI, its
    raw p-value and its Holm-adjusted one (``p_holm``; a family: one slice and metric, every
    other system) with ``holm_significant`` (adjusted p below 1 - level)."""
    from gravity.intents.stats import holm

    out: dict[str, dict[str, Any]] = {}
    for slice_name, mine in measured[focus].items():
        for other, slices in measured.items():
            if other == focus or slice_name not in slices:
                continue
            out.setdefault(slice_name, {})[other] = {
                m: _rounded(_difference(mine, slices[slice_name], m, cfg))
                for m in ("recall", "ndcg")
            }
    # One family per slice and metric: the focus system against every other system. (One
    # family over slices and metrics as well would ask for raw p-values under 0.05 / 64 with
    # nine systems, finer than a bootstrap of 1000 resamples can give: its floor is 1/1000.)
    for others in out.values():
        for metric in ("recall", "ndcg"):
            family = [m[metric] for m in others.values()]
            tested = [est for est in family if est["p"] is not None]
            adjusted, reject = holm([est["p"] for est in tested], 1 - cfg.level)
            for est in family:
                est |= {"p_holm": None, "holm_significant": None}
            for est, p, r in zip(tested, adjusted, reject):
                est |= {"p_holm": round(p, 4), "holm_significant": r}
    return out


def _difference(mine: dict, other: dict, metric: str, cfg: EvalConfig) -> dict[str, Any]:
    """The paired difference of two systems' per-user ``metric`` (per user and item, crossed,
    where both have per-item shares: the cold items)."""
    import numpy as np

    from gravity.intents.stats import crossed_bootstrap_ci, paired_difference

    key = f"{metric}_items"
    constant = [
        not np.any(v) or np.all(np.asarray(v) == 1.0) for v in (mine[metric], other[metric])
    ]
    if key in mine and key in other and not all(constant):
        diffs = [{i: a[i] - b[i] for i in a} for a, b in zip(mine[key], other[key])]
        args = (cfg.bootstrap, cfg.level, cfg.seed)
        return crossed_bootstrap_ci(diffs, *args, unit=True, paired=True)
    return paired_difference(mine[metric], other[metric], cfg.bootstrap, cfg.level, cfg.seed, True)


def _rounded(est: dict[str, Any]) -> dict[str, Any]:
    return est | {
        "value": None if est["value"] is None else round(est["value"], 5),
        "ci": est["ci"] and [round(c, 5) for c in est["ci"]],
        "p": None if est.get("p") is None else round(est["p"], 4),
    }


def evaluate(
    graph: Graph,
    heldout: Mapping[tuple[str, str], float | None] | set[tuple[str, str]],
    cfg: EvalConfig,
    data: EventsData | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Tuned systems' metrics per slice with CIs, the tuning record and paired differences.

    ``heldout`` maps test pairs to their ratings (a set: every pair relevant); ``data``, the
    events the graph was built from, gives ratings and timestamps to the validation split. A
    system whose optional package is missing (``lightgcn``) is skipped: ``skipped`` names it
    with the reason and the install command."""
    from gravity.intents.systems import unavailable
    from gravity.progress import Progress

    if not isinstance(heldout, Mapping):
        heldout = dict.fromkeys(heldout)
    if any(s in cfg.systems for s in SCORER_NAMES):  # a focus: its paired differences are
        from gravity.intents.stats import holm  # Holm-corrected, after hours of training

        holm([0.5, 0.5])  # statsmodels missing: one line now, not at the end
    ctx = build_context(graph, heldout, cfg, data)
    slices = _slices(ctx, cfg)
    measured, tuning, timings, skipped = {}, {}, {}, {}
    with Progress(len(cfg.systems), "evaluate systems", enabled=progress, unit="systems") as bar:
        for name in cfg.systems:
            skipped[name] = unavailable(name)
            if skipped[name]:  # an optional package is missing: said in the report and table
                bar.advance()
                continue
            t0 = time.monotonic()
            tuning[name] = tune(name, ctx, cfg)
            measured[name] = measure(name, tuning[name]["chosen"], ctx, cfg, slices)
            timings[name] = round(time.monotonic() - t0, 2)
            bar.advance()
    focus = next((s for s in SCORER_NAMES if s in measured), None)
    return {
        "k": cfg.k,
        "counts": ctx.counts
        | {f"users_{s}": len(users) for s, (users, _) in slices.items()}
        | {"validation_users": len(ctx.val)},
        "metrics": {
            name: {s: _summary(v, cfg) for s, v in per_slice.items()}
            for name, per_slice in measured.items()
        },
        "focus": focus,
        "paired": _paired(focus, measured, cfg) if focus else {},
        "tuning": tuning,
        "timings_s": timings,
        "skipped": {name: why for name, why in skipped.items() if why},
        "config": cfg.model_dump(mode="json"),
    }


def _cell(value: Any, ci: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    text = f"{value:+.{digits}f}" if digits == 5 else f"{value:.{digits}f}"
    return text + (f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else "")


def table_lines(report: dict[str, Any]) -> list[str]:
    """The metrics (with CIs) and the focus system's paired differences as markdown tables."""
    k, ci = report["k"], f"{report['config']['level'] * 100:.10g}% CI"
    lines = [
        f"| system | slice | users | Recall@{k} [{ci}] | NDCG@{k} [{ci}] | HR@{k} |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for system, slices in report["metrics"].items():
        for name, row in slices.items():
            recall = _cell(row["recall"], row.get("recall_ci"))
            ndcg = _cell(row["ndcg"], row.get("ndcg_ci"))
            hr = _cell(row["hr"], row.get("hr_ci") if row.get("no_hits") else None)
            hr += " (no hits)" if row.get("no_hits") else ""
            lines.append(f"| {system} | {name} | {row['users']} | {recall} | {ndcg} | {hr} |")
    if report.get("paired"):
        focus = report["focus"]
        lines += [
            "",
            f"| slice | {focus} minus | dRecall@{k} [{ci}] | p | p Holm "
            f"| dNDCG@{k} [{ci}] | p | p Holm |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name, others in report["paired"].items():
            for other, est in others.items():
                r, n = est["recall"], est["ndcg"]
                if r["value"] is None:
                    continue
                lines.append(
                    f"| {name} | {other} | {_cell(r['value'], r['ci'], 5)} | {r['p']} "
                    f"| {_holm_cell(r)} | {_cell(n['value'], n['ci'], 5)} | {n['p']} "
                    f"| {_holm_cell(n)} |"
                )
        lines += [
            "",
            f"CIs and p are per comparison; p Holm is adjusted over the {focus} scorer's "
            "comparisons with every other system on one slice and metric (Holm); * marks a "
            f"difference that stands at {1 - report['config']['level']:.2g} after it.",
        ]
    for name, why in (report.get("skipped") or {}).items():
        lines += ["", f"{name}: skipped ({why})"]
    return lines


def _holm_cell(est: dict[str, Any]) -> str:
    if est.get("p_holm") is None:
        return "-"
    return f"{est['p_holm']}" + (" *" if est.get("holm_significant") else "")
