"""The intent graph: extraction (fake backend for orchestration, and the embedded model for
real), canonical intents, the graph tables, the scorer, the metrics by hand, the CLI."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gravity.cli import app
from gravity.errors import GravityError
from gravity.events import read_events_dir
from gravity.events.importers import import_events
from gravity.intents.build import build_graph
from gravity.intents.config import SYSTEMS, BuildConfig, EvalConfig, ScorerConfig, TuningGrid
from gravity.intents.evaluate import evaluate, make_split, read_heldout, read_split, write_split
from gravity.intents.graph import read_graph, write_graph
from gravity.intents.metrics import hit_at_k, mean_of, ndcg_at_k, recall_at_k, top_k
from gravity.llm.engine import Engine
from gravity.store import Store
from tests.fakes import ScriptedBackend

BX = Path(__file__).parent / "fixtures" / "events" / "bookcrossing"
INTENTS_BY_AUTHOR = {
    "Jane Austen": ["witty romance of manners", "Escape into Regency England."],
    "George Orwell": ["understand totalitarian power", "a warning about the future"],
    "Agatha Christie": ["solve a murder puzzle", "a cosy whodunit for a rainy day"],
}


class IntentBackend(ScriptedBackend):
    """Answers the item-intent prompt from the book's author; junk for 'Dune' (a reject)."""

    def _text(self, prompt: str, seed: int) -> str:
        if '"Dune"' in prompt.split("\n")[0]:
            return "A great book about sand."
        author = re.search(r'^Book: ".*?"(?: by (.*?))?(?: \(\d+\))?(?:,|\.)', prompt)
        name = (author.group(1) if author else None) or ""
        intents = INTENTS_BY_AUTHOR.get(name, ["an adventure to get lost in", "  "])
        return json.dumps({"intents": intents})


