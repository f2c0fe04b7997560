"""Building the intent graph from an events folder: the training interactions (minus a
held-out split, when given), intents per item by the LLM (``extract``), canonical intents
(``canon``), the node and edge tables (``graph.assemble``) and the trained scorer."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gravity.errors import GravityError
from gravity.intents.config import BuildConfig
from gravity.intents.graph import Graph, assemble, fingerprint, rating_weight

if TYPE_CHECKING:
    from gravity.events.store import EventsData

VERSION = 1


def select_users(data: EventsData, countries: list[str] | None) -> set[str] | None:
    """Ids of the users from ``countries`` (None: everyone)."""
    if not countries:
        return None
    from gravity.profiles.countries import UnknownCountryError, normalize_country

    try:
        wanted = {normalize_country(c) for c in countries}
    except UnknownCountryError as exc:
        raise GravityError(f"--country: {exc}") from None
    return {
        u
        for u, c in zip(data.users["id"].to_pylist(), data.users["country"].to_pylist())
        if c in wanted
    }


def training_interactions(
    data: EventsData,
    cfg: BuildConfig,
    heldout: set[tuple[str, str]] | None = None,
    cold: set[str] | None = None,
) -> tuple[dict[tuple[str, str], float], Counter[tuple[str, str]], dict[str, list[str]], Counter]:
    """(user, item) -> edge weight, relational (user, user) counts, review texts per item, and
    counts of what was left out (held-out pairs, every event on a ``cold`` item, rare items,
    other countries)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    users = select_users(data, cfg.countries)
    ev = data.events
    if users is not None:
        ev = ev.filter(pc.is_in(ev["user_id"], value_set=pa.array(sorted(users), pa.string())))
    low = data.meta.rating_min if data.meta.rating_min is not None else 1.0
    high = data.meta.rating_max if data.meta.rating_max is not None else 5.0
    left_out: Counter[str] = Counter()
    ratings: dict[tuple[str, str], float] = {}
    reviews: dict[str, list[str]] = {}
    follows: Counter[tuple[str, str]] = Counter()
    cols = [ev[c].to_pylist() for c in ("user_id", "kind", "item_id", "other_user_id", "value")]
    texts = ev["text"].to_pylist()
    heldout, cold = heldout or set(), cold or set()
    for (user, kind, item, other, value), text in zip(zip(*cols), texts):
        if kind == "relational":
            follows[(user, other)] += 1
            continue
        if item in cold:
            left_out["events_of_cold_items"] += 1
            continue
        if (user, item) in heldout:
            left_out["events_of_heldout_pairs"] += 1
            continue
        w = rating_weight(value, low, high, cfg.implicit_weight)
        ratings[(user, item)] = max(w, ratings.get((user, item), 0.0))
        if text:
            reviews.setdefault(item, []).append(text)
    per_item = Counter(i for _, i in ratings)
    if cfg.min_item_events > 1:
        rare = {i for i, n in per_item.items() if n < cfg.min_item_events}
        left_out["items_below_min_item_events"] = len(rare)
        ratings = {k: w for k, w in ratings.items() if k[1] not in rare}
    return ratings, follows, reviews, left_out


@contextmanager
def _llm(engine: Any, cfg: BuildConfig, store: Path | None) -> Iterator[Any]:
    """The given engine, or one built (and closed) from ``cfg.backend`` with ``store``."""
    if engine is not None:
        yield engine
        return
    from gravity.llm import make_backend
    from gravity.llm.engine import Engine
    from gravity.store import Store

    result_store = Store(store) if store else None
    try:
        with make_backend(cfg.backend) as backend:
            yield Engine(backend, result_store)
    finally:
        if result_store is not None:
            result_store.close()


def build_graph(
    data: EventsData,
    cfg: BuildConfig,
    *,
    split: dict[str, Any] | None = None,
    heldout: set[tuple[str, str]] | None = None,
    engine: Any = None,
    store: Path | None = None,
    progress: bool = True,
) -> Graph:
    """The graph of ``data`` (see ``gravity.intents.graph``) with its scorer trained.

    ``heldout`` pairs (from the split file described by ``split``) are left out of every edge
    and every retrieved review; so is every event on the split's ``cold_items``, which become
    items of the graph with the intents of their text alone (item cold start). ``engine``
    answers the extraction (else one is built from ``cfg.backend`` with the result store
    ``store``, only if some item needs it).
    """
    from gravity.intents.canon import canonical_intents

    timings: dict[str, float] = {}
    t0 = time.monotonic()
    cold = set((split or {}).get("cold_items") or ())
    ratings, follows, reviews, left_out = training_interactions(data, cfg, heldout, cold)
    if not ratings:
        raise GravityError(f"{data.path}: no personal events for the selected users")
    items_meta, to_extract, skipped_no_metadata = _items_to_extract(data, ratings, cfg, cold)
    t1 = time.monotonic()
    timings["interactions_s"] = t1 - t0
    extraction, model_fp = _extract(to_extract, reviews, cfg, engine, store, progress)
    t2 = time.monotonic()
    timings["extraction_s"] = t2 - t1
    canon = canonical_intents(
        [p for ps in extraction.phrases.values() for p in ps], cfg.cluster_threshold
    )
    item_intents = {
        i: sorted({canon.of_phrase[p] for p in ps}) for i, ps in extraction.phrases.items()
    }
    cold_nodes = sorted(i for i in cold if i in items_meta)
    labels = _node_labels(items_meta)
    nodes, edges, counts = assemble(
        ratings, follows, item_intents, canon.labels, labels, cfg, None, cold_nodes
    )
    timings["graph_s"] = time.monotonic() - t2
    t3 = time.monotonic()
    scorer = _train(nodes, edges, cfg, progress)
    timings["scorer_s"] = time.monotonic() - t3
    counts = counts | {
        "items_sent_to_llm": len(to_extract),
        "items_with_intents": len(extraction.phrases),
        "items_rejected_by_llm": len(extraction.rejects),
        "items_skipped_no_metadata": skipped_no_metadata,
        "intent_phrases": sum(len(p) for p in extraction.phrases.values()),
        "cold_items": len(cold_nodes),
    }
    manifest = _manifest(data, cfg, counts | dict(left_out), extraction, canon, model_fp)
    manifest["split"] = split
    manifest["timings_s"] = {k: round(v, 2) for k, v in timings.items()}
    return Graph(nodes, edges, manifest, scorer)


