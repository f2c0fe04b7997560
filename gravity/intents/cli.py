"""``gravity intents``: build the intent graph, recommend and explain from it, evaluate it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from gravity.errors import GravityError
from gravity.flags import ConfigFlags, config_flags
from gravity.intents.config import BuildConfig, EvalConfig

intents_app = typer.Typer(
    help="Intent knowledge graph: build, recommend, explain, evaluate.", no_args_is_help=True
)


@intents_app.command("split")
def split_cmd(
    events: Annotated[Path, typer.Option(help="Events folder from `gravity events import`.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Split file (.parquet).")],
    countries: Annotated[
        list[str] | None, typer.Option(help="Only users from these (repeat the flag).")
    ] = None,
    seed: Annotated[int, typer.Option()] = 0,
    share: Annotated[float, typer.Option(help="Share of each user's ratings held out.")] = 0.2,
    cold_items: Annotated[
        int,
        typer.Option(
            min=0,
            help="Works held out whole (item cold start): every rating of every edition of "
            "them (merged by title and author) is held out.",
        ),
    ] = 0,
) -> None:
    """Write a per-user held-out split of explicit ratings (each user's latest where all have
    times, else seeded), and optionally whole held-out items."""
    from gravity.events import read_events_dir
    from gravity.intents.build import select_users
    from gravity.intents.evaluate import make_split, write_split

    data = read_events_dir(events)
    table = make_split(data, select_users(data, countries or None), seed, share, cold_items)
    write_split(table, output)
    users = len(set(table["user_id"].to_pylist()))
    meta = json.loads(table.schema.metadata[b"gravity_split"])
    typer.echo(
        f"wrote {output}: {table.num_rows} held-out ratings of {users} users "
        f"({meta['temporal_users']} split by time), {len(meta['cold_items'])} items held out whole"
    )


@intents_app.command("build")
@config_flags(BuildConfig)
def build_cmd(
    events: Annotated[Path, typer.Option(help="Events folder from `gravity events import`.")],
    out: Annotated[Path, typer.Option(help="Graph folder to write (swapped in atomically).")],
    config: Annotated[Path | None, typer.Option(help="YAML with BuildConfig fields.")] = None,
    split: Annotated[
        Path | None, typer.Option(help="Split file: its held-out pairs stay out of the graph.")
    ] = None,
    store: Annotated[
        Path | None, typer.Option(help="Result store (default: OUT.store.sqlite beside OUT).")
    ] = None,
    *,
    flags: ConfigFlags,
) -> None:
    """Extract item intents, cluster them, build the graph and train its scorer."""
    from gravity.events import read_events_dir
    from gravity.intents.build import build_graph
    from gravity.intents.evaluate import read_split
    from gravity.intents.graph import write_graph

    cfg = flags.resolve(config)
    if out.exists() and not out.is_dir():
        raise GravityError(f"{out}: exists and is not a folder")
    heldout, split_desc = read_split(split) if split else (None, None)
    data = read_events_dir(events)
    store_path = store or out.with_name(out.name + ".store.sqlite")
    graph = build_graph(data, cfg, split=split_desc, heldout=heldout, store=store_path)
    write_graph(graph, out)
    c = graph.manifest["counts"]
    typer.echo(
        f"wrote {out}: {c['nodes_user']} users, {c['nodes_item']} items, "
        f"{c['nodes_intent']} intents; {c['items_sent_to_llm']} items sent to the LLM = "
        f"{c['items_with_intents']} with intents + {c['items_rejected_by_llm']} rejected"
    )
    for reason, n in graph.manifest["llm_rejects"].items():
        typer.echo(f"  llm reject {reason}: {n}")


def _users_file(path: Path, known: set[str]) -> list[str]:
    from gravity.io import read_text

    users: list[str] = []
    for n, line in enumerate(read_text(path).splitlines(), 1):
        user = line.strip()
        if not user or user.startswith("#"):
            continue
        if user not in known:
            raise GravityError(f"{path}:{n}: user {user!r} is not in the graph")
        users.append(user)
    return users


def recommendations(graph: Any, users: list[str], k: int, progress: bool = True) -> list[dict]:
    """Per user: the top-k items (training items excluded), each with its intent path."""
    from gravity.intents.metrics import top_k
    from gravity.intents.scorer import Scorer
    from gravity.progress import Progress

    scorer = Scorer(graph)
    rated: dict[int, list[int]] = {}
    col = {int(n): c for c, n in enumerate(scorer.items)}
    for src, dst, _ in graph.edges_of("rated"):
        rated.setdefault(scorer.index[src], []).append(col[scorer.index[dst]])
    out = []
    with Progress(len(users), "recommend", enabled=progress, unit="users") as bar:
        for start in range(0, len(users), 256):
            chunk = [scorer.index[f"u:{u}"] for u in users[start : start + 256]]
            for node, row in zip(chunk, scorer.item_scores(chunk)):
                items = []
                for c in top_k(row, k, rated.get(node, [])):
                    item = int(scorer.items[c])
                    paths = scorer.paths(node, item)
                    items.append(
                        {
                            "item_id": scorer.item_keys[c],
                            "title": scorer.labels[scorer.ids[item]],
                            "score": round(float(row[c]), 4),
                            "path": [p["intent"] for p in paths],
                            "path_source": "graph"
                            if paths and paths[0]["item_serves"]
                            else "learned",
                        }
                    )
                out.append({"user_id": scorer.ids[node][2:], "items": items})
            bar.advance(len(chunk))
    return out


@intents_app.command("recommend")
def recommend_cmd(
    graph: Annotated[Path, typer.Option(help="Graph folder from `gravity intents build`.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Recommendations (.jsonl).")],
    k: Annotated[int, typer.Option(min=1, max=1000, help="Items per user.")] = 10,
    users: Annotated[
        Path | None, typer.Option(help="File with one user id per line (default: all users).")
    ] = None,
) -> None:
    """Top-k items per user, each with its user -> intent -> item path."""
    from gravity.intents.graph import read_graph
    from gravity.io import atomic_write_text

    g = read_graph(graph)
    known = [
        i[2:]
        for i, kind in zip(g.nodes["id"].to_pylist(), g.nodes["kind"].to_pylist())
        if kind == "user"
    ]
    wanted = _users_file(users, set(known)) if users else known
    recs = recommendations(g, wanted, k)
    atomic_write_text(output, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs))
    typer.echo(f"wrote {len(recs)} users' recommendations to {output}")


@intents_app.command("explain")
def explain_cmd(
    user_id: Annotated[str, typer.Argument(help="A user of the graph.")],
    item_id: Annotated[str, typer.Argument(help="An item of the graph.")],
    graph: Annotated[Path, typer.Option(help="Graph folder from `gravity intents build`.")],
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Why the graph scores ITEM_ID for USER_ID: score, rank and the best intent paths."""
    from gravity.intents.graph import read_graph
    from gravity.intents.scorer import Scorer

    g = read_graph(graph)
    scorer = Scorer(g)
    u, i = scorer.index.get(f"u:{user_id}"), scorer.index.get(f"i:{item_id}")
    if u is None:
        raise GravityError(f"USER_ID: {user_id!r} is not a user of {graph}")
    if i is None:
        raise GravityError(f"ITEM_ID: {item_id!r} is not an item of {graph}")
    scores = scorer.item_scores([u])[0]
    col = int((scorer.items == i).nonzero()[0][0])
    rated_items = {d for s, d, _ in g.edges_of("rated") if s == f"u:{user_id}"}
    served_by = {}
    for src, dst, _ in g.edges_of("serves"):
        if src in rated_items:
            served_by.setdefault(scorer.labels[dst], []).append(scorer.labels[src])
    paths = scorer.paths(u, i, top=3)
    for p in paths:
        p["user_items_serving_it"] = sorted(served_by.get(p["intent"], []))[:5]
    report = {
        "user_id": user_id,
        "item_id": item_id,
        "title": scorer.labels[f"i:{item_id}"],
        "score": round(float(scores[col]), 4),
        "rank": int((scores > scores[col]).sum()) + 1,
        "of_items": len(scores),
        "already_rated": f"i:{item_id}" in rated_items,
        "paths": paths,
    }
    if json_output:
        typer.echo(json.dumps(report, indent=2, ensure_ascii=False))
        return
    typer.echo(f"{user_id} -> {report['title']} ({item_id})")
    typer.echo(
        f"score {report['score']}, rank {report['rank']} of {report['of_items']} items"
        + (" (already rated)" if report["already_rated"] else "")
    )
    for p in paths:
        held = f"holds it {p['user_holds']}" if p["user_holds"] else "does not hold it in the graph"
        serves = "serves it" if p["item_serves"] else "inferred by the scorer"
        typer.echo(
            f"  via intent '{p['intent']}' (score {p['score']}, adds {p['contribution']} to the "
            f"item's score; user {held}; item {serves})"
        )
        if p["user_items_serving_it"]:
            typer.echo(f"    the user's books with it: {'; '.join(p['user_items_serving_it'])}")