@pytest.fixture(scope="module")
def bx(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bx") / "events"
    import_events("bookcrossing", [BX], out)
    return out


def _engine(tmp_path: Path, backend: ScriptedBackend | None = None) -> Engine:
    return Engine(backend or IntentBackend(), Store(tmp_path / "store.sqlite"), progress=False)


FAST = ScorerConfig(dim=8, epochs=3, batch_size=256)


# ---------------------------------------------------------------- metrics by hand


def test_metrics_against_hand_computed_rankings() -> None:
    ranked = ["a", "b", "c", "d"]
    rel = {"b", "d"}
    assert recall_at_k(ranked, rel, 2) == 0.5
    assert hit_at_k(ranked, rel, 2) == 1.0
    # One hit at rank 2 of an ideal two hits at ranks 1 and 2.
    assert ndcg_at_k(ranked, rel, 2) == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert recall_at_k(ranked, rel, 4) == 1.0
    assert ndcg_at_k(ranked, rel, 4) == pytest.approx(
        (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    )
    assert (recall_at_k(ranked, rel, 1), ndcg_at_k(ranked, rel, 1), hit_at_k(ranked, rel, 1)) == (
        0.0,
        0.0,
        0.0,
    )
    # More relevant items than k: the ideal DCG has only k hits, so a perfect top k is 1.
    assert ndcg_at_k(["x", "y"], {"x", "y", "z"}, 2) == pytest.approx(1.0)
    assert recall_at_k(["x", "y"], {"x", "y", "z"}, 2) == pytest.approx(2 / 3)
    # A ranking shorter than k, and relevant items never ranked.
    assert recall_at_k(["a"], {"a", "q"}, 10) == 0.5
    assert hit_at_k(["a"], {"q"}, 10) == 0.0
    # A user with no held-out item has no value and is left out of the mean, counted.
    assert recall_at_k(ranked, set(), 10) is None
    assert ndcg_at_k(ranked, set(), 10) is None
    assert hit_at_k(ranked, set(), 10) is None
    assert mean_of([1.0, None, 0.0, 0.5]) == (0.5, 3, 1)
    assert mean_of([None]) == (None, 0, 1)


def test_clean_phrase_keeps_intents_only() -> None:
    from gravity.intents.extract import clean_phrase

    assert clean_phrase('  "Escape into\nRegency England."  ') == "escape into regency england"
    assert clean_phrase("book") is None  # one word is no intent
    assert clean_phrase("Pride and  Prejudice", "Pride and Prejudice") is None  # the title
    assert clean_phrase("12 34 56") is None
    assert clean_phrase(" ".join(["word"] * 13)) is None


def test_top_k_orders_ties_by_position_and_excludes() -> None:
    scores = [1.0, 3.0, 3.0, 2.0, 3.0]
    assert top_k(scores, 2) == [1, 2]
    assert top_k(scores, 3) == [1, 2, 4]
    assert top_k(scores, 2, exclude=[1]) == [2, 4]
    assert top_k(scores, 10, exclude=[0, 1, 2]) == [4, 3]
    assert top_k([float("nan"), 0.0], 2) == [1]
    assert top_k([], 3) == []
    # Long rows take the partition path: ties at the cut still go to the lower positions.
    long = np.zeros(1000)
    long[[900, 10, 500]] = 1.0
    assert top_k(long, 5) == [10, 500, 900, 0, 1]
    assert top_k(long, 5, exclude=[0, 10]) == [500, 900, 1, 2, 3]
    # Ties broken this way make a ranking, and so its metrics, reproducible.
    assert ndcg_at_k([["a", "b", "c"][p] for p in top_k([1, 1, 1], 1)], {"a"}, 1) == 1.0


# ---------------------------------------------------------------- split


def test_split_is_seeded_per_user_and_round_trips(bx, tmp_path) -> None:
    data = read_events_dir(bx)
    t0 = make_split(data, None, seed=0, share=0.2)
    assert make_split(data, None, seed=0, share=0.2).equals(t0)
    assert not make_split(data, None, seed=1, share=0.2).equals(t0)
    rated: dict[str, set[str]] = {}
    for e in data.events.to_pylist():
        if e["kind"] == "personal" and e["value"] is not None:
            rated.setdefault(e["user_id"], set()).add(e["item_id"])
    held: dict[str, set[str]] = {}
    for row in t0.to_pylist():
        held.setdefault(row["user_id"], set()).add(row["item_id"])
    assert held, "the fixture has users with two or more ratings"
    for user, items in rated.items():
        if len(items) < 2:
            assert user not in held
        else:
            assert held[user] <= items and 1 <= len(held[user]) < len(items)
            assert len(held[user]) == max(1, round(0.2 * len(items)))
    write_split(t0, tmp_path / "split.parquet")
    pairs, desc = read_split(tmp_path / "split.parquet")
    assert pairs == {(r["user_id"], r["item_id"]) for r in t0.to_pylist()}
    assert desc["seed"] == 0 and desc["share"] == 0.2 and desc["pairs"] == len(pairs)


# ---------------------------------------------------------------- extraction and graph


def test_extraction_orchestration_store_and_rejects(bx, tmp_path) -> None:
    data = read_events_dir(bx)
    cfg = BuildConfig(round_size=4, neighbours=2, scorer=FAST)
    backend = IntentBackend()
    graph = build_graph(data, cfg, engine=_engine(tmp_path, backend), progress=False)
    c = graph.manifest["counts"]
    titled = {r["id"] for r in data.items.to_pylist() if r["title"]}
    rated = {e["item_id"] for e in data.events.to_pylist() if e["kind"] == "personal"}
    assert c["items_sent_to_llm"] == len(titled & rated)
    assert c["items_skipped_no_metadata"] == len(rated - titled)
    # Counts add up: every item sent ends with intents or as a reject with its reason.
    assert c["items_sent_to_llm"] == c["items_with_intents"] + c["items_rejected_by_llm"]
    assert c["items_rejected_by_llm"] == 1  # Dune
    assert graph.manifest["llm_rejects"] == {"invalid_json": 1}
    labels = {i["label"] for i in graph.manifest["intents"]}
    # Phrases are cleaned (case, punctuation) and blank ones dropped; no blank intent exists.
    assert "escape into regency england" in labels and all(lab.strip() for lab in labels)
    # Retrieval: prompts after the first round show earlier items' intents.
    prompts = [r.messages[-1].content for r in backend.seen]
    assert "Similar books" not in prompts[0]
    assert any("Similar books" in p and "witty romance of manners" in p for p in prompts[4:])
    # A rerun on the same store costs no model call.
    again = IntentBackend()
    graph2 = build_graph(data, cfg, engine=_engine(tmp_path, again), progress=False)
    assert again.batches == [] and graph2.edges.equals(graph.edges)


def test_an_answer_without_a_usable_phrase_is_retried_then_rejected(bx, tmp_path) -> None:
    from gravity.intents.extract import extract_intents
    from gravity.llm import SamplingParams

    data = read_events_dir(bx)
    items = [r for r in data.items.to_pylist() if r["id"] == "0141439513"]  # Austen
    params = SamplingParams(max_new_tokens=50, temperature=0.3, seed=0)
    backend = IntentBackend(script=['{"intents": ["book", "Pride and Prejudice"]}'])
    out = extract_intents(_engine(tmp_path, backend), items, {}, params, max_attempts=2)
    assert out.phrases == {
        "0141439513": ["witty romance of manners", "escape into regency england"]
    }
    assert backend.batches == [1, 1]  # the first answer (a word and the title) was retried
    backend = IntentBackend(script=['{"intents": ["book"]}'] * 2)
    out = extract_intents(_engine(tmp_path / "b", backend), items, {}, params, max_attempts=2)
    assert out.phrases == {} and out.rejects["0141439513"].startswith("no_phrase: ")


# The prompts of the extraction run above, rendered before items' shelves were read: items
# without categories (Book-Crossing has none) must still get exactly these bytes.
BX_PROMPTS_SHA256 = "d81c05a3b361f6c97612f3a2cc7e20adde4944eb923d9c892038b8eca518f012"


def test_prompts_of_items_without_shelves_are_unchanged(bx, tmp_path) -> None:
    import hashlib

    data = read_events_dir(bx)
    backend = IntentBackend()
    cfg = BuildConfig(round_size=4, neighbours=2, scorer=FAST)
    build_graph(data, cfg, engine=_engine(tmp_path, backend), progress=False)
    prompts = [m.content for r in backend.seen for m in r.messages]
    assert len(prompts) == 82
    assert hashlib.sha256("\x1e".join(prompts).encode()).hexdigest() == BX_PROMPTS_SHA256


def test_shown_shelves_leave_out_what_most_items_carry() -> None:
    from gravity.intents.extract import shown_shelves

    items = [{"id": str(i), "categories": ["to-buy", "memoir", f"own-{i}"]} for i in range(12)]
    items[0]["categories"] = ["memoir", "holocaust", "war", " war ", "history"]
    items[1]["categories"] = []
    shown = shown_shelves(items, max_shelves=2)
    # "memoir" (11 of 12) and "to-buy" (10 of 12) say nothing about one item; "war" repeats.
    assert shown[0] == ["holocaust", "war"]
    assert shown[1] == [] and shown[2] == ["own-2"]
    # Below ten items nothing counts as common: each item's first shelves are shown.
    assert shown_shelves(items[:3], max_shelves=2)[0] == ["memoir", "holocaust"]
    assert shown_shelves(items, max_shelves=0)[0] == []
    # Common and repeated are judged on the shelf as shown: case, spaces and the 60-character cut.
    long = "x" * 70
    spelled = [
        {
            "id": str(i),
            "categories": [
                long if i % 2 else long + "y",
                "Memoir" if i % 2 else "memoir  ",
                f"own {i}",
                f"OWN  {i}",
            ],
        }
        for i in range(12)
    ]
    assert shown_shelves(spelled, max_shelves=5) == [[f"own {i}"] for i in range(12)]
    assert shown_shelves([{"id": "a", "categories": None}], max_shelves=3) == [[]]


def test_item_text_and_build_carry_the_shelves_shown(tmp_path) -> None:
    from gravity.intents.extract import item_text

    item = {"id": "1", "title": "Wild", "author": "Cheryl Strayed", "description": None}
    assert item_text(item) == "Wild by Cheryl Strayed"  # as before shelves were read
    assert item_text(item, ["hiking", "grief"]) == "Wild by Cheryl Strayed shelves: hiking, grief"
    folder = Path(__file__).parent / "fixtures" / "events" / "goodbooks"
    import_events("goodbooks", [folder], tmp_path / "gb")
    data = read_events_dir(tmp_path / "gb")
    backend = IntentBackend()
    cfg = BuildConfig(round_size=4, neighbours=2, scorer=FAST, max_shelves=1)
    build_graph(data, cfg, engine=_engine(tmp_path, backend), progress=False)
    prompts = [r.messages[-1].content for r in backend.seen]
    assert any("Shelves readers put it on: MEMOIR.\n" in p for p in prompts)
    assert not any("MEMOIR, holocaust" in p for p in prompts)  # max_shelves reached the prompt


def test_amazon_categories_are_shown_as_shelves(tmp_path) -> None:
    """Other importers' categories (Amazon's store categories here) take the same line."""
    fix = Path(__file__).parent / "fixtures" / "events" / "amazon"
    import_events("amazon", [fix / "Books.jsonl", fix / "meta_Books.jsonl"], tmp_path / "am")
    data = read_events_dir(tmp_path / "am")
    categories = {r["id"]: r["categories"] for r in data.items.to_pylist()}
    backend = IntentBackend()
    cfg = BuildConfig(round_size=8, neighbours=0, scorer=FAST)
    build_graph(data, cfg, engine=_engine(tmp_path, backend), progress=False)
    prompts = [r.messages[-1].content for r in backend.seen]
    dune = next(p for p in prompts if p.startswith('Book: "Dune'))
    assert categories["0441013597"] == ["Literature & Fiction", "Science Fiction"]
    carried = sum("Literature & Fiction" in c for c in categories.values())
    assert len(categories) >= 10 and 2 * carried > len(categories)  # most items carry it
    assert "\nShelves readers put it on: Science Fiction.\n" in dune


def test_goodbooks_shelves_reach_the_prompt(tmp_path) -> None:
    """Shelves as item text, end to end: import, build (cold items included), prompts."""
    folder = Path(__file__).parent / "fixtures" / "events" / "goodbooks"
    import_events("goodbooks", [folder], tmp_path / "gb")
    data = read_events_dir(tmp_path / "gb")
    backend = IntentBackend()
    cfg = BuildConfig(round_size=4, neighbours=2, scorer=FAST)
    build_graph(data, cfg, engine=_engine(tmp_path, backend), progress=False)
    prompts = {r.messages[-1].content.split("\n")[0]: r.messages[-1].content for r in backend.seen}
    diary = prompts[
        'Book: "The Diary of a Young Girl" by Anne Frank, Eleanor Roosevelt, '
        "B.M. Mooyaart-Doubleday (1947)."
    ]
    assert "Shelves readers put it on: MEMOIR, holocaust, classics." in diary
    odyssey = next(p for head, p in prompts.items() if '"The Odyssey"' in head)
    assert "Shelves readers put it on: classics." in odyssey
    gatsby = next(p for head, p in prompts.items() if '"The Great Gatsby"' in head)
    assert "Shelves readers" not in gatsby  # no shelves: no line


def test_graph_from_bookcrossing_fixture(bx, tmp_path) -> None:
    data = read_events_dir(bx)
    split = make_split(data, None, seed=0)
    write_split(split, tmp_path / "split.parquet")
    heldout, desc = read_split(tmp_path / "split.parquet")
    cfg = BuildConfig(scorer=FAST)
    graph = build_graph(
        data, cfg, split=desc, heldout=heldout, engine=_engine(tmp_path), progress=False
    )
    edges = graph.edges.to_pylist()
    kinds = dict(zip(graph.nodes["id"].to_pylist(), graph.nodes["kind"].to_pylist()))
    expected = {
        "rated": ("user", "item"),
        "follows": ("user", "user"),
        "serves": ("item", "intent"),
        "holds": ("user", "intent"),
        "shares_intent": ("item", "item"),
    }
    for e in edges:
        assert (kinds[e["src"]], kinds[e["dst"]]) == expected[e["relation"]]
    rated = {(e["src"][2:], e["dst"][2:]) for e in edges if e["relation"] == "rated"}
    assert not rated & heldout, "held-out pairs never become edges"
    personal = {
        (e["user_id"], e["item_id"]) for e in data.events.to_pylist() if e["kind"] == "personal"
    }
    assert rated == personal - heldout
    # Ratings map onto [0.2, 1]: a 10 of 10 weighs 1, an unrated event the implicit weight.
    events = {(e["user_id"], e["item_id"]): e["value"] for e in data.events.to_pylist()}
    for e in edges:
        if e["relation"] == "rated":
            value = events[(e["src"][2:], e["dst"][2:])]
            want = 0.5 if value is None else 0.2 + 0.8 * (value - 1) / 9
            assert e["weight"] == pytest.approx(want, abs=1e-6)
    # A user's intents are weighted relative to their strongest, which weighs 1.
    holds: dict[str, list[float]] = {}
    for e in edges:
        if e["relation"] == "holds":
            holds.setdefault(e["src"], []).append(e["weight"])
    assert holds and all(max(w) == pytest.approx(1.0) and min(w) > 0 for w in holds.values())
    # Every Austen reader holds the Austen intent.
    austen = {e["dst"] for e in edges if e["relation"] == "serves"} & {
        n
        for n, lab in zip(graph.nodes["id"].to_pylist(), graph.nodes["label"].to_pylist())
        if lab == "witty romance of manners"
    }
    assert len(austen) == 1
    c = graph.manifest["counts"]
    assert c["edges_rated"] == len(rated) and c["nodes_intent"] >= 3
    # Written and read back without re-extraction.
    write_graph(graph, tmp_path / "g")
    back = read_graph(tmp_path / "g")
    assert back.nodes.equals(graph.nodes) and back.edges.equals(graph.edges)
    assert np.array_equal(back.scorer["entity"], graph.scorer["entity"])
    assert back.manifest["split"]["digest"] == desc["digest"]


def test_canonical_intents_merge_paraphrases() -> None:
    from gravity.intents.canon import canonical_intents

    canon = canonical_intents(
        [
            "a light read for a holiday",
            "a light holiday read",
            "an easy light read for the holidays",
            "understand a war from the inside",
            "understand the war from the inside",
        ],
        threshold=0.35,
    )
    assert len(canon.labels) == 2
    war = canon.of_phrase["understand a war from the inside"]
    assert canon.of_phrase["understand the war from the inside"] == war
    holiday = canon.of_phrase["a light holiday read"]
    assert canon.of_phrase["a light read for a holiday"] == holiday != war
    assert canon.labels[holiday] in canon.members[holiday]
    assert canonical_intents([]).labels == []


# ---------------------------------------------------------------- scorer


def _planted(n_users: int = 40, n_items: int = 40, seed: int = 0):
    """Four taste groups of 10 items: users of group g rate 6 items of group g and have one
    more held out. An intent per group links the group's items."""
    rng = np.random.default_rng(seed)
    ratings, heldout, item_intents = {}, set(), {}
    for i in range(n_items):
        item_intents[f"i{i}"] = [i % 4]
    for u in range(n_users):
        group = [f"i{i}" for i in range(n_items) if i % 4 == u % 4]
        picks = rng.choice(group, 7, replace=False)
        for it in picks[:6]:
            ratings[(f"u{u}", str(it))] = 1.0
        heldout.add((f"u{u}", str(picks[6])))
    return ratings, heldout, item_intents


def _train_planted(cfg: ScorerConfig):
    from collections import Counter

    from gravity.intents.graph import Graph, assemble
    from gravity.intents.scorer import train_scorer

    ratings, heldout, item_intents = _planted()
    nodes, edges, counts = assemble(
        ratings,
        Counter(),
        item_intents,
        ["group a", "group b", "group c", "group d"],
        {},
        BuildConfig(),
    )
    rows = list(
        zip(*(edges[c].to_pylist() for c in ("src", "dst", "relation", "weight")), strict=True)
    )
    scorer = train_scorer(nodes["id"].to_pylist(), nodes["kind"].to_pylist(), rows, cfg, False)
    manifest = {"version": 1, "counts": counts, "config": {}, "files": {}}
    return Graph(nodes, edges, manifest, scorer), heldout


def test_scorer_beats_random_on_planted_structure_and_is_deterministic() -> None:
    cfg = ScorerConfig(dim=16, epochs=30, batch_size=128, lr=0.05)
    graph, heldout = _train_planted(cfg)
    # evaluate retrains the scorer (tuned on validation): one grid point, the settings above
    point = cfg.model_dump(include={"dim", "epochs", "batch_size", "lr"})
    grid = TuningGrid(
        scorer=[point],
        itemknn=[{"K": 5}],
        als=[{"factors": 4}],
        bpr=[{"factors": 4}],
        lightgcn=[{"dim": 8}],
    )
    report = evaluate(
        graph, heldout, EvalConfig(k=5, systems=["intents"], grid=grid), progress=False
    )
    hr = report["metrics"]["intents"]["overall"]["hr"]
    # A random ranking of a user's 34 unseen items hits the held-out one in 5 of 34 tries; the
    # planted structure puts it among the group's 4 unseen items, all of which fit in the top 5.
    assert hr >= 0.8 > 5 / 34
    again, _ = _train_planted(cfg)
    for key in ("entity", "relation", "bias"):
        assert np.array_equal(again.scorer[key], graph.scorer[key])
    # Paths follow the planted intents: a user of group a reaches group-a items via 'group a'.
    from gravity.intents.scorer import Scorer

    s = Scorer(graph)
    path = s.paths(s.index["u:u0"], s.index["i:i4"])[0]
    assert path["intent"] == "group a" and path["item_serves"]
    assert path["user_holds"] == pytest.approx(1.0)


_TRAIN_IN_A_PROCESS = """
import hashlib
from gravity.intents.config import ScorerConfig
from gravity.intents.scorer import train_scorer
nodes = ["u:a", "u:b", "i:x", "i:y", "i:z", "c:0", "c:1"]
kinds = ["user"] * 2 + ["item"] * 3 + ["intent"] * 2
edges = [("u:a", "i:x", "rated", 1.0), ("u:b", "i:y", "rated", 0.5), ("u:a", "u:b", "follows", 1.0),
         ("i:x", "c:0", "serves", 1.0), ("i:y", "c:1", "serves", 1.0), ("u:a", "c:0", "holds", 1.0)]
arrays = train_scorer(nodes, kinds, edges, ScorerConfig(dim=4, epochs=3, batch_size=16), False)
print(hashlib.sha256(b"".join(arrays[k].tobytes() for k in sorted(arrays))).hexdigest())
"""


def test_scorer_is_the_same_in_every_process() -> None:
    """The negatives are drawn kind by kind: in a set's order, which Python's hash seed sets,
    two processes with one scorer seed trained different scorers."""
    import os
    import subprocess
    import sys

    digests = set()
    for hash_seed in ("1", "2", "3"):
        env = os.environ | {"PYTHONHASHSEED": hash_seed, "OMP_NUM_THREADS": "1"}
        out = subprocess.run(
            [sys.executable, "-c", _TRAIN_IN_A_PROCESS],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        digests.add(out.stdout.strip())
    assert len(digests) == 1


# ---------------------------------------------------------------- evaluation and CLI


def test_evaluate_with_library_baselines(bx, tmp_path) -> None:
    # `make test` installs the `intents` and `graph` extras: a missing `implicit` or
    # `torch_geometric` fails here, never skips.
    data = read_events_dir(bx)
    write_split(make_split(data, None, seed=0), tmp_path / "split.parquet")
    heldout, desc = read_split(tmp_path / "split.parquet")
    graph = build_graph(
        data,
        BuildConfig(scorer=FAST),
        split=desc,
        heldout=heldout,
        engine=_engine(tmp_path),
        progress=False,
    )
    grid = TuningGrid(
        scorer=[{"dim": 4}, {"dim": 8}],
        itemknn=[{"K": 5}, {"K": 50}],
        als=[{"factors": 4, "iterations": 3}, {"factors": 8, "iterations": 3}],
        bpr=[{"factors": 4, "iterations": 5}, {"factors": 8, "iterations": 5}],
        lightgcn=[{"dim": 4, "epochs": 2}, {"dim": 8, "epochs": 2}],
    )
    cfg = EvalConfig(k=10, grid=grid, threads=1, bootstrap=200)
    heldout_values, _ = read_heldout(tmp_path / "split.parquet")
    report = evaluate(graph, heldout_values, cfg, data, progress=False)
    assert set(report["metrics"]) == set(SYSTEMS)
    assert report["counts"]["relevance_min_rating"] == 8.0  # Book-Crossing's 1-10 scale
    n = report["counts"]["users_overall"]
    assert n > 0
    for system, tuned in report["tuning"].items():
        assert len(tuned["points"]) == (1 if system == "popularity" else 2)
    for system, slices in report["metrics"].items():
        assert slices["overall"]["users"] == n, system
        for row in slices.values():
            for m in ("recall", "ndcg", "hr"):
                assert row[m] is None or 0 <= row[m] <= 1
            assert row["recall"] is None or row["recall"] <= row["hr"]


def test_missing_implicit_names_the_extra(monkeypatch) -> None:
    import sys

    import scipy.sparse as sp

    from gravity.intents.systems import fit_baseline

    monkeypatch.setitem(sys.modules, "implicit", None)
    with pytest.raises(GravityError, match=r"gravity\[intents\]"):
        fit_baseline("als", sp.csr_matrix(np.ones((2, 2))), {}, 1, 0)


def _cli_graph(bx: Path, tmp_path: Path, monkeypatch) -> Path:
    import gravity.llm

    monkeypatch.setattr(gravity.llm, "make_backend", lambda cfg: IntentBackend())
    runner = CliRunner()
    split = tmp_path / "split.parquet"
    r = runner.invoke(app, ["intents", "split", "--events", str(bx), "-o", str(split)])
    assert r.exit_code == 0, r.output
    graph = tmp_path / "graph"
    r = runner.invoke(
        app,
        [
            "intents",
            "build",
            "--events",
            str(bx),
            "--out",
            str(graph),
            "--split",
            str(split),
            "--scorer.epochs",
            "3",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "rejected" in r.output and (tmp_path / "graph.store.sqlite").exists()
    return graph


def test_cli_round_trip(bx, tmp_path, monkeypatch) -> None:
    graph = _cli_graph(bx, tmp_path, monkeypatch)
    runner = CliRunner()
    users = tmp_path / "users.txt"
    users.write_text("# two readers\n1\n\n2\n")
    out = tmp_path / "recs.jsonl"
    r = runner.invoke(
        app,
        [
            "intents",
            "recommend",
            "--graph",
            str(graph),
            "--k",
            "3",
            "--users",
            str(users),
            "-o",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [x["user_id"] for x in recs] == ["1", "2"]
    g = read_graph(graph)
    rated = {(e["src"][2:], e["dst"][2:]) for e in g.edges.to_pylist() if e["relation"] == "rated"}
    for rec in recs:
        assert len(rec["items"]) == 3
        for item in rec["items"]:
            assert (rec["user_id"], item["item_id"]) not in rated
            assert item["path"] and all(isinstance(p, str) for p in item["path"])
            assert item["path_source"] in ("graph", "learned")
    first = recs[0]["items"][0]["item_id"]
    r = runner.invoke(app, ["intents", "explain", "--graph", str(graph), "1", first, "--json"])
    assert r.exit_code == 0, r.output
    shown = json.loads(r.output)
    assert shown["rank"] == 1 or shown["already_rated"] is False
    assert shown["paths"][0]["intent"] == recs[0]["items"][0]["path"][0]
    r = runner.invoke(
        app,
        [
            "intents",
            "evaluate",
            "--events",
            str(bx),
            "--graph",
            str(graph),
            "--systems",
            "intents",
            "--systems",
            "popularity",
            "-o",
            str(tmp_path / "eval.json"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "| intents | overall |" in r.output and "| popularity | cold_start |" in r.output
    assert json.loads((tmp_path / "eval.json").read_text())["split"]["pairs"] > 0
    # Another split than the one the graph was built without: refused, one line.
    other = tmp_path / "other.parquet"
    r = runner.invoke(
        app, ["intents", "split", "--events", str(bx), "-o", str(other), "--seed", "1"]
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        app,
        ["intents", "evaluate", "--events", str(bx), "--graph", str(graph), "--split", str(other)],
    )
    assert r.exit_code == 2 and "not the split the graph was built without" in r.output
    # An unknown user in the users file: one line naming the file and line, nothing written.
    users.write_text("1\nnobody\n")
    r = runner.invoke(
        app,
        [
            "intents",
            "recommend",
            "--graph",
            str(graph),
            "--users",
            str(users),
            "-o",
            str(tmp_path / "none.jsonl"),
        ],
    )
    assert r.exit_code == 2 and f"{users}:2" in r.output
    assert not (tmp_path / "none.jsonl").exists()


def _corrupt(graph: Path, case: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from gravity.intents.graph import file_digest

    manifest = json.loads((graph / "manifest.json").read_text())

    def resign() -> None:
        manifest["files"] = {n: file_digest(graph / n) for n in manifest["files"]}
        (graph / "manifest.json").write_text(json.dumps(manifest))

    if case == "no_manifest":
        (graph / "manifest.json").unlink()
    elif case == "manifest_not_json":
        (graph / "manifest.json").write_bytes(b"{\xff not json")
    elif case == "manifest_wrong_field":
        manifest["version"] = "two"
        (graph / "manifest.json").write_text(json.dumps(manifest))
    elif case == "files_escape":
        manifest["files"] = {"../../outside": "0" * 16}
        (graph / "manifest.json").write_text(json.dumps(manifest))
    elif case == "edited_edges":
        (graph / "edges.parquet").write_bytes(b"PAR1 garbage")
    elif case == "garbage_signed":
        (graph / "edges.parquet").write_bytes(b"PAR1 garbage")
        resign()
    elif case == "unknown_node":
        edges = pq.read_table(graph / "edges.parquet").to_pylist()
        edges[0]["dst"] = "i:ghost"
        pq.write_table(pa.Table.from_pylist(edges), graph / "edges.parquet")
        resign()
    elif case == "missing_column":
        pq.write_table(
            pq.read_table(graph / "nodes.parquet").drop(["kind"]), graph / "nodes.parquet"
        )
        resign()
    elif case == "scorer_shape":
        z = dict(np.load(graph / "scorer.npz"))
        z["entity"] = z["entity"][:-1]
        np.savez(graph / "scorer.npz", **z)
        resign()
    elif case == "scorer_nan":
        z = dict(np.load(graph / "scorer.npz"))
        z["bias"][0] = np.nan
        np.savez(graph / "scorer.npz", **z)
        resign()
    elif case == "not_a_folder":
        import shutil

        shutil.rmtree(graph)
        graph.write_text("x")


CASES = {
    "no_manifest": "manifest.json: cannot read",
    "manifest_not_json": "manifest.json: not JSON",
    "manifest_wrong_field": "manifest.json: version",
    "files_escape": "manifest.json: files: must list",
    "edited_edges": "edges.parquet: does not match manifest.json",
    "garbage_signed": "edges.parquet: cannot read",
    "unknown_node": "edges.parquet: dst: unknown node",
    "missing_column": "nodes.parquet: missing column(s) kind",
    "scorer_shape": "scorer.npz: entity: shape",
    "scorer_nan": "scorer.npz: bias: not finite",
    "not_a_folder": "not a graph folder",
}


def test_hostile_graph_dir_exits_2_and_writes_nothing(bx, tmp_path, monkeypatch) -> None:
    import shutil

    good = _cli_graph(bx, tmp_path, monkeypatch)
    runner = CliRunner()
    for case, message in CASES.items():
        graph = tmp_path / f"g-{case}"
        shutil.copytree(good, graph)
        _corrupt(graph, case)
        out = tmp_path / f"{case}.jsonl"
        for args in (
            ["intents", "recommend", "--graph", str(graph), "-o", str(out)],
            ["intents", "explain", "--graph", str(graph), "1", "0141439513"],
        ):
            r = runner.invoke(app, args)
            assert r.exit_code == 2, (case, r.output)
            lines = [line for line in r.output.splitlines() if line.strip()]
            assert len(lines) == 1 and message in lines[0], (case, r.output)
        assert not out.exists()
    r = runner.invoke(app, ["intents", "explain", "--graph", str(good), "nobody", "0141439513"])
    assert r.exit_code == 2 and "USER_ID" in r.output


# ---------------------------------------------------------------- the embedded model


@pytest.mark.slow  # about 75 s on 2 busy cores
def test_extraction_on_the_embedded_model(bx, tmp_path) -> None:
    """A real run on the embedded model over two fixture books: each ends with cleaned intent
    phrases or as a reject with its reason, never anything in between."""
    from gravity.intents.extract import clean_phrase, extract_intents
    from gravity.llm import SamplingParams, make_backend
    from gravity.llm.config import BackendConfig

    data = read_events_dir(bx)
    items = [r for r in data.items.to_pylist() if r["id"] in ("0141439513", "0451524934")]
    params = SamplingParams(max_new_tokens=80, temperature=0.0, seed=0)
    with make_backend(BackendConfig()) as backend:
        engine = Engine(backend, Store(tmp_path / "s.sqlite"), progress=False)
        out = extract_intents(engine, items, {}, params, round_size=1, max_attempts=1)
    assert set(out.phrases) | set(out.rejects) == {"0141439513", "0451524934"}
    assert not set(out.phrases) & set(out.rejects)
    for phrases in out.phrases.values():
        assert 1 <= len(phrases) <= 4
        assert all(clean_phrase(p) == p for p in phrases)
    for reason in out.rejects.values():
        assert reason


def test_cold_items_hold_out_every_edition_of_their_work(bx) -> None:
    """A planted second edition (another id, the same title and author, rated by a user who
    never rated the first) of a cold item: it is held out with it, its rating a test pair, and
    build leaves its events out; else the held-out book would train under another id."""
    import dataclasses

    import pyarrow as pa

    from gravity.intents.build import training_interactions

    data = read_events_dir(bx)
    first = json.loads(make_split(data, None, 0, cold_items=2).schema.metadata[b"gravity_split"])
    item = first["cold_items"][0]
    row = next(r for r in data.items.to_pylist() if r["id"] == item)
    raters = {e["user_id"] for e in data.events.to_pylist() if e["item_id"] == item}
    reader = next(u for u in data.users["id"].to_pylist() if u not in raters)
    edition = dict(row, id=f"{item}-other-edition")
    event = dict(
        data.events.slice(0, 1).to_pylist()[0],
        user_id=reader,
        item_id=edition["id"],
        kind="personal",
        value=9.0,
        text=None,
    )
    items = pa.concat_tables([data.items, pa.Table.from_pylist([edition], data.items.schema)])
    events = pa.concat_tables([data.events, pa.Table.from_pylist([event], data.events.schema)])
    planted = dataclasses.replace(data, items=items, events=events)
    table = make_split(planted, None, 0, cold_items=2)
    cold = json.loads(table.schema.metadata[b"gravity_split"])["cold_items"]
    assert set(first["cold_items"]) | {edition["id"]} == set(cold)  # the same works chosen
    assert {"user_id": reader, "item_id": edition["id"], "value": 9.0} in table.to_pylist()
    ratings, _, _, left_out = training_interactions(
        planted, BuildConfig(), {(r["user_id"], r["item_id"]) for r in table.to_pylist()}, set(cold)
    )
    assert not any(i in cold for _, i in ratings)
    assert left_out["events_of_cold_items"] >= len(raters) + 1


def test_item_cold_start_split_build_and_evaluate(bx, tmp_path) -> None:
    """Whole items held out: none of their events reaches the graph, they are items of it with
    the intents of their metadata, and only the intent scorers rank them."""
    data = read_events_dir(bx)
    table = make_split(data, None, seed=0, cold_items=3)
    cold = json.loads(table.schema.metadata[b"gravity_split"])["cold_items"]
    assert len(cold) == 3
    assert make_split(data, None, seed=0, cold_items=3).equals(table)
    rows = table.to_pylist()
    # Every explicit rating of a cold item is held out (by any user).
    explicit = [
        e for e in data.events.to_pylist() if e["kind"] == "personal" and e["value"] is not None
    ]
    assert {(e["user_id"], e["item_id"]) for e in explicit if e["item_id"] in cold} <= {
        (r["user_id"], r["item_id"]) for r in rows
    }
    write_split(table, tmp_path / "split.parquet")
    heldout, desc = read_heldout(tmp_path / "split.parquet")
    assert desc["cold_items"] == cold
    backend = IntentBackend()
    graph = build_graph(
        data,
        BuildConfig(scorer=FAST),
        split=desc,
        heldout=heldout,
        engine=_engine(tmp_path, backend),
        progress=False,
    )
    edges = graph.edges.to_pylist()
    assert not any(e["dst"][2:] in cold for e in edges if e["relation"] == "rated")
    assert {f"i:{i}" for i in cold} <= set(graph.ids("item"))
    assert graph.manifest["counts"]["cold_items"] == 3
    assert graph.manifest["counts"]["events_of_cold_items"] >= len(
        [r for r in rows if r["item_id"] in cold]
    )
    titles = {r["id"]: r["title"] for r in data.items.to_pylist()}
    prompts = [r.messages[-1].content for r in backend.seen]
    for item in cold:  # extracted from its metadata alone: no review of it reaches the prompt
        prompt = next(p for p in prompts if p.startswith(f'Book: "{titles[item]}"'))
        assert "What readers wrote about it" not in prompt
    grid = TuningGrid(
        scorer=[{}],
        itemknn=[{"K": 5}],
        als=[{"factors": 4}],
        bpr=[{"factors": 4}],
        lightgcn=[{"dim": 8, "epochs": 5}],
    )
    cfg = EvalConfig(grid=grid, threads=1, bootstrap=200, relevant_min=1)
    report = evaluate(graph, heldout, cfg, data, progress=False)
    assert report["counts"]["items_without_interactions"] == 3
    assert report["counts"]["users_cold_items"] > 0
    scored = {s for s, slices in report["metrics"].items() if "cold_items" in slices}
    assert scored == {"intents", "intents_no_path", "intents_shuffled"}