def _node_labels(items_meta: dict[str, dict[str, Any]]) -> dict[str, str]:
    """item id -> "title by author" (the id when there is no title)."""
    return {
        i: ((row.get("title") or i) + (f" by {row['author']}" if row.get("author") else ""))[:200]
        for i, row in items_meta.items()
    }


def _train(nodes: Any, edges: Any, cfg: BuildConfig, progress: bool) -> Any:
    """The graph's scorer, trained on its node and edge tables."""
    from gravity.intents.scorer import train_scorer

    edge_rows = list(
        zip(
            edges["src"].to_pylist(),
            edges["dst"].to_pylist(),
            edges["relation"].to_pylist(),
            edges["weight"].to_pylist(),
        )
    )
    return train_scorer(
        nodes["id"].to_pylist(), nodes["kind"].to_pylist(), edge_rows, cfg.scorer, progress
    )


def _items_to_extract(
    data: EventsData, ratings: dict[tuple[str, str], float], cfg: BuildConfig, cold: set[str]
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]], int]:
    """(metadata of every rated or cold item, the items sent to the LLM: the ``max_items`` most
    rated, then every cold item, those that have a title; how many were skipped for having
    none)."""
    per_item = Counter(i for _, i in ratings)
    items_meta = {
        row["id"]: row
        for row in data.items.to_pylist()
        if row["id"] in per_item or row["id"] in cold
    }
    ranked = sorted(per_item, key=lambda i: (-per_item[i], i))
    wanted = ranked if cfg.max_items is None else ranked[: cfg.max_items]
    wanted += sorted(i for i in cold if i in items_meta)
    # An item known only by its id gives the model nothing to read: it is not sent.
    to_extract = [items_meta[i] for i in wanted if (items_meta.get(i) or {}).get("title")]
    return items_meta, to_extract, len(wanted) - len(to_extract)


def _extract(
    to_extract: list[dict[str, Any]],
    reviews: Any,
    cfg: BuildConfig,
    engine: Any,
    store: Path | None,
    progress: bool,
) -> tuple[Any, dict[str, Any] | None]:
    """The LLM's intents for ``to_extract`` and the model's fingerprint (None: nothing sent)."""
    from gravity.intents.extract import Extraction, extract_intents

    if not to_extract:
        return Extraction(), None
    from gravity.llm import SamplingParams

    params = SamplingParams(
        max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, seed=cfg.seed
    )
    with _llm(engine, cfg, store) as llm:
        llm.progress = progress
        extraction = extract_intents(
            llm,
            to_extract,
            reviews,
            params,
            max_intents=cfg.max_intents,
            neighbours=cfg.neighbours,
            round_size=cfg.round_size,
            max_reviews=cfg.max_reviews,
            max_review_chars=cfg.max_review_chars,
            max_attempts=cfg.max_attempts,
            max_shelves=cfg.max_shelves,
        )
        return extraction, llm.fingerprint


def _manifest(
    data: EventsData,
    cfg: BuildConfig,
    counts: dict[str, Any],
    extraction: Any,
    canon: Any,
    model_fp: dict[str, Any] | None,
) -> dict[str, Any]:
    """The manifest's record of what was built from what (split and timings added after)."""
    return {
        "version": VERSION,
        "counts": counts,
        "llm_rejects": dict(Counter(r.split(":")[0] for r in extraction.rejects.values())),
        "rejected_items": [
            {"item_id": i, "reason": r} for i, r in sorted(extraction.rejects.items())[:200]
        ],
        "config": cfg.model_dump(mode="json"),
        "events": {
            "path": str(data.path),
            "meta": fingerprint(data.meta.model_dump(mode="json")),
            "events_rows": data.events.num_rows,
        },
        "model": model_fp,
        "split": None,
        "timings_s": {},
        "intents": [
            {"id": f"c:{k}", "label": lab, "phrases": canon.members[k]}
            for k, lab in enumerate(canon.labels)
        ],
    }