@intents_app.command("evaluate")
@config_flags(EvalConfig)
def evaluate_cmd(
    events: Annotated[Path, typer.Option(help="Events folder the graph was built from.")],
    graph: Annotated[Path, typer.Option(help="Graph built with --split.")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Report (.json).")] = None,
    split: Annotated[
        Path | None, typer.Option(help="The split file (default: the one the graph names).")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="YAML with EvalConfig fields.")] = None,
    *,
    flags: ConfigFlags,
) -> None:
    """Recall, NDCG and HR at k of the graph and the baselines on the graph's held-out split."""
    from gravity.events import read_events_dir
    from gravity.intents.evaluate import evaluate, read_heldout, table_lines
    from gravity.intents.graph import fingerprint, read_graph
    from gravity.io import atomic_write_text

    cfg = flags.resolve(config)
    g = read_graph(graph)
    built = g.manifest.get("split")
    if not built:
        raise GravityError(f"{graph / 'manifest.json'}: split: the graph was built without --split")
    data = read_events_dir(events)
    if fingerprint(data.meta.model_dump(mode="json")) != g.manifest["events"].get("meta"):
        raise GravityError(f"{events}: not the events folder the graph was built from")
    split_path = split or Path(built["path"])
    heldout, desc = read_heldout(split_path)
    if desc["digest"] != built["digest"]:
        raise GravityError(f"{split_path}: not the split the graph was built without")
    report = evaluate(g, heldout, cfg, data)
    report["split"] = desc
    for line in table_lines(report):
        typer.echo(line)
    typer.echo(" ".join(f"{k}={v}" for k, v in report["counts"].items()))
    if output:
        atomic_write_text(output, json.dumps(report, indent=2) + "\n")
        typer.echo(f"wrote {output}")
